"""The record of IBL sessions: a tidy per-step table, a per-trial table derived from it, hidden states.

The closed-loop runner keeps only each step's automaton key and the policy's output in preallocated
buffers; the record is decoded from them once, at the end, vectorised (never pandas inside the
step loop). Column dtypes are exact: int64 counters and sides, float64 values, bool flags (the
reference stores everything in float16, which cannot hold counters above 2048 or −0.05 exactly).

Rows are ordered by session, then by step; only steps where the session was still running are rows.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from rnnscope.core.results import Result
from rnnscope.errors import AnalysisError
from rnnscope.tasks.ibl.env import IBLEnv
from rnnscope.tasks.ibl.params import IBLTaskParams

STEP_COLUMNS: dict[str, str] = {
    "session": "int64",
    "step_in_session": "int64",
    "block_index": "int64",
    "trial_in_session": "int64",
    "trial_in_block": "int64",
    "step_in_trial": "int64",
    "block_side": "int64",
    "trial_side": "int64",
    "contrast": "float64",
    "signed_contrast": "float64",
    "concordant": "bool",
    "left_obs": "float64",
    "right_obs": "float64",
    "prev_reward": "float64",
    "is_observation": "bool",
    "p_left": "float64",
    "p_right": "float64",
    "action_taken": "bool",
    "action_side": "int64",
    "correct_action": "bool",
    "reward": "float64",
    "trial_end": "bool",
    "timeout": "bool",
}
"""The per-step table's columns and dtypes.

