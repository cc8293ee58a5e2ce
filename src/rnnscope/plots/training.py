"""Figures of a training run, drawn from its :class:`~rnnscope.training.history.TrainHistory`."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from rnnscope.plots.style import new_figure
from rnnscope.training.history import TrainHistory


def plot_loss_curves(history: TrainHistory, *, title: str = "Training") -> Figure:
    """Training and validation loss against epoch, one colour per learning rate, best epoch marked."""
    fig, ax = new_figure(width=5.0, height=3.0)
    indices = np.unique(history.lr_index)
    for index in indices:
        rows = history.lr_index == index
        label = f"lr {history.learning_rate[rows][0]:g}" if len(indices) > 1 else ""
        color = f"C{int(index)}"
        ax.plot(history.epoch[rows], history.train_loss[rows], color=color, lw=1.2, label=f"train {label}".strip())
        validated = rows & np.isfinite(history.val_loss)
        if validated.any():
            ax.plot(history.epoch[validated], history.val_loss[validated], color=color, lw=1.2, ls="--",
                    marker="o", ms=2.5, label=f"validation {label}".strip())
    if np.isfinite(history.val_loss).any():
        lr_index, epoch, value = history.best
        ax.axvline(epoch, color="0.6", lw=0.8, ls=":")
        ax.annotate(f"best {value:.4g}\n(epoch {epoch})", xy=(epoch, value), xytext=(6, 12),
                    textcoords="offset points", fontsize=7, color="0.3")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    return fig
