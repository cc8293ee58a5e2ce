"""Fixed points, slow points and cycles on systems whose answers are known analytically or by brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from rnnscope.analysis.fixedpoints import (
    CollapseReport,
    FixedPointReport,
    autonomous_collapse,
    classify,
    count_critical_pairs,
    count_unstable,
    eigenvalues,
    find_fixed_points,
    jacobians,
    mobius,
    outlier_mask,
    sample_states,
    unique_indices,
)
from rnnscope.models.vanilla import VanillaRNN


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny tensors: one thread avoids OpenMP hand-offs that stall when other jobs hold the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class LinearRNN(torch.nn.Module):
    """``h' = A h + B x + c``: a smooth protocol model (generic autograd path) with known answers."""

    def __init__(self, A, B=None, c=None):
        super().__init__()
        H = len(A)
        self.A = torch.nn.Parameter(torch.as_tensor(A, dtype=torch.float32))
        self.B = torch.nn.Parameter(torch.as_tensor(np.zeros((H, 1)) if B is None else B, dtype=torch.float32))
        self.c = torch.nn.Parameter(torch.as_tensor(np.zeros(H) if c is None else c, dtype=torch.float32))

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


class Rotated(torch.nn.Module):
    """The model seen in rotated coordinates ``h̃ = Q h``: ``F̃(h̃) = Q F(Qᵀ h̃)``."""

    def __init__(self, inner, Q):
        super().__init__()
        self.inner = inner
        self.register_buffer("Q", torch.as_tensor(Q, dtype=torch.float32))

    hidden_size = property(lambda self: self.inner.hidden_size)
    input_size = property(lambda self: self.inner.input_size)
    output_size = property(lambda self: self.inner.output_size)

    def step(self, h, x=None):
        return self.inner.step(h @ self.Q, x) @ self.Q.T

    def readout(self, h):
        return self.inner.readout(h @ self.Q)

    def vanilla_dynamics(self):
        return None


class GRUModel(torch.nn.Module):
    """A protocol wrapper around ``torch.nn.GRUCell`` (no input means a zero input)."""

    def __init__(self, I, H, K, seed, gain=1.0):
        super().__init__()
        self.cell = torch.nn.GRUCell(I, H)
        self.out = torch.nn.Linear(H, K)
        rng = np.random.default_rng(seed)
        with torch.no_grad():
            for name, parameter in self.named_parameters():
                scale = gain if name == "cell.weight_hh" else 1.0
                parameter.copy_(torch.as_tensor(rng.standard_normal(parameter.shape) * scale / np.sqrt(H)))

    hidden_size = property(lambda self: self.cell.hidden_size)
    input_size = property(lambda self: self.cell.input_size)
    output_size = property(lambda self: self.out.out_features)

    def step(self, h, x=None):
        return self.cell(h.new_zeros(h.shape[0], self.input_size) if x is None else x, h)

    def readout(self, h):
        return self.out(h)

    def vanilla_dynamics(self):
        return None


def random_orthogonal(n, seed):
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))[0]


def match(found, expected, atol):
    """Every expected row has exactly one found row within ``atol`` and vice versa."""
    found, expected = np.atleast_2d(found), np.atleast_2d(expected)
    assert found.shape == expected.shape, (found, expected)
    distance = np.abs(found[:, None] - expected[None]).max(-1)
    assert (distance.min(1) <= atol).all() and (distance.min(0) <= atol).all(), distance
    return distance.argmin(1)


def brute_force_relu(W, c, period):
    """Every k-cycle (k = period; fixed points for 1) of relu(W h + c), by enumerating all region sequences."""
    H = len(c)
    found = []
    for bits in itertools.product([0.0, 1.0], repeat=H * period):
        D = np.asarray(bits).reshape(period, H)
        A, b = np.eye(H), np.zeros(H)
        for i in range(period):
            A, b = D[i][:, None] * (W @ A), D[i] * (W @ b + c)
        if abs(np.linalg.det(np.eye(H) - A)) < 1e-12:
            continue
        h = np.linalg.solve(np.eye(H) - A, b)
        points = [h]
        for i in range(period - 1):
            points.append(D[i] * (W @ points[-1] + c))
        pre = np.stack(points) @ W.T + c
        if np.all(np.where(D == 1, pre >= -1e-9, pre <= 1e-9)):
            if period == 1 or not any(np.allclose(points[d], points[0]) for d in range(1, period) if period % d == 0):
                found.append(np.stack(points))
    return found


