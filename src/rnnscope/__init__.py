"""rnnscope: train recurrent networks on tasks with hidden discrete structure, then reverse-engineer them.

The short public API is importable from the top level; modules load lazily, so
``import rnnscope`` (and ``rnnscope --version``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from rnnscope._version import __version__

_LAZY: dict[str, str] = {
    "preset": "rnnscope.config",
    "list_presets": "rnnscope.config",
    "load_config": "rnnscope.config",
    "apply_overrides": "rnnscope.config",
    "HMMRunConfig": "rnnscope.config",
    "HMM": "rnnscope.tasks.hmm",
    "evaluate_emissions": "rnnscope.evaluation.emissions",
    "EmissionReport": "rnnscope.evaluation.emissions",
    "NoiseRNN": "rnnscope.models.noise_rnn",
    "VanillaRNN": "rnnscope.models.vanilla",
    "load": "rnnscope.models.checkpoints",
    "save_checkpoint": "rnnscope.models.checkpoints",
    "export_reference": "rnnscope.models.checkpoints",
    "train": "rnnscope.pipelines.train",
    "evaluate": "rnnscope.pipelines.evaluate",
    "analyze": "rnnscope.pipelines.analyze",
    "open_run": "rnnscope.training.api",
    "simulate": "rnnscope.analysis.simulate",
    "find_fixed_points": "rnnscope.analysis.fixedpoints",
    "autonomous_collapse": "rnnscope.analysis.fixedpoints",
    "FixedPointReport": "rnnscope.analysis.fixedpoints",
    "vector_field": "rnnscope.analysis.vectorfields",
    "pretrained": "rnnscope.models.pretrained",
    "pretrained_config": "rnnscope.models.pretrained",
    "pretrained_metrics": "rnnscope.models.pretrained",
    "available_pretrained": "rnnscope.models.pretrained",
    "TaskRNN": "rnnscope.models.task_rnn",
    "IBLRunConfig": "rnnscope.config.ibl",
    "IBLTaskParams": "rnnscope.tasks.ibl",
    "IBLEnv": "rnnscope.tasks.ibl",
    "run_session": "rnnscope.tasks.ibl",
    "observe_session": "rnnscope.tasks.ibl",
    "BayesianActor": "rnnscope.tasks.ibl",
    "evaluate_behaviour": "rnnscope.evaluation.behaviour",
    "BehaviourReport": "rnnscope.evaluation.behaviour",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rnnscope' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
