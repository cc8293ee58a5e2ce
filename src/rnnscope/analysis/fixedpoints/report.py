"""The result of a fixed-point search: points, speeds, eigenvalues, stability and cycles.

:class:`FixedPointReport` behaves like fixed-point-finder's ``FixedPoints``: ``len(report)``,
``report[idx]`` (a report holding the selected points), ``report.unique()`` and ``report.summary()``.

Shapes: ``P`` points, ``H`` hidden units, ``I`` inputs, ``k`` the period of a cycle.
"""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from rnnscope.analysis.fixedpoints.stability import STABILITY_LABELS, is_stable
from rnnscope.core.results import Result

REPORT_LABELS = (*STABILITY_LABELS, "nonsmooth")
"""Stability labels of a report: those of ``classify`` plus "nonsmooth" for ReLU points on a region
boundary, where the map is not differentiable and linear stability is undefined."""

PAIR_CHUNK = 2048
"""Rows per block of the pairwise-distance computation of :func:`unique_indices`."""


@dataclasses.dataclass(frozen=True)
class Cycle(Result):
    """A certified k-cycle ``h_1 → h_2 → … → h_k → h_1`` of a map (k ≥ 2).

    Fields:
        points: float64 (k, H) the cycle's states in order, ``F(h_i) = h_{i+1}``, ``F(h_k) = h_1``;
            rotated so that the first point is the lexicographically smallest.
        multipliers: complex128 (H,) eigenvalues of the Jacobian of ``F^k`` along the cycle (for a ReLU
            network ``D_k W ⋯ D_1 W``), sorted by decreasing modulus.
        stability: the label of the multipliers under the discrete-time rule.
        residual: ``max_i ‖F(h_i) − h_{i+1}‖`` (state units).
        regions: bool (k, H) the ReLU activation pattern ``W h_i + c > 0`` of each point, or None.
    """

    points: np.ndarray
    multipliers: np.ndarray
    stability: str
    residual: float
    regions: np.ndarray | None = None

    kind = "cycle"

    @property
    def period(self) -> int:
        """k, the number of distinct states of the cycle."""
        return int(self.points.shape[0])


