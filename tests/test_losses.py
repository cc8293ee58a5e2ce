"""The loss registry: construction from LossConfig, MMD and energy distance against geomloss, the
target-key cache (hits, and no stale values), and loss behaviour on same vs shifted distributions."""

from __future__ import annotations

import pytest
import torch
from geomloss import SamplesLoss

from rnnscope.config.schema import LossConfig
from rnnscope.errors import ConfigError
from rnnscope.training.losses import (
    EnergyDistance,
    GaussianMMD,
    SinkhornLoss,
    fingerprint,
    make_loss,
)
from rnnscope.training.sinkhorn import sinkhorn_divergence


def sticky_sequences(n, steps, seed, emission_peak=0.8, stay=0.95):
    """One-hot (n, steps, 3) sequences of a 2-state HMM (state 0 prefers symbol 0, state 1 symbol 2)."""
    g = torch.Generator().manual_seed(seed)
    side = (1.0 - emission_peak) / 2
    emissions = torch.tensor([[emission_peak, side, side], [side, side, emission_peak]])
    transitions = torch.tensor([[stay, 1 - stay], [1 - stay, stay]])
    state = torch.randint(0, 2, (n,), generator=g)
    symbols = []
    for _ in range(steps):
        symbols.append(torch.multinomial(emissions[state], 1, generator=g).squeeze(1))
        state = torch.multinomial(transitions[state], 1, generator=g).squeeze(1)
    return torch.nn.functional.one_hot(torch.stack(symbols, 1), 3).float()


def value_and_grad(loss_fn, x, y, **kwargs):
    x = x.clone().requires_grad_(True)
    value = loss_fn(x, y, **kwargs)
    value.backward()
    return float(value.detach()), x.grad


def test_make_loss_builds_each_registered_loss_with_its_parameters():
    sinkhorn = make_loss(LossConfig(name="sinkhorn", blur=0.1, p=1, scaling=0.7))
    assert isinstance(sinkhorn, SinkhornLoss) and (sinkhorn.blur, sinkhorn.p, sinkhorn.scaling) == (0.1, 1, 0.7)
    assert sinkhorn.name == "sinkhorn" and "blur=0.1" in sinkhorn.describe()
    mmd = make_loss(LossConfig(name="mmd", bandwidth=0.3))
    assert isinstance(mmd, GaussianMMD) and mmd.bandwidth == 0.3 and mmd.name == "mmd"
    assert "0.3" in mmd.describe()
    energy = make_loss(LossConfig(name="energy"))
    assert isinstance(energy, EnergyDistance) and energy.name == "energy"
    default = make_loss(LossConfig())
    assert isinstance(default, SinkhornLoss) and (default.blur, default.p, default.scaling) == (0.2, 2, 0.5)


def test_make_loss_rejects_an_unknown_name():
    with pytest.raises(ConfigError, match="one of"):
        make_loss(LossConfig.model_construct(name="wasserstein", blur=0.2, p=2, scaling=0.5, bandwidth=1.0))


def test_sinkhorn_loss_matches_geomloss_on_sequences():
    x, y = sticky_sequences(120, 30, 1), sticky_sequences(100, 30, 2)
    value, grad = value_and_grad(make_loss(LossConfig()), x, y)
    xr = x.reshape(120, -1).clone().requires_grad_(True)
    ref = SamplesLoss("sinkhorn", p=2, blur=0.2, scaling=0.5, backend="tensorized")(xr, y.reshape(100, -1))
    ref.backward()
    assert value == pytest.approx(float(ref.detach()), rel=1e-4)
    assert float((grad.reshape(120, -1) - xr.grad).norm() / xr.grad.norm()) < 1e-4


@pytest.mark.parametrize("bandwidth", [0.3, 1.0])
def test_mmd_matches_geomloss_gaussian_with_sigma_in_units_of_sqrt_steps(bandwidth):
    steps = 20
    x, y = sticky_sequences(90, steps, 3), sticky_sequences(80, steps, 4, emission_peak=0.6)
    value, grad = value_and_grad(GaussianMMD(bandwidth), x, y)
    sigma = bandwidth * steps**0.5
    xr = x.reshape(90, -1).clone().requires_grad_(True)
    ref = SamplesLoss("gaussian", blur=sigma, backend="tensorized")(xr, y.reshape(80, -1))
    ref.backward()
    assert value == pytest.approx(float(ref.detach()), rel=1e-4)
    assert float((grad.reshape(90, -1) - xr.grad).norm() / xr.grad.norm()) < 1e-4


