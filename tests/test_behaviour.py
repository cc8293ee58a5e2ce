"""IBL behaviour metrics: scripted policies with known behaviour, independent recomputation, the report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from sklearn.decomposition import PCA

from rnnscope.evaluation.behaviour import (
    BehaviourReport,
    Proportions,
    agent_behaviour,
    cumulative_variance,
    evaluate_behaviour,
    recovery_point,
    signed_contrast_grid,
    wilson_interval,
)
from rnnscope.models.task_rnn import TaskRNN
from rnnscope.tasks.ibl import IBLTaskParams, observe_session, run_session

P = IBLTaskParams()
GRID = signed_contrast_grid(P)


class SignPolicy:
    """Acts at the first observation on the sign of d = o^R − o^L (ignores every prior)."""

    def reset(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def act(self, x: torch.Tensor) -> torch.Tensor:
        right = (x[:, 1] > x[:, 0]).to(x.dtype)
        return torch.stack([1 - right, right], dim=1)


class UndecidedPolicy:
    """Never acts: (0.5, 0.5) at every step, so every trial times out."""

    def reset(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def act(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((self.batch_size, 2), 0.5, dtype=x.dtype)


def _by_cell(frame: pd.DataFrame, keys: list[str], value: str, shape: tuple[int, ...], index) -> tuple[np.ndarray, np.ndarray]:
    """(successes, trials) of ``value`` per cell of ``keys``, placed with ``index(group key)``."""
    successes, trials = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64)
    for key, group in frame.groupby(keys):
        successes[index(key)] = int(group[value].sum())
        trials[index(key)] = len(group)
    return successes, trials


def _assert_counts(p: Proportions, expected: tuple[np.ndarray, np.ndarray]) -> None:
    np.testing.assert_array_equal(p.successes, expected[0])
    np.testing.assert_array_equal(p.trials, expected[1])


def _contrast_cell(value: float) -> int:
    return int(np.flatnonzero(np.isclose(GRID, value))[0])


def test_every_curve_equals_an_independent_pandas_count():
    record = run_session(SignPolicy(), P, n_sessions=4, blocks_per_session=6, seed=0)
    behaviour = agent_behaviour("sign", record)
    trials = record.trials.copy()
    trials["right"] = trials["action_side"] > 0
    trials["c"] = [_contrast_cell(v) for v in trials["signed_contrast"]]
    chose = trials[trials["action_side"] != 0]
    _assert_counts(behaviour.p_right, _by_cell(chose, ["block_side", "c"], "right", (2, 11),
                                               lambda k: (int(k[0] > 0), k[1])))
    _assert_counts(behaviour.accuracy, _by_cell(trials, ["c"], "correct", (11,), lambda k: k[0]))
    _assert_counts(behaviour.accuracy_concordance, _by_cell(trials, ["concordant", "c"], "correct", (2, 11),
                                                            lambda k: (int(k[0]), k[1])))
    after = trials[trials["trials_since_block_switch"] >= 0]
    _assert_counts(behaviour.accuracy_after_switch,
                   _by_cell(after, ["trials_since_block_switch"], "correct", (100,), lambda k: k[0]))
    zero = after[after["contrast"] == 0]
    _assert_counts(behaviour.accuracy_after_switch_zero,
                   _by_cell(zero, ["trials_since_block_switch"], "correct", (100,), lambda k: k[0]))
    outcomes = pd.crosstab(trials["outcome"], trials["c"]).reindex(columns=range(11), fill_value=0)
    np.testing.assert_array_equal(behaviour.outcomes, outcomes.reindex(["correct", "incorrect", "timeout"],
                                                                       fill_value=0).to_numpy())
    steps = trials.groupby("c")["steps_in_trial"]
    np.testing.assert_allclose(behaviour.steps_per_trial.mean, steps.mean().to_numpy())
    np.testing.assert_allclose(behaviour.steps_per_trial.sem, steps.sem().to_numpy(), atol=1e-12)
    assert behaviour.n_trials == len(trials) and behaviour.paced_by == ""


def test_the_sign_policy_has_its_analytic_accuracy():
    """Deciding on the first observation's sign is correct with probability Φ(μ/√2) (d ~ N(±μ, 2))."""
    record = run_session(SignPolicy(), P, n_sessions=20, blocks_per_session=10, seed=1)
    behaviour = agent_behaviour("sign", record)
    exact = stats.norm.cdf(np.abs(GRID) / np.sqrt(2.0))
    rate, n = behaviour.accuracy.rate, behaviour.accuracy.trials
    assert np.all(np.abs(rate - exact) < 4.0 * np.sqrt(exact * (1 - exact) / n))
    np.testing.assert_array_equal(behaviour.steps_per_trial.mean, 3.0)  # 2 blank steps + 1 observation
    np.testing.assert_array_equal(behaviour.steps_per_trial.sem, 0.0)
    assert behaviour.outcomes[2].sum() == 0
    np.testing.assert_array_equal(behaviour.accuracy_by_observations.trials[1:], 0)
    assert behaviour.accuracy_by_observations.trials[0] == behaviour.n_trials
    # the choice ignores the block: P(right) at c = 0 is 1/2 in both block sides
    zero = _contrast_cell(0.0)
    p0, n0 = behaviour.p_right.rate[:, zero], behaviour.p_right.trials[:, zero]
    assert np.all(np.abs(p0 - 0.5) < 4.0 * np.sqrt(0.25 / n0))


