"""vector_field(): exact flows of known maps, lifting, conditions, errors; figures drawn from results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from rnnscope.analysis.fixedpoints import find_fixed_points
from rnnscope.analysis.simulate import simulate
from rnnscope.analysis.vectorfields import VectorField, vector_field
from rnnscope.models.vanilla import VanillaRNN
from rnnscope.plots.fixedpoints import plot_eigenvalue_spectra, plot_fixed_points, plot_vector_field


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny tensors: one thread avoids OpenMP hand-offs that stall when other jobs hold the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class LinearRNN(torch.nn.Module):
    """``h' = A h + B x``: a protocol model whose flow is ``(A − I) h + B x``."""

    def __init__(self, A, B):
        super().__init__()
        self.A = torch.nn.Parameter(torch.as_tensor(A, dtype=torch.float32))
        self.B = torch.nn.Parameter(torch.as_tensor(B, dtype=torch.float32))

    hidden_size = property(lambda self: self.A.shape[0])
    input_size = property(lambda self: self.B.shape[1])
    output_size = property(lambda self: self.A.shape[0])

    def step(self, h, x=None):
        out = h @ self.A.T
        return out if x is None else out + x @ self.B.T

    def readout(self, h):
        return h

    def vanilla_dynamics(self):
        return None


def orthonormal_rows(H, seed):
    return np.linalg.qr(np.random.default_rng(seed).standard_normal((H, 2)))[0].T


def stored(model):
    """The float32 weights as float64 arrays (the exact numbers the model computes with)."""
    return model.A.detach().double().numpy(), model.B.detach().double().numpy()


def test_linear_flow_equals_a_minus_identity_on_the_lifted_grid():
    rng = np.random.default_rng(0)
    model = LinearRNN(0.5 * rng.standard_normal((4, 4)), rng.standard_normal((4, 2)))
    A, _ = stored(model)
    basis, center = orthonormal_rows(4, 1), rng.standard_normal(4)
    field = vector_field(model, basis, center, extent=(-2, 1, -0.5, 3), grid=7)
    uu, vv = np.meshgrid(field.u, field.v)
    lifted = center + uu[..., None] * basis[0] + vv[..., None] * basis[1]
    np.testing.assert_allclose(field.states, lifted, atol=1e-15)
    flow = lifted @ (A - np.eye(4)).T
    np.testing.assert_allclose(field.flow[0], flow @ basis.T, atol=1e-12)
    np.testing.assert_allclose(field.speed[0], np.linalg.norm(flow, axis=-1), atol=1e-12)
    np.testing.assert_allclose(field.u[[0, -1]], [-2, 1])
    np.testing.assert_allclose(field.v[[0, -1]], [-0.5, 3])
    np.testing.assert_allclose(field.project(lifted), np.stack([uu, vv], -1), atol=1e-12)
    assert field.conditions == ["no input"] and field.inputs == [None]


def test_several_input_conditions_at_once():
    rng = np.random.default_rng(2)
    model = LinearRNN(0.3 * rng.standard_normal((3, 3)), rng.standard_normal((3, 2)))
    A, B = stored(model)
    conditions = {"left": np.array([1.0, 0.0]), "right": np.array([0.0, 1.0]), "none": None}
    field = vector_field(model, orthonormal_rows(3, 3), None, input=conditions, grid=5)
    assert field.conditions == ["left", "right", "none"]
    for name, u in conditions.items():
        drive = np.zeros(3) if u is None else B @ u
        expected = (field.states @ (A - np.eye(3)).T + drive) @ field.basis.T
        np.testing.assert_allclose(field.flow[field.condition(name)], expected, atol=1e-12)
    with pytest.raises(KeyError, match="no condition 'up'"):
        field.condition("up")


def test_relu_flow_and_pca_basis():
    rng = np.random.default_rng(4)
    W, b = rng.standard_normal((6, 6)) / 2, rng.standard_normal(6)
    model = VanillaRNN.from_weights(W, None, b)
    states = simulate(model, 20, 30, noise_std=0, h0="normal", seed=1).states()
    pca = PCA(3).fit(states)
    field = vector_field(model, pca, grid=6, states=states)
    np.testing.assert_allclose(field.basis, pca.components_[:2], atol=1e-7)
    np.testing.assert_allclose(field.center, pca.mean_, atol=1e-7)
    W32, b32 = model.weight_hh.detach().double().numpy(), model.bias.detach().double().numpy()
    flow = np.maximum(field.states @ W32.T + b32, 0) - field.states
    np.testing.assert_allclose(field.flow[0], flow @ field.basis.T, atol=1e-12)
    coords = field.project(states)
    low, high = coords.min(0), coords.max(0)
    pad = 0.1 * (high - low)
    np.testing.assert_allclose(field.extent, [low[0] - pad[0], high[0] + pad[0], low[1] - pad[1], high[1] + pad[1]],
                               rtol=1e-9)