@dataclasses.dataclass(frozen=True)
class FixedPointReport(Result):
    """Fixed (and slow) points of ``F(h) = step(h, u)`` for one constant input ``u``, and its cycles.

    Fields:
        points: float64 (P, H) fixed or slow points, sorted canonically (fixed points by coordinates,
            then slow points by increasing speed).
        speeds: float64 (P,) the residual ``‖F(h) − h‖`` (state units per step; ``q = ½ speed²``).
        eigenvalues: complex128 (P, H) eigenvalues of the Jacobian at each point, sorted by decreasing
            modulus; for ``time="continuous"`` those of ``J − I`` (the flow ``F(h) − h``), sorted by
            decreasing real part.
        stability: P labels among :data:`REPORT_LABELS` (the eigenvalue rule of
            :mod:`~rnnscope.analysis.fixedpoints.stability`, or "nonsmooth" where ``boundary``).
        boundary: bool (P,) ReLU only: some unit's pre-activation is 0 within tolerance, so the
            Jacobian is not unique there: the eigenvalues (taken with ``relu'(0) = 0``) do not decide
            stability and the label is "nonsmooth" (e.g. ``h = 0`` of a bias-free network without
            input; see ``autonomous_collapse``).
        singular: bool (P,) exact method only: found in an activation region whose system
            ``(I − D W) h = D c`` is singular (a continuum of fixed points, e.g. a line attractor).
        cycles: certified k-cycles (exact method).
        method: "exact" or "gradient".
        input: float64 (I,) the constant input, or None (no input).
        time: "discrete" or "continuous" (how eigenvalues and stability are read).
        scale: the state scale that the relative tolerances multiply (median norm of the initial states).
        n_initial: number of initial states (gradient) or seed states (exact).
        settings: the tolerances and options used.
    """

    points: np.ndarray
    speeds: np.ndarray
    eigenvalues: np.ndarray
    stability: list
    boundary: np.ndarray
    singular: np.ndarray
    cycles: list
    method: str
    input: np.ndarray | None
    time: str
    scale: float
    n_initial: int
    settings: dict

    kind = "fixed_points"

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def __getitem__(self, index) -> "FixedPointReport":
        """The report restricted to ``points[index]`` (an int, slice, index array or boolean mask)."""
        rows = np.arange(len(self))[index]
        rows = np.atleast_1d(rows)
        return dataclasses.replace(
            self,
            points=self.points[rows],
            speeds=self.speeds[rows],
            eigenvalues=self.eigenvalues[rows],
            stability=[self.stability[i] for i in rows],
            boundary=self.boundary[rows],
            singular=self.singular[rows],
        )

    @property
    def q(self) -> np.ndarray:
        """float64 (P,) ``q = ½‖F(h) − h‖²``."""
        return 0.5 * self.speeds**2

    @property
    def is_stable(self) -> np.ndarray:
        """bool (P,) stable nodes and foci."""
        return is_stable(self.stability)

    @property
    def dim(self) -> int:
        """H, the dimension of the state space."""
        return int(self.points.shape[1])

    def unique(self, tol: float | None = None) -> "FixedPointReport":
        """Merge points closer than ``tol × scale`` (default: the ``unique_tol`` of the search), keeping
        the first (slowest) of each group; see :func:`unique_indices`."""
        tol = self.settings.get("unique_tol", 1e-3) if tol is None else tol
        return self[unique_indices(self.points, tol * self.scale)]

    def summary(self) -> str:
        """A short text table: counts by stability, speeds, the leading eigenvalue of each point, cycles."""
        counts = Counter(self.stability)
        head = (f"{len(self)} {'point' if len(self) == 1 else 'points'} ({self.method}, {self.time} time, "
                f"input {'none' if self.input is None else np.array2string(self.input, precision=3)})")
        lines = [head]
        if counts:
            lines.append("  " + ", ".join(f"{counts[label]} {label}" for label in REPORT_LABELS if counts[label]))
            lines.append(f"  speed: min {self.speeds.min():.3g}, max {self.speeds.max():.3g}")
        for i in range(min(len(self), 10)):
            lead = self.eigenvalues[i, 0]
            flags = "".join([" boundary" if self.boundary[i] else "", " singular" if self.singular[i] else ""])
            lines.append(f"  [{i}] {self.stability[i]:<12} |h| {np.linalg.norm(self.points[i]):.4g}  "
                         f"speed {self.speeds[i]:.2e}  λ1 {lead.real:+.4f}{lead.imag:+.4f}j{flags}")
        if len(self) > 10:
            lines.append(f"  … {len(self) - 10} more")
        for cycle in self.cycles:
            lead = cycle.multipliers[0]
            lines.append(f"  {cycle.period}-cycle: {cycle.stability}, residual {cycle.residual:.2e}, "
                         f"leading multiplier {lead.real:+.4f}{lead.imag:+.4f}j")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def unique_indices(points, tol: float) -> np.ndarray:
    """Indices of one representative per group of points closer than ``tol`` (absolute distance).

    Groups are the connected components of the graph "distance ≤ tol" (single linkage). Points are
    first binned on a grid of cells of side ``tol/√H`` (any two points of a cell are within ``tol``;
    ``numpy.unique`` on the cell indices makes identical points, such as ``h = 0`` found from
    thousands of regions, collapse at once); the distinct cells
    are then linked with ``torch.cdist`` in row blocks and ``scipy.sparse.csgraph`` (no O(n²) Python
    loop). The representative is the group's first point in the given order, so sort before (slowest
    first). Returned indices are increasing.
    """
    points = np.asarray(points, dtype=np.float64)
    n = points.shape[0]
    if n <= 1:
        return np.arange(n)
    cell = tol / np.sqrt(points.shape[1])
    cells = np.floor(points / cell) if cell > 0 else points
    _, first_in_cell, cell_of = np.unique(cells, axis=0, return_index=True, return_inverse=True)
    cell_of = cell_of.ravel()
    leaders = points[first_in_cell]
    m = leaders.shape[0]
    tensor = torch.from_numpy(leaders)
    rows, cols = [], []
    for start in range(0, m, PAIR_CHUNK):
        block = torch.cdist(tensor[start:start + PAIR_CHUNK], tensor)
        i, j = torch.nonzero(block <= tol, as_tuple=True)
        rows.append(i.numpy() + start)
        cols.append(j.numpy())
    i, j = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(i.size, dtype=np.int8), (i, j)), shape=(m, m))
    _, group_of_cell = connected_components(graph, directed=False)
    group = group_of_cell[cell_of]
    _, first = np.unique(group, return_index=True)
    return np.sort(first)


def canonical_order(points, speeds, fixed_speed: float) -> np.ndarray:
    """The canonical order: points with ``speed ≤ fixed_speed`` first, by coordinates (lexicographic,
    rounded to 9 decimals), then slower-to-faster slow points (ties by coordinates)."""
    points = np.asarray(points, dtype=np.float64)
    speeds = np.asarray(speeds, dtype=np.float64)
    if points.shape[0] == 0:
        return np.arange(0)
    primary = np.where(speeds <= fixed_speed, 0.0, speeds)
    coords = np.round(points, 9)
    keys = tuple(coords[:, d] for d in range(points.shape[1] - 1, -1, -1)) + (primary,)
    return np.lexsort(keys)


def empty_report(hidden_size: int, *, method: str, input, time: str, scale: float, n_initial: int,
                 settings: dict, cycles: list | None = None) -> FixedPointReport:
    """A report with no points (the cycles, if any, are kept)."""
    return FixedPointReport(
        points=np.zeros((0, hidden_size)),
        speeds=np.zeros(0),
        eigenvalues=np.zeros((0, hidden_size), dtype=np.complex128),
        stability=[],
        boundary=np.zeros(0, dtype=bool),
        singular=np.zeros(0, dtype=bool),
        cycles=list(cycles or []),
        method=method,
        input=input,
        time=time,
        scale=scale,
        n_initial=n_initial,
        settings=settings,
    )
