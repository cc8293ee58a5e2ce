"""``rnnscope demo``: the main job, end to end, on a small default."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from rnnscope.errors import ConfigError


def run_demo(
    out: str | Path = "runs/demo",
    *,
    device: str = "cpu",
    progress: bool = True,
    echo: Callable[[str], None] = print,
):
    """Train the ``demo`` preset (hmm-two, small budget), evaluate it, analyse it, write its report.

    An earlier demo run at ``out`` is replaced; any other existing directory is left alone and an
    error is raised.
    """
    from rnnscope.config import preset
    from rnnscope.pipelines.train import train
    from rnnscope.training.runs import RunDir

    out = Path(out)
    previous = RunDir(out)
    if out.exists() and any(out.iterdir()):
        if not previous.exists() or previous.read_config().name != "demo":
            raise ConfigError(f"{out} exists and is not an earlier demo run; choose another --out")
        echo(f"replacing the earlier demo run in {out}")
        shutil.rmtree(out)
    config = preset("demo")
    echo(f"training a {config.model.hidden_size}-unit noise-driven ReLU RNN to emulate the 2-state HMM "
         f"({config.training.epochs} epochs) …")
    run = train(config, out=out, device=device, progress=progress)
    _analyse(run, echo)
    metrics = run.metrics or {}
    echo("")
    echo("emission fidelity of the trained network (exact HMM statistics vs 10 000 generated sequences):")
    for key in ("max_abs_transition_error", "max_abs_frequency_error", "loglik_gap_per_step"):
        if key in metrics:
            echo(f"  {key:<28} {metrics[key]:.4f}")
    echo("")
    echo(f"open {run.path / 'report.html'} — figures are in {run.path / 'figures'}")
    return run


def _analyse(run, echo: Callable[[str], None]) -> None:
    """Run the quick analyses on the demo network."""
    from rnnscope.pipelines.analyze import analyze

    echo("analysing the trained network …")
    analyze(run.path, only=DEMO_ANALYSES)


DEMO_ANALYSES = ("statespace", "fixedpoints")
"""The analyses the demo runs (the quick ones)."""