def test_a_policy_that_never_acts_times_out_everywhere():
    record = run_session(UndecidedPolicy(), P, n_sessions=2, blocks_per_session=2, seed=2)
    behaviour = agent_behaviour("undecided", record)
    n = behaviour.n_trials
    assert behaviour.outcomes[2].sum() == n and behaviour.outcomes[:2].sum() == 0
    assert behaviour.accuracy.successes.sum() == 0 and behaviour.accuracy.trials.sum() == n
    assert behaviour.p_right.trials.sum() == 0 and np.isnan(behaviour.p_right.rate).all()
    np.testing.assert_array_equal(behaviour.steps_per_trial.mean, 12.0)
    assert behaviour.accuracy_by_observations.trials[9] == n


def test_a_paced_observer_uses_its_own_choices():
    record = run_session(SignPolicy(), P, n_sessions=3, blocks_per_session=4, seed=3)
    seen = observe_session(record)
    behaviour = agent_behaviour("observer", record, correct=seen.correct, choice_side=seen.choice_side,
                                paced_by="sign")
    trials = record.trials.assign(right=seen.choice_side > 0, correct=seen.correct,
                                  c=[_contrast_cell(v) for v in record.trials["signed_contrast"]])
    _assert_counts(behaviour.p_right, _by_cell(trials, ["block_side", "c"], "right", (2, 11),
                                               lambda k: (int(k[0] > 0), k[1])))
    _assert_counts(behaviour.accuracy, _by_cell(trials, ["c"], "correct", (11,), lambda k: k[0]))
    assert behaviour.outcomes[2].sum() == 0 and behaviour.paced_by == "sign"
    with pytest.raises(ValueError, match="both"):
        agent_behaviour("observer", record, correct=seen.correct)
    with pytest.raises(ValueError, match="shape"):
        agent_behaviour("observer", record, correct=seen.correct[:-1], choice_side=seen.choice_side[:-1])


def test_wilson_interval_known_values():
    low, high = wilson_interval(np.array([5, 0, 10, 0]), np.array([10, 10, 10, 0]))
    np.testing.assert_allclose(low[:3], [0.236593, 0.0, 0.722467], atol=1e-6)
    np.testing.assert_allclose(high[:3], [0.763407, 0.277533, 1.0], atol=1e-6)
    assert np.isnan(low[3]) and np.isnan(high[3])
    k, n = np.arange(0, 31), np.full(31, 30)
    low, high = wilson_interval(k, n)
    np.testing.assert_allclose(low, 1 - high[::-1], atol=1e-12)  # symmetric in k ↔ n − k


