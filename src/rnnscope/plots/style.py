"""Shared figure conventions: one look across rnnscope, and one way to save figures."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

OUTPUT_COLORS = ("#1f77b4", "#9a9a9a", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2")
"""Colour of output symbol k (output 1 of the 3-symbol HMMs is the rare 'middle' symbol: grey)."""

SOURCE_COLORS = {"hmm": "#4d4d4d", "rnn": "#1f77b4", "generator": "#1f77b4", "observer": "#2ca02c", "actor": "#ff7f0e"}
"""Colour of each data source compared in one figure."""

RC = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "font.size": 9,
}


def new_figure(ncols: int = 1, nrows: int = 1, *, width: float = 3.2, height: float = 2.8, **kwargs) -> tuple[Figure, object]:
    """A figure of ``nrows × ncols`` panels, each ``width × height`` inches, in rnnscope's style."""
    with plt.rc_context(RC):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kwargs)
    fig.set_layout_engine("constrained")
    return fig, axes if axes.size > 1 else axes[0, 0]


def output_color(k: int) -> str:
    """Colour of output symbol ``k``."""
    return OUTPUT_COLORS[k % len(OUTPUT_COLORS)]


def diverging_norm(values, *, center: float = 0.0) -> TwoSlopeNorm:
    """A colour norm symmetric about ``center`` (white is exactly ``center``)."""
    import numpy as np

    arr = np.asarray(values, dtype=float)
    finite = arr[np.isfinite(arr)]
    half = float(np.max(np.abs(finite - center))) if finite.size else 1.0
    half = half if half > 0 else 1.0
    return TwoSlopeNorm(vcenter=center, vmin=center - half, vmax=center + half)


def save_figure(fig: Figure, path: str | os.PathLike, *, formats: tuple[str, ...] = ("png", "svg")) -> list[Path]:
    """Save ``fig`` as ``path.png`` and ``path.svg`` (suffix of ``path`` ignored), close it, return the paths."""
    base = Path(path)
    base = base.with_suffix("") if base.suffix in {".png", ".svg", ".pdf"} else base
    base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    with plt.rc_context(RC):
        for fmt in formats:
            target = base.with_suffix(f".{fmt}")
            fig.savefig(target, format=fmt)
            written.append(target)
    plt.close(fig)
    return written
