"""``rnnscope.evaluate``: evaluate a run or checkpoint, draw its fidelity figures, refresh its report."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rnnscope.evaluation.api import DEFAULT_N_BLOCKS, DEFAULT_NUM_SEQ
from rnnscope.evaluation.api import evaluate as evaluate_emissions_of


def evaluate(
    target: str | os.PathLike,
    *,
    hmm: Any = None,
    num_seq: int = DEFAULT_NUM_SEQ,
    seq_len: int | None = None,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    figures: bool = True,
    progress: bool = False,
    n_blocks: int = DEFAULT_N_BLOCKS,
):
    """Evaluate ``target`` (see :func:`rnnscope.evaluation.api.evaluate`) and draw its figures.

    Returns the ``EmissionReport`` and draws ``figures/emissions_*`` — or, for an IBL run or
    checkpoint, the ``BehaviourReport`` and ``figures/behaviour_*`` (plus
    ``figures/training_behaviour`` for a run with a training history).
    """
    from rnnscope.evaluation.behaviour import BehaviourReport

    report, destination = evaluate_emissions_of(
        target, hmm=hmm, num_seq=num_seq, seq_len=seq_len, seed=seed, out=out, progress=progress,
        n_blocks=n_blocks,
    )
    if figures and isinstance(report, BehaviourReport):
        write_behaviour_figures(report, destination / "figures")
        write_ibl_training_figure(destination)
    elif figures:
        write_emission_figures(report, destination / "figures")
    return report


def write_behaviour_figures(report, folder: Path) -> list[Path]:
    """Draw every behaviour figure of ``report`` into ``folder`` as ``behaviour_<name>.png/svg``."""
    from rnnscope.plots import behaviour as plots
    from rnnscope.plots.style import save_figure

    written = []
    for name, draw in plots.FIGURES.items():
        written += save_figure(draw(report), folder / f"behaviour_{name}")
    return written


def write_ibl_training_figure(run_path: Path) -> list[Path]:
    """Draw ``figures/training_behaviour`` from an IBL run's ``history.csv`` (nothing if it has none)."""
    from rnnscope.plots.behaviour import plot_training_behaviour
    from rnnscope.plots.style import save_figure
    from rnnscope.training.ibl_trainer import IBLTrainHistory

    history = IBLTrainHistory.read_csv(run_path / "history.csv")
    if not len(history):
        return []
    return save_figure(plot_training_behaviour(history), run_path / "figures" / "training_behaviour")


def write_emission_figures(report, folder: Path) -> list[Path]:
    """Draw every emission figure of ``report`` into ``folder`` as ``emissions_<name>.png/svg``."""
    from rnnscope.plots import emissions as plots
    from rnnscope.plots.style import save_figure

    written = []
    for name, draw in plots.FIGURES.items():
        written += save_figure(draw(report), folder / f"emissions_{name}")
    return written
