"""IBL training: the two losses, the rollout + re-run gradient, the trainer, resume, configurations."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from rnnscope.config import apply_overrides, load_config, preset
from rnnscope.config.ibl import IBLRunConfig, IBLTaskConfig
from rnnscope.config.overrides import parse_run_config
from rnnscope.errors import ConfigError, TrainingDiverged
from rnnscope.models.checkpoints import load_checkpoint
from rnnscope.models.task_rnn import TaskRNN
from rnnscope.tasks.ibl import IBLEnv, IBLTaskParams, run_session
from rnnscope.training.api import train_run
from rnnscope.training.history import TrainHistory
from rnnscope.training.ibl_losses import cross_entropy_per_step, neg_prob_per_step, session_loss
from rnnscope.training.ibl_trainer import (
    IBLTrainHistory,
    behaviour_sums,
    initial_model,
    rollout,
    train_ibl_run,
    validate,
    validation_seed,
    variance_fractions,
    zero_contrast_accuracy,
)
from rnnscope.training.runs import RunDir

SMALL_TASK = IBLTaskParams(min_trials_per_block=4, max_trials_per_block=8, blocks_per_session=2, max_observations=4)

TINY = {
    "task.min_trials_per_block": 4, "task.max_trials_per_block": 8, "task.blocks_per_session": 2,
    "model.hidden_size": 8, "training.grad_steps": 20, "training.sessions_per_step": 8,
    "training.optimizer": "adam", "training.learning_rate": 0.05, "training.log_every": 5,
    "training.val_every": 10, "training.val_sessions": 16, "training.checkpoint_every": 10,
}


def tiny_config(**changes) -> IBLRunConfig:
    return apply_overrides(IBLRunConfig(name="tiny"), {**TINY, **changes})


def new_run(tmp_path, config: IBLRunConfig, name: str = "run") -> RunDir:
    run = RunDir(tmp_path / name)
    run.path.mkdir(parents=True)
    run.write_config(config)
    return run


# ------------------------------------------------------------------------------------- losses


def test_per_step_gradients_match_their_closed_forms():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    target = torch.randint(0, 2, (50,), generator=gen)
    p = torch.softmax(logits.detach(), dim=-1)
    onehot = torch.nn.functional.one_hot(target, 2).to(torch.float64)
    p_c = (p * onehot).sum(dim=-1, keepdim=True)

    (grad_np,) = torch.autograd.grad(neg_prob_per_step(logits, target).sum(), logits)
    torch.testing.assert_close(grad_np, -p_c * (onehot - p))
    (grad_ce,) = torch.autograd.grad(cross_entropy_per_step(logits, target).sum(), logits)
    torch.testing.assert_close(grad_ce, p - onehot)
    torch.testing.assert_close(cross_entropy_per_step(logits, target),
                               torch.nn.functional.cross_entropy(logits, target, reduction="none"))
    # the −p loss is the reference's NLLLoss applied to probabilities
    torch.testing.assert_close(neg_prob_per_step(logits, target).mean(),
                               torch.nn.functional.nll_loss(torch.softmax(logits, -1), target))


def test_session_loss_sums_observation_steps_and_divides_by_all_steps():
    logits = torch.tensor([[[0.0, 1.0], [2.0, 0.0]],
                           [[1.0, 1.0], [0.0, 3.0]],
                           [[0.5, -0.5], [1.0, 0.0]],
                           [[0.0, 0.0], [0.0, 0.0]]], dtype=torch.float64)  # (T=4, B=2, 2)
    side = torch.tensor([[1, -1], [1, 1], [-1, 1], [0, 0]])
    obs = torch.tensor([[False, True], [True, True], [True, False], [False, False]])
    n_steps = torch.tensor([4, 3])
    p = torch.softmax(logits, dim=-1).numpy()
    target = (side.numpy() > 0).astype(int)
    p_correct = np.take_along_axis(p, target[..., None], axis=-1)[..., 0]
    mask = obs.numpy()
    for name, per_step in (("neg_prob", -p_correct), ("cross_entropy", -np.log(p_correct))):
        expected = np.mean([(per_step[:, b] * mask[:, b]).sum() / n_steps[b].item() for b in range(2)])
        assert float(session_loss(logits, side, obs, n_steps, name)) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="loss must be one of"):
        session_loss(logits, side, obs, n_steps, "mse")
    with pytest.raises(ValueError, match="shape"):
        session_loss(logits, side[:3], obs, n_steps)


@pytest.mark.parametrize("loss", ["neg_prob", "cross_entropy"])
def test_gradcheck_of_the_session_loss_through_the_fused_recurrence(loss):
    model = TaskRNN(3, 3, 2, dtype=torch.float64, seed=0)
    gen = torch.Generator().manual_seed(1)
    inputs = torch.randn(2, 6, 3, dtype=torch.float64, generator=gen)
    side_tb = torch.where(torch.rand(6, 2, generator=gen) < 0.5, -1, 1)
    obs_tb = torch.rand(6, 2, generator=gen) < 0.7
    n_steps = torch.tensor([6, 5])
    names = [name for name, _ in model.named_parameters()]

    def loss_of(*weights):
        out = torch.func.functional_call(model, dict(zip(names, weights)), (inputs,))
        return session_loss(out.logits.transpose(0, 1), side_tb, obs_tb, n_steps, loss)

    weights = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())
    assert torch.autograd.gradcheck(loss_of, weights, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("loss", ["neg_prob", "cross_entropy"])
def test_rerun_gradient_equals_the_gradient_of_a_closed_loop_with_autograd(loss):
    """The trainer's rollout (no grad) + re-run equals backpropagating through the closed loop itself."""
    model = TaskRNN(3, 6, 2, dtype=torch.float64, seed=2)
    with torch.no_grad():
        model.weight_out.mul_(15.0)  # acts at some steps, so the trials have different lengths
    env = IBLEnv(SMALL_TASK, 4, seed=3, dtype=torch.float64)
    x = env.reset()
    h = torch.zeros(4, 6, dtype=torch.float64)
    logits, sides, observations, active = [], [], [], []
    while not env.all_done():
        h = model.step(h, x)
        z = model.readout(h)
        out = env.step(torch.softmax(z, dim=1))
        logits.append(z)
        sides.append(out.trial_side)
        observations.append(out.is_observation)
        active.append(out.active)
        x = out.x
    n_steps = torch.stack(active).sum(dim=0)
    direct = session_loss(torch.stack(logits), torch.stack(sides), torch.stack(observations), n_steps, loss)
    direct_grads = torch.autograd.grad(direct, list(model.parameters()))

    ro = rollout(model, IBLEnv(SMALL_TASK, 4, seed=3, dtype=torch.float64))
    assert torch.equal(ro.n_steps, n_steps) and bool(ro.action_taken.any()) and bool((ro.n_steps > 0).all())
    rerun = model(ro.inputs.transpose(0, 1)).logits.transpose(0, 1)
    replayed = session_loss(rerun, ro.trial_side, ro.is_observation, ro.n_steps, loss)
    replayed_grads = torch.autograd.grad(replayed, list(model.parameters()))
    assert float(replayed.detach()) == pytest.approx(float(direct.detach()), rel=1e-12)
    for a, b in zip(direct_grads, replayed_grads):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


