"""``find_fixed_points`` (exact ReLU or gradient) and ``autonomous_collapse``.

Shapes: ``N`` initial states, ``P`` points, ``H`` hidden units, ``I`` inputs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np
import torch

from rnnscope.analysis.fixedpoints.exact import cycle_jacobians, exact_search, preactivation
from rnnscope.analysis.fixedpoints.gradient import minimise_q, outlier_mask
from rnnscope.analysis.fixedpoints.jacobians import map_jacobians
from rnnscope.analysis.fixedpoints.maps import StateMap, VanillaMap, state_map
from rnnscope.analysis.fixedpoints.report import (
    Cycle,
    FixedPointReport,
    canonical_order,
    empty_report,
    unique_indices,
)
from rnnscope.analysis.fixedpoints.stability import MARGINAL_TOL, TimeKind, classify, eigenvalues
from rnnscope.analysis.simulate import simulate
from rnnscope.core.random import Seed, child_seeds, numpy_rng
from rnnscope.core.results import Result
from rnnscope.models.base import RecurrentModel

Method = Literal["exact", "gradient", "auto"]

EXACT_MERGE_TOL = 1e-7
"""Exact points (or cycles) closer than ``EXACT_MERGE_TOL × (1 + max |h|)`` are the same point reached
from several regions (it lies on their common boundary)."""


def find_fixed_points(
    model: RecurrentModel,
    input=None,
    method: Method = "auto",
    initial_states=None,
    n_initial: int = 1000,
    seed: Seed = 0,
    *,
    time: TimeKind = "discrete",
    max_period: int = 2,
    noise_std: float | None = None,
    tol_q: float = 1e-12,
    max_iters: int = 5000,
    lr: float = 0.05,
    newton_steps: int | None = None,
    speed_threshold: float | None = None,
    outlier_scale: float | None = 2.0,
    unique_tol: float = 1e-3,
    marginal_tol: float = MARGINAL_TOL,
    region_tol: float = 1e-9,
    settle_steps: int = 100,
    max_hops: int = 10,
    max_cycle_sequences: int | None = 1000,
    progress: bool = False,
) -> FixedPointReport:
    """Fixed points (and, for ReLU networks, k-cycles) of ``F(h) = model.step(h, input)``.

    Args:
        model: any :class:`~rnnscope.models.base.RecurrentModel` (never modified).
        input: the constant input (I,), or None for no input.
        method: "exact" (ReLU vanilla RNNs: certified fixed points and cycles, module
            :mod:`~rnnscope.analysis.fixedpoints.exact`), "gradient" (any model: minimisation of
            ``q = ½‖F(h) − h‖²``, module :mod:`~rnnscope.analysis.fixedpoints.gradient`), or "auto"
            (exact when the model is a ReLU vanilla RNN, else gradient).
        initial_states: states (N, H) or (B, T, H) or a ``Simulation``, used as they are: the starting
            points of the gradient finder, the seeds of the exact one (use ``sample_states`` to subsample
            or add noise). None: ``n_initial`` states visited by the model under ``input`` plus Gaussian
            input noise of std ``noise_std`` (default the model's ``noise_std``, else 1), from
            ``h_0 ~ N(0, 1)`` after 50 warm-up steps.
        n_initial: number of visited states drawn when ``initial_states`` is None.
        seed: seed of that simulation, of the draw, and of the exact finder's subsampling.
        time: "discrete" (stable iff all |λ| < 1) or "continuous" (the flow ``dh/dt = F(h) − h``:
            stable iff all Re λ < 0, eigenvalues of ``J − I``).
        max_period: exact method: also find k-cycles for k = 2 … ``max_period`` (1: none).
        tol_q: gradient: a point stops when ``q ≤ tol_q``.
        max_iters: gradient: at most this many Adam steps.
        lr: gradient: initial step size relative to the spread of the initial states.
        newton_steps: gradient: Newton polishing steps after Adam (also tried every 50 Adam steps on the
            running points); None means 20. Use 0 to keep slow points where they are.
        speed_threshold: gradient: keep points with ``‖F(h) − h‖ ≤`` this (state units per step);
            None means ``sqrt(2 tol_q)`` (i.e. ``q ≤ tol_q``). Raise it to keep slow points.
        outlier_scale: gradient: drop points farther than this many cloud radii (RMS distance of the
            initial states to their centroid) from every initial state; None keeps all.
        unique_tol: gradient: points closer than ``unique_tol × scale`` are merged (scale: median norm
            of the initial states, 1 if that is 0). Exact points are merged only when equal up to
            rounding (``EXACT_MERGE_TOL``).
        marginal_tol: eigenvalue tolerance of the stability rule (:mod:`...stability`).
        region_tol: exact: relative tolerance of the region-consistency test (and of ``boundary``).
        settle_steps: exact: steps of the noise-free orbits whose end regions seed the search.
        max_hops: exact: SCYFI re-solves from the regions of rejected candidates.
        max_cycle_sequences: exact: at most this many region sequences solved per hop for each cycle
            period k ≥ 2 (a random subset; fixed points are never capped); None for no cap.
        progress: gradient: show a progress bar over the Adam steps.

    Returns:
        a :class:`FixedPointReport`, its points sorted canonically and deduplicated.
    """
    if method not in ("exact", "gradient", "auto"):
        raise ValueError(f"method must be 'exact', 'gradient' or 'auto'; got {method!r}")
    if time not in ("discrete", "continuous"):
        raise ValueError(f"time must be 'discrete' or 'continuous'; got {time!r}")
    if int(max_period) < 1:
        raise ValueError(f"max_period must be >= 1; got {max_period}")
    fmap = state_map(model, input)
    is_relu = isinstance(fmap, VanillaMap) and fmap.nonlinearity == "relu"
    if method == "auto":
        method = "exact" if is_relu else "gradient"
    if method == "exact" and not is_relu:
        raise ValueError(
            "method='exact' needs a vanilla ReLU network (piecewise linear); this model is not one. "
            "Use method='gradient'."
        )
    sim_seed, search_seed = child_seeds(seed, 2)
    init = _initial_states(model, fmap, input, initial_states, n_initial, noise_std, sim_seed)
    scale = _scale(init)
    u = None if input is None else np.asarray(torch.as_tensor(input).detach().cpu(), dtype=np.float64)
    common = dict(method=method, input=u, time=time, scale=scale, n_initial=int(init.shape[0]))
    if method == "exact":
        settings = dict(unique_tol=unique_tol, marginal_tol=marginal_tol, region_tol=region_tol,
                        max_period=int(max_period), settle_steps=settle_steps, max_hops=max_hops,
                        max_cycle_sequences=max_cycle_sequences)
        return _exact_report(fmap, init, settings, search_seed, common)
    newton_steps = 20 if newton_steps is None else int(newton_steps)
    speed_threshold = math.sqrt(2 * tol_q) if speed_threshold is None else float(speed_threshold)
    settings = dict(unique_tol=unique_tol, marginal_tol=marginal_tol, region_tol=region_tol, tol_q=tol_q,
                    max_iters=max_iters, lr=lr, newton_steps=newton_steps, speed_threshold=speed_threshold,
                    outlier_scale=outlier_scale)
    return _gradient_report(fmap, init, settings, progress, common)


def _gradient_report(fmap: StateMap, init: np.ndarray, settings: dict, progress: bool,
                     common: dict) -> FixedPointReport:
    h0 = fmap.as_states(init)
    with torch.no_grad():
        run = minimise_q(fmap, h0, tol_q=settings["tol_q"], max_iters=settings["max_iters"], lr=settings["lr"],
                         newton_steps=settings["newton_steps"], progress=progress)
    points = run.points.detach().to(torch.float64).cpu().numpy()
    speeds = np.sqrt(2 * np.clip(run.q.detach().to(torch.float64).cpu().numpy(), 0, None))
    keep = np.isfinite(speeds) & (speeds <= settings["speed_threshold"])
    if settings["outlier_scale"] is not None:
        keep &= ~outlier_mask(points, init, scale=settings["outlier_scale"])
    return _assemble(fmap, points[keep], speeds[keep], np.zeros(int(keep.sum()), dtype=bool), [], settings, common)


def _exact_report(fmap: VanillaMap, init: np.ndarray, settings: dict, seed: int, common: dict) -> FixedPointReport:
    seeds = fmap.as_states(init)
    search_seeds = child_seeds(seed, settings["max_period"])
    options = dict(region_tol=settings["region_tol"], settle_steps=settings["settle_steps"],
                   max_hops=settings["max_hops"])
    with torch.no_grad():
        found = exact_search(fmap, seeds, 1, seed=search_seeds[0], max_sequences=None, **options)
        cycles = []
        for period in range(2, settings["max_period"] + 1):
            candidates = exact_search(fmap, seeds, period, seed=search_seeds[period - 1],
                                      max_sequences=settings["max_cycle_sequences"], **options)
            cycles.extend(_cycles(fmap, candidates.points, candidates.regions, settings))
    points = found.points[:, 0]
    speeds = _speeds(fmap, points)
    report = _assemble(fmap, points, speeds, found.singular, cycles, settings, common)
    return dataclasses.replace(report, settings={**settings, "n_sequences": found.n_sequences,
                                                  "n_singular_systems": found.n_singular})


def _assemble(fmap: StateMap, points: np.ndarray, speeds: np.ndarray, singular: np.ndarray, cycles: list,
              settings: dict, common: dict) -> FixedPointReport:
    """Sort, deduplicate, and add Jacobian eigenvalues and stability labels."""
    if points.shape[0] == 0:
        return empty_report(fmap.hidden_size, settings=settings, cycles=cycles, **common)
    order = canonical_order(points, speeds, fixed_speed=_fixed_speed(common["scale"]))
    points, speeds, singular = points[order], speeds[order], singular[order]
    reps = unique_indices(points, _merge_tol(points, common, settings))
    points, speeds, singular = points[reps] + 0.0, speeds[reps], singular[reps]
    h = fmap.as_states(points)
    J = map_jacobians(fmap, h).detach()
    values = eigenvalues(J, time=common["time"])
    labels = classify(values, time=common["time"], tol=settings["marginal_tol"])
    boundary = np.zeros(points.shape[0], dtype=bool)
    if isinstance(fmap, VanillaMap) and fmap.nonlinearity == "relu":
        with torch.no_grad():
            pre = preactivation(fmap, h).cpu().numpy()
        tol = settings["region_tol"] * (1 + np.abs(pre).max(1, keepdims=True)) + speeds[:, None]
        boundary = (np.abs(pre) <= tol).any(1)
        labels = [("nonsmooth" if flag else label) for flag, label in zip(boundary, labels)]
    return FixedPointReport(points=points, speeds=speeds, eigenvalues=values, stability=labels, boundary=boundary,
                            singular=singular.astype(bool), cycles=cycles, settings=settings, **common)


def _cycles(fmap: VanillaMap, points: np.ndarray, regions: np.ndarray, settings: dict) -> list[Cycle]:
    """Rotate each accepted cycle to start at its lexicographically smallest point, deduplicate, and
    certify (multipliers, residual)."""
    A, k, H = points.shape
    if A == 0:
        return []
    flat = np.round(points.reshape(A * k, H), 9)
    rank = np.empty(A * k, dtype=np.int64)
    rank[np.lexsort(tuple(flat[:, d] for d in range(H - 1, -1, -1)))] = np.arange(A * k)
    shift = rank.reshape(A, k).argmin(1)
    roll = (np.arange(k)[None, :] + shift[:, None]) % k
    points = np.take_along_axis(points, roll[:, :, None], axis=1)
    regions = np.take_along_axis(regions, roll[:, :, None], axis=1)
    reps = unique_indices(points.reshape(A, k * H), EXACT_MERGE_TOL * (1 + np.abs(points).max()))
    points, regions = points[reps], regions[reps]
    with torch.no_grad():
        multipliers = eigenvalues(cycle_jacobians(fmap, regions))
        h = torch.as_tensor(points, dtype=fmap.dtype, device=fmap.device)
        mapped = torch.relu(preactivation(fmap, h)).roll(1, dims=1)
        residuals = (mapped - h).norm(dim=-1).amax(-1).cpu().numpy()
    labels = classify(multipliers, time="discrete", tol=settings["marginal_tol"])
    points = points + 0.0
    cycles = [Cycle(points=points[i], multipliers=multipliers[i], stability=labels[i], residual=float(residuals[i]),
                    regions=regions[i]) for i in range(points.shape[0])]
    return sorted(cycles, key=lambda c: (c.period, tuple(np.round(c.points[0], 9))))


def _merge_tol(points: np.ndarray, common: dict, settings: dict) -> float:
    """Distance below which two found points are one: ``unique_tol × scale`` for the gradient method;
    for the exact method, whose points are exact, only rounding-level differences
    (``EXACT_MERGE_TOL × (1 + max |h|)``), so distinct certified points are never merged."""
    if common["method"] == "exact":
        return EXACT_MERGE_TOL * (1 + float(np.abs(points).max()))
    return settings["unique_tol"] * common["scale"]


def _speeds(fmap: StateMap, points: np.ndarray) -> np.ndarray:
    if points.shape[0] == 0:
        return np.zeros(0)
    with torch.no_grad():
        h = fmap.as_states(points)
        return (fmap(h) - h).norm(dim=1).detach().to(torch.float64).cpu().numpy()


def _fixed_speed(scale: float) -> float:
    """Speeds at or below this count as exactly fixed when sorting (rounding level of float64)."""
    return 1e-10 * max(scale, 1.0)


def _scale(states: np.ndarray) -> float:
    norms = np.linalg.norm(states, axis=1)
    scale = float(np.median(norms)) if norms.size else 0.0
    return scale if scale > 0 and np.isfinite(scale) else 1.0


def _initial_states(model, fmap: StateMap, input, initial_states, n_initial: int, noise_std, seed: int) -> np.ndarray:
    if initial_states is not None:
        if hasattr(initial_states, "states") and callable(initial_states.states):
            initial_states = initial_states.states()
        if isinstance(initial_states, torch.Tensor):
            initial_states = initial_states.detach().cpu()
        states = np.asarray(initial_states, dtype=np.float64)
        if states.ndim == 3:
            states = states.reshape(-1, states.shape[-1])
        if states.ndim != 2 or states.shape[1] != fmap.hidden_size or states.shape[0] == 0:
            raise ValueError(
                f"initial_states must have shape (N, H) or (B, T, H) with H = {fmap.hidden_size} and N ≥ 1; "
                f"got shape {states.shape}"
            )
        if not np.isfinite(states).all():
            raise ValueError("initial_states contain NaN or infinite values")
        return states
    if isinstance(n_initial, bool) or int(n_initial) < 1:
        raise ValueError(f"n_initial must be >= 1; got {n_initial}")
    return visited_states(model, int(n_initial), input=input, noise_std=noise_std, seed=seed)


def visited_states(model: RecurrentModel, n: int, *, input=None, noise_std: float | None = None,
                   warmup: int = 50, seed: Seed = 0) -> np.ndarray:
    """``n`` states float64 (n, H) visited by ``model`` under ``input`` plus input noise of std
    ``noise_std`` (default: the model's ``noise_std``, else 1), from ``h_0 ~ N(0, 1)`` after ``warmup``
    steps: ``min(n, 100)`` trajectories, states drawn without replacement."""
    sim_seed, draw_seed = child_seeds(seed, 2)
    sigma = noise_std if noise_std is not None else getattr(model, "noise_std", None)
    sigma = 1.0 if sigma is None else float(sigma)
    num_seq = min(n, 100)
    steps = math.ceil(n / num_seq)
    u = None if input is None else np.asarray(torch.as_tensor(input).detach().cpu(), dtype=np.float32)
    sim = simulate(model, num_seq, steps, input=u, noise_std=sigma, h0="normal", warmup=warmup, seed=sim_seed,
                   outputs="argmax")
    pool = sim.states().astype(np.float64)
    rows = numpy_rng(draw_seed).choice(pool.shape[0], size=n, replace=False)
    return pool[np.sort(rows)]


@dataclasses.dataclass(frozen=True)
class CollapseReport(Result):
    """Does the network without input collapse to a single fixed point? (hmmrnn-reference §2.2, §6.2).

    Fields:
        initial_states: float64 (N, H) visited states the autonomous runs start from.
        end_states: float64 (N, H) states after ``steps`` autonomous steps.
        end_norms: float64 (N,) ``‖h_T‖``.
        mean_end_state: float64 (H,) the reference's "fixed point" (mean end state).
        spread: RMS distance of the end states to their mean (state units).
        max_distance: largest distance of an end state to the mean.
        residuals: float64 (N,) ``‖F(h_T) − h_T‖`` (state units per step).
        max_residual: the largest residual.
        fixed_points: the fixed points of the autonomous map (exact for ReLU networks, seeded from the
            initial and end states; gradient otherwise).
        distance_to_fixed_point: distance of the mean end state to the nearest fixed point (inf if none).
        nearest_fixed_point: index of that fixed point in ``fixed_points`` (-1 if none).
        origin_is_fixed: whether ``F(0) = 0`` (always true for a bias-free network).
        homogeneous: whether the map is positively homogeneous, ``F(αh) = αF(h)`` for α > 0 (a bias-free
            ReLU network without input); only then are ``growth_rates`` defined.
        growth_rates: float64 (M,) or None: asymptotic ``(1/t) log ‖h_t‖`` (per step, natural log) from
            M directions (the initial states and as many Gaussian ones), measured with renormalisation
            over the second half of ``steps``; -inf where the state reaches exactly 0.
        origin_attracting: for homogeneous maps, whether all growth rates are negative; else None.
        collapsed: whether ``spread`` and ``max_residual`` are both ``≤ tol × scale``.
        scale: median norm of the initial states.
        tol: the relative tolerance of ``collapsed``.
        steps: autonomous steps.
    """

    initial_states: np.ndarray
    end_states: np.ndarray
    end_norms: np.ndarray
    mean_end_state: np.ndarray
    spread: float
    max_distance: float
    residuals: np.ndarray
    max_residual: float
    fixed_points: FixedPointReport
    distance_to_fixed_point: float
    nearest_fixed_point: int
    origin_is_fixed: bool
    homogeneous: bool
    growth_rates: np.ndarray | None
    origin_attracting: bool | None
    collapsed: bool
    scale: float
    tol: float
    steps: int

    kind = "autonomous_collapse"

    def summary(self) -> str:
        """A few lines: collapse, spread, residual, fixed points, growth rates."""
        lines = [
            f"autonomous collapse after {self.steps} steps from {self.initial_states.shape[0]} states: "
            f"{'yes' if self.collapsed else 'no'}",
            f"  spread {self.spread:.3g}, max residual {self.max_residual:.3g}, "
            f"median ‖h_T‖ {np.median(self.end_norms):.3g} (scale {self.scale:.3g})",
            f"  {len(self.fixed_points)} fixed point(s); mean end state at distance "
            f"{self.distance_to_fixed_point:.3g} from the nearest; h = 0 fixed: {self.origin_is_fixed}",
        ]
        if self.growth_rates is not None:
            finite = self.growth_rates[np.isfinite(self.growth_rates)]
            top = float(finite.max()) if finite.size else -math.inf
            lines.append(f"  growth rates: max {top:.4g} per step; origin attracting: {self.origin_attracting}")
        return "\n".join(lines)


def autonomous_collapse(
    model: RecurrentModel,
    n_initial: int = 100,
    steps: int = 500,
    seed: Seed = 0,
    *,
    initial_states=None,
    noise_std: float | None = None,
    tol: float = 1e-6,
) -> CollapseReport:
    """Run the network without input from ``n_initial`` visited states and check the collapse claim.

    Initial states (unless given): ``visited_states`` of the noise-driven network (σ = ``noise_std``,
    default the model's own, else 1). The runs use a float64 copy of the map, so a decay to
    ``‖h‖ ≈ 1e-65`` is resolved rather than flushed to zero.
    """
    if isinstance(steps, bool) or int(steps) < 2:
        raise ValueError(f"steps must be an integer >= 2; got {steps}")
    fmap = state_map(model, None)
    sim_seed, direction_seed, fp_seed = child_seeds(seed, 3)
    init = _initial_states(model, fmap, None, initial_states, n_initial, noise_std, sim_seed)
    scale = _scale(init)
    with torch.no_grad():
        h = fmap.as_states(init)
        for _ in range(int(steps)):
            h = fmap(h)
        residual_n = (fmap(h) - h).norm(dim=1)
        origin = fmap(torch.zeros(1, fmap.hidden_size, dtype=fmap.dtype, device=fmap.device))
    end = h.detach().to(torch.float64).cpu().numpy()
    residuals = residual_n.detach().to(torch.float64).cpu().numpy()
    mean_end = end.mean(0)
    distances = np.linalg.norm(end - mean_end, axis=1)
    homogeneous = isinstance(fmap, VanillaMap) and fmap.nonlinearity == "relu" and bool((fmap.c == 0).all())
    growth = None
    if homogeneous:
        rng = numpy_rng(direction_seed)
        directions = np.concatenate([init, rng.standard_normal(init.shape)])
        growth = growth_rates(fmap, directions, int(steps))
    method = "exact" if isinstance(fmap, VanillaMap) and fmap.nonlinearity == "relu" else "gradient"
    fixed = find_fixed_points(model, None, method=method, initial_states=np.concatenate([init, end]), seed=fp_seed,
                              max_period=1)
    if len(fixed):
        gaps = np.linalg.norm(fixed.points - mean_end, axis=1)
        nearest, distance = int(gaps.argmin()), float(gaps.min())
    else:
        nearest, distance = -1, math.inf
    spread = float(np.sqrt((distances**2).mean()))
    return CollapseReport(
        initial_states=init,
        end_states=end,
        end_norms=np.linalg.norm(end, axis=1),
        mean_end_state=mean_end,
        spread=spread,
        max_distance=float(distances.max()),
        residuals=residuals,
        max_residual=float(residuals.max()),
        fixed_points=fixed,
        distance_to_fixed_point=distance,
        nearest_fixed_point=nearest,
        origin_is_fixed=bool(origin.abs().max() == 0),
        homogeneous=homogeneous,
        growth_rates=growth,
        origin_attracting=None if growth is None else bool((growth < 0).all()),
        collapsed=bool(spread <= tol * scale and residuals.max() <= tol * scale),
        scale=scale,
        tol=float(tol),
        steps=int(steps),
    )


def growth_rates(fmap: StateMap, directions: np.ndarray, steps: int) -> np.ndarray:
    """Asymptotic growth rates float64 (M,) of ``log ‖h_t‖`` per step for a positively homogeneous map.

    ``h`` is renormalised to unit norm after every step (valid because ``F(αh) = αF(h)``); the rate is
    the mean log growth factor over the second half of the ``steps``; -inf once a state maps to 0.
    """
    with torch.no_grad():
        h = fmap.as_states(directions)
        norms = h.norm(dim=1, keepdim=True)
        h = torch.where(norms > 0, h / norms.clamp_min(1e-300), h)
        total = torch.zeros(h.shape[0], dtype=h.dtype, device=h.device)
        counted = 0
        for t in range(steps):
            h = fmap(h)
            norms = h.norm(dim=1)
            if t >= steps // 2:
                total += torch.log(norms)
                counted += 1
            h = h / norms.clamp_min(1e-300)[:, None]
    return (total / counted).cpu().numpy()
