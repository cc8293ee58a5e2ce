"""The debiased Sinkhorn divergence between two point clouds, as geomloss computes it, but faster.

For uniform weights a_i = 1/N on the points x_i and b_j = 1/M on the y_j, cost
C(x, y) = |x − y|^p / p and temperature ε = blur^p,

    S_ε(x, y) = OT_ε(x, y) − ½ OT_ε(x, x) − ½ OT_ε(y, y)
              = ⟨a, f_ba − f_aa⟩ + ⟨b, g_ab − g_bb⟩,

where the dual potentials come from geomloss's symmetric Sinkhorn loop with ε-scaling
(``SamplesLoss("sinkhorn", p, blur, scaling, debias=True, backend="tensorized")``): start at
ε_0 = diameter^p with softmins against the weights alone, then, for every ε of
:func:`epsilon_schedule`, replace each potential by the average of itself and its softmin update
(all four updates from the old potentials), and end with one plain update at ε = blur^p. The
softmin of g against C is f_i = −ε log Σ_j b_j exp((g_j − C_ij)/ε). Gradients follow the envelope
theorem, as in geomloss: only the final update is differentiated, which for p = 2 gives

    ∂S/∂x_i = a_i (Σ_k Q_ik x_k − Σ_j P_ij y_j),

with P and Q the row-normalised final plans of the x↔y and x↔x problems.

The fast path (p = 2) writes each softmin update in the stabilised-kernel form
f_new = f − ε log Σ_j b_j exp((f_i + g_j − C_ij)/ε): one exponential per matrix entry serves both
the row (f) and the column (g) update, the x↔x update reads half the symmetric matrix, and the cost
is C_ij = (|x_i|² + |y_j|²)/2 − x_i·y_j with the Gram matrix x·yᵀ computed once, in bfloat16 when
both clouds hold 0/1 values with at most 256 ones per point (then every product sum is an integer
≤ 256 and the result is exact). Rows or columns whose sums leave [1e-25, 1e30] are recomputed by an
exact log-sum-exp. The passes run in :mod:`rnnscope.training._sinkhorn_kernels`. The y↔y potentials
depend on the target alone; :class:`SinkhornTarget` keeps them between calls.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from rnnscope.training._sinkhorn_kernels import NativeEngine, TorchEngine, get_engine

ENGINES = ("auto", "native", "torch", "logdomain")
"""``auto``: native C kernel for float32 CPU tensors, else ``torch``; ``logdomain``: geomloss's own
algorithm (dense log-sum-exp softmins, autograd through the final step), used for p = 1 and when the
target requires a gradient."""

_SUM_RANGE = (1e-25, 1e30)
"""Kernel sums outside this range are recomputed with an exact log-sum-exp (the C kernel's
SUM_LO/SUM_HI hold the same bounds)."""

_EXACT_ONES = 256
"""A 0/1 point with at most this many ones has exact bfloat16 Gram products."""

_SCHEDULES_KEPT = 4
"""ε schedules (they change with the diameter of x ∪ y) for which a target keeps ⟨b, g_bb⟩."""


def max_diameter(x: Tensor, y: Tensor) -> float:
    """Norm of the diagonal of the bounding box of x ∪ y, for x (N, D) and y (M, D): geomloss's diameter."""
    return _diameter(*_box(x), *_box(y))


def epsilon_schedule(p: int, diameter: float, blur: float, scaling: float) -> list[float]:
    """The temperatures of the ε-scaling loop: diameter^p, then ×scaling^p down to blur^p (geomloss's rule).

    ``[diameter**p] + [exp(e) for e in arange(p log diameter, p log blur, p log scaling)] + [blur**p]``,
    evaluated in float64.
    """
    if diameter <= 0.0:
        return [blur**p, blur**p]
    steps = np.arange(p * np.log(diameter), p * np.log(blur), p * np.log(scaling))
    return [diameter**p] + [float(np.exp(e)) for e in steps] + [blur**p]