def test_save_and_load_round_trip(tmp_path):
    model = LinearRNN(np.eye(3) * 0.5, np.ones((3, 1)))
    field = vector_field(model, orthonormal_rows(3, 0), input={"on": np.ones(1), "off": None}, grid=4)
    loaded = VectorField.load(field.save(tmp_path / "vf"))
    np.testing.assert_array_equal(loaded.flow, field.flow)
    assert loaded.conditions == ["on", "off"] and loaded.inputs[1] is None
    np.testing.assert_array_equal(loaded.inputs[0], [1.0])


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(basis=np.ones((3, 3))), ValueError, "shape \\(2, H\\) = \\(2, 3\\)"),
        (dict(basis=np.array([[1.0, 0, 0], [1.0, 1.0, 0]])), ValueError, "orthonormal"),
        (dict(input=np.ones(3)), ValueError, "input vector of shape \\(I,\\) = \\(1,\\)"),
        (dict(input={"bad": np.ones(2)}), ValueError, "condition 'bad'"),
        (dict(input={}), ValueError, "empty dict"),
        (dict(grid=1), ValueError, "grid must be"),
        (dict(extent=(1, 0, 0, 1)), ValueError, "extent must be"),
        (dict(center=np.zeros(2)), ValueError, "center must have shape \\(3,\\)"),
        (dict(basis=PCA(1).fit(np.random.default_rng(0).normal(size=(10, 3)))), ValueError, "n_components >= 2"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, error, message):
    arguments = dict(basis=np.eye(2, 3), center=None)
    arguments.update(kwargs)
    model = LinearRNN(np.eye(3) * 0.5, np.ones((3, 1)))
    with pytest.raises(error, match=message):
        vector_field(model, arguments.pop("basis"), arguments.pop("center"), **arguments)


def test_vector_field_figure_has_one_panel_per_condition_with_fixed_points_in_the_plane():
    W, c = np.array([[-2.0, -0.5], [-0.5, -2.0]]), np.array([1.0, 1.0])
    model = VanillaRNN.from_weights(W, np.eye(2), c)
    inputs = {"none": None, "push": np.array([0.5, 0.0])}
    field = vector_field(model, np.eye(2), input=inputs, extent=(-0.2, 1.5, -0.2, 1.5), grid=9)
    reports = {name: find_fixed_points(model, u, method="exact", max_period=2) for name, u in inputs.items()}
    fig = plot_vector_field(field, reports)
    panels = [ax for ax in fig.axes if ax.get_title() in inputs]
    assert [ax.get_title() for ax in panels] == ["none", "push"]
    for ax, (name, report) in zip(panels, reports.items()):
        offsets = np.concatenate([col.get_offsets() for col in ax.collections if col.get_offsets().shape[0] in (1, 2)
                                  and type(col).__name__ == "PathCollection"])
        expected = np.concatenate([report.points] + [cycle.points for cycle in report.cycles])
        match = np.abs(offsets[:, None] - expected[None]).max(-1).min(0)
        assert (match < 1e-9).all()


def test_fixed_point_and_spectrum_figures_show_every_stability_label():
    W, c = np.array([[0.0, 1.5], [1.5, 0.0]]), np.array([-1.0, -1.0])
    model = VanillaRNN.from_weights(W, np.eye(2), c)
    report = find_fixed_points(model, method="exact", max_period=2)
    sim = simulate(model, 10, 20, noise_std=0.3, h0="normal", seed=0)
    fig = plot_fixed_points(report, trajectories=sim)
    labels = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert labels == ["stable node", "unstable", "2-cycle, saddle", "trajectories"]
    fig = plot_eigenvalue_spectra(report)
    labels = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert labels == ["[0] stable node", "[1] unstable", "2-cycle 0: saddle"]
    with pytest.raises(TypeError, match="FixedPointReport"):
        plot_fixed_points([report])