``session``, ``step_in_session`` (0-based step t), ``block_index``, ``trial_in_session``,
``trial_in_block``, ``step_in_trial`` (0 and 1 are the blank steps); ``block_side``, ``trial_side``
(−1 Left, +1 Right); ``contrast`` μ ≥ 0 and ``signed_contrast`` = trial_side · μ; ``concordant``
(trial side = block side); ``left_obs``, ``right_obs``, ``prev_reward``: the input x_t;
``is_observation`` (a non-blank step); ``p_left``, ``p_right``: the policy's output at step t;
``action_taken``, ``action_side`` (±1, 0 without action), ``correct_action``, ``reward`` r_t,
``trial_end`` (action or timeout), ``timeout``.
"""

OUTCOMES = ("correct", "incorrect", "timeout")
"""Categories of the per-trial ``outcome`` column."""


@dataclasses.dataclass(frozen=True)
class SessionSummary(Result):
    """Run-level behaviour of a session record (the reference's ``run_envs`` metrics).

    ``n_sessions``, ``n_trials``, ``n_steps``; ``action_rate`` = actions / trials;
    ``accuracy`` = correct actions / trials (timeouts count as errors);
    ``accuracy_given_action`` = correct / actions; ``steps_per_trial`` = mean steps per trial,
    including the blank steps; ``reward_per_step`` = mean reward per step.
    """

    n_sessions: int
    n_trials: int
    n_steps: int
    action_rate: float
    accuracy: float
    accuracy_given_action: float
    steps_per_trial: float
    reward_per_step: float


@dataclasses.dataclass(frozen=True)
class SessionRecord(Result):
    """What happened in B IBL sessions, step by step.

    ``step_columns``: the per-step table as named arrays of equal length n_steps, with the names and
    dtypes of :data:`STEP_COLUMNS`; :attr:`steps` is the same as a DataFrame.
    ``block_lengths`` (n_sessions, n_blocks) int64: the sessions' block lengths in trials.
    ``hidden_states`` (n_steps, H) float32 or None: the policy's hidden state after reading x_t,
    row-aligned with the step table.
    ``params``: the task parameters (:meth:`IBLTaskParams.to_dict`).
    """

    step_columns: dict[str, np.ndarray]
    block_lengths: np.ndarray
    hidden_states: np.ndarray | None
    params: dict[str, Any]

    @property
    def task_params(self) -> IBLTaskParams:
        """The task parameters as :class:`IBLTaskParams`."""
        return IBLTaskParams.from_dict(self.params)

    @property
    def n_steps(self) -> int:
        """Rows of the step table."""
        return int(self.step_columns["session"].size)

    @property
    def n_trials(self) -> int:
        """Rows of the trial table."""
        return int(np.count_nonzero(self.step_columns["trial_end"]))

    @property
    def n_sessions(self) -> int:
        """Sessions in the record."""
        return int(self.block_lengths.shape[0])

    @functools.cached_property
    def steps(self) -> pd.DataFrame:
        """The per-step table (see :data:`STEP_COLUMNS`), one row per step of each session."""
        return pd.DataFrame({name: self.step_columns[name] for name in STEP_COLUMNS}, copy=False)

    @functools.cached_property
    def trials(self) -> pd.DataFrame:
        """The per-trial table, one row per trial, ordered by session and trial.

        Columns: ``session``, ``block_index``, ``trial_in_session``, ``trial_in_block``,
        ``block_side``, ``trial_side``, ``contrast``, ``signed_contrast``, ``concordant``,
        ``action_taken``, ``action_side``, ``correct`` (bool; timeouts are not correct),
        ``outcome`` (categorical: correct / incorrect / timeout), ``n_observations_at_decision``
        (observations seen up to and including the decision step; ``max_observations`` on a
        timeout), ``steps_in_trial`` (including the blank steps), ``p_right_at_decision``,
        ``reward``, ``trials_since_block_switch`` (= ``trial_in_block``, but −1 in a session's first
        block, where no switch has happened) and ``previous_block_length`` (−1 in the first block).
        """
        return build_trial_table(self.step_columns, self.block_lengths, self.task_params.blank_steps)

    def summary(self) -> SessionSummary:
        """Run-level behaviour (accuracy, action rate, steps per trial, reward per step)."""
        trials = self.trials
        n_trials = len(trials)
        n_actions = int(trials["action_taken"].sum())
        n_correct = int(trials["correct"].sum())
        return SessionSummary(
            n_sessions=self.n_sessions,
            n_trials=n_trials,
            n_steps=self.n_steps,
            action_rate=n_actions / max(n_trials, 1),
            accuracy=n_correct / max(n_trials, 1),
            accuracy_given_action=n_correct / n_actions if n_actions else float("nan"),
            steps_per_trial=float(trials["steps_in_trial"].mean()),
            reward_per_step=float(self.step_columns["reward"].mean()),
        )

    def accuracy_by_contrast(self, correct: np.ndarray | None = None) -> pd.DataFrame:
        """Accuracy by contrast μ and concordance, one row per (contrast, concordant).

        ``correct`` (n_trials,) bool replaces the record's own correctness (for example an
        observer's choices at the same trials). Columns: ``contrast``, ``concordant``, ``n_trials``,
        ``accuracy``, ``steps_in_trial`` (mean).
        """
        trials = self.trials
        if correct is None:
            correct = trials["correct"].to_numpy()
        correct = np.asarray(correct, dtype=bool)
        if correct.shape != (len(trials),):
            raise ValueError(f"correct must have shape ({len(trials)},); got {correct.shape}")
        frame = pd.DataFrame({
            "contrast": trials["contrast"].to_numpy(),
            "concordant": trials["concordant"].to_numpy(),
            "correct": correct,
            "steps_in_trial": trials["steps_in_trial"].to_numpy(),
        })
        grouped = frame.groupby(["contrast", "concordant"], sort=True)
        return pd.DataFrame({
            "n_trials": grouped["correct"].size(),
            "accuracy": grouped["correct"].mean(),
            "steps_in_trial": grouped["steps_in_trial"].mean(),
        }).reset_index()

    @classmethod
    def from_rollout(
        cls,
        env: IBLEnv,
        keys_txb: Tensor,
        probs_txbx2: Tensor,
        hidden_txbxh: Tensor | None = None,
    ) -> "SessionRecord":
        """Build the record of ``env``'s current sessions from what a closed-loop run recorded.

        ``keys_txb`` (T, B) int64: :attr:`IBLStep.key` of every step t and session b, from the
        first step after :meth:`IBLEnv.reset` on; ``probs_txbx2`` (T, B, 2): the policy's
        probabilities; ``hidden_txbxh`` (T, B, H): its hidden states. Steps after a session
        finished are dropped.
        """
        automaton, schedule = env.automaton, env.schedule
        keys_bxt = keys_txb.T.contiguous()
        decoded = automaton.describe(keys_bxt)
        inputs_bxtx3 = torch.cat([automaton.initial_input()[:, None], decoded["next_input"][:, :-1]], dim=1)
        active_bxt = decoded["active"]
        session_idx, step_idx = torch.nonzero(active_bxt, as_tuple=True)

        def rows(tensor_bxt_: Tensor) -> np.ndarray:
            return tensor_bxt_[session_idx, step_idx].cpu().numpy()

        session, trial = rows(decoded["session"]), rows(decoded["trial_in_session"])
        block_index = schedule.trial_block.cpu().numpy()[session, trial]
        block_side = schedule.block_sides.cpu().numpy()[session, block_index]
        trial_side = rows(decoded["trial_side"])
        contrast = schedule.contrasts.cpu().numpy()[session, trial].astype("float64")
        inputs = rows(inputs_bxtx3).astype("float64")
        probs = rows(probs_txbx2.transpose(0, 1)).astype("float64")
        columns = {
            "session": session,
            "step_in_session": step_idx.cpu().numpy(),
            "block_index": block_index,
            "trial_in_session": trial,
            "trial_in_block": schedule.trial_in_block.cpu().numpy()[session, trial],
            "step_in_trial": rows(decoded["step_in_trial"]),
            "block_side": block_side,
            "trial_side": trial_side,
            "contrast": contrast,
            "signed_contrast": contrast * trial_side,
            "concordant": trial_side == block_side,
            "left_obs": inputs[:, 0],
            "right_obs": inputs[:, 1],
            "prev_reward": inputs[:, 2],
            "is_observation": rows(decoded["is_observation"]),
            "p_left": probs[:, 0],
            "p_right": probs[:, 1],
            "action_taken": rows(decoded["action_taken"]),
            "action_side": rows(decoded["action_side"]),
            "correct_action": rows(decoded["correct"]),
            "reward": rows(decoded["next_input"][..., 2]).astype("float64"),
            "trial_end": rows(decoded["trial_end"]),
            "timeout": rows(decoded["timeout"]),
        }
        hidden = None
        if hidden_txbxh is not None:
            hidden = np.ascontiguousarray(rows(hidden_txbxh.transpose(0, 1)), dtype=np.float32)
        return cls(
            step_columns={name: np.ascontiguousarray(columns[name], dtype=kind) for name, kind in STEP_COLUMNS.items()},
            block_lengths=schedule.block_lengths.cpu().numpy().astype("int64"),
            hidden_states=hidden,
            params=env.params.to_dict(),
        )


def trial_row_index(step_columns: dict[str, np.ndarray]) -> np.ndarray:
    """For each step, the row of its trial in the trial table, of shape (n_steps,) int64.

    Raises :class:`~rnnscope.errors.AnalysisError` if a trial is incomplete (a record must hold
    whole trials: each starts at ``step_in_trial == 0`` and ends on a ``trial_end`` row).
    """
    end = np.asarray(step_columns["trial_end"], dtype=bool)
    start = np.asarray(step_columns["step_in_trial"]) == 0
    if start.sum() != end.sum() or (end.size and not end[-1]):
        raise AnalysisError(
            "the step table holds an incomplete trial; record whole sessions (run_session does)"
        )
    return np.cumsum(start) - 1


def build_trial_table(step_columns: dict[str, np.ndarray], block_lengths: np.ndarray, blank_steps: int) -> pd.DataFrame:
    """The per-trial table (see :attr:`SessionRecord.trials`) from the step table's columns."""
    trial_row_index(step_columns)
    end = np.flatnonzero(step_columns["trial_end"])

    def at_end(name: str) -> np.ndarray:
        return np.asarray(step_columns[name])[end]

    session, block = at_end("session"), at_end("block_index")
    trial_in_block = at_end("trial_in_block")
    step = at_end("step_in_trial")
    acted, correct = at_end("action_taken"), at_end("correct_action")
    outcome_code = np.where(acted, np.where(correct, 0, 1), 2)
    first_block = block == 0
    previous_length = np.where(first_block, -1, block_lengths[session, np.maximum(block - 1, 0)])
    return pd.DataFrame({
        "session": session,
        "block_index": block,
        "trial_in_session": at_end("trial_in_session"),
        "trial_in_block": trial_in_block,
        "block_side": at_end("block_side"),
        "trial_side": at_end("trial_side"),
        "contrast": at_end("contrast"),
        "signed_contrast": at_end("signed_contrast"),
        "concordant": at_end("concordant"),
        "action_taken": acted,
        "action_side": at_end("action_side"),
        "correct": correct,
        "outcome": pd.Categorical.from_codes(outcome_code, categories=list(OUTCOMES)),
        "n_observations_at_decision": (step - blank_steps + 1).astype("int64"),
        "steps_in_trial": (step + 1).astype("int64"),
        "p_right_at_decision": at_end("p_right"),
        "reward": at_end("reward"),
        "trials_since_block_switch": np.where(first_block, -1, trial_in_block).astype("int64"),
        "previous_block_length": previous_length.astype("int64"),
    })
