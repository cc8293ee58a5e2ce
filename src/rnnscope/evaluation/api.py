"""Evaluating a run or a checkpoint: how well the network does its job, written to ``metrics.json``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rnnscope.core.random import child_seeds
from rnnscope.errors import CheckpointError, ConfigError

DEFAULT_NUM_SEQ = 10_000
"""Sequences generated for an evaluation (the size of the paper configurations' test split)."""

DEFAULT_N_BLOCKS = 1000
"""Blocks of the analysis session of an IBL evaluation (the reference's)."""


def evaluate(
    target: str | os.PathLike,
    *,
    hmm: Any = None,
    num_seq: int = DEFAULT_NUM_SEQ,
    seq_len: int | None = None,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    progress: bool = False,
    n_blocks: int = DEFAULT_N_BLOCKS,
):
    """Evaluate a run directory or a checkpoint against its HMM; return the ``EmissionReport``.

    An IBL run or a task-RNN checkpoint is evaluated by :func:`evaluate_ibl` instead (behaviour on
    ``n_blocks`` blocks against the Bayesian baselines; ``hmm``, ``num_seq`` and ``seq_len`` do not
    apply) and gives a ``BehaviourReport``.

    ``target`` is a run directory (its HMM and sequence length come from its configuration) or a
    checkpoint file (native or the reference's ``.pth``); for a checkpoint, ``hmm`` is a preset name,
    a configuration file or object, or an :class:`~rnnscope.tasks.hmm.HMM`, unless the checkpoint's
    metadata names its task. Writes ``metrics.json`` and ``analysis/emissions.json`` into the run
    directory, or into ``out`` (default ``./<checkpoint stem>-evaluation``) for a bare checkpoint.
    Returns ``(report, destination)``.
    """
    from rnnscope.evaluation.emissions import evaluate_emissions
    from rnnscope.models.checkpoints import load
    from rnnscope.training.runs import RunDir

    path = Path(target)
    run = RunDir(path)
    if _is_ibl(path, run):
        return evaluate_ibl(path, n_blocks=n_blocks, seed=seed, out=out, progress=progress)
    if run.exists():
        config = run.read_config()
        if config.system != "hmm":
            raise ConfigError(f"{path} is a {config.system!r} run; emission metrics apply to HMM runs only")
        hmm_obj = config.hmm if hmm is None else _resolve_hmm(hmm)
        seq_len = seq_len or config.data.seq_len
        destination = run.path
    else:
        if not path.exists():
            raise CheckpointError(f"{path} does not exist; give a run directory or a checkpoint file")
        hmm_obj, default_len = _hmm_for_checkpoint(path, hmm)
        seq_len = seq_len or default_len
        destination = Path(out) if out is not None else Path.cwd() / f"{path.stem}-evaluation"
    model = load(path)
    generate_seed, metric_seed = child_seeds(seed, 2)
    generation = model.generate(num_seq, seq_len, seed=generate_seed, progress=progress)
    report = evaluate_emissions(hmm_obj, generation.outputs, seed=metric_seed)
    destination.mkdir(parents=True, exist_ok=True)
    report.to_json(destination / "metrics.json")
    report.save(destination / "analysis" / "emissions")
    return report, destination


def evaluate_ibl(
    target: str | os.PathLike,
    *,
    n_blocks: int = DEFAULT_N_BLOCKS,
    seed: int = 0,
    out: str | os.PathLike | None = None,
    progress: bool = False,
):
    """Evaluate the behaviour of an IBL run directory or task-RNN checkpoint; return ``(report, destination)``.

    The task comes from the run's configuration, or from the checkpoint's metadata (the default
    task when it has none). Writes ``metrics.json`` (the report's flat headline numbers) and
    ``analysis/behaviour.json`` into the run directory, or into ``out`` (default
    ``./<checkpoint stem>-evaluation``) for a bare checkpoint.
    """
    from rnnscope.config.ibl import IBLTaskConfig
    from rnnscope.evaluation.behaviour import evaluate_behaviour
    from rnnscope.models import task_rnn  # noqa: F401 — registers the task_rnn checkpoint kind
    from rnnscope.models.checkpoints import load, load_checkpoint
    from rnnscope.tasks.ibl.params import IBLTaskParams
    from rnnscope.training.runs import RunDir

    path = Path(target)
    run = RunDir(path)
    if run.exists():
        params = run.read_config().params
        model = load(path)
        destination = run.path
    else:
        if not path.exists():
            raise CheckpointError(f"{path} does not exist; give a run directory or a checkpoint file")
        model, metadata = load_checkpoint(path)
        task = metadata.get("task")
        params = IBLTaskConfig.model_validate(task).build() if task else IBLTaskParams()
        destination = Path(out) if out is not None else Path.cwd() / f"{path.stem}-evaluation"
    if getattr(model, "system", "hmm") != "ibl":
        raise ConfigError(f"{path} does not hold an IBL task network; behaviour applies to IBL runs only")
    report = evaluate_behaviour(model, params, n_blocks=n_blocks, seed=seed, progress=progress)
    destination.mkdir(parents=True, exist_ok=True)
    report.to_json(destination / "metrics.json")
    report.save(destination / "analysis" / "behaviour")
    return report, destination


def _is_ibl(path: Path, run) -> bool:
    """Whether ``path`` is an IBL run directory or a native checkpoint of a task RNN."""
    from rnnscope.core.io import read_json

    if run.exists():
        return run.read_config().system == "ibl"
    header_path = path.with_suffix(".json")
    if path.suffix in (".safetensors", ".json") and header_path.is_file():
        try:
            header = read_json(header_path)
        except ValueError:
            return False
        model = header.get("model") if isinstance(header, dict) else None
        return isinstance(model, dict) and model.get("kind") == "task_rnn"
    return False


def _resolve_hmm(hmm: Any):
    from rnnscope.config.overrides import load_config
    from rnnscope.tasks.hmm import HMM

    if isinstance(hmm, HMM):
        return hmm
    if hasattr(hmm, "hmm"):
        return hmm.hmm
    return load_config(str(hmm)).hmm


def _hmm_for_checkpoint(path: Path, hmm: Any):
    """The HMM and default sequence length for a bare checkpoint."""
    from rnnscope.config.overrides import load_config
    from rnnscope.config.schema import HMMTaskConfig

    if hmm is not None:
        if isinstance(hmm, (str, os.PathLike)):
            config = load_config(str(hmm))
            return config.hmm, config.data.seq_len
        return _resolve_hmm(hmm), 100
    meta_path = path.with_suffix(".json")
    if path.suffix == ".safetensors" and meta_path.is_file():
        from rnnscope.core.io import read_json

        metadata = read_json(meta_path).get("metadata") or {}
        if "task" in metadata:
            return HMMTaskConfig.model_validate(metadata["task"]).build(), int(metadata.get("seq_len", 100))
    raise ConfigError(
        f"{path} does not say which HMM it emulates; pass one with --hmm PRESET (see `rnnscope presets`)"
    )