# ---------------------------------------------------------------- linear maps

LINEAR_CASES = {
    "stable focus": np.array([[0.5, -0.6], [0.6, 0.5]]),
    "stable node": np.array([[0.5, 0.2], [0.0, -0.3]]),
    "saddle": np.array([[1.5, 0.3], [0.0, 0.4]]),
    "unstable": np.array([[1.2, -0.9], [0.9, 1.2]]),
}


@pytest.mark.parametrize("label", list(LINEAR_CASES))
def test_linear_map_fixed_point_eigenvalues_and_stability(label):
    A, c = LINEAR_CASES[label], np.array([0.3, -0.7])
    init = np.random.default_rng(0).normal(size=(20, 2))
    report = find_fixed_points(LinearRNN(A, c=c), method="gradient", initial_states=init)
    assert len(report) == 1 and report.method == "gradient"
    np.testing.assert_allclose(report.points[0], np.linalg.solve(np.eye(2) - A, c), atol=1e-6)
    expected = np.linalg.eigvals(A)
    expected = expected[np.lexsort((-expected.imag, -np.round(np.abs(expected), 12)))]
    np.testing.assert_allclose(report.eigenvalues[0], expected, atol=1e-6)
    assert report.stability == [label]
    assert report.speeds[0] < 1e-10


def test_continuous_time_shifts_eigenvalues_and_uses_the_real_part():
    A = np.array([[0.9, 0.0], [0.0, -1.5]])
    discrete = find_fixed_points(LinearRNN(A), method="gradient", initial_states=np.ones((3, 2)))
    continuous = find_fixed_points(LinearRNN(A), method="gradient", initial_states=np.ones((3, 2)), time="continuous")
    assert discrete.stability == ["saddle"]
    assert continuous.stability == ["stable node"]
    np.testing.assert_allclose(np.sort(continuous.eigenvalues[0].real), [-2.5, -0.1], atol=1e-6)


def test_linear_fixed_points_are_equivariant_under_an_orthogonal_change_of_basis():
    rng = np.random.default_rng(1)
    A, B, c = 0.4 * rng.standard_normal((4, 4)), rng.standard_normal((4, 2)), rng.standard_normal(4)
    u = np.array([1.0, -2.0])
    Q = random_orthogonal(4, 2)
    original = find_fixed_points(LinearRNN(A, B, c), u, method="gradient", initial_states=rng.normal(size=(10, 4)))
    rotated = find_fixed_points(LinearRNN(Q @ A @ Q.T, Q @ B, Q @ c), u, method="gradient",
                                initial_states=rng.normal(size=(10, 4)))
    np.testing.assert_allclose(rotated.points, original.points @ Q.T, atol=1e-6)
    np.testing.assert_allclose(rotated.eigenvalues, original.eigenvalues, atol=1e-6)


def test_tanh_fixed_points_are_equivariant_under_rotation():
    rng = np.random.default_rng(3)
    W = 2.0 * random_orthogonal(3, 4) + 0.3 * rng.standard_normal((3, 3))
    model = VanillaRNN.from_weights(W, None, 0.2 * rng.standard_normal(3), nonlinearity="tanh")
    Q = random_orthogonal(3, 5)
    init = rng.uniform(-1, 1, size=(300, 3))
    original = find_fixed_points(model, initial_states=init)
    rotated = find_fixed_points(Rotated(model, Q), initial_states=init @ Q.T)
    assert len(original) >= 3
    order = match(rotated.points, original.points @ Q.T, atol=1e-5)
    np.testing.assert_allclose(rotated.eigenvalues, original.eigenvalues[order], atol=1e-5)
    assert rotated.stability == [original.stability[i] for i in order]


# ---------------------------------------------------------------- hand-built ReLU networks