def test_mmd_on_flat_inputs_uses_seq_len_or_absolute_sigma():
    x, y = torch.randn(40, 6), torch.randn(30, 6) + 0.5
    flat = GaussianMMD(0.5, seq_len=4)(x, y)
    ref = SamplesLoss("gaussian", blur=0.5 * 2.0, backend="tensorized")(x, y)
    assert float(flat) == pytest.approx(float(ref), rel=1e-5)
    absolute = GaussianMMD(0.7)(x, y)
    reference = SamplesLoss("gaussian", blur=0.7, backend="tensorized")(x, y)
    assert float(absolute) == pytest.approx(float(reference), rel=1e-5)


def test_energy_distance_matches_geomloss():
    x, y = torch.randn(70, 9), torch.randn(60, 9) * 1.5 + 0.2
    value, grad = value_and_grad(EnergyDistance(), x, y)
    xr = x.clone().requires_grad_(True)
    ref = SamplesLoss("energy", backend="tensorized")(xr, y)
    ref.backward()
    assert value == pytest.approx(float(ref.detach()), rel=1e-4)
    assert float((grad - xr.grad).norm() / xr.grad.norm()) < 1e-4


@pytest.mark.parametrize("loss", [SinkhornLoss(), GaussianMMD(0.3), EnergyDistance()], ids=lambda l: l.name)
def test_loss_is_near_zero_for_identical_batches_and_larger_for_a_shifted_distribution(loss):
    target = sticky_sequences(150, 10, 5)
    same = float(loss(target.clone(), target))
    other_sample = float(loss(sticky_sequences(150, 10, 6), target))
    uniform = float(loss(sticky_sequences(150, 10, 7, emission_peak=1 / 3, stay=0.5), target))
    assert abs(same) < 1e-4 * uniform
    assert uniform > 1.5 * other_sample > 0


@pytest.mark.parametrize("loss", [SinkhornLoss(), GaussianMMD(0.3), EnergyDistance()], ids=lambda l: l.name)
def test_target_cache_hit_equals_uncached_value_and_gradient(loss):
    x, y = sticky_sequences(80, 30, 8), sticky_sequences(70, 30, 9)
    plain, grad_plain = value_and_grad(loss, x, y)
    first, grad_first = value_and_grad(loss, x, y, target_key=("train", 0))
    hit, grad_hit = value_and_grad(loss, x, y.clone(), target_key=("train", 0))
    assert plain == pytest.approx(first, rel=1e-6) and hit == first
    assert torch.allclose(grad_first, grad_plain) and torch.equal(grad_hit, grad_first)
    assert len(loss._cache) == 1


@pytest.mark.parametrize("loss", [SinkhornLoss(), GaussianMMD(0.3), EnergyDistance()], ids=lambda l: l.name)
def test_changed_target_under_the_same_key_is_not_served_stale(loss):
    x, y = sticky_sequences(80, 30, 10), sticky_sequences(70, 30, 11)
    loss(x, y, target_key="batch")
    changed = y.clone()
    changed[3, 5] = changed[3, 5].roll(1)  # one symbol of one sequence differs
    fresh = float(loss(x, changed))
    assert float(loss(x, changed, target_key="batch")) == pytest.approx(fresh, rel=1e-6)
    resized = sticky_sequences(60, 30, 12)
    assert float(loss(x, resized, target_key="batch")) == pytest.approx(float(loss(x, resized)), rel=1e-6)


def test_fingerprint_separates_permuted_and_edited_targets():
    y = sticky_sequences(50, 10, 13)
    assert fingerprint(y) == fingerprint(y.clone())
    assert fingerprint(y) != fingerprint(y.flip(0))
    edited = y.clone()
    edited[0, 0] = edited[0, 0].roll(1)
    assert fingerprint(y) != fingerprint(edited)
    assert fingerprint(y) != fingerprint(y.double())


def test_sinkhorn_loss_accepts_flat_batches_and_equals_the_functional_form():
    x, y = sticky_sequences(60, 10, 14), sticky_sequences(50, 10, 15)
    loss = SinkhornLoss(blur=0.1, scaling=0.6)
    expected = float(sinkhorn_divergence(x, y, blur=0.1, scaling=0.6))
    assert float(loss(x.reshape(60, -1), y.reshape(50, -1))) == pytest.approx(expected, rel=1e-6)


def test_bad_inputs_raise_clear_errors():
    loss = SinkhornLoss()
    x = torch.zeros(4, 5, 3)
    with pytest.raises(ValueError, match="same width"):
        loss(x, torch.zeros(4, 6, 3))
    with pytest.raises(ValueError, match=r"\(T, K\) differ"):
        loss(x, torch.zeros(4, 3, 5))
    with pytest.raises(TypeError, match="floating point"):
        loss(x.long(), x)
    with pytest.raises(ValueError, match="shape"):
        loss(torch.zeros(5), x)
    with pytest.raises(ValueError, match="dtype and device"):
        loss(x, x.double())
    with pytest.raises(ValueError, match="blur"):
        SinkhornLoss(blur=-1.0)
    with pytest.raises(ValueError, match="bandwidth"):
        GaussianMMD(0.0)
