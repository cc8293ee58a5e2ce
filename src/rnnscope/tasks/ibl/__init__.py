"""The IBL block/trial task of Schaeffer et al. (NeurIPS 2020), batched, with its Bayesian baselines.

``params`` — every constant of the task (:class:`IBLTaskParams`); ``blocks`` — the block/trial
schedule and its exact statistics; ``env`` — the batched closed-loop environment; ``session`` — the
session record (tidy step and trial tables); ``rollout`` — the closed-loop runner; ``observers`` —
the exact ideal observer, the Bayesian actor and the reference's variants. See docs/ibl-task.md.
"""
from __future__ import annotations

import importlib
from typing import Any

# Submodules load on first use, so that reading the task parameters (e.g. from a configuration)
# does not import torch.
_LAZY: dict[str, str] = {
    "BayesianActor": "rnnscope.tasks.ibl.observers",
    "IBLEnv": "rnnscope.tasks.ibl.env",
    "IBLSchedule": "rnnscope.tasks.ibl.blocks",
    "IBLStep": "rnnscope.tasks.ibl.env",
    "IBLTaskParams": "rnnscope.tasks.ibl.params",
    "ObserverResult": "rnnscope.tasks.ibl.observers",
    "Policy": "rnnscope.tasks.ibl.rollout",
    "STEP_COLUMNS": "rnnscope.tasks.ibl.session",
    "SessionAutomaton": "rnnscope.tasks.ibl.env",
    "SessionRecord": "rnnscope.tasks.ibl.session",
    "SessionSummary": "rnnscope.tasks.ibl.session",
    "block_hazard": "rnnscope.tasks.ibl.blocks",
    "block_length_mean": "rnnscope.tasks.ibl.blocks",
    "block_length_pmf": "rnnscope.tasks.ibl.blocks",
    "choose": "rnnscope.tasks.ibl.env",
    "contrast_probabilities": "rnnscope.tasks.ibl.blocks",
    "observe_session": "rnnscope.tasks.ibl.observers",
    "run_analysis_session": "rnnscope.tasks.ibl.rollout",
    "run_session": "rnnscope.tasks.ibl.rollout",
    "sample_schedule": "rnnscope.tasks.ibl.blocks",
    "sample_stimuli": "rnnscope.tasks.ibl.env",
    "stimulus_log_likelihood_ratio": "rnnscope.tasks.ibl.observers",
    "torch_threads": "rnnscope.tasks.ibl.rollout",
    "trial_side_probability": "rnnscope.tasks.ibl.blocks",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rnnscope.tasks.ibl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
