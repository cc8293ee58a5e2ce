"""Every constant of the IBL block/trial task, as one validated, frozen parameter set.

The defaults are the reference's (Schaeffer et al. 2020, ``utils/params.py``): blocks of a geometric
length with p = 1/50 truncated to [20, 100] trials that alternate sides, trial sides that follow the
block side with probability 0.8, six contrasts evenly spaced on [0, 2.5], two blank steps and then up
to ten noisy observations per trial, an action when an output probability exceeds 0.9, and a
−0.05 penalty per observation without an action.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from rnnscope.errors import SpecError


@dataclasses.dataclass(frozen=True)
class IBLTaskParams:
    """The IBL task's parameters. Invalid values raise :class:`~rnnscope.errors.SpecError`.

    Block structure
        ``block_geometric_p``: success probability p of the geometric block length, in trials, before
        truncation (the reference's ``trials_per_block_param``, 1/50).
        ``min_trials_per_block``, ``max_trials_per_block``: the truncation range [20, 100] (inclusive).
        ``blocks_per_session``: blocks in one session (4 for training; the reference analyses 1000).
        ``first_block_right_prob``: probability that a session's first block is a Right block (0.5).
        Blocks then strictly alternate sides.
        ``block_side_prob``: P(trial side = block side), i.i.d. over trials (0.8).

    Stimuli
        ``n_contrasts``, ``min_contrast``, ``max_contrast``: the contrasts μ are
        ``linspace(min, max, n)`` = {0, 0.5, …, 2.5}, each drawn with probability 1/n per trial.
        ``noise_std``: standard deviation σ of each stimulus channel (1): the signal side shows
        N(μ, σ²), the other side N(0, σ²), i.i.d. over observation steps.
        ``blank_steps``: steps at the start of every trial with both channels exactly 0 (2).
        ``max_observations``: observation steps after which the trial times out (10).

    Actions and rewards
        ``action_threshold``: an action is taken on an observation step when max(p_L, p_R) exceeds it
        (0.9), on the argmax side. Must lie in [0.5, 1) so that the argmax is unique.
        ``reward_correct`` (+1), ``reward_incorrect`` (−1), ``reward_timeout`` (−1, after the last
        observation without an action), ``time_delay_penalty`` (−0.05, an observation step without
        an action). Blank steps give 0.
    """

    block_geometric_p: float = 1.0 / 50.0
    min_trials_per_block: int = 20
    max_trials_per_block: int = 100
    blocks_per_session: int = 4
    first_block_right_prob: float = 0.5
    block_side_prob: float = 0.8
    n_contrasts: int = 6
    min_contrast: float = 0.0
    max_contrast: float = 2.5
    noise_std: float = 1.0
    blank_steps: int = 2
    max_observations: int = 10
    action_threshold: float = 0.9
    reward_correct: float = 1.0
    reward_incorrect: float = -1.0
    reward_timeout: float = -1.0
    time_delay_penalty: float = -0.05

    def __post_init__(self) -> None:
        for name in ("min_trials_per_block", "max_trials_per_block", "blocks_per_session", "n_contrasts",
                     "blank_steps", "max_observations"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise SpecError(f"{name} must be an integer; got {value!r}")
        for name in ("block_geometric_p", "first_block_right_prob", "block_side_prob", "min_contrast",
                     "max_contrast", "noise_std", "action_threshold", "reward_correct",
                     "reward_incorrect", "reward_timeout", "time_delay_penalty"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
                raise SpecError(f"{name} must be a finite number; got {value!r}")
        if not 0.0 < self.block_geometric_p < 1.0:
            raise SpecError(
                f"block_geometric_p must lie in (0, 1); got {self.block_geometric_p} (the reference uses 1/50)"
            )
        for name in ("first_block_right_prob", "block_side_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SpecError(f"{name} is a probability and must lie in [0, 1]; got {getattr(self, name)}")
        if self.min_trials_per_block < 1:
            raise SpecError(f"min_trials_per_block must be at least 1; got {self.min_trials_per_block}")
        if self.max_trials_per_block < self.min_trials_per_block:
            raise SpecError(
                f"min_trials_per_block ({self.min_trials_per_block}) exceeds max_trials_per_block "
                f"({self.max_trials_per_block}); set min <= max"
            )
        if self.blocks_per_session < 1:
            raise SpecError(f"blocks_per_session must be at least 1; got {self.blocks_per_session}")
        if self.n_contrasts < 1:
            raise SpecError(f"n_contrasts must be at least 1; got {self.n_contrasts}")
        if not 0.0 <= self.min_contrast <= self.max_contrast:
            raise SpecError(
                f"contrasts must satisfy 0 <= min_contrast <= max_contrast; got "
                f"[{self.min_contrast}, {self.max_contrast}]"
            )
        if self.noise_std <= 0:
            raise SpecError(f"noise_std must be positive; got {self.noise_std}")
        if self.blank_steps < 0:
            raise SpecError(f"blank_steps must be non-negative; got {self.blank_steps}")
        if self.max_observations < 1:
            raise SpecError(f"max_observations must be at least 1; got {self.max_observations}")
        if not 0.5 <= self.action_threshold < 1.0:
            raise SpecError(
                f"action_threshold must lie in [0.5, 1) so that at most one side exceeds it; "
                f"got {self.action_threshold}"
            )
        if self.reward_correct <= self.reward_incorrect:
            raise SpecError(
                f"reward_correct ({self.reward_correct}) must exceed reward_incorrect "
                f"({self.reward_incorrect}), or feedback cannot reveal the trial side"
            )

    @property
    def contrasts(self) -> np.ndarray:
        """The contrast values μ, of shape (n_contrasts,), float64, ascending."""
        return np.linspace(self.min_contrast, self.max_contrast, self.n_contrasts)

    @property
    def steps_per_trial(self) -> int:
        """The longest trial in steps: ``blank_steps + max_observations`` (12)."""
        return self.blank_steps + self.max_observations

    def replace(self, **changes: Any) -> "IBLTaskParams":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain JSON data."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "IBLTaskParams":
        """Rebuild from :meth:`to_dict` output; an unknown key raises ``SpecError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SpecError(f"unknown IBL task parameter(s) {unknown}; valid names are {sorted(names)}")
        return cls(**data)
