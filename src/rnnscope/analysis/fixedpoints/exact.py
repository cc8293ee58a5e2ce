"""Exact fixed points and k-cycles of a ReLU network ``F(h) = relu(W h + c)`` (``c = W_in u + b``).

In an activation region — a 0/1 diagonal ``D`` — the map is affine, ``F(h) = D (W h + c)``. A fixed point
in region ``D`` solves ``(I − D W) h = D c``; a k-cycle along regions ``D_1 … D_k`` solves
``(I − A) h_1 = b`` with ``A = D_k W ⋯ D_1 W`` and ``b`` the accumulated offsets
(``h_{i+1} = D_i (W h_i + c)``). A candidate is **accepted** only when it reproduces its own regions:
for every unit and cycle point, ``W h_i + c > −tol`` where ``D_i = 1`` and ``< tol`` where ``D_i = 0``,
with ``tol = region_tol × (1 + max |W h_i + c|)`` (a zero pre-activation is consistent with both
values, since ``relu(0) = 0``). An accepted candidate is then a true fixed point or cycle of ``F``, not
an approximation: it is certified by construction, and its residual is the rounding error.

Seeds (the SCYFI idea, seeded by the network's own behaviour): the regions visited along the noise-free
orbits of given states — the first k regions of each orbit, and the k regions after ``settle_steps``
steps (where orbits have reached their attractors) of up to ``SETTLE_SEEDS`` of them. A rejected
candidate hops to the regions its own orbit visits, and the system is solved again, up to
``max_hops`` times. Region sequences are
deduplicated with a 64-bit hash of their bit pattern (collisions have probability ~ n²/2⁶⁵ and would
only skip a sequence). Solves are batched (``torch.linalg.lu_factor_ex`` on stacks of systems).

Small networks (``H·k ≤ EXHAUSTIVE_BITS``) skip the seeding: every region sequence is solved, so the
search is complete.

Singular systems (``I − A`` with an eigenvalue 1, e.g. a line of fixed points) are not errors: the
minimum-norm least-squares solution is tried and, if it solves the system and reproduces its regions,
kept with ``singular=True``; other points of the continuum are not enumerated.

Shapes: ``N`` seed states, ``S`` region sequences, ``k`` period, ``H`` hidden units.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from rnnscope.analysis.fixedpoints.maps import VanillaMap
from rnnscope.core.random import Seed, numpy_rng

SOLVE_CHUNK = 512
"""Systems per batched solve (bounds the memory of the (S, H, H) stacks)."""

EXHAUSTIVE_BITS = 12
"""Networks with ``H·k ≤ EXHAUSTIVE_BITS`` have all ``2^(H·k)`` region sequences solved: the search is
then complete (every fixed point or k-cycle is found, not only those the seeds lead to)."""

SETTLE_SEEDS = 1000
"""At most this many seeds are run for ``settle_steps`` to find the regions of the attractors."""

SINGULAR_TOL = 1e-10
"""A system is singular when its smallest LU pivot is below this fraction of the largest."""

_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)


class ExactCandidates(NamedTuple):
    """Accepted solutions of one period (before deduplication)."""

    points: np.ndarray
    """float64 (A, k, H) the cycle points ``h_1 … h_k`` (k = 1: fixed points)."""
    regions: np.ndarray
    """bool (A, k, H) the regions ``D_1 … D_k`` they were solved in."""
    singular: np.ndarray
    """bool (A,) solved from a singular system (minimum-norm solution)."""
    n_sequences: int
    """Distinct region sequences solved (over all hops)."""
    n_singular: int
    """How many of them had a singular system."""


def preactivation(fmap: VanillaMap, h: Tensor) -> Tensor:
    """``W h + c`` for states (..., H)."""
    return h @ fmap.W.T + fmap.c


def region_windows(fmap: VanillaMap, seeds_nxh: Tensor, period: int, settle_steps: int,
                   rng: np.random.Generator) -> Tensor:
    """bool (N + M, k, H): the regions of the first ``k`` states of each seed's noise-free orbit, then of
    the ``k`` states after ``settle_steps`` more steps from ``M = min(N, SETTLE_SEEDS)`` seeds drawn
    with ``rng`` (orbits settle onto a few attractors, so a subset finds them)."""
    first = orbit_regions(fmap, seeds_nxh, period)
    N = seeds_nxh.shape[0]
    chosen = np.sort(rng.choice(N, size=min(N, SETTLE_SEEDS), replace=False))
    h = seeds_nxh[torch.as_tensor(chosen, dtype=torch.long, device=seeds_nxh.device)]
    for _ in range(settle_steps):
        h = torch.relu(preactivation(fmap, h))
    return torch.cat([first, orbit_regions(fmap, h, period)])


def all_sequences(hidden_size: int, period: int, device="cpu") -> Tensor:
    """bool (2^(H·k), k, H): every sequence of k regions (for exhaustive search in small networks)."""
    bits = hidden_size * period
    codes = torch.arange(2**bits, device=device)[:, None]
    return ((codes >> torch.arange(bits, device=device)) & 1).bool().reshape(-1, period, hidden_size)


def orbit_regions(fmap: VanillaMap, h_sxh: Tensor, period: int) -> Tensor:
    """bool (S, k, H): the regions visited by ``h, F(h), …, F^{k−1}(h)``."""
    regions = []
    for _ in range(period):
        pre = preactivation(fmap, h_sxh)
        regions.append(pre > 0)
        h_sxh = torch.relu(pre)
    return torch.stack(regions, 1)


def sequence_keys(regions_sxkxh: np.ndarray) -> np.ndarray:
    """uint64 (S,): a hash of each region sequence's bit pattern."""
    S = regions_sxkxh.shape[0]
    packed = np.packbits(regions_sxkxh.reshape(S, -1), axis=1)
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.concatenate([packed, np.zeros((S, pad), dtype=np.uint8)], axis=1)
    words = packed.view(np.uint64)
    key = np.full(S, np.uint64(packed.shape[1]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in words.T:
            key = (key ^ column) * _HASH_MULTIPLIER
            key ^= key >> np.uint64(29)
    return key


def solve_sequences(fmap: VanillaMap, regions_sxkxh: Tensor, *, region_tol: float):
    """Solve the fixed point of ``F^k`` restricted to each region sequence ``D_1 … D_k``.

    A point of the cycle is zero outside the active set of the region that produced it
    (``h_{i+1} = D_i (W h_i + c)``), so the system is solved on active sets only: with ``a_i`` the
    active units of ``D_i`` (and ``a_0 = a_k``), ``x_i = h_i[a_{i−1}]`` follows
    ``x_{i+1} = W[a_i, a_{i−1}] x_i + c[a_i]``. Index lists are padded to the chunk's largest active
    set with a dummy unit whose row and column are zero (its value solves to 0); at half activity this
    is about 8× cheaper than the full (H, H) systems.

    Returns ``points`` (S, k, H), ``consistent`` bool (S,) (the candidate solves its system and
    reproduces its regions), ``singular`` bool (S,).
    """
    S, k, H = regions_sxkxh.shape
    counts = regions_sxkxh.sum(2)
    n = max(int(counts.max()), 1) if S else 1
    order = torch.argsort((~regions_sxkxh).to(torch.int8), dim=2, stable=True)[:, :, :n]
    taken = torch.arange(n, device=fmap.device)[None, None, :] < counts[:, :, None]
    index = torch.where(taken, order, torch.full_like(order, H))
    W_ext = torch.zeros(H + 1, H + 1, dtype=fmap.dtype, device=fmap.device)
    W_ext[:H, :H] = fmap.W
    c_ext = torch.cat([fmap.c, fmap.c.new_zeros(1)])
    previous = index[:, k - 1]
    A = b = None
    for i in range(k):
        M = W_ext[index[:, i, :, None], previous[:, None, :]]
        offset = c_ext[index[:, i]]
        A = M if A is None else torch.matmul(M, A)
        b = offset if b is None else (M @ b[:, :, None])[..., 0] + offset
        previous = index[:, i]
    eye = torch.eye(n, dtype=fmap.dtype, device=fmap.device)
    x, solves, singular = _solve_affine(eye - A, b, region_tol)
    h_ext = torch.zeros(S, H + 1, dtype=fmap.dtype, device=fmap.device)
    h_ext.scatter_(1, index[:, k - 1], x)
    points = [h_ext[:, :H]]
    D = regions_sxkxh.to(fmap.dtype)
    for i in range(k - 1):
        points.append(D[:, i] * preactivation(fmap, points[-1]))
    points_sxkxh = torch.stack(points, 1)
    pre = preactivation(fmap, points_sxkxh)
    tol = region_tol * (1 + pre.abs().amax((1, 2)))[:, None, None]
    reproduces = torch.where(regions_sxkxh, pre >= -tol, pre <= tol).all(2).all(1)
    finite = torch.isfinite(points_sxkxh).all(2).all(1)
    return points_sxkxh, reproduces & solves & finite, singular


def _solve_affine(system_sxnxn: Tensor, b_sxn: Tensor, region_tol: float) -> tuple[Tensor, Tensor, Tensor]:
    """Solve stacked systems; singular ones (tiny LU pivot) by minimum-norm least squares.

    Returns the solutions (S, n), whether each solves its system to ``region_tol`` (S,) and whether
    each system is singular (S,).
    """
    LU, pivots, info = torch.linalg.lu_factor_ex(system_sxnxn)
    pivots_abs = LU.diagonal(dim1=-2, dim2=-1).abs()
    singular = (info != 0) | (pivots_abs.amin(-1) <= SINGULAR_TOL * pivots_abs.amax(-1).clamp_min(1e-300))
    x = torch.linalg.lu_solve(LU, pivots, b_sxn[:, :, None])[..., 0]
    if bool(singular.any()):
        least_squares = torch.linalg.lstsq(system_sxnxn[singular], b_sxn[singular][:, :, None], driver="gelsd")
        x[singular] = least_squares.solution[..., 0]
    error = ((system_sxnxn @ x[:, :, None])[..., 0] - b_sxn).abs().amax(-1)
    bound = region_tol * (1 + b_sxn.abs().amax(-1) + x.abs().amax(-1))
    return x, error <= bound, singular


def exact_search(
    fmap: VanillaMap,
    seeds_nxh: Tensor,
    period: int,
    *,
    region_tol: float = 1e-9,
    settle_steps: int = 100,
    max_hops: int = 10,
    max_sequences: int | None = None,
    period_tol: float = 1e-9,
    seed: Seed = 0,
) -> ExactCandidates:
    """All accepted fixed points (``period=1``) or k-cycles reachable from the seeds (module docstring).

    ``max_sequences`` caps the region sequences solved per hop (a random subset, drawn with ``seed``);
    None means no cap. A k-cycle whose points repeat with a shorter period d (``max |h_{1+d} − h_1| ≤
    period_tol × (1 + max |h|)``) is dropped: it belongs to period d.
    """
    if fmap.nonlinearity != "relu":
        raise ValueError("the exact finder needs a piecewise-linear (ReLU) network; use method='gradient'")
    rng = numpy_rng(seed)
    H = fmap.hidden_size
    if H * period <= EXHAUSTIVE_BITS:
        frontier = all_sequences(H, period, device=fmap.device)
    else:
        frontier = region_windows(fmap, seeds_nxh, period, settle_steps, rng)
    tried = np.zeros(0, dtype=np.uint64)
    accepted_points, accepted_regions, accepted_singular = [], [], []
    n_sequences = n_singular = 0
    for _ in range(max_hops + 1):
        if frontier.shape[0] == 0:
            break
        frontier, keys = _new_sequences(frontier, tried, max_sequences, rng)
        if frontier.shape[0] == 0:
            break
        tried = np.union1d(tried, keys)
        frontier = frontier[torch.argsort(frontier.sum(2).amax(1), stable=True)]
        rejected = []
        for start in range(0, frontier.shape[0], SOLVE_CHUNK):
            regions = frontier[start:start + SOLVE_CHUNK]
            points, ok, singular = solve_sequences(fmap, regions, region_tol=region_tol)
            n_sequences += regions.shape[0]
            n_singular += int(singular.sum())
            ok = ok & _minimal_period(points, period_tol)
            accepted_points.append(points[ok])
            accepted_regions.append(regions[ok])
            accepted_singular.append(singular[ok])
            retry = ~ok & torch.isfinite(points[:, 0]).all(1)
            if bool(retry.any()):
                rejected.append(orbit_regions(fmap, points[retry, 0], period))
        frontier = torch.cat(rejected) if rejected else frontier[:0]
    if not accepted_points:
        empty = np.zeros((0, period, H))
        return ExactCandidates(empty, empty.astype(bool), np.zeros(0, dtype=bool), n_sequences, n_singular)
    return ExactCandidates(
        points=torch.cat(accepted_points).cpu().numpy(),
        regions=torch.cat(accepted_regions).cpu().numpy(),
        singular=torch.cat(accepted_singular).cpu().numpy(),
        n_sequences=n_sequences,
        n_singular=n_singular,
    )


def cycle_jacobians(fmap: VanillaMap, regions_sxkxh: np.ndarray) -> Tensor:
    """(S, H, H): ``D_k W ⋯ D_1 W`` for each region sequence (the Jacobian of ``F^k`` on the cycle)."""
    D = torch.as_tensor(regions_sxkxh, device=fmap.device).to(fmap.dtype)
    A = D[:, 0, :, None] * fmap.W
    for i in range(1, D.shape[1]):
        A = D[:, i, :, None] * torch.matmul(fmap.W, A)
    return A


def _new_sequences(frontier: Tensor, tried: np.ndarray, cap: int | None, rng: np.random.Generator):
    """Distinct sequences of ``frontier`` not tried before (at most ``cap``), and their keys."""
    regions = frontier.cpu().numpy()
    keys = sequence_keys(regions)
    keys, first = np.unique(keys, return_index=True)
    fresh = ~np.isin(keys, tried)
    keys, first = keys[fresh], first[fresh]
    if cap is not None and first.size > cap:
        chosen = np.sort(rng.choice(first.size, size=cap, replace=False))
        keys, first = keys[chosen], first[chosen]
    return frontier[torch.as_tensor(first, dtype=torch.long, device=frontier.device)], keys


def _minimal_period(points_sxkxh: Tensor, tol: float) -> Tensor:
    k = points_sxkxh.shape[1]
    minimal = torch.ones(points_sxkxh.shape[0], dtype=torch.bool, device=points_sxkxh.device)
    scale = 1 + points_sxkxh.abs().amax((1, 2))
    for d in range(1, k):
        if k % d == 0:
            gap = (points_sxkxh[:, d] - points_sxkxh[:, 0]).abs().amax(-1)
            minimal &= gap > tol * scale
    return minimal