@dataclass
class SinkhornTarget:
    """A target point cloud prepared once, with its y↔y potentials remembered per ε schedule.

    ``points`` is the flattened cloud (M, D). Build it with :meth:`prepare`; pass it as ``target`` to
    :func:`sinkhorn_divergence` together with the same ``y``. It is only valid for that ``y``:
    callers that reuse it across calls must check the tensor has not changed (the loss registry does,
    with a fingerprint).
    """

    points: "_Cloud"
    yy_means: dict[tuple, float] = field(default_factory=dict)

    def yy_mean(self, eps_list: list[float], engine: TorchEngine | NativeEngine) -> float:
        """⟨b, g_bb⟩ for this ε schedule, computed once (the last few schedules are kept)."""
        key = tuple(eps_list)
        if key not in self.yy_means:
            while len(self.yy_means) >= _SCHEDULES_KEPT:
                self.yy_means.pop(next(iter(self.yy_means)))
            self.yy_means[key] = _self_potential_mean(self.points, eps_list, engine)
        return self.yy_means[key]

    @classmethod
    def prepare(cls, y: Tensor) -> "SinkhornTarget":
        """Prepare a target of shape (M, D) (or (M, T, K), flattened)."""
        return cls(points=_Cloud.of(_flatten(y, "y").detach()))


def sinkhorn_divergence(
    x: Tensor,
    y: Tensor,
    *,
    blur: float = 0.2,
    p: int = 2,
    scaling: float = 0.5,
    engine: str = "auto",
    target: SinkhornTarget | None = None,
) -> Tensor:
    """The debiased Sinkhorn divergence S_ε(x, y) with geomloss's conventions (a 0-dim tensor).

    ``x`` of shape (N, D) or (N, T, K), ``y`` of shape (M, D) or (M, T, K) (flattened to D = T·K);
    uniform weights; cost |x − y|^p / p in squared input units for p = 2; ε = blur^p; ε-scaling
    ratio ``scaling`` in (0, 1). Differentiable with respect to ``x`` (and ``y``, through the
    log-domain path). Equal to geomloss's
    ``SamplesLoss("sinkhorn", p=p, blur=blur, scaling=scaling, debias=True, backend="tensorized")``
    to float32 rounding. ``target``: a :class:`SinkhornTarget` prepared from this very ``y``.
    """
    check_options(blur, p, scaling, engine)
    x2, y2 = _flatten(x, "x"), _flatten(y, "y")
    if x2.shape[1] != y2.shape[1]:
        raise ValueError(f"x and y must have the same number of features; got {tuple(x.shape)} and {tuple(y.shape)}")
    if x2.device != y2.device or x2.dtype != y2.dtype:
        raise ValueError(f"x and y must share dtype and device; got {x2.dtype}/{x2.device} and {y2.dtype}/{y2.device}")
    grad_x = x.requires_grad and torch.is_grad_enabled()
    if engine == "logdomain" or p != 2 or (y.requires_grad and torch.is_grad_enabled()):
        return _logdomain_divergence(x2, y2, p, blur, scaling)
    if target is None or target.points.data.shape != y2.shape:
        target = SinkhornTarget.prepare(y2)
    value, plans = _fast_divergence(x2.detach(), target, blur, scaling, get_engine(engine, x2), grad_x)
    if plans is None:
        return value
    return _EnvelopeGradient.apply(x, value, plans)


@dataclass(frozen=True)
class _Cloud:
    """A flattened point cloud and what the p = 2 solver needs of it."""

    data: Tensor  # (N, D)
    half_sq_norms: Tensor  # (N,) |x_i|² / 2
    gram_operand: Tensor  # (N, D): bfloat16 copy if exact_binary, else data
    exact_binary: bool  # 0/1 entries, at most _EXACT_ONES ones per point
    box: tuple[Tensor, Tensor]  # per-feature min and max, each (D,)

    @classmethod
    def of(cls, data: Tensor) -> "_Cloud":
        data = data.contiguous()
        binary = bool(((data == 0) | (data == 1)).all()) and float(data.sum(1).max()) <= _EXACT_ONES
        operand = data.to(torch.bfloat16) if binary else data
        return cls(data, 0.5 * (data * data).sum(1), operand, binary, _box(data))