def test_two_unit_relu_fixed_points_and_unstable_two_cycle():
    # h' = relu(W h − 1), W = [[0, 1.5], [1.5, 0]]. By hand:
    #  * h = 0: pre = (−1, −1) ≤ 0, so F(0) = 0; D = 0, J = 0 → stable node (eigenvalues 0, 0);
    #  * both units on: h = 1.5 h_other − 1 → h = (2, 2), pre = (2, 2) > 0; J = W, λ = ±1.5 → unstable;
    #  * 2-cycle (2, 0) → pre (−1, 2) → (0, 2) → pre (2, −1) → (2, 0); its Jacobian
    #    D₂ W D₁ W = [[2.25, 0], [0, 0]] → multipliers {2.25, 0} → saddle cycle.
    W, c = np.array([[0.0, 1.5], [1.5, 0.0]]), np.array([-1.0, -1.0])
    report = find_fixed_points(VanillaRNN.from_weights(W, None, c), method="exact", max_period=3)
    np.testing.assert_allclose(report.points, [[0.0, 0.0], [2.0, 2.0]], atol=1e-12)
    assert report.stability == ["stable node", "unstable"]
    np.testing.assert_allclose(report.eigenvalues[1], [1.5, -1.5], atol=1e-12)
    assert len(report.cycles) == 1
    cycle = report.cycles[0]
    np.testing.assert_allclose(cycle.points, [[0.0, 2.0], [2.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(cycle.multipliers, [2.25, 0.0], atol=1e-12)
    assert cycle.stability == "saddle" and cycle.period == 2 and cycle.residual < 1e-12
    np.testing.assert_array_equal(cycle.regions, [[True, False], [False, True]])


def test_two_unit_relu_stable_two_cycles_found_by_exact_and_visited_by_simulation():
    # Self-inhibition −2, cross-inhibition −0.5, bias 1. By hand:
    #  * the only fixed point has both units on: (I − W) h = c → h = (2/7, 2/7);
    #    λ(W) = −1.5, −2.5 → unstable;
    #  * 2-cycle (0, 0) → relu(c) = (1, 1) → relu(−2.5 + 1) = (0, 0); regions I then 0 → multipliers {0, 0};
    #  * 2-cycle (a, 0) ↔ (0, a): a = −0.5·a + 1 → a = 2/3; the silent unit gets −2·(2/3) + 1 < 0;
    #    Jacobian D₂ W D₁ W = [[W₁₂ W₂₁, W₁₂ W₂₂], [0, 0]] → multipliers {0.25, 0} → stable;
    #  * and a mirrored pair of saddle 2-cycles (checked against brute-force enumeration).
    W, c = np.array([[-2.0, -0.5], [-0.5, -2.0]]), np.array([1.0, 1.0])
    model = VanillaRNN.from_weights(W, None, c)
    report = find_fixed_points(model, method="exact", max_period=2)
    np.testing.assert_allclose(report.points, [[2 / 7, 2 / 7]], atol=1e-12)
    assert report.stability == ["unstable"]
    stable = [cycle for cycle in report.cycles if cycle.stability == "stable node"]
    assert len(stable) == 2 and [cycle.stability for cycle in report.cycles].count("saddle") == 2
    np.testing.assert_allclose(stable[0].points, [[0.0, 0.0], [1.0, 1.0]], atol=1e-12)
    np.testing.assert_allclose(stable[0].multipliers, [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(stable[1].points, [[0.0, 2 / 3], [2 / 3, 0.0]], atol=1e-12)
    np.testing.assert_allclose(stable[1].multipliers, [0.25, 0.0], atol=1e-12)
    assert len(brute_force_relu(W, c, 2)) == 2 * len(report.cycles)
    # noise-free runs from random states end on one of the two stable cycles
    h = np.random.default_rng(0).uniform(-1, 3, size=(200, 2))
    for _ in range(100):
        h = np.maximum(h @ W.T + c, 0)
    on_cycle = np.stack([np.abs(h[:, None] - cycle.points[None]).max(-1).min(1) for cycle in stable])
    assert on_cycle.min(0).max() < 1e-12 and (on_cycle < 1e-12).any(1).all()
    # the gradient finder agrees on the fixed point
    init = np.random.default_rng(0).uniform(0, 1, (50, 2))
    gradient = find_fixed_points(model, method="gradient", initial_states=init)
    np.testing.assert_allclose(gradient.points, report.points, atol=1e-6)
    assert gradient.stability == ["unstable"]


@pytest.mark.parametrize("seed", range(6))
def test_exact_finder_matches_brute_force_enumeration(seed):
    rng = np.random.default_rng(seed)
    H = 3
    W, b = 1.3 * rng.standard_normal((H, H)), rng.standard_normal(H)
    report = find_fixed_points(VanillaRNN.from_weights(W, None, b), method="exact", max_period=3, n_initial=50)
    W32, b32 = W.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)
    fixed = brute_force_relu(W32, b32, 1)
    if fixed:
        match(report.points, np.stack(fixed)[:, 0], atol=1e-9)
    else:
        assert len(report) == 0
    for period in (2, 3):
        expected = brute_force_relu(W32, b32, period)
        found = [cycle for cycle in report.cycles if cycle.period == period]
        # brute force lists each cycle once per rotation
        assert len(found) * period == len(expected)
        for cycle in found:
            assert any(np.abs(cycle.points - e).max() < 1e-9 for e in expected)
            A = np.eye(H)
            for D in cycle.regions:
                A = D[:, None] * (W32 @ A)
            values = np.linalg.eigvals(A)
            np.testing.assert_allclose(np.sort(np.abs(cycle.multipliers)), np.sort(np.abs(values)), atol=1e-9)


def test_exact_and_gradient_agree_on_a_random_relu_network_with_bias():
    rng = np.random.default_rng(11)
    H = 4
    W, b = 1.2 * rng.standard_normal((H, H)), rng.standard_normal(H)
    model = VanillaRNN.from_weights(W, None, b)
    exact = find_fixed_points(model, method="exact", n_initial=50)
    init = 3 * rng.standard_normal((2000, H))
    gradient = find_fixed_points(model, method="gradient", initial_states=init, outlier_scale=None)
    assert len(exact) == 2
    order = match(gradient.points, exact.points, atol=1e-5)
    assert gradient.stability == [exact.stability[i] for i in order]
    np.testing.assert_allclose(gradient.eigenvalues, exact.eigenvalues[order], atol=1e-6)


def test_exact_finder_on_a_large_network_finds_where_the_dynamics_settle():
    rng = np.random.default_rng(5)
    H, I = 40, 5
    W = rng.standard_normal((H, H)) / np.sqrt(H)
    W *= 0.9 / np.abs(np.linalg.eigvals(W)).max()
    model = VanillaRNN.from_weights(W, rng.standard_normal((H, I)), 0.5 * rng.standard_normal(H))
    u = rng.standard_normal(I)
    report = find_fixed_points(model, u, n_initial=300)
    assert report.method == "exact" and len(report) >= 1
    W64 = model.weight_hh.detach().double().numpy()
    c = model.weight_ih.detach().double().numpy() @ u + model.bias.detach().double().numpy()
    for h in report.points:
        np.testing.assert_allclose(np.maximum(W64 @ h + c, 0), h, atol=1e-10)
    # independent check: noise-free runs from random states end on a reported stable fixed point
    h = rng.standard_normal((20, H))
    for _ in range(300):
        h = np.maximum(h @ W64.T + c, 0)
    stable = report.points[report.is_stable]
    assert np.abs(h[:, None] - stable[None]).max(-1).min(1).max() < 1e-8


def test_singular_region_is_reported_not_crashed_on():
    # a ReLU line attractor: h1' = relu(h1) keeps any h1 ≥ 0 (eigenvalue exactly 1); h2' = relu(0.5 h2 + 1) → 2
    W, c = np.array([[1.0, 0.0], [0.0, 0.5]]), np.array([0.0, 1.0])
    report = find_fixed_points(VanillaRNN.from_weights(W, None, c), method="exact", max_period=1)
    assert report.settings["n_singular_systems"] >= 1
    np.testing.assert_allclose(report.points, [[0.0, 2.0]], atol=1e-12)
    assert report.stability == ["nonsmooth"] and report.boundary.all()


# ---------------------------------------------------------------- tanh line attractor and GRU

def tanh_segment_model(gain=1.02):
    return VanillaRNN.from_weights(gain * 0.5 * np.ones((2, 2)), None, None, nonlinearity="tanh")


def stored_gain(model):
    """The gain g of the float32 weights actually stored (W = g/2 · ones)."""
    return 2.0 * float(model.weight_hh.detach()[0, 0])


def test_tanh_slow_manifold_fixed_points_with_the_right_stability():
    # F(h) = tanh(g·mean(h))·(1, 1): fixed points at 0 and ±x* with tanh(g x*) = x*.
    # Jacobian (1 − x²)·(g/2)·ones → eigenvalues {g(1 − x*²), 0}: 0 is a saddle (g > 1), ±x* stable nodes.
    model = tanh_segment_model(1.02)
    g = stored_gain(model)
    x_star = brentq(lambda x: np.tanh(g * x) - x, 0.05, 1.0, xtol=1e-14)
    init = np.random.default_rng(0).uniform(-0.5, 0.5, size=(100, 2))
    report = find_fixed_points(model, initial_states=init)
    np.testing.assert_allclose(report.points, [[-x_star, -x_star], [0, 0], [x_star, x_star]], atol=1e-10)
    assert report.stability == ["stable node", "saddle", "stable node"]
    np.testing.assert_allclose(report.eigenvalues[1], [g, 0.0], atol=1e-9)
    np.testing.assert_allclose(report.eigenvalues[0], [g * (1 - x_star**2), 0.0], atol=1e-9)


def test_tanh_line_attractor_gives_slow_points_along_the_line():
    g = 1.02
    x_star = brentq(lambda x: np.tanh(g * x) - x, 0.05, 1.0)
    rng = np.random.default_rng(1)
    s = np.linspace(-x_star, x_star, 60)
    init = np.stack([s, s], 1) + rng.normal(0, 0.05, size=(60, 2))
    threshold = 2e-3
    report = find_fixed_points(tanh_segment_model(g), initial_states=init, tol_q=1e-6, newton_steps=0,
                               speed_threshold=threshold, unique_tol=0.02)
    mean = report.points.mean(1)
    assert len(report) >= 8
    assert (report.speeds <= threshold).all()
    assert np.abs(report.points[:, 0] - report.points[:, 1]).max() < 2e-3
    assert mean.min() < -0.8 * x_star and mean.max() > 0.8 * x_star
    # the points are spread along the segment, not clustered at its ends
    assert np.histogram(mean, bins=5, range=(-x_star, x_star))[0].min() >= 1


def test_gru_slow_points_via_the_protocol_wrapper_and_no_mutation():
    model = GRUModel(2, 4, 3, seed=0, gain=3.0)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    u = np.array([0.5, -0.5])
    report = find_fixed_points(model, u, n_initial=200, max_iters=1500)
    assert report.method == "gradient" and len(report) >= 2
    cell64 = GRUModel(2, 4, 3, seed=0, gain=3.0).double().cell
    x = torch.as_tensor(u)[None]
    for point, values, label in zip(report.points, report.eigenvalues, report.stability):
        h = torch.as_tensor(point)[None]
        assert float((cell64(x, h) - h).norm().detach()) < 1e-9
        J = torch.autograd.functional.jacobian(lambda v: cell64(x, v[None])[0], h[0]).numpy()
        oracle = np.linalg.eigvals(J)
        np.testing.assert_allclose(np.sort(np.abs(values)), np.sort(np.abs(oracle)), atol=1e-8)
        assert (np.abs(values).max() < 1) == label.startswith("stable")
    assert set(report.stability) >= {"stable node", "saddle"}
    for name, parameter in model.named_parameters():
        assert parameter.requires_grad and parameter.dtype == torch.float32
        torch.testing.assert_close(parameter.detach(), before[name], rtol=0, atol=0)


def test_jacobians_analytic_match_autograd():
    rng = np.random.default_rng(2)
    model = VanillaRNN.from_weights(rng.standard_normal((5, 5)), rng.standard_normal((5, 2)), rng.standard_normal(5),
                                    nonlinearity="tanh")
    states, u = rng.standard_normal((7, 5)), np.array([0.3, -0.1])
    analytic = jacobians(model, states, u)

    class Hidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
        hidden_size, input_size, output_size = 5, 2, 5

        def step(self, h, x=None):
            return self.inner.step(h, x)

        def vanilla_dynamics(self):
            return None

    np.testing.assert_allclose(jacobians(Hidden(model), states, u), analytic, atol=1e-10)


# ---------------------------------------------------------------- filtering, classification, report

def test_unique_indices_groups_points_relative_to_a_tolerance():
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 5.0]])
    points = np.concatenate([centers + 1e-5 * rng.standard_normal((3, 2)) for _ in range(4)])
    keep = unique_indices(points, 1e-3)
    np.testing.assert_array_equal(keep, [0, 1, 2])
    assert len(unique_indices(points, 1e-8)) == 12
    assert len(unique_indices(points, 2.0)) == 2  # (0,0) and (1,0) merge; (0,5) stays alone


def test_outlier_mask_is_relative_to_the_cloud():
    cloud = np.random.default_rng(1).standard_normal((500, 3))
    points = np.array([[0.2, 0.0, 0.0], [3.0, 3.0, 3.0], [50.0, 0.0, 0.0]])
    np.testing.assert_array_equal(outlier_mask(points, cloud, scale=2.0), [False, False, True])
    np.testing.assert_array_equal(outlier_mask(points * 10, cloud * 10, scale=2.0), [False, False, True])


def test_sample_states_draws_rows_and_adds_relative_noise():
    states = np.random.default_rng(2).standard_normal((4, 25, 3)) * 10
    plain = sample_states(states, 30, seed=1)
    pool = states.reshape(-1, 3)
    assert all((np.abs(pool - row).max(1) == 0).any() for row in plain)
    assert len({tuple(row) for row in plain}) == 30
    noisy = sample_states(states, 30, noise_scale=0.1, seed=1)
    np.testing.assert_array_equal(sample_states(states, 30, noise_scale=0.1, seed=1), noisy)
    assert 0.3 < np.std(noisy - plain) < 3.0


def test_gradient_finder_removes_outliers_and_keeps_only_slow_points():
    A = np.array([[0.5, 0.0], [0.0, 0.5]])
    cloud = np.random.default_rng(0).normal(10.0, 0.1, size=(30, 2))
    far = find_fixed_points(LinearRNN(A), method="gradient", initial_states=cloud)
    assert len(far) == 0  # the only fixed point (0, 0) is 100 cloud radii away
    kept = find_fixed_points(LinearRNN(A), method="gradient", initial_states=cloud, outlier_scale=None)
    np.testing.assert_allclose(kept.points, [[0.0, 0.0]], atol=1e-8)
    stopped = find_fixed_points(LinearRNN(A), method="gradient", initial_states=cloud, outlier_scale=None,
                                max_iters=2, newton_steps=0)
    assert len(stopped) == 0  # two Adam steps are not enough to get below the speed threshold


def test_classify_rule_including_marginal_and_continuous_time():
    values = np.array([
        [0.5 + 0.5j, 0.5 - 0.5j, 0.1],
        [0.9, 0.5 + 0.1j, 0.5 - 0.1j],
        [1.5, 0.5, 0.0],
        [1.1, -1.2, 2.0],
        [1.0, 0.5, 0.2],
        [1.0 + 1e-8, 0.3, 0.0],
    ])
    assert classify(values) == ["stable focus", "stable node", "saddle", "unstable", "marginal", "marginal"]
    assert classify(values[5:], tol=0.0) == ["saddle"]
    flow = np.array([[-0.1 + 2j, -0.1 - 2j, -3.0], [0.2, -1.0, -1.0], [1e-9, -1.0, -2.0]])
    assert classify(flow, time="continuous") == ["stable focus", "saddle", "marginal"]
    with pytest.raises(ValueError, match="time"):
        classify(values, time="hybrid")


def test_eigenvalues_are_sorted_and_mobius_helpers():
    J = np.array([[[0.0, -2.0], [2.0, 0.0]], [[0.3, 0.0], [0.0, -0.9]]])
    values = eigenvalues(J)
    np.testing.assert_allclose(values, [[2j, -2j], [-0.9, 0.3]], atol=1e-12)
    m = mobius(np.array([2.0, 0.5, np.exp(0.3j)]))
    assert m[0].real > 0 and m[1].real < 0 and abs(m[2].real) < 1e-12
    np.testing.assert_array_equal(count_unstable(values), [2, 0])
    near = np.array([[0.99 * np.exp(0.4j), 0.99 * np.exp(-0.4j), 0.2, 1.5]])
    np.testing.assert_array_equal(count_critical_pairs(near), [1])


def test_report_indexing_unique_summary_and_round_trip(tmp_path):
    W, c = np.array([[0.0, 1.5], [1.5, 0.0]]), np.array([-1.0, -1.0])
    report = find_fixed_points(VanillaRNN.from_weights(W, None, c), method="exact", max_period=2)
    assert len(report) == 2 and len(report[1:]) == 1 and report[1].stability == ["unstable"]
    assert len(report[report.is_stable]) == 1
    assert len(report.unique()) == 2 and len(report.unique(tol=10.0)) == 1
    text = report.summary()
    assert "1 stable node, 1 unstable" in text and "2-cycle: saddle" in text
    loaded = FixedPointReport.load(report.save(tmp_path / "fp"))
    np.testing.assert_array_equal(loaded.points, report.points)
    np.testing.assert_array_equal(loaded.eigenvalues, report.eigenvalues)
    assert loaded.stability == report.stability
    np.testing.assert_array_equal(loaded.cycles[0].multipliers, report.cycles[0].multipliers)
    np.testing.assert_array_equal(loaded.cycles[0].regions, report.cycles[0].regions)


def test_search_is_deterministic_given_the_seed():
    model = GRUModel(1, 3, 2, seed=4, gain=2.0)
    first = find_fixed_points(model, np.array([0.2]), n_initial=60, seed=3)
    second = find_fixed_points(model, np.array([0.2]), n_initial=60, seed=3)
    np.testing.assert_array_equal(first.points, second.points)


def test_bad_arguments_raise_clear_errors():
    relu = VanillaRNN.from_weights(np.eye(2) * 0.5, np.ones((2, 1)), None)
    tanh = tanh_segment_model()
    with pytest.raises(ValueError, match="input vector of shape \\(I,\\) = \\(1,\\)"):
        find_fixed_points(relu, np.zeros(3))
    with pytest.raises(ValueError, match="method='exact' needs a vanilla ReLU"):
        find_fixed_points(tanh, method="exact")
    with pytest.raises(ValueError, match="method must be"):
        find_fixed_points(relu, method="newton")
    with pytest.raises(ValueError, match="initial_states must have shape"):
        find_fixed_points(relu, initial_states=np.zeros((5, 3)))
    with pytest.raises(ValueError, match="max_period"):
        find_fixed_points(relu, max_period=0)
    with pytest.raises(TypeError, match="RecurrentModel"):
        find_fixed_points(object())


# ---------------------------------------------------------------- autonomous collapse

def test_collapse_of_a_contracting_bias_free_relu_network():
    model = VanillaRNN.from_weights(0.5 * np.eye(3), np.eye(3), None)
    report = autonomous_collapse(model, n_initial=20, steps=60)
    assert report.collapsed and report.origin_is_fixed and report.homogeneous and report.origin_attracting
    finite = report.growth_rates[np.isfinite(report.growth_rates)]
    np.testing.assert_allclose(finite, np.log(0.5), atol=1e-12)
    assert np.isneginf(report.growth_rates).sum() + finite.size == report.growth_rates.size
    np.testing.assert_allclose(report.fixed_points.points, [[0.0, 0.0, 0.0]])
    assert report.distance_to_fixed_point < 1e-15


def test_expanding_bias_free_network_does_not_collapse():
    model = VanillaRNN.from_weights(1.2 * np.eye(2), np.eye(2), None)
    report = autonomous_collapse(model, n_initial=10, steps=40)
    assert not report.collapsed and report.origin_attracting is False
    assert np.nanmax(report.growth_rates) == pytest.approx(np.log(float(np.float32(1.2))), abs=1e-12)


def test_collapse_with_bias_is_not_homogeneous_and_finds_the_fixed_point():
    model = VanillaRNN.from_weights(0.5 * np.eye(2), np.eye(2), np.array([1.0, -1.0]))
    report = autonomous_collapse(model, n_initial=10, steps=80)
    assert report.collapsed and not report.homogeneous and report.growth_rates is None
    assert not report.origin_is_fixed
    np.testing.assert_allclose(report.mean_end_state, [2.0, 0.0], atol=1e-12)
    assert report.distance_to_fixed_point < 1e-12


def test_reference_fixture_collapses_to_the_origin(reference_checkpoint, tmp_path):
    state = torch.load(reference_checkpoint, map_location="cpu", weights_only=True)
    model = VanillaRNN.from_weights(state["rnn.weight_hh_l0"].clone(), state["rnn.weight_ih_l0"].clone(), None,
                                    state["fc.weight"].clone())
    assert np.abs(np.linalg.eigvals(model.weight_hh.detach().numpy())).max() == pytest.approx(4.05, abs=0.01)
    report = autonomous_collapse(model, n_initial=40, steps=500)
    assert report.collapsed and report.origin_is_fixed and report.origin_attracting
    assert -70 < np.log10(np.median(report.end_norms)) < -60  # the reference: ‖h‖ ≈ 1e-65 after 500 steps
    assert report.growth_rates.max() < -0.2
    assert report.fixed_points.stability == ["nonsmooth"] and np.abs(report.fixed_points.points).max() == 0
    loaded = CollapseReport.load(report.save(tmp_path / "collapse"))
    assert loaded.collapsed and loaded.fixed_points.stability == ["nonsmooth"]
