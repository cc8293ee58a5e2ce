"""``rnnscope.train``: configure, train, evaluate, draw and report a run in one call."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch

from rnnscope.config.schema import Strict
from rnnscope.errors import ConfigError
from rnnscope.training.api import Run, configure, resolve_device, train_run
from rnnscope.training.runs import RunDir, resolve_run


def train(
    config: str | os.PathLike | Strict | None,
    *,
    overrides: Iterable[str] = (),
    out: str | os.PathLike | None = None,
    seed: int | None = None,
    device: str | torch.device = "cpu",
    resume: str | os.PathLike | None = None,
    progress: bool = True,
    tensorboard: bool = True,
    evaluate: bool = True,
) -> Run:
    """Train a run, then evaluate it and write its figures and ``report.html``.

    Parameters
    ----------
    config
        A preset name (``"hmm-two"``), a YAML/JSON file, or a configuration object. Ignored when
        ``resume`` is given (the run's own ``config.json`` is used).
    overrides
        ``"key=value"`` assignments applied on top (``"training.epochs=50"``).
    out
        The run directory to create; default ``runs/<config.name>``. It must not exist yet.
    seed
        Overrides the configuration's seed.
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
    resume
        An interrupted run directory to continue exactly where it stopped.
    """
    device = resolve_device(device)
    if resume is not None:
        run = resolve_run(resume)
        cfg = run.read_config()
    else:
        if config is None:
            raise ConfigError("give a preset name or a configuration file (or resume=RUN)")
        cfg = configure(config, overrides, seed)
        run = RunDir(Path(out) if out is not None else Path("runs") / cfg.name)
        if run.path.exists() and any(run.path.iterdir()):
            raise ConfigError(
                f"{run.path} already exists; continue it with `rnnscope train --resume {run.path}`, "
                "or choose another directory with --out"
            )
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config(cfg)
    train_run(cfg, run, resume=resume is not None, device=device, progress=progress, tensorboard=tensorboard)
    finish_run(run, evaluate=evaluate, progress=progress)
    return Run(run.path)


def finish_run(run: RunDir, *, evaluate: bool = True, progress: bool = False) -> None:
    """Draw a trained run's training figures, evaluate it, and (re)build its report."""
    from rnnscope.pipelines.evaluate import evaluate as evaluate_target
    from rnnscope.plots.style import save_figure
    from rnnscope.plots.training import plot_loss_curves
    from rnnscope.report.html import build_run_report
    from rnnscope.training.history import TrainHistory

    history = TrainHistory.read_csv(run.history_file)
    if len(history):
        save_figure(plot_loss_curves(history), run.figures / "training_loss")
    if evaluate:
        evaluate_target(run.path, progress=progress)
    build_run_report(run.path)