def _gram(u: _Cloud, v: _Cloud) -> Tensor:
    """u·vᵀ of shape (N, M): bfloat16 (exact) for two 0/1 clouds, else in the clouds' dtype."""
    if u.exact_binary and v.exact_binary:
        return torch.mm(u.gram_operand, v.gram_operand.T)
    return torch.mm(u.data, v.data.T.to(u.data.dtype))


def _fast_divergence(
    x: Tensor, target: SinkhornTarget, blur: float, scaling: float, engine: TorchEngine | NativeEngine, grad: bool
) -> tuple[Tensor, Callable[[], Tensor] | None]:
    """S_ε for p = 2 by the stabilised-kernel loop; also the gradient's closure when ``grad``."""
    with torch.no_grad():
        xs, ys = _Cloud.of(x), target.points
        eps_list = epsilon_schedule(2, _diameter(*xs.box, *ys.box), blur, scaling)
        xy = _CrossProblem(_gram(xs, ys), xs.half_sq_norms, ys.half_sq_norms, engine)
        xx = _SelfProblem(_gram(xs, xs), xs.half_sq_norms, engine)
        f, g = xy.start(eps_list[0])
        f_aa = xx.start(eps_list[0])
        for eps in eps_list:
            f, g = xy.averaged_step(f, g, eps)
            f_aa = xx.averaged_step(f_aa, eps)
        f_ba, g_ab, xy_plan = xy.update(f, g, eps_list[-1], keep_plan=grad)
        f_aa, xx_plan = xx.final(f_aa, eps_list[-1], keep_plan=grad)
        total = f_ba.double().mean() - f_aa.double().mean() + g_ab.double().mean() - target.yy_mean(eps_list, engine)
        value = total.to(x.dtype)
    if not grad:
        return value, None
    n = x.shape[0]
    y = ys.data

    def gradient() -> Tensor:
        mixed = engine.mix(*xx_plan, x) - engine.mix(*xy_plan, y)
        return mixed.div_(n)

    return value, gradient


def _self_potential_mean(points: _Cloud, eps_list: list[float], engine: TorchEngine | NativeEngine) -> float:
    """⟨b, g_bb⟩ of the symmetric problem of one cloud (its final potential's mean), in float64."""
    problem = _SelfProblem(_gram(points, points), points.half_sq_norms, engine)
    h = problem.start(eps_list[0])
    for eps in eps_list:
        h = problem.averaged_step(h, eps)
    h, _ = problem.final(h, eps_list[-1], keep_plan=False)
    return float(h.double().mean())


class _CrossProblem:
    """The x↔y problem: potentials f (N,) on x and g (M,) on y, cost C = hx ⊕ hy − G."""

    def __init__(self, G: Tensor, hx: Tensor, hy: Tensor, engine: TorchEngine | NativeEngine) -> None:
        self.G, self.hx, self.hy, self.engine = G, hx, hy, engine
        self.log_a, self.log_b = -math.log(G.shape[0]), -math.log(G.shape[1])

    def start(self, eps: float) -> tuple[Tensor, Tensor]:
        f, g, _ = self.update(torch.zeros_like(self.hx), torch.zeros_like(self.hy), eps)
        return f, g

    def averaged_step(self, f: Tensor, g: Tensor, eps: float) -> tuple[Tensor, Tensor]:
        f, g, _ = self.update(f, g, eps, average=True)
        return f, g

    def update(self, f: Tensor, g: Tensor, eps: float, average: bool = False, keep_plan: bool = False) -> tuple:
        """Both softmin updates from the same (f, g) (averaged with them if ``average``), and the
        plan (K, row sums) if ``keep_plan``."""
        sums = self.engine.cross_step(self.G, f, g, self.hx, self.hy, eps, self.log_a, self.log_b, average, keep_plan)
        alpha, beta, lam = (f - self.hx) / eps, (g - self.hy) / eps, 1.0 / eps
        if sums.f is not None:
            f_new, g_new = sums.f.to(f.dtype), sums.g.to(g.dtype)
        else:
            log_s = _safe_log(sums.rows, lambda bad: _row_lse(self.G, alpha, beta, lam, bad))
            log_t = _safe_log(sums.cols, lambda bad: _row_lse(self.G.T, beta, alpha, lam, bad))
            f_new = _averaged(f, f - eps * (self.log_b + log_s), average)
            g_new = _averaged(g, g - eps * (self.log_a + log_t), average)
        plan = _plan(sums.K, sums.rows, self.G, alpha, beta, lam) if keep_plan else None
        return f_new, g_new, plan


