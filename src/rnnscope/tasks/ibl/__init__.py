"""The IBL block/trial task of Schaeffer et al. (NeurIPS 2020), batched, with its Bayesian baselines.

``params`` — every constant of the task (:class:`IBLTaskParams`); ``blocks`` — the block/trial
schedule and its exact statistics; ``env`` — the batched closed-loop environment; ``session`` — the
session record (tidy step and trial tables); ``rollout`` — the closed-loop runner; ``observers`` —
the exact ideal observer, the Bayesian actor and the reference's variants. See docs/ibl-task.md.
"""

from rnnscope.tasks.ibl.blocks import (
    IBLSchedule,
    block_hazard,
    block_length_mean,
    block_length_pmf,
    contrast_probabilities,
    sample_schedule,
    trial_side_probability,
)
from rnnscope.tasks.ibl.env import IBLEnv, IBLStep, SessionAutomaton, choose, sample_stimuli
from rnnscope.tasks.ibl.observers import BayesianActor, ObserverResult, observe_session, stimulus_log_likelihood_ratio
from rnnscope.tasks.ibl.params import IBLTaskParams
from rnnscope.tasks.ibl.rollout import Policy, run_analysis_session, run_session, torch_threads
from rnnscope.tasks.ibl.session import STEP_COLUMNS, SessionRecord, SessionSummary

__all__ = [
    "STEP_COLUMNS",
    "BayesianActor",
    "IBLEnv",
    "IBLSchedule",
    "IBLStep",
    "IBLTaskParams",
    "ObserverResult",
    "Policy",
    "SessionAutomaton",
    "SessionRecord",
    "SessionSummary",
    "block_hazard",
    "block_length_mean",
    "block_length_pmf",
    "choose",
    "contrast_probabilities",
    "observe_session",
    "run_analysis_session",
    "run_session",
    "sample_schedule",
    "sample_stimuli",
    "stimulus_log_likelihood_ratio",
    "torch_threads",
    "trial_side_probability",
]
