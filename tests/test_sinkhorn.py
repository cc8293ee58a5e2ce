"""The in-house debiased Sinkhorn divergence against geomloss (values and gradients), its invariants,
its engines (native C kernel, torch twin, log-domain) and its fallbacks."""

from __future__ import annotations

import pytest
import torch
from geomloss import SamplesLoss

from rnnscope.training import _sinkhorn_kernels as kernels
from rnnscope.training.sinkhorn import (
    SinkhornTarget,
    _CrossProblem,
    _Cloud,
    _gram,
    epsilon_schedule,
    max_diameter,
    sinkhorn_divergence,
)

NATIVE = kernels.native_library() is not None
ENGINES = ["native", "torch", "logdomain"] if NATIVE else ["torch", "logdomain"]


def geomloss_value_and_grad(x, y, blur, p=2, scaling=0.5):
    x = x.clone().requires_grad_(True)
    loss = SamplesLoss("sinkhorn", p=p, blur=blur, scaling=scaling, debias=True, backend="tensorized")
    value = loss(x, y)
    value.backward()
    return value.detach(), x.grad


def ours_value_and_grad(x, y, blur, p=2, scaling=0.5, engine="auto", target=None):
    x = x.clone().requires_grad_(True)
    value = sinkhorn_divergence(x, y, blur=blur, p=p, scaling=scaling, engine=engine, target=target)
    value.backward()
    return value.detach(), x.grad


def one_hot(n, steps, symbols, seed, probs=None):
    g = torch.Generator().manual_seed(seed)
    probs = torch.full((symbols,), 1.0 / symbols) if probs is None else torch.as_tensor(probs)
    idx = torch.multinomial(probs, n * steps, replacement=True, generator=g).reshape(n, steps)
    return torch.nn.functional.one_hot(idx, symbols).float()


def gaussian(n, d, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) + shift


def rel(a, b):
    return float((a - b).norm() / b.norm())