class _SelfProblem:
    """The symmetric x↔x problem: one potential h (N,), cost C = hx ⊕ hx − G with G symmetric."""

    def __init__(self, G: Tensor, hx: Tensor, engine: TorchEngine | NativeEngine) -> None:
        self.G, self.hx, self.engine = G, hx, engine
        self.log_a = -math.log(G.shape[0])

    def start(self, eps: float) -> Tensor:
        return self.update(torch.zeros_like(self.hx), eps)

    def averaged_step(self, h: Tensor, eps: float) -> Tensor:
        return self.update(h, eps, average=True)

    def update(self, h: Tensor, eps: float, average: bool = False) -> Tensor:
        """The softmin update of h (averaged with h if ``average``), from the upper triangle of G."""
        sums = self.engine.self_step(self.G, h, self.hx, eps, self.log_a, average)
        if sums.f is not None:
            return sums.f.to(h.dtype)
        alpha, lam = (h - self.hx) / eps, 1.0 / eps
        log_s = _safe_log(sums.rows, lambda bad: _row_lse(self.G, alpha, alpha, lam, bad))
        return _averaged(h, h - eps * (self.log_a + log_s), average)

    def final(self, h: Tensor, eps: float, keep_plan: bool) -> tuple[Tensor, tuple | None]:
        """The last (plain) update; with ``keep_plan`` it runs over the full G to keep the plan."""
        if not keep_plan:
            return self.update(h, eps), None
        h_new, _, plan = _CrossProblem(self.G, self.hx, self.hx, self.engine).update(h, h, eps, keep_plan=True)
        return h_new, plan


def _averaged(old: Tensor, new: Tensor, average: bool) -> Tensor:
    return 0.5 * (old + new) if average else new


def _safe_log(sums: Tensor, exact: Callable[[Tensor], Tensor]) -> Tensor:
    """log(sums), with the entries outside ``_SUM_RANGE`` (or NaN) replaced by ``exact(indices)``."""
    logs = sums.log()
    ok = (sums > _SUM_RANGE[0]) & (sums < _SUM_RANGE[1])
    if not bool(ok.all()):
        bad = torch.nonzero(~ok).squeeze(1)
        logs[bad] = exact(bad).to(logs.dtype)
    return logs


def _row_lse(G: Tensor, alpha: Tensor, beta: Tensor, lam: float, rows: Tensor) -> Tensor:
    """log Σ_j exp(alpha_i + beta_j + lam G_ij) for the given rows i, by log-sum-exp."""
    return torch.logsumexp(alpha[rows, None] + beta[None, :] + lam * G[rows].to(alpha.dtype), dim=1)


def _plan(K: Tensor, rows: Tensor, G: Tensor, alpha: Tensor, beta: Tensor, lam: float) -> tuple[Tensor, Tensor]:
    """(K, s) with plan P = K / s[:, None]; rows whose sums were out of range are rebuilt exactly (s = 1)."""
    ok = (rows > _SUM_RANGE[0]) & (rows < _SUM_RANGE[1])
    if not bool(ok.all()):
        bad = torch.nonzero(~ok).squeeze(1)
        z = alpha[bad, None] + beta[None, :] + lam * G[bad].to(alpha.dtype)
        K[bad] = torch.softmax(z, dim=1).to(K.dtype)
        rows = torch.where(ok, rows, torch.ones_like(rows))
    return K, rows


class _EnvelopeGradient(torch.autograd.Function):
    """Attach the envelope-theorem gradient to a value computed without autograd."""

    @staticmethod
    def forward(ctx, x: Tensor, value: Tensor, gradient: Callable[[], Tensor]) -> Tensor:
        ctx.gradient = gradient
        ctx.x_shape = x.shape
        return value.clone()

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple:
        grad = ctx.gradient().reshape(ctx.x_shape) * grad_output
        return grad, None, None


