"""``rnnscope.analyze``: run registered analysis steps on a run or checkpoint, save results and figures.

An analysis step pairs a computation of the ``analysis`` layer (returning a ``Result``) with the
figures the ``plots`` layer draws from it. Steps register themselves with :func:`register_step` in
the ``pipelines/steps_*.py`` modules; :func:`analyze` runs the requested ones in dependency order,
writes ``analysis/<step>.json`` (+ ``.npz``) and ``figures/<step>_<figure>.png/svg``, and rebuilds
``report.html``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from rnnscope.core.results import Result
from rnnscope.errors import ConfigError

STEP_MODULES: tuple[str, ...] = ()
"""Modules that register analysis steps when imported (filled as capabilities land)."""


@dataclass
class Context:
    """What a step may use: the model, its run configuration (None for a bare checkpoint), the task,
    where to write, a seed, and the results of the steps that ran before it."""

    model: Any
    config: Any
    system: str
    out: Path
    seed: int = 0
    progress: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    results: dict[str, Result] = field(default_factory=dict)

    @property
    def hmm(self):
        """The HMM of an HMM-emulation run (None when unknown)."""
        return self.config.hmm if self.config is not None and self.system == "hmm" else None


@dataclass(frozen=True)
class Step:
    """One analysis: ``compute(ctx) -> Result`` and ``draw(result, ctx) -> {name: Figure}``."""

    name: str
    compute: Callable[[Context], Result]
    draw: Callable[[Result, Context], dict[str, Figure]]
    systems: tuple[str, ...] = ("hmm",)
    depends: tuple[str, ...] = ()
    default: bool = True
    """Whether ``rnnscope analyze RUN`` (no ``--only``) runs it."""
    extra_files: Callable[[Result, Context], None] | None = None
    """Optional: write further artefacts (e.g. an interactive HTML figure) into ``ctx.out``."""


_STEPS: dict[str, Step] = {}


def register_step(step: Step) -> Step:
    """Register an analysis step under ``step.name``."""
    if step.name in _STEPS:
        raise ValueError(f"analysis step {step.name!r} registered twice")
    _STEPS[step.name] = step
    return step


def available_steps(system: str | None = None) -> dict[str, Step]:
    """Every registered step (for one system), in registration order."""
    for module in STEP_MODULES:
        importlib.import_module(module)
    return {name: s for name, s in _STEPS.items() if system is None or system in s.systems}


def analyze(
    target: str | os.PathLike,
    *,
    only: Iterable[str] | None = None,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    options: dict[str, Any] | None = None,
) -> dict[str, Result]:
    """Run analysis steps on a run directory or a checkpoint; return their results by name.

    ``only`` names the steps to run (their dependencies run too); default: every default step of
    the run's system. Results go to ``<run>/analysis`` and ``<run>/figures`` (for a bare checkpoint:
    ``out``, default ``./<stem>-analysis``), then ``report.html`` is rebuilt.
    """
    from rnnscope.plots.style import save_figure
    from rnnscope.report.html import build_run_report

    ctx = _context(Path(target), out, seed, progress, options or {})
    steps = available_steps(ctx.system)
    order = _plan(steps, only)
    (ctx.out / "analysis").mkdir(parents=True, exist_ok=True)
    for name in order:
        step = steps[name]
        result = step.compute(ctx)
        ctx.results[name] = result
        result.save(ctx.out / "analysis" / name)
        for fig_name, figure in step.draw(result, ctx).items():
            save_figure(figure, ctx.out / "figures" / f"{name}_{fig_name}")
        if step.extra_files is not None:
            step.extra_files(result, ctx)
    build_run_report(ctx.out)
    return {name: ctx.results[name] for name in order}


def _context(target: Path, out: str | os.PathLike | None, seed: int, progress: bool, options: dict) -> Context:
    from rnnscope.models.checkpoints import load
    from rnnscope.training.runs import RunDir

    run = RunDir(target)
    model = load(target)
    if run.exists():
        config = run.read_config()
        return Context(model=model, config=config, system=config.system, out=run.path, seed=seed,
                       progress=progress, options=options)
    destination = Path(out) if out is not None else Path.cwd() / f"{target.stem}-analysis"
    system = getattr(model, "system", "hmm")
    return Context(model=model, config=None, system=system, out=destination, seed=seed, progress=progress,
                   options=options)


def _plan(steps: dict[str, Step], only: Iterable[str] | None) -> list[str]:
    """The steps to run, each after its dependencies, in registration order otherwise."""
    if only is None:
        wanted = [name for name, step in steps.items() if step.default]
    else:
        wanted = list(only)
        unknown = [name for name in wanted if name not in steps]
        if unknown:
            raise ConfigError(
                f"unknown analysis {', '.join(map(repr, unknown))} for this run; available: {', '.join(steps)}"
            )
    order: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in chain:
            raise ValueError(f"analysis steps depend on each other in a cycle: {' -> '.join(chain + (name,))}")
        for dep in steps[name].depends:
            visit(dep, chain + (name,))
        order.append(name)

    for name in wanted:
        visit(name, ())
    return order
