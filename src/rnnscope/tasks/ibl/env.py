"""The IBL block/trial task as a batched, closed-loop environment in torch.

B independent sessions step together. Each has its own block schedule, trial sides, contrasts and
progress (trials end at different steps); a session that has finished is ``done`` and from then on
returns zero inputs, zero rewards and no observation steps.

Time convention (step t = 0, 1, … of a session):

* ``x_t = [o^L_t, o^R_t, r_{t−1}]`` is what the policy sees at step t. On the ``blank_steps`` first
  steps of a trial both channels are exactly 0; on observation steps the signal side shows
  N(μ, σ²) and the other side N(0, σ²). ``r_{t−1}`` is the reward of the previous step (0 at
  the session start).
* The policy answers with probabilities ``p_t = (p_L, p_R)`` computed from ``x_t``;
  :meth:`IBLEnv.step` judges them and returns ``r_t`` with ``x_{t+1}``.
* On an observation step, ``max p_t > action_threshold`` is an action on the argmax side:
  ``r_t = +1`` if it is the trial side, else −1, and the trial ends. Otherwise the trial times out
  on its last observation step (``r_t = −1``, no action), or continues with ``r_t = −0.05``.
  Blank steps give ``r_t = 0`` whatever the policy outputs.
* So the feedback of an action or timeout is the third input of the next step, which is the first
  blank step of the next trial; inside a trial the third input is 0 at the first observation and
  −0.05 afterwards.

Implementation: :meth:`IBLEnv.reset` draws the whole schedule and every observation at once and
compiles the sessions into a lookup table (a :class:`SessionAutomaton`). A session's state is one
integer, its position (session, trial, step in trial); the policy's choice at a step is one of
{none, Left, Right}; the table gives, for each (position, choice), the outcome, the next position and
the next input. A step is then a handful of tensor operations whatever the batch size. Because all
noise is drawn at reset, two policies run from the same seed see exactly the same stimuli trial by
trial (common random numbers). Memory: 92 bytes per (session, trial, step) slot with float32 inputs.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from rnnscope.core.random import Seed, torch_generator
from rnnscope.tasks.ibl.blocks import IBLSchedule, _check_positive_int, sample_schedule
from rnnscope.tasks.ibl.params import IBLTaskParams

INPUT_SIZE = 3
"""Inputs per step: [left stimulus, right stimulus, previous reward]."""

BLANK, WAIT, CORRECT, INCORRECT, TIMEOUT, INACTIVE = range(6)
"""Outcome codes of a step: a blank step; an observation step without action (−0.05); a correct or
an incorrect action; a timeout; a step of a session that had already finished."""

OUTCOME_NAMES = ("blank", "wait", "correct", "incorrect", "timeout", "inactive")
"""Names of the outcome codes, by code."""

NO_CHOICE, CHOOSE_LEFT, CHOOSE_RIGHT = range(3)
"""The policy's choice at a step, as the environment reads it from the probabilities."""

_CHOICES = 3
_FLAG_TABLE = {
    # outcome:              blank  wait   correct incorrect timeout inactive
    "is_observation": (False, True, True, True, True, False),
    "trial_end": (False, False, True, True, True, False),
    "action_taken": (False, False, True, True, False, False),
    "correct": (False, False, True, False, False, False),
    "timeout": (False, False, False, False, True, False),
    "active": (True, True, True, True, True, False),
}


def choose(probs: Tensor, threshold: float) -> Tensor:
    """The action rule as a choice code (B,) int64 for probabilities ``probs`` (B, 2) = (p_L, p_R).

    :data:`NO_CHOICE` unless ``max(p_L, p_R) > threshold``; then :data:`CHOOSE_LEFT` or
    :data:`CHOOSE_RIGHT` by the argmax (a tie counts as Left, like ``argmax``). It does not know
    about blank steps; the environment ignores choices there. Elementwise only: tiny reductions
    enter a thread pool, which costs far more than they compute.
    """
    p_left, p_right = probs[:, 0], probs[:, 1]
    right = p_right > p_left
    acts = torch.where(right, p_right, p_left) > threshold
    return acts * (1 + right)


