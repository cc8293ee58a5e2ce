"""The ``rnnscope`` command. Thin: it parses arguments and calls the library; heavy imports are lazy."""

from __future__ import annotations

import typer

from rnnscope._version import __version__

app = typer.Typer(
    name="rnnscope",
    help="Train recurrent networks on tasks with hidden discrete structure, then reverse-engineer them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"rnnscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """rnnscope command line."""


@app.command()
def presets(
    name: str = typer.Argument(None, help="Show only this preset (with its full configuration)."),
    matrices: bool = typer.Option(True, "--matrices/--no-matrices", help="Print each HMM's matrices."),
) -> None:
    """List the built-in configurations, with the matrices of each HMM."""
    import json

    import numpy as np

    from rnnscope.config import list_presets, preset

    names = [name] if name else list(list_presets())
    for key in names:
        config = preset(key)
        typer.echo(f"{key:<14} {config.description}")
        if name:
            typer.echo(json.dumps(config.model_dump(mode="json"), indent=2))
        if matrices and config.system == "hmm":
            hmm = config.hmm
            with np.printoptions(precision=4, suppress=True, linewidth=100):
                for label, matrix in (("start", hmm.start), ("transition", hmm.transition), ("emission", hmm.emission)):
                    body = str(matrix).replace("\n", "\n" + " " * 18)
                    typer.echo(f"    {label:<12}  {body}")
            typer.echo(f"    seq_len {config.data.seq_len}, {config.data.num_seq} sequences, "
                       f"hidden {config.model.hidden_size}, input {config.model.input_size}, "
                       f"{config.training.epochs} epochs")
            typer.echo("")


@app.command()
def train(
    config: str = typer.Argument(None, help="A preset name (see `rnnscope presets`) or a YAML/JSON configuration file."),
    assignments: list[str] = typer.Argument(None, help="More key=value overrides (same as --set)."),
    set_: list[str] = typer.Option([], "--set", help="Override a configuration key: --set training.epochs=50. Repeatable."),
    out: str = typer.Option(None, "--out", help="Run directory to create (default runs/<name>)."),
    seed: int = typer.Option(None, "--seed", help="Override the configuration's seed."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
    resume: str = typer.Option(None, "--resume", help="Continue an interrupted run directory exactly where it stopped."),
    evaluate: bool = typer.Option(True, "--evaluate/--no-evaluate", help="Evaluate the best model after training."),
    progress: bool = typer.Option(True, "--progress/--quiet", help="Show a progress bar."),
) -> None:
    """Train a network (then evaluate it and write its report)."""
    from rnnscope.pipelines.train import train as train_run

    if config is None and resume is None:
        raise typer.BadParameter("give a preset or configuration file, or --resume RUN")
    overrides = list(set_) + list(assignments or [])
    run = train_run(config, overrides=overrides, out=out, seed=seed, device=device, resume=resume,
                    progress=progress, evaluate=evaluate)
    typer.echo(f"run written to {run.path}; open {run.path / 'report.html'}")


@app.command()
def evaluate(
    target: str = typer.Argument(..., help="A run directory or a checkpoint (.safetensors, or the reference's .pth)."),
    hmm: str = typer.Option(None, "--hmm", help="For a bare checkpoint: the HMM it emulates (a preset or a config file)."),
    num_seq: int = typer.Option(10_000, "--num-seq", help="Sequences to generate and compare."),
    seq_len: int = typer.Option(None, "--seq-len", help="Sequence length (default: the run's or the preset's)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generated sequences and of the HMM baselines."),
    out: str = typer.Option(None, "--out", help="Output directory for a bare checkpoint (default ./<stem>-evaluation)."),
) -> None:
    """Evaluate emission fidelity against the HMM → metrics.json (and figures)."""
    from rnnscope.pipelines.evaluate import evaluate as evaluate_target

    report = evaluate_target(target, hmm=hmm, num_seq=num_seq, seq_len=seq_len, seed=seed, out=out)
    typer.echo(report.summary())


@app.command()
def analyze(
    target: str = typer.Argument(..., help="A run directory or a checkpoint."),
    only: str = typer.Option(None, "--only", help="Comma-separated analyses to run (default: all default ones). See --list."),
    seed: int = typer.Option(0, "--seed", help="Seed of every simulation in the analyses."),
    out: str = typer.Option(None, "--out", help="Output directory for a bare checkpoint (default ./<stem>-analysis)."),
    list_: bool = typer.Option(False, "--list", help="List the available analyses and exit."),
    progress: bool = typer.Option(True, "--progress/--quiet", help="Show progress bars."),
) -> None:
    """Reverse-engineer a trained network → analysis/ and figures/, and refresh report.html."""
    from rnnscope.pipelines.analyze import analyze as run_analyses
    from rnnscope.pipelines.analyze import available_steps

    if list_:
        for name, step in available_steps().items():
            mark = "" if step.default else "  (only with --only)"
            typer.echo(f"{name:<16} systems: {', '.join(step.systems)}{mark}")
        raise typer.Exit()
    names = [n.strip() for n in only.split(",") if n.strip()] if only else None
    results = run_analyses(target, only=names, seed=seed, out=out, progress=progress)
    typer.echo(f"ran {', '.join(results)}; results in analysis/, figures in figures/")


@app.command()
def report(
    target: str = typer.Argument(..., help="A run directory."),
) -> None:
    """(Re)build report.html from what the run directory already holds."""
    from rnnscope.report.html import build_run_report
    from rnnscope.training.runs import resolve_run

    path = build_run_report(resolve_run(target).path)
    typer.echo(f"report written to {path}")


@app.command()
def demo(
    out: str = typer.Option("runs/demo", "--out", help="Run directory of the demo."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto."),
    progress: bool = typer.Option(True, "--progress/--quiet", help="Show progress bars."),
) -> None:
    """The main job on a small default: train on hmm-two, evaluate, analyse, report."""
    from rnnscope.pipelines.demo import run_demo

    run_demo(out=out, device=device, progress=progress, echo=typer.echo)


def main() -> None:
    """Entry point of the console script; user errors print one line and exit with status 2."""
    from rnnscope.errors import RnnscopeError

    try:
        app()
    except RnnscopeError as error:
        typer.echo(f"error: {error}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
