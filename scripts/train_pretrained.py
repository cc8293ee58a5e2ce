"""Reproduce the trained models shipped in ``src/rnnscope/pretrained/``.

    python scripts/train_pretrained.py ibl                 # the paper's 50-unit RNN (~10 min, 2 cores)
    python scripts/train_pretrained.py ibl ibl-2unit       # both IBL models
    python scripts/train_pretrained.py ibl --runs runs/pretrained --n-blocks 1000 --set seed=1

For each NAME (a preset): train the preset into ``RUNS/NAME`` (``rnnscope train NAME``; an
interrupted run there is resumed), evaluate its best checkpoint (behaviour on ``--n-blocks``
blocks, seed 0), then write ``NAME.safetensors`` + ``NAME.json`` (the checkpoint),
``NAME.config.json`` (the run configuration) and ``NAME.metrics.json`` (the evaluation's headline
numbers) into ``--dest`` (default: the package's ``pretrained/`` folder).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rnnscope.config.overrides import load_config
from rnnscope.core.io import read_json, write_json
from rnnscope.models.checkpoints import load_checkpoint, save_checkpoint
from rnnscope.models.pretrained import pretrained_dir
from rnnscope.pipelines.evaluate import evaluate
from rnnscope.pipelines.train import train
from rnnscope.report.html import build_run_report
from rnnscope.training.runs import RunDir


def reproduce(name: str, runs: Path, dest: Path, n_blocks: int, overrides: list[str]) -> None:
    """Train (or resume) preset ``name`` into ``runs/name``, evaluate it and ship it into ``dest``."""
    run = RunDir(runs / name)
    started = time.perf_counter()
    if run.exists():
        print(f"[{name}] resuming the run in {run.path}", flush=True)
        train(None, resume=run.path, evaluate=False)
    else:
        config = load_config(name, overrides)
        print(f"[{name}] training into {run.path}: {config.description}", flush=True)
        train(config, out=run.path, evaluate=False)
    trained = time.perf_counter()
    report = evaluate(run.path, n_blocks=n_blocks, seed=0, progress=True)
    build_run_report(run.path)
    print(report.summary(), flush=True)
    model, metadata = load_checkpoint(run.best_checkpoint)
    dest.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, dest / f"{name}.safetensors", metadata={**metadata, "pretrained": name})
    write_json(dest / f"{name}.config.json", read_json(run.config_file))
    write_json(dest / f"{name}.metrics.json", {
        **read_json(run.metrics_file),
        "training_seconds": trained - started,
        "best_step": metadata.get("step"),
    })
    print(f"[{name}] trained in {trained - started:.0f} s, evaluated in {time.perf_counter() - trained:.0f} s; "
          f"shipped to {dest}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="+", help="presets to reproduce (ibl, ibl-2unit)")
    parser.add_argument("--runs", type=Path, default=Path("runs/pretrained"), help="where the runs are trained")
    parser.add_argument("--dest", type=Path, default=None, help="where the models are shipped (default: the package)")
    parser.add_argument("--n-blocks", type=int, default=1000, help="blocks of the evaluation session")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="key=value override")
    args = parser.parse_args()
    dest = args.dest if args.dest is not None else pretrained_dir()
    for name in args.names:
        reproduce(name, args.runs, dest, args.n_blocks, args.overrides)


if __name__ == "__main__":
    main()