# ------------------------------------------------------------------------------------ rollout


def test_rollout_counts_equal_the_session_record_of_the_same_sessions():
    model = TaskRNN(3, 6, 2, seed=4)
    with torch.no_grad():
        model.weight_out.mul_(15.0)
    env = IBLEnv(SMALL_TASK, 5, seed=7)
    ro = rollout(model, env, record_hidden=True)
    record = run_session(model.policy(), SMALL_TASK, n_sessions=5, seed=7, record="hidden")
    trials = record.trials
    counts = [len(trials), trials["action_taken"].sum(), trials["correct"].sum(), record.n_steps,
              record.step_columns["reward"].sum()]
    np.testing.assert_allclose(behaviour_sums(ro).numpy(), counts, rtol=1e-6)
    np.testing.assert_array_equal(ro.n_steps.numpy(), np.bincount(record.step_columns["session"]))
    session_major = ro.hidden.transpose(0, 1)[ro.active.T]
    np.testing.assert_allclose(session_major.numpy(), record.hidden_states, atol=1e-6)
    zero = trials[trials["contrast"] == 0]
    expected = [zero.loc[zero["concordant"] == flag, "correct"].mean() for flag in (True, False)]
    np.testing.assert_allclose(zero_contrast_accuracy(ro, env), expected)


def test_variance_fractions_match_sklearn_pca():
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(30, 4, 5, generator=gen) @ torch.randn(5, 5, generator=gen)
    active = torch.rand(30, 4, generator=gen) < 0.8
    expected = PCA().fit(hidden[active].numpy().astype(np.float64)).explained_variance_ratio_[:4]
    np.testing.assert_allclose(variance_fractions(hidden, active), expected, rtol=1e-6)
    assert np.isnan(variance_fractions(hidden[..., :2], active)[2:]).all()


# ------------------------------------------------------------------------------------ trainer


def test_training_improves_the_reward_rate_and_writes_the_run(tmp_path):
    config = tiny_config()
    before = validate(initial_model(config), config.params, config.training, validation_seed(config))
    run = new_run(tmp_path, config)
    rows = []
    train_run(config, run, progress=False, tensorboard=True, on_epoch_end=rows.append)
    after = validate(TaskRNN.from_config(config.model), config.params, config.training, validation_seed(config))
    model, metadata = load_checkpoint(run.best_checkpoint)
    best = validate(model, config.params, config.training, validation_seed(config))
    # the untrained network never acts: every trial times out
    assert before["action_rate"] == 0 and before["reward_per_step"] < 0
    assert best["reward_per_step"] > 0.1 and best["accuracy"] > 0.7 and best["action_rate"] > 0.95
    assert after["reward_per_step"] < best["reward_per_step"]  # a fresh network is not the trained one
    assert metadata["select_by"] == "reward_per_step" and metadata["validation"] == pytest.approx(best)
    assert metadata["task"]["min_trials_per_block"] == 4
    validated = [row for row in rows if np.isfinite(row["val_reward_per_step"])]
    assert metadata["step"] == max(validated, key=lambda row: row["val_reward_per_step"])["step"]

    history = IBLTrainHistory.read_csv(run.history_file)
    np.testing.assert_array_equal(history.step, [5, 10, 15, 20])
    np.testing.assert_array_equal(np.isfinite(history["val_accuracy"]), history.step % 10 == 0)
    np.testing.assert_allclose(history["accuracy"], [row["accuracy"] for row in rows])
    legacy = TrainHistory.read_csv(run.history_file)  # the generic reader still works
    np.testing.assert_array_equal(legacy.epoch, history.step)
    assert list(run.tensorboard.iterdir())


