"""The IBL block/trial task: exact statistics, the batched environment, the session record."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from rnnscope.errors import SpecError
from rnnscope.tasks.ibl.blocks import (
    block_hazard,
    block_length_mean,
    block_length_pmf,
    contrast_probabilities,
    sample_block_lengths,
    sample_schedule,
    trial_side_probability,
)
from rnnscope.tasks.ibl.env import CHOOSE_LEFT, CHOOSE_RIGHT, NO_CHOICE, IBLEnv, choose, sample_stimuli
from rnnscope.tasks.ibl.params import IBLTaskParams
from rnnscope.tasks.ibl.rollout import run_analysis_session, run_session, torch_threads
from rnnscope.tasks.ibl.session import STEP_COLUMNS, SessionRecord

P = IBLTaskParams()


class ConstantPolicy:
    """Outputs the same probabilities (p_L, p_R) at every step."""

    def __init__(self, p_left: float, p_right: float) -> None:
        self.probs = torch.tensor([p_left, p_right])

    def reset(self, batch_size: int) -> None:
        self.batch_size = batch_size

    def act(self, x: torch.Tensor) -> torch.Tensor:
        return self.probs.to(x.dtype).expand(self.batch_size, 2)


class RandomPolicy:
    """p_R uniform on [0, 1] at every step, from its own generator; ``hidden`` is the input x."""

    def __init__(self, seed: int) -> None:
        self.gen = torch.Generator().manual_seed(seed)

    def reset(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.hidden = torch.zeros(batch_size, 3)

    def act(self, x: torch.Tensor) -> torch.Tensor:
        self.hidden = x.clone()
        p_right = torch.rand(self.batch_size, generator=self.gen, dtype=x.dtype)
        return torch.stack([1 - p_right, p_right], dim=1)


# ---------------------------------------------------------------- exact statistics


def test_block_length_pmf_is_the_truncated_geometric():
    pmf = block_length_pmf(P)
    k = np.arange(P.min_trials_per_block, P.max_trials_per_block + 1)
    geometric = stats.geom(P.block_geometric_p)
    expected = geometric.pmf(k) / (geometric.cdf(P.max_trials_per_block) - geometric.cdf(P.min_trials_per_block - 1))
    assert pmf.shape == (P.max_trials_per_block + 1,)
    np.testing.assert_allclose(pmf[k], expected, rtol=1e-12)
    assert np.all(pmf[: P.min_trials_per_block] == 0)
    assert pmf.sum() == pytest.approx(1.0, abs=1e-12)
    assert block_length_mean(P) == pytest.approx(float(k @ expected), rel=1e-12)
    assert block_length_mean(P) == pytest.approx(49.4, abs=0.05)


def test_block_hazard_values():
    hazard = block_hazard(P)
    p = P.block_geometric_p
    assert np.all(hazard[:20] == 0)
    assert hazard[20] == pytest.approx(p / (1 - (1 - p) ** 81), rel=1e-12)
    assert hazard[20] == pytest.approx(0.025, abs=0.001)
    assert hazard[50] == pytest.approx(0.031, abs=0.001)
    assert hazard[80] == pytest.approx(0.058, abs=0.001)
    assert hazard[99] == pytest.approx(1 / (2 - p), rel=1e-12)
    assert hazard[100] == 1.0
    # survival P(L >= k), k = 1..100, rebuilt from the hazard gives back the pmf
    survival = np.cumprod(np.concatenate([[1.0], 1 - hazard[1:-1]]))
    np.testing.assert_allclose(survival * hazard[1:], block_length_pmf(P)[1:], atol=1e-15)


def test_contrast_and_side_probabilities():
    np.testing.assert_array_equal(P.contrasts, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    np.testing.assert_allclose(contrast_probabilities(P), np.full(6, 1 / 6))
    assert trial_side_probability(P) == 0.8
    assert P.steps_per_trial == 12


# ---------------------------------------------------------------- sampling


def test_sampled_block_lengths_follow_the_pmf():
    lengths = sample_block_lengths(P, 400, 50, seed=0).numpy().ravel()
    assert lengths.min() >= 20 and lengths.max() <= 100
    pmf = block_length_pmf(P)[20:]
    edges = np.searchsorted(np.cumsum(pmf), np.linspace(0, 1, 11)[1:-1])  # ten bins of ~equal mass
    bins = np.split(np.arange(20, 101), edges + 1)
    observed = [np.isin(lengths, b).sum() for b in bins]
    expected = [pmf[b - 20].sum() * lengths.size for b in bins]
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    se = lengths.std() / np.sqrt(lengths.size)
    assert abs(lengths.mean() - block_length_mean(P)) < 4 * se


def test_schedule_blocks_alternate_and_trials_follow_blocks():
    schedule = sample_schedule(P, 3000, 3, seed=1)
    sides = schedule.block_sides.numpy()
    assert np.all(sides[:, 1:] == -sides[:, :-1])
    first_right = (sides[:, 0] == 1).mean()
    assert abs(first_right - 0.5) < 4 * np.sqrt(0.25 / 3000)
    valid = schedule.valid.numpy()
    np.testing.assert_array_equal(valid.sum(axis=1), schedule.n_trials.numpy())
    np.testing.assert_array_equal(schedule.n_trials.numpy(), schedule.block_lengths.numpy().sum(axis=1))
    block = schedule.trial_block.numpy()
    for j in range(3):  # each block index covers exactly its length, contiguously
        np.testing.assert_array_equal((block == j).sum(axis=1), schedule.block_lengths.numpy()[:, j])
    in_block = schedule.trial_in_block.numpy()
    assert np.all(in_block[valid][np.r_[True, np.diff(block[valid]) != 0]] == 0)

    trial_sides = schedule.trial_sides.numpy()[valid]
    block_side_per_trial = np.take_along_axis(sides, np.maximum(block, 0), axis=1)[valid]
    concordant = (trial_sides == block_side_per_trial).mean()
    n = trial_sides.size
    assert abs(concordant - 0.8) < 4 * np.sqrt(0.16 / n)
    counts = np.bincount(schedule.contrast_index.numpy()[valid], minlength=6)
    assert stats.chisquare(counts).pvalue > 1e-3
    np.testing.assert_array_equal(np.unique(schedule.contrasts.numpy()[valid]), P.contrasts)


def test_stimuli_blank_steps_and_observation_statistics():
    schedule = sample_schedule(P, 200, 4, seed=2)
    stimuli = sample_stimuli(P, schedule, seed=3, dtype=torch.float64).numpy()
    valid = schedule.valid.numpy()
    assert np.all(stimuli[:, :, :2] == 0)
    assert np.all(stimuli[~valid] == 0)
    obs = stimuli[:, :, 2:][valid]  # (trials, 10, 2)
    sides = schedule.trial_sides.numpy()[valid]
    contrasts = schedule.contrasts.numpy()[valid]
    for mu in P.contrasts:
        for side, signal, other in ((-1, 0, 1), (1, 1, 0)):
            sel = (contrasts == mu) & (sides == side)
            signal_values, other_values = obs[sel][:, :, signal].ravel(), obs[sel][:, :, other].ravel()
            se = 1 / np.sqrt(signal_values.size)
            assert abs(signal_values.mean() - mu) < 5 * se
            assert abs(other_values.mean()) < 5 * se
            assert abs(signal_values.var() - 1) < 5 * np.sqrt(2 / signal_values.size)
            assert abs(other_values.var() - 1) < 5 * np.sqrt(2 / other_values.size)


# ---------------------------------------------------------------- environment rules


def test_never_acting_policy_times_out_after_the_tenth_observation():
    record = run_session(ConstantPolicy(0.5, 0.5), n_sessions=3, blocks_per_session=1, seed=4)
    steps, trials = record.steps, record.trials
    assert np.all(trials["steps_in_trial"] == 12)
    assert np.all(trials["outcome"] == "timeout")
    assert np.all(trials["n_observations_at_decision"] == 10)
    k = steps["step_in_trial"].to_numpy()
    reward = steps["reward"].to_numpy()
    np.testing.assert_array_equal(reward[k < 2], 0.0)
    np.testing.assert_allclose(reward[(k >= 2) & (k < 11)], -0.05)
    np.testing.assert_array_equal(reward[k == 11], -1.0)
    np.testing.assert_array_equal(steps["timeout"], k == 11)
    np.testing.assert_array_equal(steps["is_observation"], k >= 2)
    prev = steps["prev_reward"].to_numpy()
    first_of_session = steps["step_in_session"].to_numpy() == 0
    np.testing.assert_array_equal(prev[(k == 0) & ~first_of_session], -1.0)
    np.testing.assert_array_equal(prev[first_of_session], 0.0)
    np.testing.assert_array_equal(prev[(k == 1) | (k == 2)], 0.0)
    np.testing.assert_allclose(prev[k >= 3], -0.05)
    assert np.all(steps[["left_obs", "right_obs"]].to_numpy()[k < 2] == 0)
    assert np.all(steps[["left_obs", "right_obs"]].to_numpy()[k >= 2] != 0)


def test_scripted_right_policy_has_exactly_known_behaviour():
    record = run_session(ConstantPolicy(0.05, 0.95), n_sessions=6, blocks_per_session=4, seed=5)
    trials = record.trials
    assert np.all(trials["steps_in_trial"] == 3)
    assert np.all(trials["n_observations_at_decision"] == 1)
    assert np.all(trials["action_side"] == 1)
    np.testing.assert_array_equal(trials["correct"], trials["trial_side"] == 1)
    np.testing.assert_array_equal(trials["reward"], np.where(trials["trial_side"] == 1, 1.0, -1.0))
    # accuracy by concordance is exact: right blocks are correct when concordant, left when discordant
    right_block = trials["block_side"] == 1
    np.testing.assert_array_equal(trials["correct"], right_block == trials["concordant"])
    summary = record.summary()
    assert summary.steps_per_trial == 3.0 and summary.action_rate == 1.0
    assert summary.accuracy == pytest.approx((trials["trial_side"] == 1).mean())
    assert abs(summary.accuracy - 0.5) < 4 * np.sqrt(0.25 / len(trials))


def test_action_rule_thresholds_the_larger_probability():
    probs = torch.tensor([[0.05, 0.95], [0.95, 0.05], [0.5, 0.5], [0.1, 0.9], [0.95, 0.95], [0.91, 0.93]])
    expected = [CHOOSE_RIGHT, CHOOSE_LEFT, NO_CHOICE, NO_CHOICE, CHOOSE_LEFT, CHOOSE_RIGHT]
    np.testing.assert_array_equal(choose(probs, 0.9), expected)
    np.testing.assert_array_equal(choose(probs, 0.5), [CHOOSE_RIGHT, CHOOSE_LEFT, NO_CHOICE, CHOOSE_RIGHT,
                                                       CHOOSE_LEFT, CHOOSE_RIGHT])


def test_feedback_is_the_next_steps_third_input():
    record = run_session(RandomPolicy(0), n_sessions=5, blocks_per_session=2, seed=6)
    steps = record.steps
    same_session = steps["session"].to_numpy()[1:] == steps["session"].to_numpy()[:-1]
    np.testing.assert_array_equal(
        steps["prev_reward"].to_numpy()[1:][same_session], steps["reward"].to_numpy()[:-1][same_session]
    )
    ends = steps["trial_end"].to_numpy()[:-1] & same_session
    np.testing.assert_array_equal(steps["step_in_trial"].to_numpy()[1:][ends], 0)
    assert np.all(np.abs(steps["prev_reward"].to_numpy()[1:][ends]) == 1.0)
    # actions follow the rule: observation step and max p > 0.9, on the argmax side
    p_max = steps[["p_left", "p_right"]].max(axis=1).to_numpy()
    np.testing.assert_array_equal(steps["action_taken"], steps["is_observation"] & (p_max > 0.9))
    acted = steps["action_taken"].to_numpy()
    side = np.where(steps["p_right"].to_numpy() > steps["p_left"].to_numpy(), 1, -1)
    np.testing.assert_array_equal(steps["action_side"].to_numpy()[acted], side[acted])
    np.testing.assert_array_equal(steps["correct_action"], acted & (steps["action_side"] == steps["trial_side"]))
    np.testing.assert_array_equal(steps["trial_end"], steps["action_taken"] | steps["timeout"])


def test_done_sessions_are_masked_and_sessions_end_at_different_steps():
    env = IBLEnv(n_sessions=4, blocks_per_session=1, seed=7)
    x = env.reset()
    policy = RandomPolicy(1)
    policy.reset(4)
    finished_at = np.full(4, -1)
    records = []
    while not env.all_done():
        out = env.step(policy.act(x))
        records.append(out)
        newly = out.done.numpy() & (finished_at < 0)
        finished_at[newly] = env.n_steps
        x = out.x
    for _ in range(3):  # stepping after the end keeps returning zeros
        out = env.step(policy.act(x))
        assert torch.all(out.x == 0) and torch.all(out.reward == 0)
        assert not out.is_observation.any() and not out.active.any() and out.done.all()
        assert torch.all(out.trial_side == 0)
        x = out.x
    assert len(set(finished_at)) == 4
    for t, out in enumerate(records):
        after = t >= finished_at
        assert torch.all(out.x[torch.from_numpy(after)] == 0)
        np.testing.assert_array_equal(out.active.numpy(), t < finished_at)
        assert not out.is_observation.numpy()[after].any()
    completed_trials = sum(out.trial_end.numpy().astype(int) for out in records)
    np.testing.assert_array_equal(completed_trials, env.schedule.n_trials.numpy())


def test_env_outputs_support_a_task_loss_through_the_policy():
    torch.manual_seed(0)
    readout = torch.nn.Linear(3, 2)
    env = IBLEnv(n_sessions=3, blocks_per_session=1, seed=8)
    x = env.reset()
    loss = torch.zeros(())
    by_hand = 0.0
    with torch_threads(1):
        while not env.all_done():
            probs = torch.softmax(readout(x), dim=1)
            out = env.step(probs)
            target = (out.trial_side.clamp(min=0)).long()
            p_target = probs.gather(1, target[:, None])[:, 0]
            loss = loss - (p_target * out.is_observation).sum()
            p_right, p_left = probs.detach()[:, 1].numpy(), probs.detach()[:, 0].numpy()
            side, observed = out.trial_side.numpy(), out.is_observation.numpy()
            by_hand -= float(np.sum(np.where(side > 0, p_right, p_left)[observed]))
            x = out.x
        loss.backward()
    assert float(loss.detach()) == pytest.approx(by_hand, rel=1e-5)
    assert readout.weight.grad is not None and torch.all(torch.isfinite(readout.weight.grad))
    assert readout.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- the session record


def test_record_has_exact_dtypes_and_counters():
    record = run_session(ConstantPolicy(0.05, 0.95), n_sessions=2, blocks_per_session=60, seed=9)
    steps = record.steps
    assert list(steps.columns) == list(STEP_COLUMNS)
    for name, dtype in STEP_COLUMNS.items():
        assert steps[name].dtype == np.dtype(dtype), name
    for session, group in steps.groupby("session"):
        np.testing.assert_array_equal(group["step_in_session"], np.arange(len(group)))
        assert group["step_in_session"].max() > 4096  # beyond float16's exact integers
    np.testing.assert_array_equal(steps["signed_contrast"], steps["contrast"] * steps["trial_side"])
    np.testing.assert_array_equal(steps["concordant"], steps["trial_side"] == steps["block_side"])
    assert set(steps["prev_reward"].unique()) == {0.0, 1.0, -1.0}
    trials = record.trials
    assert trials["outcome"].dtype == pd.CategoricalDtype(["correct", "incorrect", "timeout"])
    for name in ("session", "block_index", "trial_in_session", "n_observations_at_decision", "steps_in_trial",
                 "trials_since_block_switch", "previous_block_length"):
        assert trials[name].dtype == np.int64, name
    lengths = record.block_lengths
    np.testing.assert_array_equal(trials.groupby(["session", "block_index"]).size().to_numpy(), lengths.ravel())
    later = trials["block_index"] > 0
    np.testing.assert_array_equal(
        trials["previous_block_length"][later],
        lengths[trials["session"][later], trials["block_index"][later] - 1],
    )
    assert np.all(trials["previous_block_length"][~later] == -1)
    assert np.all(trials["trials_since_block_switch"][~later] == -1)
    np.testing.assert_array_equal(trials["trials_since_block_switch"][later], trials["trial_in_block"][later])


def test_hidden_states_are_aligned_with_the_step_table():
    record = run_session(RandomPolicy(2), n_sessions=3, blocks_per_session=1, seed=10, record="hidden")
    assert record.hidden_states.dtype == np.float32
    assert record.hidden_states.shape == (record.n_steps, 3)
    inputs = record.steps[["left_obs", "right_obs", "prev_reward"]].to_numpy(np.float32)
    np.testing.assert_array_equal(record.hidden_states, inputs)


def test_same_seed_same_stimuli_for_different_policies():
    a = run_session(ConstantPolicy(0.05, 0.95), n_sessions=2, blocks_per_session=2, seed=11)
    b = run_session(ConstantPolicy(0.5, 0.5), n_sessions=2, blocks_per_session=2, seed=11)
    first_a = a.steps[a.steps["step_in_trial"] == 2]
    first_b = b.steps[b.steps["step_in_trial"] == 2]
    np.testing.assert_array_equal(first_a["left_obs"], first_b["left_obs"])
    np.testing.assert_array_equal(first_a["trial_side"], first_b["trial_side"])
    again = run_session(ConstantPolicy(0.05, 0.95), n_sessions=2, blocks_per_session=2, seed=11)
    pd.testing.assert_frame_equal(a.steps, again.steps)
    other = run_session(ConstantPolicy(0.05, 0.95), n_sessions=2, blocks_per_session=2, seed=12)
    assert not np.array_equal(a.block_lengths, other.block_lengths)


def test_record_round_trip(tmp_path):
    record = run_session(RandomPolicy(3), n_sessions=2, blocks_per_session=1, seed=13, record="hidden")
    loaded = SessionRecord.load(record.save(tmp_path / "session"))
    pd.testing.assert_frame_equal(loaded.steps, record.steps)
    pd.testing.assert_frame_equal(loaded.trials, record.trials)
    np.testing.assert_array_equal(loaded.hidden_states, record.hidden_states)
    assert loaded.task_params == record.task_params


def test_accuracy_by_contrast_counts_every_trial():
    record = run_session(ConstantPolicy(0.05, 0.95), n_sessions=4, blocks_per_session=2, seed=14)
    table = record.accuracy_by_contrast()
    assert table["n_trials"].sum() == record.n_trials
    trials = record.trials
    row = table[(table["contrast"] == 0.0) & table["concordant"]].iloc[0]
    sel = (trials["contrast"] == 0.0) & trials["concordant"]
    assert row["accuracy"] == pytest.approx(trials["correct"][sel].mean())


def test_analysis_session_splits_blocks_over_parallel_sessions():
    threads = torch.get_num_threads()
    record = run_analysis_session(ConstantPolicy(0.05, 0.95), n_blocks=8, seed=15, record="steps", n_parallel=4)
    assert torch.get_num_threads() == threads  # the closed loop's one-thread setting is restored
    assert record.block_lengths.shape == (4, 2)
    assert record.trials["session"].nunique() == 4
    with pytest.raises(ValueError, match="must divide"):
        run_analysis_session(ConstantPolicy(0.05, 0.95), n_blocks=9, n_parallel=4)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"block_side_prob": 1.2}, "block_side_prob"),
        ({"first_block_right_prob": -0.1}, "first_block_right_prob"),
        ({"block_geometric_p": 0.0}, "block_geometric_p"),
        ({"min_trials_per_block": 30, "max_trials_per_block": 20}, "exceeds max_trials_per_block"),
        ({"blocks_per_session": 0}, "blocks_per_session"),
        ({"min_trials_per_block": 0}, "min_trials_per_block"),
        ({"n_contrasts": 0}, "n_contrasts"),
        ({"min_contrast": -1.0}, "contrasts"),
        ({"noise_std": 0.0}, "noise_std"),
        ({"action_threshold": 0.4}, "action_threshold"),
        ({"max_observations": 2.5}, "integer"),
        ({"reward_correct": -1.0}, "reward_correct"),
    ],
)
def test_bad_parameters_raise_spec_error(changes, message):
    with pytest.raises(SpecError, match=message):
        IBLTaskParams(**changes)


def test_bad_environment_use_raises():
    with pytest.raises(ValueError, match="n_sessions"):
        IBLEnv(n_sessions=0)
    env = IBLEnv(n_sessions=2, seed=0)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(torch.full((2, 2), 0.5))
    env.reset()
    with pytest.raises(ValueError, match="shape"):
        env.step(torch.full((3, 2), 0.5))
    with pytest.raises(ValueError, match="record"):
        run_session(ConstantPolicy(0.5, 0.5), record="everything")
    with pytest.raises(TypeError, match="hidden"):
        run_session(ConstantPolicy(0.5, 0.5), blocks_per_session=1, seed=0, record="hidden")
    with pytest.raises(SpecError, match="unknown"):
        IBLTaskParams.from_dict({"blocks": 3})