CASES = [
    # (name, x, y, blur)
    ("gauss-d10", gaussian(120, 10, 1), gaussian(90, 10, 2, 0.7), 0.2),
    ("gauss-d50-blur0.5", gaussian(80, 50, 3), gaussian(110, 50, 4, 0.3), 0.5),
    ("gauss-d10-blur0.05", gaussian(64, 10, 5), gaussian(70, 10, 6, 1.0), 0.05),
    ("onehot-d90", one_hot(150, 30, 3, 7), one_hot(130, 30, 3, 8, [0.5, 0.3, 0.2]), 0.2),
    ("onehot-d300", one_hot(200, 100, 3, 9), one_hot(170, 100, 3, 10, [0.6, 0.2, 0.2]), 0.2),
    ("onehot-d300-blur0.05", one_hot(96, 100, 3, 11), one_hot(80, 100, 3, 12), 0.05),
    ("onehot-d12-blur0.5", one_hot(100, 4, 3, 13), one_hot(90, 4, 3, 14, [0.7, 0.2, 0.1]), 0.5),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name,x,y,blur", CASES, ids=[c[0] for c in CASES])
def test_value_and_gradient_match_geomloss_p2(engine, name, x, y, blur):
    ref_value, ref_grad = geomloss_value_and_grad(x.reshape(len(x), -1), y.reshape(len(y), -1), blur)
    value, grad = ours_value_and_grad(x, y, blur, engine=engine)
    assert abs(float(value - ref_value)) <= 1e-4 * abs(float(ref_value))
    assert grad.shape == x.shape
    assert rel(grad.reshape(len(x), -1), ref_grad) <= 1e-4


@pytest.mark.parametrize("name,x,y,blur", CASES[:4], ids=[c[0] for c in CASES[:4]])
def test_value_and_gradient_match_geomloss_p1(name, x, y, blur):
    ref_value, ref_grad = geomloss_value_and_grad(x.reshape(len(x), -1), y.reshape(len(y), -1), blur, p=1)
    value, grad = ours_value_and_grad(x, y, blur, p=1)
    assert abs(float(value - ref_value)) <= 1e-4 * abs(float(ref_value))
    assert rel(grad.reshape(len(x), -1), ref_grad) <= 1e-4


@pytest.mark.parametrize("engine", ENGINES)
def test_other_scaling_matches_geomloss(engine):
    x, y = gaussian(60, 8, 20), gaussian(75, 8, 21, 0.5)
    ref_value, ref_grad = geomloss_value_and_grad(x, y, 0.1, scaling=0.8)
    value, grad = ours_value_and_grad(x, y, 0.1, scaling=0.8, engine=engine)
    assert abs(float(value - ref_value)) <= 1e-4 * abs(float(ref_value))
    assert rel(grad, ref_grad) <= 1e-4


def test_binary_points_with_many_ones_use_float_gram_and_match():
    g = torch.Generator().manual_seed(30)
    x = (torch.rand(50, 600, generator=g) < 0.6).float()
    y = (torch.rand(40, 600, generator=g) < 0.5).float()
    assert not _Cloud.of(x).exact_binary  # ~360 ones per row: bfloat16 products would not be exact
    ref_value, ref_grad = geomloss_value_and_grad(x, y, 0.2)
    value, grad = ours_value_and_grad(x, y, 0.2)
    assert abs(float(value - ref_value)) <= 1e-4 * abs(float(ref_value))
    assert rel(grad, ref_grad) <= 1e-4


def test_bfloat16_gram_of_one_hot_is_exact():
    x, y = one_hot(70, 100, 3, 31).reshape(70, -1), one_hot(60, 100, 3, 32).reshape(60, -1)
    gram = _gram(_Cloud.of(x), _Cloud.of(y))
    assert gram.dtype == torch.bfloat16
    assert torch.equal(gram.float(), x @ y.T)


def test_float64_gradient_matches_geomloss_autograd_tightly():
    x, y = gaussian(30, 5, 40).double(), gaussian(25, 5, 41, 0.4).double()
    ref_value, ref_grad = geomloss_value_and_grad(x, y, 0.3)
    value, grad = ours_value_and_grad(x, y, 0.3)
    assert value.dtype == torch.float64
    assert abs(float(value - ref_value)) <= 1e-10 * abs(float(ref_value))
    assert rel(grad, ref_grad) <= 1e-10


def test_gradient_matches_finite_differences_when_converged():
    # With a large blur and a slow ε-scaling the loop nearly converges, so the envelope gradient is
    # close to the derivative of the value itself (dropping either plan term would be off by ~100%).
    x, y = gaussian(12, 3, 42).double(), gaussian(10, 3, 43, 0.5).double()

    def loss(points):
        return sinkhorn_divergence(points, y, blur=2.0, scaling=0.99)

    _, grad = ours_value_and_grad(x, y, 2.0, scaling=0.99)
    direction = gaussian(12, 3, 44).double()
    h = 1e-5
    numeric = (loss(x + h * direction) - loss(x - h * direction)) / (2 * h)
    assert float(numeric) == pytest.approx(float((grad * direction).sum()), rel=1e-3)


def test_gradient_with_respect_to_target_matches_geomloss():
    x, y = gaussian(40, 6, 45), gaussian(35, 6, 46, 0.5)
    y_ref, y_ours = y.clone().requires_grad_(True), y.clone().requires_grad_(True)
    SamplesLoss("sinkhorn", p=2, blur=0.2, backend="tensorized")(x, y_ref).backward()
    sinkhorn_divergence(x, y_ours).backward()
    assert rel(y_ours.grad, y_ref.grad) <= 1e-4


@pytest.mark.parametrize("engine", ENGINES)
def test_divergence_of_a_cloud_with_itself_is_zero(engine):
    x = one_hot(100, 30, 3, 50)
    assert abs(float(sinkhorn_divergence(x, x.clone(), engine=engine))) < 1e-4
    z = gaussian(80, 10, 51)
    assert abs(float(sinkhorn_divergence(z, z.clone(), engine=engine))) < 1e-4


@pytest.mark.parametrize("engine", ENGINES)
def test_symmetry_and_permutation_invariance(engine):
    x, y = one_hot(90, 30, 3, 52), one_hot(110, 30, 3, 53, [0.5, 0.25, 0.25])
    forward = float(sinkhorn_divergence(x, y, engine=engine))
    assert float(sinkhorn_divergence(y, x, engine=engine)) == pytest.approx(forward, rel=1e-5)
    g = torch.Generator().manual_seed(54)
    shuffled = float(
        sinkhorn_divergence(x[torch.randperm(90, generator=g)], y[torch.randperm(110, generator=g)], engine=engine)
    )
    assert shuffled == pytest.approx(forward, rel=1e-5)


def test_prepared_target_gives_the_same_value_and_remembers_its_potentials():
    x, y = one_hot(80, 30, 3, 55), one_hot(70, 30, 3, 56)
    y[:, 0] = torch.tensor([1.0, 0.0, 0.0])  # the first step never varies in the target
    target = SinkhornTarget.prepare(y)
    first, grad_first = ours_value_and_grad(x, y, 0.2, target=target)
    assert len(target.yy_means) == 1
    second, grad_second = ours_value_and_grad(x, y, 0.2, target=target)
    plain, grad_plain = ours_value_and_grad(x, y, 0.2)
    assert float(first) == float(second) == pytest.approx(float(plain), rel=1e-6)
    assert torch.allclose(grad_first, grad_plain) and torch.allclose(grad_second, grad_plain)
    # A generated batch whose first step is fixed too shrinks the bounding box of x ∪ y, hence the ε
    # schedule: the target keeps a second entry, and the value is still right.
    narrow = x.clone()
    narrow[:, 0] = torch.tensor([1.0, 0.0, 0.0])
    assert float(sinkhorn_divergence(narrow, y, target=target)) == pytest.approx(
        float(sinkhorn_divergence(narrow, y)), rel=1e-6
    )
    assert len(target.yy_means) == 2


def test_epsilon_schedule_is_geomlosss():
    from geomloss._legacy.sinkhorn_divergence import epsilon_schedule as reference

    for p, diameter, blur, scaling in [(2, 17.32, 0.2, 0.5), (1, 3.0, 0.05, 0.7), (2, 0.1, 0.2, 0.5)]:
        assert epsilon_schedule(p, diameter, blur, scaling) == pytest.approx(reference(p, diameter, blur, scaling))
    x, y = one_hot(50, 100, 3, 57).reshape(50, -1), one_hot(40, 100, 3, 58).reshape(40, -1)
    assert max_diameter(x, y) == pytest.approx(300**0.5)
    assert len(epsilon_schedule(2, 300**0.5, 0.2, 0.5)) == 9


def test_identical_points_give_zero_with_zero_gradient():
    x = torch.ones(5, 4, requires_grad=True)
    value = sinkhorn_divergence(x, torch.ones(3, 4))
    value.backward()
    assert float(value.detach()) == pytest.approx(0.0, abs=1e-6)
    assert torch.allclose(x.grad, torch.zeros_like(x.grad), atol=1e-6)


@pytest.mark.parametrize("engine", ENGINES[:-1])
def test_out_of_range_kernel_sums_fall_back_to_exact_log_sum_exp(engine):
    # The plain softmin update of f does not depend on f; shifting f by 1000 ε makes every kernel
    # sum overflow, so the result must come from the exact fallback and still be the same.
    x, y = gaussian(50, 4, 60), gaussian(40, 4, 61, 0.5)
    xs, ys = _Cloud.of(x), _Cloud.of(y)
    problem = _CrossProblem(_gram(xs, ys), xs.half_sq_norms, ys.half_sq_norms, kernels.get_engine(engine, x))
    eps = 0.04
    f, g = torch.zeros(50), torch.zeros(40)
    f_ref, g_ref, _ = problem.update(f, g, eps)
    f_new, _, plan = problem.update(f + 1000 * eps, g, eps, keep_plan=True)
    assert torch.allclose(f_new, f_ref, rtol=1e-5, atol=1e-5)
    K, s = plan
    assert torch.isfinite(K).all() and torch.allclose((K / s[:, None]).sum(1), torch.ones(50))


@pytest.mark.skipif(not NATIVE, reason="no C compiler")
def test_native_passes_match_torch_passes():
    g = torch.Generator().manual_seed(70)
    G = torch.randn(71, 90, generator=g) * 3  # odd sizes: the paired-row kernels' remainders
    f, gg = torch.randn(71, generator=g), torch.randn(90, generator=g)
    hx, hy = torch.rand(71, generator=g), torch.rand(90, generator=g)
    native, eager = kernels.get_engine("native", G), kernels.TorchEngine()
    a = native.cross_step(G, f, gg, hx, hy, 0.7, -1.0, -2.0, False, True)
    b = eager.cross_step(G, f, gg, hx, hy, 0.7, -1.0, -2.0, False, True)
    for u, v in [(a.rows, b.rows), (a.cols, b.cols), (a.K, b.K)]:
        assert torch.allclose(u, v, rtol=1e-5)
    assert torch.allclose(a.f, f - 0.7 * (-2.0 + b.rows.log()), rtol=1e-6, atol=1e-6)
    S = G[:, :71] + G[:, :71].T
    assert torch.allclose(
        native.self_step(S, f, hx, 0.7, -1.0, False).rows, eager.self_step(S, f, hx, 0.7, -1.0, False).rows, rtol=1e-5
    )
    assert torch.allclose(
        native.self_step(S.bfloat16(), f, hx, 0.7, -1.0, False).rows,
        eager.self_step(S.bfloat16(), f, hx, 0.7, -1.0, False).rows,
        rtol=1e-5,
    )


@pytest.mark.skipif(not NATIVE, reason="no C compiler")
def test_native_mix_sparse_and_dense_paths_match_matrix_product():
    g = torch.Generator().manual_seed(71)
    Y = torch.randn(300, 17, generator=g)
    s = torch.rand(200, generator=g) + 0.5
    native = kernels.get_engine("native", Y)
    dense = torch.rand(200, 300, generator=g)
    sparse = torch.where(torch.rand(200, 300, generator=g) < 0.01, dense, torch.zeros(()))
    for K in (dense, sparse):
        expected = (K / s[:, None]) @ Y
        assert torch.allclose(native.mix(K, s, Y), expected, rtol=1e-5, atol=1e-5)


def test_engine_selection_and_forced_eager(monkeypatch):
    x = torch.zeros(3, 2)
    monkeypatch.setenv("RNNSCOPE_COMPILE", "0")
    assert isinstance(kernels.get_engine("auto", x), kernels.TorchEngine)
    monkeypatch.delenv("RNNSCOPE_COMPILE")
    assert isinstance(kernels.get_engine("auto", x.double()), kernels.TorchEngine)
    assert isinstance(kernels.get_engine("auto", x), kernels.NativeEngine if NATIVE else kernels.TorchEngine)
    with pytest.raises(RuntimeError, match="float32 CPU"):
        kernels.get_engine("native", x.double())


def test_failed_build_falls_back_to_torch_with_a_warning(monkeypatch, tmp_path):
    monkeypatch.setattr(kernels, "_library", None)
    monkeypatch.setattr(kernels, "_library_error", None)
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setenv("RNNSCOPE_CACHE_DIR", str(tmp_path))
    with pytest.warns(RuntimeWarning, match="could not be built"):
        engine = kernels.get_engine("auto", torch.zeros(2, 2))
    assert isinstance(engine, kernels.TorchEngine)


def test_bad_arguments_raise_clear_errors():
    x = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="blur"):
        sinkhorn_divergence(x, x, blur=0.0)
    with pytest.raises(ValueError, match="p must be"):
        sinkhorn_divergence(x, x, p=3)
    with pytest.raises(ValueError, match="scaling"):
        sinkhorn_divergence(x, x, scaling=1.0)
    with pytest.raises(ValueError, match="engine"):
        sinkhorn_divergence(x, x, engine="gpu")
    with pytest.raises(ValueError, match="same number of features"):
        sinkhorn_divergence(x, torch.zeros(4, 5))
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        sinkhorn_divergence(torch.zeros(3), x)
    with pytest.raises(TypeError, match="floating-point"):
        sinkhorn_divergence(x.long(), x)


@pytest.mark.skipif(not NATIVE, reason="no C compiler")
def test_plan_buffers_are_reused_only_once_released():
    held = kernels._plan_buffer(13, 7)
    other = kernels._plan_buffer(13, 7)
    assert other.data_ptr() != held.data_ptr()
    address = held.data_ptr()
    del held
    assert kernels._plan_buffer(13, 7).data_ptr() == address


def test_two_forwards_before_their_backwards_keep_separate_plans():
    y = one_hot(60, 30, 3, 80)
    x1, x2 = one_hot(50, 30, 3, 81), one_hot(50, 30, 3, 82)
    _, grad1 = geomloss_value_and_grad(x1.reshape(50, -1), y.reshape(60, -1), 0.2)
    _, grad2 = geomloss_value_and_grad(x2.reshape(50, -1), y.reshape(60, -1), 0.2)
    a, b = x1.clone().requires_grad_(True), x2.clone().requires_grad_(True)
    loss_a, loss_b = sinkhorn_divergence(a, y), sinkhorn_divergence(b, y)
    loss_b.backward()
    loss_a.backward()
    assert rel(a.grad.reshape(50, -1), grad1) <= 1e-4 and rel(b.grad.reshape(50, -1), grad2) <= 1e-4
