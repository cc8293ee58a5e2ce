"""The IBL task RNN: its maps against torch's own RNN/GRU, closed loop vs sequence, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnscope.config.ibl import TaskRNNConfig
from rnnscope.errors import ConfigError
from rnnscope.models.base import RecurrentModel
from rnnscope.models.checkpoints import load, load_checkpoint, save_checkpoint
from rnnscope.models.task_rnn import TaskRNN
from rnnscope.tasks.ibl import IBLTaskParams, run_session

SMALL_TASK = IBLTaskParams(min_trials_per_block=3, max_trials_per_block=5, blocks_per_session=2, max_observations=4)


def _torch_rnn_like(model: TaskRNN) -> torch.nn.RNN:
    """``torch.nn.RNN`` with the model's weights (its two biases: the model's bias and zeros)."""
    rnn = torch.nn.RNN(model.input_size, model.hidden_size, nonlinearity=model.cell).to(model.dtype)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(model.weight_ih)
        rnn.weight_hh_l0.copy_(model.weight_hh)
        rnn.bias_ih_l0.copy_(model.bias)
        rnn.bias_hh_l0.zero_()
    return rnn


@pytest.mark.parametrize("cell", ["tanh", "relu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_equals_torch_rnn_and_linear_readout(cell, dtype):
    model = TaskRNN(3, 7, 2, cell=cell, dtype=dtype, seed=0)
    x = torch.randn(4, 9, 3, dtype=dtype, generator=torch.Generator().manual_seed(1))
    h0 = torch.randn(4, 7, dtype=dtype, generator=torch.Generator().manual_seed(2))
    out = model(x, h0)
    expected, _ = _torch_rnn_like(model)(x.transpose(0, 1), h0[None])
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(out.hidden, expected.transpose(0, 1), atol=tol, rtol=0)
    logits = expected.transpose(0, 1) @ model.weight_out.T + model.bias_out
    torch.testing.assert_close(out.logits, logits, atol=tol, rtol=0)


@pytest.mark.parametrize("cell", ["tanh", "relu", "gru"])
def test_closed_loop_policy_reproduces_the_sequence_run(cell):
    model = TaskRNN(3, 6, 2, cell=cell, seed=3)
    x = torch.randn(5, 11, 3, generator=torch.Generator().manual_seed(4))
    out = model(x)
    policy = model.policy()
    policy.reset(5)
    states, probs = [], []
    for t in range(11):
        probs.append(policy.act(x[:, t]))
        states.append(policy.hidden)
    torch.testing.assert_close(torch.stack(states, dim=1), out.hidden, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.stack(probs, dim=1), torch.softmax(out.logits, dim=-1), atol=1e-6, rtol=0)


def test_gru_matches_torch_gru_cell():
    model = TaskRNN(3, 5, 2, cell="gru", seed=0)
    cell = torch.nn.GRUCell(3, 5)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(getattr(model.gru, f"{name}_l0"))
    h, x = torch.randn(4, 5), torch.randn(4, 3)
    torch.testing.assert_close(model.step(h, x), cell(x, h), atol=1e-6, rtol=0)
    assert model.vanilla_dynamics() is None


def test_vanilla_dynamics_and_protocol():
    model = TaskRNN(seed=0)
    assert isinstance(model, RecurrentModel)
    assert model.system == "ibl"
    assert (model.input_size, model.hidden_size, model.output_size) == (3, 50, 2)
    dynamics = model.vanilla_dynamics()
    h, x = torch.rand(3, 50) * 2 - 1, torch.randn(3, 3)
    with torch.no_grad():
        torch.testing.assert_close(dynamics.step(h, x), model.step(h, x), atol=1e-6, rtol=0)
        torch.testing.assert_close(model.step(h), model.step(h, torch.zeros(3, 3)))
        torch.testing.assert_close(model.readout(h), h @ dynamics.W_out.T + dynamics.b_out)
    assert dynamics.nonlinearity == "tanh"


def test_initialisation_is_seeded_and_matches_torch_bounds():
    a, b, c = TaskRNN(seed=5), TaskRNN(seed=5), TaskRNN(seed=6)
    for (name, wa), wb, wc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(wa, wb), name
        assert not torch.equal(wa, wc), name
    bound = 1 / np.sqrt(50)
    largest = float(a.weight_hh.detach().abs().max())
    assert 0.9 * bound < largest <= bound and float(a.bias.detach().abs().max()) <= 2 * bound


def test_config_round_trip_and_bad_configs():
    model = TaskRNN(3, 4, 2, cell="relu", readout_bias=False, dtype=torch.float64, seed=0)
    config = model.to_config()
    assert config == TaskRNNConfig(hidden_size=4, cell="relu", readout_bias=False, dtype="float64")
    rebuilt = TaskRNN.from_config(config.model_dump())
    assert rebuilt.to_config() == config and rebuilt.dtype == torch.float64 and rebuilt.bias_out is None
    with pytest.raises(ConfigError, match="cell"):
        TaskRNN.from_config({"cell": "lstm"})
    with pytest.raises(ValueError, match="cell"):
        TaskRNN(cell="lstm")
    with pytest.raises(ValueError, match="hidden_size"):
        TaskRNN(hidden_size=0)
    with pytest.raises(ValueError, match=r"inputs must have shape \(B, T, 3\)"):
        model(torch.zeros(2, 5, 4, dtype=torch.float64))


def test_from_weights_builds_the_given_map():
    W_ih, W_hh, W_out = torch.randn(4, 3), torch.randn(4, 4) * 0.3, torch.randn(2, 4)
    b, b_out = torch.randn(4), torch.randn(2)
    model = TaskRNN.from_weights(W_ih, W_hh, W_out, b=b, b_out=b_out)
    h, x = torch.randn(2, 4), torch.randn(2, 3)
    with torch.no_grad():
        torch.testing.assert_close(model.step(h, x), torch.tanh(x @ W_ih.T + h @ W_hh.T + b))
        torch.testing.assert_close(model.readout(h), h @ W_out.T + b_out)
    with pytest.raises(ValueError, match="W_ih"):
        TaskRNN.from_weights(torch.randn(5, 3), W_hh, W_out)


@pytest.mark.parametrize("cell", ["tanh", "gru"])
def test_checkpoint_round_trip(tmp_path, cell):
    model = TaskRNN(3, 6, 2, cell=cell, dtype=torch.float64, seed=1)
    path = save_checkpoint(model, tmp_path / "net", metadata={"step": 7})
    loaded, metadata = load_checkpoint(path)
    assert isinstance(loaded, TaskRNN) and metadata == {"step": 7}
    assert loaded.to_config() == model.to_config() and loaded.dtype == torch.float64
    for name, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    assert isinstance(load(path), TaskRNN)


def test_policy_hidden_states_in_a_closed_loop_session_match_a_rerun():
    model = TaskRNN(3, 8, 2, seed=0)
    with torch.no_grad():
        model.weight_out.mul_(20.0)  # confident enough to act at some steps
    record = run_session(model.policy(), SMALL_TASK, n_sessions=3, seed=0, record="hidden")
    steps = record.steps
    assert record.step_columns["action_taken"].any()
    for session in range(3):
        rows = np.flatnonzero(steps["session"].to_numpy() == session)
        inputs = torch.from_numpy(steps[["left_obs", "right_obs", "prev_reward"]].to_numpy()[rows]).float()
        out = model(inputs[None])
        np.testing.assert_allclose(record.hidden_states[rows], out.hidden[0].detach().numpy(), atol=1e-6)
        probs = torch.softmax(out.logits[0], dim=-1).detach().numpy()
        np.testing.assert_allclose(steps["p_right"].to_numpy()[rows], probs[:, 1], atol=1e-6)
    with pytest.raises(RuntimeError, match="reset"):
        model.policy().act(torch.zeros(1, 3))