def _logdomain_divergence(x: Tensor, y: Tensor, p: int, blur: float, scaling: float) -> Tensor:
    """geomloss's tensorized algorithm itself: dense costs, log-sum-exp softmins, autograd at the end."""
    C_xy, C_yx = _cost(x, y.detach(), p), _cost(y, x.detach(), p)
    C_xx, C_yy = _cost(x, x.detach(), p), _cost(y, y.detach(), p)
    eps_list = epsilon_schedule(p, max_diameter(x.detach(), y.detach()), blur, scaling)
    log_a = torch.full((x.shape[0],), -math.log(x.shape[0]), dtype=x.dtype, device=x.device)
    log_b = torch.full((y.shape[0],), -math.log(y.shape[0]), dtype=x.dtype, device=x.device)
    with torch.no_grad():
        eps = eps_list[0]
        f_ba, g_ab = _softmin(eps, C_xy, log_b), _softmin(eps, C_yx, log_a)
        f_aa, g_bb = _softmin(eps, C_xx, log_a), _softmin(eps, C_yy, log_b)
        for eps in eps_list:
            ft_ba, gt_ab = _softmin(eps, C_xy, log_b + g_ab / eps), _softmin(eps, C_yx, log_a + f_ba / eps)
            ft_aa, gt_bb = _softmin(eps, C_xx, log_a + f_aa / eps), _softmin(eps, C_yy, log_b + g_bb / eps)
            f_ba, g_ab = 0.5 * (f_ba + ft_ba), 0.5 * (g_ab + gt_ab)
            f_aa, g_bb = 0.5 * (f_aa + ft_aa), 0.5 * (g_bb + gt_bb)
    eps = eps_list[-1]
    with torch.enable_grad():
        f_ba, g_ab = _softmin(eps, C_xy, log_b + g_ab / eps), _softmin(eps, C_yx, log_a + f_ba / eps)
        f_aa, g_bb = _softmin(eps, C_xx, log_a + f_aa / eps), _softmin(eps, C_yy, log_b + g_bb / eps)
        return (f_ba - f_aa).mean() + (g_ab - g_bb).mean()


def _softmin(eps: float, C: Tensor, h: Tensor) -> Tensor:
    """f_i = −ε log Σ_j exp(h_j − C_ij/ε), for C (N, M) and h (M,)."""
    return -eps * torch.logsumexp(h[None, :] - C / eps, dim=1)


def _cost(x: Tensor, y: Tensor, p: int) -> Tensor:
    """|x_i − y_j|^p / p of shape (N, M); for p = 1 the distance is floored at 1e-4 (geomloss's clamp)."""
    sq = (x * x).sum(1)[:, None] - 2 * x @ y.T + (y * y).sum(1)[None, :]
    return sq / 2 if p == 2 else sq.clamp_min(1e-8).sqrt()


def _box(x: Tensor) -> tuple[Tensor, Tensor]:
    return x.min(dim=0).values, x.max(dim=0).values


def _diameter(x_min: Tensor, x_max: Tensor, y_min: Tensor, y_max: Tensor) -> float:
    return float((torch.maximum(x_max, y_max) - torch.minimum(x_min, y_min)).norm())


def _flatten(t: Tensor, name: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(t).__name__}")
    if t.dim() not in (2, 3) or t.shape[0] == 0:
        raise ValueError(f"{name} must have shape (N, D) or (N, T, K) with N ≥ 1; got {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor; got {t.dtype}")
    return t.reshape(t.shape[0], -1)


def check_options(blur: float, p: int, scaling: float, engine: str) -> None:
    """Raise ``ValueError`` naming the first invalid option of :func:`sinkhorn_divergence`."""
    if not blur > 0:
        raise ValueError(f"blur must be positive; got {blur}")
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2; got {p}")
    if not 0 < scaling < 1:
        raise ValueError(f"scaling must lie in (0, 1); got {scaling}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}; got {engine!r}")