def sample_stimuli(
    params: IBLTaskParams, schedule: IBLSchedule, seed: Seed = None, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Every stimulus of every trial, of shape (B, N, steps_per_trial, 2) = (left, right).

    Blank steps are exactly 0. Observation steps: the trial side's channel is μ + σ ε, the other
    channel σ ε, with ε i.i.d. N(0, 1). Padded trials are 0. Drawn on the CPU in float64, then cast
    to ``dtype`` and moved to the schedule's device.
    """
    gen = torch_generator(seed)
    b, n = schedule.trial_sides.shape
    noise = torch.randn(b, n, params.max_observations, 2, generator=gen, dtype=torch.float64) * params.noise_std
    sides = schedule.trial_sides.cpu()
    contrasts = schedule.contrasts.cpu()
    mean_bxnx2 = torch.stack([contrasts * (sides == -1), contrasts * (sides == 1)], dim=-1)
    observed = (noise + mean_bxnx2[:, :, None, :]) * (sides != 0)[:, :, None, None]
    blank = torch.zeros(b, n, params.blank_steps, 2, dtype=torch.float64)
    return torch.cat([blank, observed], dim=2).to(device=schedule.trial_sides.device, dtype=dtype)


@dataclasses.dataclass(frozen=True)
class SessionAutomaton:
    """B sessions compiled into a lookup table over (position, choice).

    A position indexes (session b, trial n, step k) as ``(b N + n) T + k`` (N padded trials,
    T = steps_per_trial); ``P = B N T`` is the sink where finished sessions stay. A key is
    ``3 · position + choice`` (choice 0 none, 1 Left, 2 Right).

    ``stimuli`` (P + 1, 2): the stimulus shown at each position (0 on blank steps and at the sink).
    ``outcome`` (3 (P + 1),) int64: the outcome code of each key.
    ``next_key_base`` (3 (P + 1),) int64: 3 × the next position.
    ``next_input`` (3 (P + 1), 3): the next step's input [o^L, o^R, reward of this key].
    ``trial_sides`` (B N + 1,) int64: the side of each (b, n) trial slot, 0 for padding and the sink.
    ``start_key_base`` (B,) int64: 3 × each session's first position.
    ``flags``: per-outcome lookup tables (6,) bool for is_observation, trial_end, action_taken,
    correct, timeout and active.
    """

    stimuli: Tensor
    outcome: Tensor
    next_key_base: Tensor
    next_input: Tensor
    trial_sides: Tensor
    start_key_base: Tensor
    flags: dict[str, Tensor]
    max_trials: int
    steps_per_trial: int

    @property
    def sink(self) -> int:
        """P, the position of finished sessions."""
        return self.stimuli.shape[0] - 1

    def initial_input(self) -> Tensor:
        """x_0 of every session, (B, 3): its first stimulus and a previous reward of 0."""
        stimulus = self.stimuli.index_select(0, self.start_key_base // _CHOICES)
        return torch.cat([stimulus, torch.zeros_like(stimulus[:, :1])], dim=1)

    def describe(self, keys: Tensor) -> dict[str, Tensor]:
        """Decode keys of any shape into named tensors of the same shape.

        ``position``, ``choice``, ``outcome``; ``session``, ``trial_in_session``, ``step_in_trial``
        (−1 at the sink); ``trial_side``; the flags of :attr:`flags`; ``action_side`` (±1, 0 without
        an action); ``next_input`` (…, 3).
        """
        flat = keys.reshape(-1)
        position = flat // _CHOICES
        choice = flat % _CHOICES
        outcome = self.outcome.index_select(0, flat)
        slot = position // self.steps_per_trial
        active = self.flags["active"].index_select(0, outcome)
        out = {
            "position": position,
            "choice": choice,
            "outcome": outcome,
            "session": torch.where(active, slot // self.max_trials, -1),
            "trial_in_session": torch.where(active, slot % self.max_trials, -1),
            "step_in_trial": torch.where(active, position % self.steps_per_trial, -1),
            "trial_side": self.trial_sides.index_select(0, slot),
            **{name: table.index_select(0, outcome) for name, table in self.flags.items()},
        }
        side_by_choice = torch.tensor([0, -1, 1], device=flat.device)
        out["action_side"] = side_by_choice.index_select(0, choice) * out["action_taken"]
        out = {name: value.reshape(keys.shape) for name, value in out.items()}
        out["next_input"] = self.next_input.index_select(0, flat).reshape(*keys.shape, 3)
        return out


def build_automaton(
    params: IBLTaskParams, schedule: IBLSchedule, stimuli_bxnxtx2: Tensor
) -> SessionAutomaton:
    """Compile a schedule and its stimuli (see :func:`sample_stimuli`) into a :class:`SessionAutomaton`."""
    device = stimuli_bxnxtx2.device
    dtype = stimuli_bxnxtx2.dtype
    b, n = schedule.trial_sides.shape
    t = params.steps_per_trial
    sink = b * n * t
    step_t = torch.arange(t, device=device)[None, None, :]
    trial_n = torch.arange(n, device=device)[None, :, None]
    session_b = torch.arange(b, device=device)[:, None, None]
    valid_bxnx1 = trial_n < schedule.n_trials[:, None, None]
    side_bxnx1 = schedule.trial_sides[:, :, None]
    is_obs = step_t >= params.blank_steps

    code_none = torch.where(is_obs, torch.where(step_t == t - 1, TIMEOUT, WAIT), BLANK).expand(b, n, t)
    code_left = torch.where(is_obs, torch.where(side_bxnx1 == -1, CORRECT, INCORRECT), BLANK)
    code_right = torch.where(is_obs, torch.where(side_bxnx1 == 1, CORRECT, INCORRECT), BLANK)
    code = torch.stack([code_none, code_left, code_right], dim=-1)
    code = torch.where(valid_bxnx1[..., None], code, INACTIVE)
    ends = (code == CORRECT) | (code == INCORRECT) | (code == TIMEOUT)

    position = (session_b * n + trial_n) * t + step_t
    has_next_trial = trial_n + 1 < schedule.n_trials[:, None, None]
    next_trial_start = torch.where(has_next_trial, (session_b * n + trial_n + 1) * t, sink)
    next_position = torch.where(ends, next_trial_start[..., None], (position + 1)[..., None])
    next_position = torch.where(valid_bxnx1[..., None], next_position, sink)

    sink_keys = torch.full((_CHOICES,), sink, dtype=torch.int64, device=device)
    outcome = torch.cat([code.reshape(-1).to(torch.int64), torch.full_like(sink_keys, INACTIVE)])
    next_pos = torch.cat([next_position.reshape(-1).to(torch.int64), sink_keys])
    stimuli = torch.cat([stimuli_bxnxtx2.reshape(-1, 2), torch.zeros(1, 2, dtype=dtype, device=device)])
    reward_by_outcome = torch.tensor(
        [0.0, params.time_delay_penalty, params.reward_correct, params.reward_incorrect, params.reward_timeout, 0.0],
        dtype=dtype, device=device,
    )
    reward = reward_by_outcome.index_select(0, outcome)
    next_input = torch.cat([stimuli.index_select(0, next_pos), reward[:, None]], dim=1)
    trial_sides = torch.cat([schedule.trial_sides.reshape(-1), torch.zeros(1, dtype=torch.int64, device=device)])
    return SessionAutomaton(
        stimuli=stimuli,
        outcome=outcome,
        next_key_base=_CHOICES * next_pos,
        next_input=next_input,
        trial_sides=trial_sides,
        start_key_base=_CHOICES * torch.arange(b, device=device) * n * t,
        flags={name: torch.tensor(row, device=device) for name, row in _FLAG_TABLE.items()},
        max_trials=n,
        steps_per_trial=t,
    )


class IBLStep:
    """What :meth:`IBLEnv.step` returns for step t; fields other than ``x`` are computed on first use.

    ``x`` (B, 3): the input of step t + 1 (zeros for sessions that are done).
    ``key`` (B,) int64: the automaton key of step t (position and choice), enough to rebuild the rest.
    Each other field is of shape (B,):
    ``reward`` r_t (0 for inactive sessions); ``trial_side`` the true side of step t's trial, ±1
    (0 for inactive sessions) — the target of a task loss; ``is_observation`` step t was a
    non-blank step of an active session (where a loss applies); ``action_taken``, ``action_side``
    (±1, 0 without action), ``correct``, ``timeout``, ``trial_end`` (action or timeout);
    ``outcome`` (int64 code, see :data:`OUTCOME_NAMES`); ``active`` the session had not finished
    before step t; ``done`` the session has finished after step t; ``trial_in_session``,
    ``step_in_trial`` (int64, −1 for inactive sessions).
    """

    __slots__ = ("x", "key", "_automaton", "_decoded")

    def __init__(self, x: Tensor, key: Tensor, automaton: SessionAutomaton) -> None:
        self.x = x
        self.key = key
        self._automaton = automaton
        self._decoded: dict[str, Tensor] | None = None

    def _get(self, name: str) -> Tensor:
        if self._decoded is None:
            self._decoded = self._automaton.describe(self.key)
        return self._decoded[name]

    @property
    def reward(self) -> Tensor:
        return self.x[:, 2]

    @property
    def trial_side(self) -> Tensor:
        return self._get("trial_side")

    @property
    def is_observation(self) -> Tensor:
        return self._get("is_observation")

    @property
    def action_taken(self) -> Tensor:
        return self._get("action_taken")

    @property
    def action_side(self) -> Tensor:
        return self._get("action_side")

    @property
    def correct(self) -> Tensor:
        return self._get("correct")

    @property
    def timeout(self) -> Tensor:
        return self._get("timeout")

    @property
    def trial_end(self) -> Tensor:
        return self._get("trial_end")

    @property
    def outcome(self) -> Tensor:
        return self._get("outcome")

    @property
    def active(self) -> Tensor:
        return self._get("active")

    @property
    def done(self) -> Tensor:
        return self._automaton.next_key_base.index_select(0, self.key) == _CHOICES * self._automaton.sink

    @property
    def trial_in_session(self) -> Tensor:
        return self._get("trial_in_session")

    @property
    def step_in_trial(self) -> Tensor:
        return self._get("step_in_trial")


class IBLEnv:
    """B IBL sessions stepped together (see the module docstring for the time convention).

    ``params`` defaults to :class:`IBLTaskParams` (); ``blocks_per_session`` defaults to
    ``params.blocks_per_session``. ``seed`` seeds one ``torch.Generator`` from which every
    :meth:`reset` draws a new schedule and its stimuli. Inputs and rewards are of ``dtype``
    on ``device``.

    Usage::

        env = IBLEnv(n_sessions=256, seed=0)
        x = env.reset()
        while not env.all_done():
            probs = policy(x)            # (B, 2)
            out = env.step(probs)        # out.trial_side, out.is_observation for a loss
            x = out.x
    """

    def __init__(
        self,
        params: IBLTaskParams | None = None,
        n_sessions: int = 1,
        blocks_per_session: int | None = None,
        *,
        seed: Seed = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.params = IBLTaskParams() if params is None else params
        if not isinstance(self.params, IBLTaskParams):
            raise TypeError(f"params must be an IBLTaskParams; got {type(self.params).__name__}")
        _check_positive_int("n_sessions", n_sessions)
        self.blocks_per_session = (
            self.params.blocks_per_session if blocks_per_session is None else blocks_per_session
        )
        _check_positive_int("blocks_per_session", self.blocks_per_session)
        if not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point torch dtype; got {dtype}")
        self.n_sessions = int(n_sessions)
        self.device = torch.device(device)
        self.dtype = dtype
        self._generator = torch_generator(seed)
        self._schedule: IBLSchedule | None = None
        self._automaton: SessionAutomaton | None = None

    @property
    def schedule(self) -> IBLSchedule:
        """The schedule drawn by the last :meth:`reset`."""
        self._check_reset()
        return self._schedule

    @property
    def automaton(self) -> SessionAutomaton:
        """The sessions of the last :meth:`reset`, compiled into a lookup table."""
        self._check_reset()
        return self._automaton

    @property
    def stimuli(self) -> Tensor:
        """All stimuli of the current sessions, (B, N, steps_per_trial, 2), see :func:`sample_stimuli`."""
        return self.automaton.stimuli[:-1].view(self.n_sessions, -1, self.params.steps_per_trial, 2)

    @property
    def max_steps(self) -> int:
        """An upper bound on the steps of the current sessions: longest trial count × steps per trial."""
        return self.schedule.max_trials * self.params.steps_per_trial

    @property
    def n_steps(self) -> int:
        """Steps taken since the last reset."""
        return self._t

    @property
    def done(self) -> Tensor:
        """(B,) bool: sessions that have finished."""
        self._check_reset()
        return self._key_base == _CHOICES * self._automaton.sink

    def all_done(self) -> bool:
        """Whether every session has finished (one device synchronisation; call it sparingly)."""
        return bool(self.done.all())

    def reset(self) -> Tensor:
        """Draw new schedules and stimuli for all B sessions; return the first input x_0 (B, 3)."""
        p = self.params
        schedule = sample_schedule(p, self.n_sessions, self.blocks_per_session, self._generator, self.device)
        stimuli = sample_stimuli(p, schedule, self._generator, self.dtype)
        self._schedule = schedule
        self._automaton = build_automaton(p, schedule, stimuli)
        self._key_base = self._automaton.start_key_base.clone()
        self._t = 0
        return self._automaton.initial_input()

    def step(self, probs: Tensor) -> IBLStep:
        """Judge the policy's probabilities ``probs`` (B, 2) = (p_L, p_R) for the current step.

        Only ``probs.detach()`` is used, so the caller can keep ``probs`` in its autograd graph to
        build a loss from the returned ``trial_side`` and ``is_observation``.
        """
        self._check_reset()
        if probs.shape != (self.n_sessions, 2):
            raise ValueError(f"probs must have shape ({self.n_sessions}, 2); got {tuple(probs.shape)}")
        key = self._key_base + choose(probs.detach(), self.params.action_threshold)
        automaton = self._automaton
        x = automaton.next_input.index_select(0, key)
        self._key_base = automaton.next_key_base.index_select(0, key)
        self._t += 1
        return IBLStep(x, key, automaton)

    def _check_reset(self) -> None:
        if self._automaton is None:
            raise RuntimeError("call IBLEnv.reset() before using the environment")
