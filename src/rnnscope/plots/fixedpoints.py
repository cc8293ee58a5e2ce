"""Figures of fixed points, cycles, eigenvalue spectra and vector fields.

Every function takes result objects (``FixedPointReport``, ``VectorField``, a ``Simulation`` or
arrays of states) and returns a matplotlib Figure; nothing is simulated or solved here. States are
drawn in a 2-D plane given by an orthonormal basis (2, H) and a center (H,), or a fitted PCA; by
default the first two principal components of the trajectories (or of the points).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from rnnscope.analysis.fixedpoints.report import REPORT_LABELS, FixedPointReport
from rnnscope.analysis.vectorfields import VectorField, plane_basis
from rnnscope.plots.style import new_figure

STABILITY_STYLE = {
    "stable node": dict(color="#1a1a1a", marker="o", filled=True),
    "stable focus": dict(color="#1f77b4", marker="o", filled=True),
    "saddle": dict(color="#d62728", marker="X", filled=True),
    "unstable": dict(color="#d62728", marker="o", filled=False),
    "marginal": dict(color="#ff7f0e", marker="D", filled=True),
    "nonsmooth": dict(color="#9467bd", marker="s", filled=False),
}
"""Colour, marker and fill of each stability label."""

CYCLE_MARKER = "^"
TRAJECTORY_COLOR = "#b0b0b0"


def plot_fixed_points(
    reports,
    *,
    trajectories=None,
    basis=None,
    center=None,
    max_trajectories: int = 50,
    title: str | None = None,
    ax=None,
) -> Figure:
    """Fixed points and cycles over trajectories, in a 2-D projection, with a stability legend.

    Args:
        reports: a ``FixedPointReport`` or a dict ``name → report`` (drawn on the same axes; the names
            go in the title).
        trajectories: states (B, T, H) drawn as grey lines (at most ``max_trajectories``), (N, H) drawn
            as grey dots, or a ``Simulation``.
        basis, center: the plane (see the module docstring); ``basis`` may be a fitted PCA.
        title: panel title.
        ax: draw into this Axes instead of a new figure.
    """
    reports = _as_mapping(reports)
    H = next(iter(reports.values())).dim
    paths = _trajectories(trajectories, H)
    basis, center = _plane(basis, center, H, paths, reports)
    fig, ax = _axes(ax)
    if paths is not None:
        _draw_trajectories(ax, paths[:max_trajectories] if paths.ndim == 3 else paths, basis, center)
    for report in reports.values():
        _draw_report(ax, report, basis, center)
    handles = _legend_handles(reports.values(), trajectories=paths is not None)
    if handles:
        ax.legend(handles=handles, loc="best")
    ax.set_xlabel("plane axis 1")
    ax.set_ylabel("plane axis 2")
    names = [name for name in reports if name]
    ax.set_title(title if title is not None else ("fixed points" + (f" ({', '.join(names)})" if names else "")))
    return fig


def plot_eigenvalue_spectra(
    report: FixedPointReport,
    *,
    indices=None,
    max_points: int = 8,
    include_cycles: bool = True,
    title: str | None = None,
    ax=None,
) -> Figure:
    """Eigenvalues of the Jacobian at each point in the complex plane, with the stability boundary.

    The boundary is the unit circle in discrete time and the imaginary axis in continuous time.
    Each point's eigenvalues share its stability colour and a marker per point (legend: index and
    label); cycle multipliers are triangles.

    Args:
        report: the fixed points.
        indices: which points (default the first ``max_points``, i.e. the fixed points in canonical order).
        include_cycles: also draw the multipliers of the report's cycles.
    """
    fig, ax = _axes(ax, width=5.6, height=3.4)
    indices = list(range(min(len(report), max_points))) if indices is None else list(np.atleast_1d(indices))
    markers = ["o", "s", "D", "v", "P", "*", "h", "<", ">", "p"]
    if report.time == "discrete":
        angle = np.linspace(0, 2 * np.pi, 400)
        ax.plot(np.cos(angle), np.sin(angle), color="#808080", lw=0.8, zorder=0)
    else:
        ax.axvline(0.0, color="#808080", lw=0.8, zorder=0)
    ax.axhline(0.0, color="#d0d0d0", lw=0.5, zorder=0)
    for n, i in enumerate(indices):
        style = STABILITY_STYLE[report.stability[i]]
        values = report.eigenvalues[i]
        ax.scatter(values.real, values.imag, s=18, marker=markers[n % len(markers)], color=style["color"],
                   alpha=0.75, label=f"[{i}] {report.stability[i]}", linewidths=0.5)
    if include_cycles:
        for j, cycle in enumerate(report.cycles):
            style = STABILITY_STYLE[cycle.stability]
            ax.scatter(cycle.multipliers.real, cycle.multipliers.imag, s=22, marker=CYCLE_MARKER,
                       color=style["color"], alpha=0.75, label=f"{cycle.period}-cycle {j}: {cycle.stability}")
    shown = [report.eigenvalues[i] for i in indices]
    shown += [cycle.multipliers for cycle in report.cycles] if include_cycles else []
    reach = max([1.0] + [float(np.abs(v).max()) for v in shown if v.size])
    if report.time == "discrete":
        ax.set_xlim(-1.08 * reach, 1.08 * reach)
        ax.set_ylim(-1.08 * reach, 1.08 * reach)
        ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("Re λ")
    ax.set_ylabel("Im λ")
    if indices or (include_cycles and report.cycles):
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    boundary = "unit circle" if report.time == "discrete" else "imaginary axis"
    ax.set_title(title if title is not None else f"Jacobian eigenvalues ({boundary})")
    return fig


def plot_vector_field(
    field: VectorField,
    fixed_points=None,
    *,
    kind: str = "quiver",
    trajectories=None,
    max_trajectories: int = 20,
    arrows: int = 17,
    width: float = 3.2,
) -> Figure:
    """One panel per input condition: the projected flow, coloured by full-space speed (log scale),
    with fixed points and cycles projected on the plane.

    Args:
        field: a :class:`~rnnscope.analysis.vectorfields.VectorField`.
        fixed_points: a ``FixedPointReport`` (drawn on every panel) or a dict ``condition → report``.
        kind: "quiver" (unit arrows giving the direction of the projected flow on a subsampled
            ``arrows × arrows`` grid, over a map of the speed) or "stream" (streamlines coloured by
            speed).
        trajectories: states (B, T, H) or a ``Simulation`` drawn as grey lines on every panel.
    """
    if kind not in ("quiver", "stream"):
        raise ValueError(f"kind must be 'quiver' or 'stream'; got {kind!r}")
    C = len(field.conditions)
    fig, axes = new_figure(C, 1, width=width, height=width * 0.9)
    axes = np.atleast_1d(axes).ravel()
    positive = field.speed[field.speed > 0]
    norm = LogNorm(vmin=positive.min(), vmax=positive.max()) if positive.size else None
    paths = _trajectories(trajectories, field.basis.shape[1])
    mappable = None
    for c, ax in enumerate(axes):
        if paths is not None:
            _draw_trajectories(ax, paths[:max_trajectories] if paths.ndim == 3 else paths, field.basis, field.center)
        mappable = _draw_flow(ax, field, c, kind, norm, arrows)
        report = _report_for(fixed_points, field.conditions[c])
        if report is not None:
            _draw_report(ax, report, field.basis, field.center)
        ax.set_xlim(field.extent[0], field.extent[1])
        ax.set_ylim(field.extent[2], field.extent[3])
        ax.set_title(field.conditions[c])
        ax.set_xlabel("plane axis 1")
    axes[0].set_ylabel("plane axis 2")
    if mappable is not None:
        fig.colorbar(mappable, ax=list(axes), label="speed ‖F(h) − h‖", shrink=0.9, pad=0.02)
    reports = [r for r in (_report_for(fixed_points, name) for name in field.conditions) if r is not None]
    handles = _legend_handles(reports, trajectories=paths is not None)
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4))
    return fig


def _draw_flow(ax, field: VectorField, c: int, kind: str, norm, arrows: int):
    speed = field.speed[c]
    U, V = field.flow[c, ..., 0], field.flow[c, ..., 1]
    if kind == "stream":
        return ax.streamplot(field.u, field.v, U, V, color=np.maximum(speed, norm.vmin if norm else 0), norm=norm,
                             cmap="viridis", density=1.1, linewidth=0.8, arrowsize=0.8).lines
    image = ax.pcolormesh(field.u, field.v, np.maximum(speed, norm.vmin if norm else 0), norm=norm, cmap="viridis",
                          shading="auto", alpha=0.85)
    step = max(1, int(np.ceil(len(field.u) / arrows)))
    sub = (slice(None, None, step), slice(None, None, step))
    uu, vv = np.meshgrid(field.u, field.v)
    length = np.hypot(U[sub], V[sub])
    scale_to = np.where(length > 0, 1.0 / np.maximum(length, 1e-300), 0.0)
    ax.quiver(uu[sub], vv[sub], U[sub] * scale_to, V[sub] * scale_to, color="#1a1a1a", pivot="mid",
              angles="xy", scale=arrows * 1.15, width=0.005, alpha=0.6)
    return image


def _draw_report(ax, report: FixedPointReport, basis: np.ndarray, center: np.ndarray) -> None:
    coords = (report.points - center) @ basis.T if len(report) else np.zeros((0, 2))
    labels = np.asarray(report.stability, dtype=object)
    for label in REPORT_LABELS:
        rows = labels == label
        if rows.any():
            style = STABILITY_STYLE[label]
            ax.scatter(coords[rows, 0], coords[rows, 1], s=60, marker=style["marker"], zorder=5,
                       facecolors=style["color"] if style["filled"] else "white", edgecolors=style["color"],
                       linewidths=1.4)
    for cycle in report.cycles:
        style = STABILITY_STYLE[cycle.stability]
        ring = (np.concatenate([cycle.points, cycle.points[:1]]) - center) @ basis.T
        ax.plot(ring[:, 0], ring[:, 1], color=style["color"], lw=1.0, ls="--", zorder=4)
        ax.scatter(ring[:-1, 0], ring[:-1, 1], s=55, marker=CYCLE_MARKER, zorder=5, edgecolors=style["color"],
                   facecolors=style["color"] if style["filled"] else "white", linewidths=1.2)


def _legend_handles(reports, *, trajectories: bool) -> list:
    """One entry per stability label of the points, per (period, stability) of the cycles, and one for
    the trajectories, in a fixed order."""
    reports = list(reports)
    labels = {label for report in reports for label in report.stability}
    cycles = {(cycle.period, cycle.stability) for report in reports for cycle in report.cycles}
    handles = []
    for label in REPORT_LABELS:
        if label in labels:
            handles.append(_handle(label, STABILITY_STYLE[label]["marker"], label))
    for period, label in sorted(cycles, key=lambda item: (item[0], REPORT_LABELS.index(item[1]))):
        handles.append(_handle(label, CYCLE_MARKER, f"{period}-cycle, {label}", ls="--"))
    if trajectories:
        handles.append(Line2D([], [], color=TRAJECTORY_COLOR, label="trajectories"))
    return handles


def _handle(label: str, marker: str, text: str, ls: str = "") -> Line2D:
    style = STABILITY_STYLE[label]
    return Line2D([], [], ls=ls, color=style["color"], marker=marker, markersize=7, label=text,
                  markerfacecolor=style["color"] if style["filled"] else "white", markeredgecolor=style["color"])


def _draw_trajectories(ax, paths: np.ndarray, basis: np.ndarray, center: np.ndarray) -> None:
    coords = (paths - center) @ basis.T
    if coords.ndim == 3:
        ax.add_collection(LineCollection(list(coords), colors=TRAJECTORY_COLOR, linewidths=0.5, alpha=0.45, zorder=1))
        ax.autoscale_view()
    else:
        ax.scatter(coords[:, 0], coords[:, 1], s=3, color=TRAJECTORY_COLOR, alpha=0.5, zorder=1, linewidths=0)


def _trajectories(trajectories, H: int) -> np.ndarray | None:
    if trajectories is None:
        return None
    if hasattr(trajectories, "hidden"):
        trajectories = trajectories.hidden
        if trajectories is None:
            raise ValueError("the Simulation has no hidden states; simulate with return_hidden=True")
    paths = np.asarray(trajectories, dtype=np.float64)
    if paths.ndim not in (2, 3) or paths.shape[-1] != H:
        raise ValueError(f"trajectories must have shape (B, T, H) or (N, H) with H = {H}; got {paths.shape}")
    return paths


def _plane(basis, center, H: int, paths, reports: Mapping) -> tuple[np.ndarray, np.ndarray]:
    if basis is not None:
        basis, default_center = plane_basis(basis, H)
        return basis, (default_center if center is None else np.asarray(center, dtype=np.float64))
    if H < 2:
        raise ValueError("a 2-D projection needs at least 2 hidden units")
    cloud = paths.reshape(-1, H) if paths is not None else np.concatenate([r.points for r in reports.values()])
    if cloud.shape[0] < 3:
        return np.eye(2, H), (np.zeros(H) if center is None else np.asarray(center, dtype=np.float64))
    mean = cloud.mean(0)
    _, _, vt = np.linalg.svd(cloud - mean, full_matrices=False)
    basis = vt[:2].copy()
    signs = np.sign(basis[np.arange(2), np.abs(basis).argmax(1)])
    basis *= np.where(signs == 0, 1.0, signs)[:, None]
    return basis, (mean if center is None else np.asarray(center, dtype=np.float64))


def _as_mapping(reports) -> dict:
    if isinstance(reports, FixedPointReport):
        return {"": reports}
    if isinstance(reports, Mapping) and reports and all(isinstance(r, FixedPointReport) for r in reports.values()):
        return dict(reports)
    raise TypeError("reports must be a FixedPointReport or a non-empty dict of them")


def _report_for(fixed_points, condition: str):
    if fixed_points is None or isinstance(fixed_points, FixedPointReport):
        return fixed_points
    return fixed_points.get(condition)


def _axes(ax, width: float = 3.6, height: float = 3.2):
    if ax is None:
        return new_figure(1, 1, width=width, height=height)
    return ax.figure, ax