def _weights(path):
    model, _ = load_checkpoint(path)
    return model.state_dict()


def test_resume_continues_bit_for_bit(tmp_path):
    config = tiny_config()
    whole = new_run(tmp_path, config, "whole")
    train_ibl_run(config, whole, progress=False, tensorboard=False)

    class Interrupt(Exception):
        pass

    def stop_at_15(row):  # after the resume point of step 10 and one more history row
        if row["step"] == 15:
            raise Interrupt

    parts = new_run(tmp_path, config, "parts")
    with pytest.raises(Interrupt):
        train_ibl_run(config, parts, progress=False, tensorboard=False, on_epoch_end=stop_at_15)
    summary = train_ibl_run(config, parts, resume=True, progress=False, tensorboard=False)
    assert summary.steps_run == 20
    a, b = IBLTrainHistory.read_csv(whole.history_file), IBLTrainHistory.read_csv(parts.history_file)
    for column, values in a.values.items():
        if column != "seconds":
            np.testing.assert_array_equal(values, b[column], err_msg=column)
    for name, value in _weights(whole.best_checkpoint).items():
        assert torch.equal(value, _weights(parts.best_checkpoint)[name]), name
    from safetensors.torch import load_file

    last_a, last_b = load_file(str(whole.last_state)), load_file(str(parts.last_state))
    assert last_a.keys() == last_b.keys()
    for key in last_a:
        assert torch.equal(last_a[key], last_b[key]), key


def test_divergence_raises_training_diverged(tmp_path, monkeypatch):
    from rnnscope.training import ibl_trainer

    def poisoned(config):
        model = initial_model(config)
        with torch.no_grad():
            model.weight_out[0, 0] = float("nan")
        return model

    monkeypatch.setattr(ibl_trainer, "initial_model", poisoned)
    config = tiny_config()
    run = new_run(tmp_path, config)
    with pytest.raises(TrainingDiverged, match="non-finite loss.*learning_rate"):
        train_ibl_run(config, run, progress=False, tensorboard=False)
    assert not run.best_checkpoint.exists()


# ----------------------------------------------------------------------------- configurations


def test_task_config_mirrors_the_task_parameters():
    fields = {f.name: f.default for f in dataclasses.fields(IBLTaskParams)}
    config = IBLTaskConfig()
    assert {name: getattr(config, name) for name in fields} == fields
    assert config.build() == IBLTaskParams()
    assert IBLTaskConfig(block_side_prob=0.7, max_observations=5).build() == IBLTaskParams(
        block_side_prob=0.7, max_observations=5)


@pytest.mark.parametrize("key, value, match", [
    ("task.min_trials_per_block", 200, "min_trials_per_block"),
    ("task.action_threshold", 0.3, "action_threshold"),
    ("training.val_every", 15, "multiple of log_every"),
    ("training.optimizer", "rmsprop", "optimizer"),
    ("training.loss", "mse", "loss"),
    ("model.cell", "lstm", "cell"),
    ("model.input_size", 4, "3 inputs"),
    ("training.sessions_per_step", 0, "sessions_per_step"),
    ("training.grad_step", 3, "valid keys"),
])
def test_bad_configs_raise_config_error(key, value, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(preset("ibl"), {key: value})


def test_presets_carry_the_recipes():
    fast, reference, small = preset("ibl"), preset("ibl-reference"), preset("ibl-2unit")
    for config in (fast, reference, small):
        assert config.system == "ibl" and config.training.loss == "neg_prob"
        assert config.model.cell == "tanh" and config.task.build() == IBLTaskParams()
        assert parse_run_config(config.model_dump(mode="json")) == config
    t = reference.training
    assert (t.optimizer, t.learning_rate, t.momentum, t.sessions_per_step, t.grad_steps) == ("sgd", 1e-3, 0.1, 1, 100_001)
    assert reference.model.dtype == "float64" and reference.seed == 1
    t = fast.training  # the reference's recipe batched: lr × B, steps / B
    assert t.optimizer == "sgd" and t.momentum == 0.1
    assert t.learning_rate == pytest.approx(1e-3 * t.sessions_per_step)
    assert abs(t.grad_steps * t.sessions_per_step - 100_001) < t.sessions_per_step
    assert fast.model.hidden_size == 50 and small.model.hidden_size == 2
    assert load_config("ibl", ["training.grad_steps=10"]).training.grad_steps == 10
