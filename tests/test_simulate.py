"""simulate(): input modes, time convention, analytic statistics, reproducibility, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnscope.analysis import simulate as simulate_module
from rnnscope.analysis.simulate import Simulation, simulate
from rnnscope.models.base import RecurrentModel
from rnnscope.models.vanilla import VanillaRNN


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny tensors: one thread avoids OpenMP hand-offs that stall when other jobs hold the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class LinearRNN(torch.nn.Module):
    """``h' = A h + B x + c`` with identity readout: a protocol model with analytic statistics."""

    def __init__(self, A, B, c=None, noise_std=None):
        super().__init__()
        self.A = torch.nn.Parameter(torch.as_tensor(A, dtype=torch.float32))
        self.B = torch.nn.Parameter(torch.as_tensor(B, dtype=torch.float32))
        c = np.zeros(self.A.shape[0]) if c is None else c
        self.c = torch.nn.Parameter(torch.as_tensor(c, dtype=torch.float32))
        if noise_std is not None:
            self.noise_std = noise_std

    hidden_size = property(lambda self: self.A.shape[0])
    input_size = property(lambda self: self.B.shape[1])
    output_size = property(lambda self: self.A.shape[0])

    def step(self, h, x=None):
        out = h @ self.A.T + self.c
        return out if x is None else out + x @ self.B.T

    def readout(self, h):
        return h

    def vanilla_dynamics(self):
        return None


class GenericPath(torch.nn.Module):
    """Hides a vanilla model's weights so that simulate() takes the generic ``step`` path."""

    def __init__(self, model):
        super().__init__()
        self.inner = model

    hidden_size = property(lambda self: self.inner.hidden_size)
    input_size = property(lambda self: self.inner.input_size)
    output_size = property(lambda self: self.inner.output_size)

    def step(self, h, x=None):
        return self.inner.step(h, x)

    def readout(self, h):
        return self.inner.readout(h)

    def vanilla_dynamics(self):
        return None


def random_vanilla(H=6, I=3, K=4, nonlinearity="relu", seed=0, bias=True):
    rng = np.random.default_rng(seed)
    return VanillaRNN.from_weights(
        rng.standard_normal((H, H)) * 0.4 / np.sqrt(H),
        rng.standard_normal((H, I)),
        rng.standard_normal(H) * 0.1 if bias else None,
        rng.standard_normal((K, H)),
        nonlinearity=nonlinearity,
    )


def test_models_satisfy_protocol():
    assert isinstance(random_vanilla(), RecurrentModel)
    assert isinstance(LinearRNN(np.eye(2), np.eye(2)), RecurrentModel)


def test_ar1_stationary_variance_matches_analytic():
    a, sigma = 0.8, 0.7
    model = LinearRNN(a * np.eye(3), np.eye(3))
    sim = simulate(model, 2000, 50, noise_std=sigma, warmup=100, record_every=10, seed=1)
    expected = sigma**2 / (1 - a**2)
    assert sim.input_mode == "noise"
    assert sim.hidden.var() == pytest.approx(expected, rel=0.04)
    assert abs(sim.hidden.mean()) < 0.05


def test_default_noise_is_the_models_own_noise_std():
    a = 0.5
    model = LinearRNN(a * np.eye(2), np.eye(2), noise_std=0.3)
    sim = simulate(model, 3000, 20, warmup=30, record_every=10, seed=2)
    assert sim.noise_std == 0.3
    assert sim.hidden.var() == pytest.approx(0.09 / (1 - a**2), rel=0.05)
    assert simulate(LinearRNN(np.eye(2) * a, np.eye(2)), 2, 2).noise_std == 1.0


def test_autonomous_run_follows_matrix_powers_and_time_convention():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((4, 4))
    A *= 0.9 / np.abs(np.linalg.eigvals(A)).max()
    h0 = rng.standard_normal((5, 4))
    sim = simulate(LinearRNN(A, np.zeros((4, 2))), 5, 12, noise_std=0, h0=h0, warmup=3, record_every=4)
    assert sim.input_mode == "autonomous"
    np.testing.assert_array_equal(sim.times, [7, 11, 15])
    for j, t in enumerate(sim.times):
        expected = h0 @ np.linalg.matrix_power(A, int(t)).T
        np.testing.assert_allclose(sim.hidden[:, j], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sim.final_hidden, h0 @ np.linalg.matrix_power(A, 15).T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sim.initial_hidden, h0, rtol=1e-6)


def test_clamped_input_converges_to_the_analytic_fixed_point():
    rng = np.random.default_rng(4)
    A = 0.5 * np.linalg.qr(rng.standard_normal((3, 3)))[0]
    B, c, u = rng.standard_normal((3, 2)), rng.standard_normal(3), np.array([0.7, -1.2])
    sim = simulate(LinearRNN(A, B, c), 4, 80, input=u, h0="normal", seed=5)
    fixed = np.linalg.solve(np.eye(3) - A, B @ u + c)
    assert sim.input_mode == "clamped" and sim.noise_std == 0.0
    np.testing.assert_allclose(sim.clamped_input, u, rtol=1e-6)
    np.testing.assert_allclose(sim.final_hidden, np.tile(fixed, (4, 1)), atol=1e-5)