def test_recovery_point_on_a_planted_curve():
    rates = np.array([0.6, 0.7, 0.8, 0.85, 0.9, 0.9] + [0.9] * 30)
    curve = Proportions(successes=np.round(rates * 100).astype(np.int64), trials=np.full(rates.size, 100))
    recovered, trials = recovery_point(curve)
    assert recovered == pytest.approx(0.9)
    assert trials == 4  # trials 4–6 pool to 0.883 ≥ 0.9 − 0.02; trials 3–5 to 0.85
    assert curve.pooled(slice(0, 2)) == pytest.approx(0.65)


def test_cumulative_variance_matches_sklearn():
    x = np.random.default_rng(0).normal(size=(400, 6)) @ np.random.default_rng(1).normal(size=(6, 6))
    np.testing.assert_allclose(cumulative_variance(x), np.cumsum(PCA().fit(x).explained_variance_ratio_), rtol=1e-10)


@pytest.fixture(scope="module")
def report() -> BehaviourReport:
    model = TaskRNN(3, 8, 2, seed=0)
    with torch.no_grad():
        model.weight_out.mul_(15.0)
    return evaluate_behaviour(model, P, n_blocks=8, seed=4, n_parallel=4)


def test_all_agents_see_the_same_trials(report):
    assert report.names == ["rnn", "observer", "actor", "actor_exact"]
    rnn = report["rnn"]
    for agent in report.agents:
        # common random numbers: the same schedule, so the same trials per signed contrast and block
        np.testing.assert_array_equal(agent.accuracy.trials, rnn.accuracy.trials)
        np.testing.assert_array_equal(agent.accuracy_after_switch.trials, rnn.accuracy_after_switch.trials)
    assert report["observer"].paced_by == "rnn" and report.n_parallel == 4
    assert report.hidden_variance_explained.shape == (8,)
    assert report.hidden_variance_explained[-1] == pytest.approx(1.0)
    with pytest.raises(KeyError, match="agents: rnn"):
        report["mouse"]


def test_report_round_trip_and_flat_metrics(report, tmp_path):
    report.save(tmp_path / "behaviour")
    loaded = BehaviourReport.load(tmp_path / "behaviour")
    assert loaded.names == report.names
    for a, b in zip(report.agents, loaded.agents):
        np.testing.assert_array_equal(a.p_right.successes, b.p_right.successes)
        np.testing.assert_array_equal(a.outcomes, b.outcomes)
    metrics = report.to_json(tmp_path / "metrics.json")
    head = report.headline("rnn")
    assert metrics["rnn_zero_contrast_concordant"] == head["zero_contrast_concordant"]
    assert metrics["actor_accuracy"] == report.headline("actor")["accuracy"]
    zero = _contrast_cell(0.0)
    assert head["zero_contrast_discordant"] == report["rnn"].accuracy_concordance.pooled((0, zero))
    assert metrics["rnn_pc2_cumulative"] == pytest.approx(report.hidden_variance_explained[1])
    assert "actor_exact" in report.summary()


def test_figures_draw_the_report_numbers(report):
    from rnnscope.plots.behaviour import FIGURES, MIN_TRIALS_SHOWN, plot_psychometric

    figure = plot_psychometric(report)
    right_block = figure.axes[0].lines[0].get_ydata()  # the RNN's right-block curve is drawn first
    p = report["rnn"].p_right
    expected = np.where(p.trials[1] >= MIN_TRIALS_SHOWN, p.rate[1], np.nan)
    np.testing.assert_array_equal(right_block, expected)
    assert set(FIGURES) == {"psychometric", "accuracy_concordance", "after_switch", "chronometric", "outcomes",
                            "observations", "variance_explained"}
