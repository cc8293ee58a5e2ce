"""Behaviour of an agent on the IBL task, against the Bayesian baselines (Schaeffer et al. 2020, §5).

:func:`evaluate_behaviour` runs, on one long analysis session (the reference: 1000 blocks):

* ``rnn`` — the trained network, closed loop;
* ``observer`` — the exact ideal observer (true hazard) paced by the network: it sees the network's
  observations and feedback and chooses round(posterior) at the network's decision steps;
* ``actor`` — the reference's Bayesian actor (``variant="reference"``, the paper's "Bayesian actor"),
  closed loop on the same stimuli (same seed: same blocks, trial sides, contrasts and noise);
* ``actor_exact`` — the exact Bayesian actor (true hazard), closed loop on the same stimuli.

and measures for each agent, over the signed contrasts c = trial side × μ (11 values):

* psychometric curves: P(choose Right | a choice) per block side;
* accuracy against c, all trials and split concordant (trial side = block side) / discordant;
* accuracy by trial after a block switch (1 = the first trial of the new block), all trials and
  zero-contrast trials only (a session's first block has no switch and is left out);
* chronometric curves: steps per trial (blank steps included) against c;
* trial outcomes: correct / incorrect / timeout counts against c;
* accuracy against the number of observations seen at the decision.

Accuracy is correct actions / trials: a timeout counts as an error, as in the paper. Proportions
carry Wilson 95 % intervals; means carry their standard error.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pandas as pd
import torch

from rnnscope.core.io import write_json
from rnnscope.core.results import Result
from rnnscope.tasks.ibl.observers import BayesianActor, observe_session
from rnnscope.tasks.ibl.params import IBLTaskParams
from rnnscope.tasks.ibl.rollout import run_analysis_session
from rnnscope.tasks.ibl.session import OUTCOMES, SessionRecord

Z_95 = 1.959963984540054
"""The two-sided 95 % standard-normal quantile of the Wilson intervals."""

DEFAULT_N_BLOCKS = 1000
"""Blocks in the analysis session (the reference's)."""

RECOVERY_WINDOW = (10, 20)
"""Trials after a switch (inclusive, 1-based) whose pooled accuracy is the recovered accuracy."""

RECOVERY_TOLERANCE = 0.02
"""How close to the recovered accuracy the 3-trial running accuracy must come to count as recovered."""

AGENT_LABELS = {
    "rnn": "RNN",
    "observer": "ideal observer, paced by the RNN",
    "actor": "Bayesian actor (reference)",
    "actor_exact": "Bayesian actor (exact)",
}
"""Display names of the agents."""


@dataclasses.dataclass(frozen=True)
class Proportions(Result):
    """Binomial counts on a grid: ``successes`` and ``trials``, int64 arrays of one shape.

    :attr:`rate` = successes / trials (NaN where there are no trials) with its Wilson 95 % interval
    :attr:`ci_low`, :attr:`ci_high`.
    """

    successes: np.ndarray
    trials: np.ndarray

    @property
    def rate(self) -> np.ndarray:
        """successes / trials, NaN where trials = 0."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.trials > 0, self.successes / np.maximum(self.trials, 1), np.nan)

    @property
    def ci_low(self) -> np.ndarray:
        """Lower end of the Wilson 95 % interval (NaN where trials = 0)."""
        return wilson_interval(self.successes, self.trials)[0]

    @property
    def ci_high(self) -> np.ndarray:
        """Upper end of the Wilson 95 % interval (NaN where trials = 0)."""
        return wilson_interval(self.successes, self.trials)[1]

    def pooled(self, index: Any = slice(None)) -> float:
        """The rate of the cells ``index`` pooled together (NaN without trials)."""
        n = int(np.sum(self.trials[index]))
        return float(np.sum(self.successes[index])) / n if n else math.nan


@dataclasses.dataclass(frozen=True)
class MeanCurve(Result):
    """Means on a grid: ``mean`` and its standard error ``sem`` (float64) over ``count`` (int64) values."""

    mean: np.ndarray
    sem: np.ndarray
    count: np.ndarray


@dataclasses.dataclass(frozen=True)
class AgentBehaviour(Result):
    """One agent's behaviour on the analysis session. C signed contrasts, M trials after a switch.

    ``name``: "rnn", "observer", "actor" or "actor_exact"; ``paced_by``: the agent whose decisions
    pace this one ("" for a closed-loop agent). ``n_trials``: trials in the session.
    ``p_right`` (2, C): P(choose Right | a choice), row 0 Left blocks, row 1 Right blocks.
    ``accuracy`` (C,): correct / trials. ``accuracy_concordance`` (2, C): row 0 discordant, row 1
    concordant trials. ``accuracy_after_switch``, ``accuracy_after_switch_zero`` (M,): by trial
    1 … M after a block switch, all trials and zero-contrast trials. ``steps_per_trial`` (C,):
    steps per trial, blank steps included. ``outcomes`` (3, C) int64: trials ending correct,
    incorrect, timeout. ``accuracy_by_observations`` (max_observations,): by observations seen at
    the decision, 1 … max_observations.
    """

    name: str
    paced_by: str
    n_trials: int
    p_right: Proportions
    accuracy: Proportions
    accuracy_concordance: Proportions
    accuracy_after_switch: Proportions
    accuracy_after_switch_zero: Proportions
    steps_per_trial: MeanCurve
    outcomes: np.ndarray
    accuracy_by_observations: Proportions


@dataclasses.dataclass(frozen=True)
class BehaviourReport(Result):
    """Behaviour of an IBL agent and its Bayesian baselines on one analysis session.

    ``signed_contrasts`` (C,): the grid of every curve over contrast (−2.5 … 2.5 by default).
    ``agents``: the :class:`AgentBehaviour` of every agent, the RNN first (see the module
    docstring); ``report["observer"]`` picks one by name, :attr:`names` lists them.
    ``hidden_variance_explained`` (H,) or None: cumulative fraction of the RNN's hidden-state
    variance along its principal components (every step, blank steps included, as the reference).
    ``n_blocks``, ``n_parallel``: the session's blocks and the sessions they were split into;
    ``seed``: the stimuli seed; ``params``: the task parameters.
    """

    signed_contrasts: np.ndarray
    agents: list[AgentBehaviour]
    hidden_variance_explained: np.ndarray | None
    n_blocks: int
    n_parallel: int
    seed: int
    params: dict[str, Any]

    @property
    def names(self) -> list[str]:
        """The agents' names, in order."""
        return [a.name for a in self.agents]

    def __getitem__(self, name: str) -> AgentBehaviour:
        for agent in self.agents:
            if agent.name == name:
                return agent
        raise KeyError(f"no agent {name!r} in this report; agents: {', '.join(self.names)}")

    def headline(self, agent: str = "rnn") -> dict[str, Any]:
        """The headline numbers of one agent (see :meth:`to_json` for the keys)."""
        a = self[agent]
        c = self.signed_contrasts
        zero = np.flatnonzero(c == 0)
        magnitudes = np.unique(np.abs(c))
        by_magnitude = [a.accuracy.pooled(np.abs(c) == m) for m in magnitudes]
        steps = a.steps_per_trial
        largest = np.abs(c) == magnitudes[-1]
        recovery, recovery_trials = recovery_point(a.accuracy_after_switch)
        timeouts = int(a.outcomes[2].sum())
        return {
            "accuracy": a.accuracy.pooled(),
            "zero_contrast_concordant": a.accuracy_concordance.pooled((1, zero)),
            "zero_contrast_discordant": a.accuracy_concordance.pooled((0, zero)),
            "accuracy_by_abs_contrast": by_magnitude,
            "p_right_zero_contrast_left_block": a.p_right.pooled((0, zero)),
            "p_right_zero_contrast_right_block": a.p_right.pooled((1, zero)),
            "steps_per_trial": _pooled_mean(steps, slice(None)),
            "steps_per_trial_zero_contrast": _pooled_mean(steps, zero),
            "steps_per_trial_max_contrast": _pooled_mean(steps, largest),
            "timeout_rate": timeouts / a.n_trials if a.n_trials else math.nan,
            "first_trial_after_switch": a.accuracy_after_switch.pooled(0),
            "first_trial_after_switch_zero_contrast": a.accuracy_after_switch_zero.pooled(0),
            "accuracy_after_switch": a.accuracy_after_switch.rate[:10].tolist(),
            "recovered_accuracy": recovery,
            "recovery_trials": recovery_trials,
            "n_trials": a.n_trials,
        }

    def to_json(self, path: Any = None) -> dict[str, Any]:
        """Flat headline numbers, ``<agent>_<key>`` for every agent; written to ``path`` if given.

        Keys per agent: ``accuracy``; ``zero_contrast_concordant``/``_discordant``;
        ``accuracy_by_abs_contrast`` (list over |c| ascending); ``p_right_zero_contrast_left_block``
        /``_right_block``; ``steps_per_trial`` (all trials), ``_zero_contrast``, ``_max_contrast``;
        ``timeout_rate``; ``first_trial_after_switch`` (``_zero_contrast``); ``accuracy_after_switch``
        (trials 1–10); ``recovered_accuracy`` (pooled over trials 10–20 after a switch) and
        ``recovery_trials`` (the first trial k whose trials k … k+2 reach it within 0.02); ``n_trials``.
        Plus ``rnn_pc_cumulative`` (first 10 principal components) and ``rnn_pc2_cumulative``,
        ``n_blocks``, ``seed``, ``system`` = "ibl".
        """
        data: dict[str, Any] = {"system": "ibl", "n_blocks": self.n_blocks, "seed": self.seed}
        for agent in self.names:
            data.update({f"{agent}_{key}": value for key, value in self.headline(agent).items()})
        if self.hidden_variance_explained is not None:
            cumulative = self.hidden_variance_explained
            data["rnn_pc_cumulative"] = cumulative[:10].tolist()
            data["rnn_pc2_cumulative"] = float(cumulative[min(1, cumulative.size - 1)])
        if path is not None:
            write_json(path, data)
        return data

    def summary(self) -> str:
        """A few lines for a terminal: the headline numbers of every agent side by side."""
        rows = [
            ("accuracy", "accuracy", "{:.3f}"),
            ("c=0 concordant", "zero_contrast_concordant", "{:.3f}"),
            ("c=0 discordant", "zero_contrast_discordant", "{:.3f}"),
            ("steps/trial c=0", "steps_per_trial_zero_contrast", "{:.2f}"),
            ("steps/trial max c", "steps_per_trial_max_contrast", "{:.2f}"),
            ("timeouts", "timeout_rate", "{:.3f}"),
            ("1st trial after switch", "first_trial_after_switch", "{:.3f}"),
            ("recovered accuracy", "recovered_accuracy", "{:.3f}"),
            ("recovery (trials)", "recovery_trials", "{}"),
        ]
        heads = {agent: self.headline(agent) for agent in self.names}
        lines = [f"{'':<24}" + "".join(f"{agent:>13}" for agent in heads)]
        for label, key, fmt in rows:
            cells = "".join(f"{_fmt(fmt, heads[agent][key]):>13}" for agent in heads)
            lines.append(f"{label:<24}{cells}")
        if self.hidden_variance_explained is not None:
            pcs = ", ".join(f"{v:.3f}" for v in self.hidden_variance_explained[:3])
            lines.append(f"RNN cumulative PC variance (1, 2, 3): {pcs}")
        return "\n".join(lines)


def _fmt(fmt: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return fmt.format(value)


def wilson_interval(successes: np.ndarray, trials: np.ndarray, z: float = Z_95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of k successes in n trials (arrays of one shape); NaN where n = 0.

    centre = (k + z²/2) / (n + z²),  half-width = z √(k (n − k) / n + z²/4) / (n + z²).
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = (k + z**2 / 2) / (n + z**2)
        half = z * np.sqrt(np.maximum(k * (n - k) / n, 0.0) + z**2 / 4) / (n + z**2)
        low = np.where(n > 0, centre - half, np.nan)
        high = np.where(n > 0, centre + half, np.nan)
    return low, high


def recovery_point(after_switch: Proportions) -> tuple[float, int | None]:
    """(recovered accuracy, trials to recover) from accuracy by trial after a switch.

    The recovered accuracy is the accuracy pooled over trials :data:`RECOVERY_WINDOW` after a
    switch; the recovery takes k trials, k the first trial whose trials k … k+2 (pooled) come
    within :data:`RECOVERY_TOLERANCE` of it (None if none does).
    """
    first, last = RECOVERY_WINDOW
    recovered = after_switch.pooled(slice(first - 1, last))
    if math.isnan(recovered):
        return recovered, None
    for k in range(after_switch.trials.size - 2):
        running = after_switch.pooled(slice(k, k + 3))
        if running >= recovered - RECOVERY_TOLERANCE:
            return recovered, k + 1
    return recovered, None


def signed_contrast_grid(params: IBLTaskParams) -> np.ndarray:
    """The signed contrasts ±μ, sorted, without duplicates (11 values by default), float64."""
    contrasts = params.contrasts
    return np.unique(np.concatenate([-contrasts, contrasts]))


def agent_behaviour(
    name: str,
    record: SessionRecord,
    *,
    correct: np.ndarray | None = None,
    choice_side: np.ndarray | None = None,
    paced_by: str = "",
    max_after_switch: int | None = None,
) -> AgentBehaviour:
    """The behaviour curves of one agent from a session record.

    ``correct`` and ``choice_side`` (n_trials,) replace the record's own decisions — an observer
    paced by the recorded agent (its choice at each of the agent's decisions; it never times out).
    ``max_after_switch`` M: length of the after-switch curves (default ``max_trials_per_block``).
    """
    params = record.task_params
    trials = record.trials
    grid = signed_contrast_grid(params)
    c_index = _grid_index(grid, trials["signed_contrast"].to_numpy())
    own = correct is None
    if own != (choice_side is None):
        raise ValueError("give both correct and choice_side (a paced observer's decisions), or neither")
    if own:
        correct = trials["correct"].to_numpy()
        choice_side = trials["action_side"].to_numpy()
        outcome = trials["outcome"].cat.codes.to_numpy()
    else:
        correct = _checked("correct", correct, len(trials), bool)
        choice_side = _checked("choice_side", choice_side, len(trials), np.int64)
        outcome = np.where(correct, 0, 1)
    n_c = grid.size
    block_row = (trials["block_side"].to_numpy() > 0).astype(np.int64)
    concordant = trials["concordant"].to_numpy().astype(np.int64)
    chose = choice_side != 0
    m = params.max_trials_per_block if max_after_switch is None else max_after_switch
    since = trials["trials_since_block_switch"].to_numpy()
    after = (since >= 0) & (since < m)
    zero = trials["contrast"].to_numpy() == 0
    n_obs = trials["n_observations_at_decision"].to_numpy() - 1
    steps = trials["steps_in_trial"].to_numpy().astype(np.float64)
    return AgentBehaviour(
        name=name,
        paced_by=paced_by,
        n_trials=len(trials),
        p_right=_proportions(block_row[chose] * n_c + c_index[chose], choice_side[chose] > 0, (2, n_c)),
        accuracy=_proportions(c_index, correct, (n_c,)),
        accuracy_concordance=_proportions(concordant * n_c + c_index, correct, (2, n_c)),
        accuracy_after_switch=_proportions(since[after], correct[after], (m,)),
        accuracy_after_switch_zero=_proportions(since[after & zero], correct[after & zero], (m,)),
        steps_per_trial=_means(c_index, steps, n_c),
        outcomes=np.bincount(outcome * n_c + c_index, minlength=len(OUTCOMES) * n_c).reshape(len(OUTCOMES), n_c),
        accuracy_by_observations=_proportions(n_obs, correct, (params.max_observations,)),
    )


def evaluate_behaviour(
    model: torch.nn.Module,
    params: IBLTaskParams | None = None,
    *,
    n_blocks: int = DEFAULT_N_BLOCKS,
    seed: int = 0,
    observer: bool = True,
    actor: bool = True,
    n_parallel: int | None = None,
    progress: bool = False,
) -> BehaviourReport:
    """Run ``model`` closed loop on ``n_blocks`` blocks and compare it with the Bayesian baselines.

    ``model``: a :class:`~rnnscope.models.task_rnn.TaskRNN` (anything with ``policy()`` and a
    ``dtype``). ``params`` defaults to :class:`IBLTaskParams` (). ``observer`` adds the exact ideal
    observer paced by the model; ``actor`` adds the reference and exact Bayesian actors, closed loop
    on the same stimuli (same ``seed``). ``n_parallel`` splits the blocks over that many sessions
    run side by side (default: gcd(n_blocks, 20); the network then restarts from h_0 = 0
    n_parallel − 1 more times than in one long session, and those sessions' first blocks have no
    switch).
    """
    params = IBLTaskParams() if params is None else params
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or n_blocks < 1:
        raise ValueError(f"n_blocks must be a positive integer; got {n_blocks!r}")
    n_parallel = math.gcd(n_blocks, 20) if n_parallel is None else n_parallel
    session = dict(n_blocks=n_blocks, seed=seed, n_parallel=n_parallel, progress=progress)
    dtype = getattr(model, "dtype", torch.float32)
    device = next(model.parameters()).device
    record = run_analysis_session(model.policy(), params, record="hidden", dtype=dtype, device=device, **session)
    agents = [agent_behaviour("rnn", record)]
    if observer:
        seen = observe_session(record)
        agents.append(agent_behaviour("observer", record, correct=seen.correct, choice_side=seen.choice_side,
                                      paced_by="rnn"))
    if actor:
        for name, variant in (("actor", "reference"), ("actor_exact", "exact")):
            actor_record = run_analysis_session(BayesianActor(params, variant=variant), params, record="steps",
                                                dtype=torch.float64, **session)
            agents.append(agent_behaviour(name, actor_record))
    return BehaviourReport(
        signed_contrasts=signed_contrast_grid(params),
        agents=agents,
        hidden_variance_explained=cumulative_variance(record.hidden_states),
        n_blocks=n_blocks,
        n_parallel=n_parallel,
        seed=seed,
        params=params.to_dict(),
    )


def cumulative_variance(states: np.ndarray | None) -> np.ndarray | None:
    """Cumulative fraction of the variance of ``states`` (N, H) along its principal components, (H,)."""
    if states is None or len(states) < 2:
        return None
    x = np.asarray(states, dtype=np.float64)
    centred = x - x.mean(axis=0)
    eigenvalues = np.clip(np.linalg.eigvalsh(centred.T @ centred)[::-1], 0.0, None)
    total = eigenvalues.sum()
    return np.cumsum(eigenvalues) / total if total > 0 else np.full(eigenvalues.size, np.nan)


def _grid_index(grid: np.ndarray, values: np.ndarray) -> np.ndarray:
    index = np.searchsorted(grid, values)
    index = np.clip(index, 0, grid.size - 1)
    if not np.allclose(grid[index], values, rtol=0, atol=1e-9):
        raise ValueError("a signed contrast of the record is not on the task's contrast grid")
    return index


def _checked(name: str, values: np.ndarray, n: int, dtype: type) -> np.ndarray:
    array = np.asarray(values).astype(dtype)
    if array.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one value per trial); got {array.shape}")
    return array


def _proportions(cell: np.ndarray, success: np.ndarray, shape: tuple[int, ...]) -> Proportions:
    """Counts of trials and successes per cell (flat index into ``shape``)."""
    size = int(np.prod(shape))
    cell = np.asarray(cell, dtype=np.int64)
    trials = np.bincount(cell, minlength=size)[:size]
    successes = np.bincount(cell, weights=np.asarray(success, dtype=np.float64), minlength=size)[:size]
    return Proportions(successes=successes.round().astype(np.int64).reshape(shape), trials=trials.reshape(shape))


def _means(cell: np.ndarray, values: np.ndarray, size: int) -> MeanCurve:
    count = np.bincount(cell, minlength=size)
    total = np.bincount(cell, weights=values, minlength=size)
    squares = np.bincount(cell, weights=values**2, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        variance = np.where(count > 1, (squares - count * mean**2) / np.maximum(count - 1, 1), np.nan)
        sem = np.sqrt(np.maximum(variance, 0.0) / np.maximum(count, 1))
    return MeanCurve(mean=mean, sem=np.where(count > 1, sem, np.nan), count=count)


def _pooled_mean(curve: MeanCurve, index: Any) -> float:
    count = curve.count[index]
    n = int(np.sum(count))
    return float(np.nansum(curve.mean[index] * count) / n) if n else math.nan


def behaviour_table(report: BehaviourReport) -> pd.DataFrame:
    """Every agent's headline numbers as one table (agents as columns, scalar keys as rows)."""
    heads = {agent: report.headline(agent) for agent in report.names}
    keys = [k for k, v in heads[next(iter(heads))].items() if not isinstance(v, list)]
    return pd.DataFrame({agent: [heads[agent][k] for k in keys] for agent in heads}, index=keys)