def test_per_sequence_clamped_inputs():
    A, B = 0.5 * np.eye(2), np.eye(2)
    inputs = np.array([[1.0, 0.0], [0.0, -2.0], [3.0, 3.0]])
    sim = simulate(LinearRNN(A, B), 3, 60, input=inputs)
    np.testing.assert_allclose(sim.final_hidden, inputs / 0.5, rtol=1e-5)


def test_input_sequence_mode_matches_a_direct_recursion():
    rng = np.random.default_rng(6)
    A, B = 0.3 * rng.standard_normal((3, 3)), rng.standard_normal((3, 2))
    x = rng.standard_normal((2, 9, 2)).astype(np.float32)
    sim = simulate(LinearRNN(A, B), 2, 7, input=x, warmup=2)
    h = np.zeros((2, 3))
    states = []
    for t in range(9):
        h = h @ A.T + x[:, t] @ B.T
        states.append(h)
    np.testing.assert_allclose(sim.hidden, np.stack(states[2:], 1), rtol=1e-4, atol=1e-5)
    assert sim.input_mode == "sequence"


def test_vanilla_fast_path_equals_the_generic_step_path():
    model = random_vanilla(nonlinearity="tanh")
    fast = simulate(model, 8, 30, noise_std=0.8, h0="normal", seed=7, warmup=5)
    slow = simulate(GenericPath(model), 8, 30, noise_std=0.8, h0="normal", seed=7, warmup=5)
    np.testing.assert_allclose(fast.hidden, slow.hidden, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(fast.outputs, slow.outputs)


def test_seeds_are_reproducible_and_outputs_do_not_change_the_trajectory():
    model = random_vanilla()
    first = simulate(model, 4, 20, seed=11)
    again = simulate(model, 4, 20, seed=11)
    other = simulate(model, 4, 20, seed=12)
    argmax = simulate(model, 4, 20, seed=11, outputs="argmax")
    np.testing.assert_array_equal(first.hidden, again.hidden)
    np.testing.assert_array_equal(first.outputs, again.outputs)
    assert not np.array_equal(first.hidden, other.hidden)
    np.testing.assert_array_equal(first.hidden, argmax.hidden)
    np.testing.assert_array_equal(argmax.outputs, argmax.logits.argmax(-1))
    generator = torch.Generator().manual_seed(11)
    assert simulate(model, 4, 20, seed=generator).hidden.shape == (4, 20, 6)


def test_sampled_outputs_follow_softmax_of_the_logits():
    p = np.array([0.6, 0.3, 0.1])
    model = VanillaRNN.from_weights(np.zeros((2, 2)), np.zeros((2, 1)), None, np.zeros((3, 2)), np.log(p))
    sim = simulate(model, 400, 50, seed=13)
    frequencies = np.bincount(sim.outputs.ravel(), minlength=3) / sim.outputs.size
    np.testing.assert_allclose(frequencies, p, atol=0.01)


def test_chunking_over_time_does_not_change_a_deterministic_run(monkeypatch):
    model = random_vanilla()
    u = np.array([0.5, -0.3, 1.0])
    whole = simulate(model, 3, 40, input=u, h0="normal", seed=3, record_every=3, warmup=4)
    monkeypatch.setattr(simulate_module, "CHUNK_ELEMENTS", 7)
    chunked = simulate(model, 3, 40, input=u, h0="normal", seed=3, record_every=3, warmup=4)
    np.testing.assert_array_equal(whole.hidden, chunked.hidden)
    np.testing.assert_allclose(whole.logits, chunked.logits, rtol=1e-6, atol=1e-6)


def test_without_hidden_states_logits_are_still_recorded():
    model = random_vanilla()
    full = simulate(model, 3, 10, seed=1)
    light = simulate(model, 3, 10, seed=1, return_hidden=False)
    assert light.hidden is None
    np.testing.assert_array_equal(full.logits, light.logits)
    with pytest.raises(ValueError, match="return_hidden=True"):
        light.states()


def test_save_and_load_round_trip(tmp_path):
    sim = simulate(random_vanilla(), 3, 5, seed=2)
    loaded = Simulation.load(sim.save(tmp_path / "sim"))
    np.testing.assert_array_equal(loaded.hidden, sim.hidden)
    np.testing.assert_array_equal(loaded.outputs, sim.outputs)
    assert loaded.input_mode == sim.input_mode and loaded.clamped_input is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(input=np.zeros(2)), "input dimension I = 3"),
        (dict(input=np.zeros((4, 3))), "B = num_seq"),
        (dict(input=np.zeros((2, 5, 3))), "warmup \\+ steps"),
        (dict(h0=np.zeros((2, 5))), "h0 must have shape"),
        (dict(h0="uniform"), "h0 must be"),
        (dict(noise_std=-1.0), "noise_std"),
        (dict(outputs="mode"), "outputs must be"),
        (dict(record_every=20), "at least record_every"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        simulate(random_vanilla(), 2, 10, **kwargs)


def test_bad_counts_raise():
    with pytest.raises(ValueError, match="num_seq"):
        simulate(random_vanilla(), 0, 10)
    with pytest.raises(ValueError, match="steps"):
        simulate(random_vanilla(), 2, 2.5)
