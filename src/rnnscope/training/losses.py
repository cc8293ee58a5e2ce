"""Distribution-matching losses between a batch of generated sequences and a batch of targets.

A :class:`DistributionLoss` compares two clouds of flattened one-hot sequences: ``generated`` of
shape (B, T, K) or (B, D) and ``target`` of shape (M, T, K) or (M, D), both floating point, and
returns a differentiable scalar. Three are registered (:data:`LOSSES`, built by :func:`make_loss`
from a :class:`~rnnscope.config.schema.LossConfig`):

- ``sinkhorn``: the debiased Sinkhorn divergence of :mod:`rnnscope.training.sinkhorn` (geomloss's);
- ``mmd``: the squared maximum mean discrepancy with a Gaussian kernel,
  ½⟨α−β, k⋆(α−β)⟩ with k(x, y) = exp(−|x−y|²/2σ²), σ = bandwidth·√T (geomloss's "gaussian");
- ``energy``: the energy distance ½⟨α−β, k⋆(α−β)⟩ with k(x, y) = −|x−y| (geomloss's "energy").

**Target cache.** ``target_key`` (any hashable) lets a loss keep what depends on the target batch
alone between calls: the prepared target and its y↔y potentials (Sinkhorn), the ⟨β, kβ⟩ term
(MMD, energy). An entry is used only if the target has the same shape, dtype and device and the
same fingerprint — its sum and a sum weighted by fixed pseudo-random weights, both in float64 —
as when it was stored; otherwise it is recomputed and replaced. Any change of the target's values
is therefore detected (short of an adversarial change preserving both sums). At most
``CACHE_SIZE`` keys are kept (least recently used dropped).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import torch
from torch import Tensor

from rnnscope.config.schema import LossConfig
from rnnscope.errors import ConfigError
from rnnscope.training.sinkhorn import SinkhornTarget, check_options, sinkhorn_divergence

CACHE_SIZE = 32
"""Target batches a loss remembers (training uses one key per fixed batch: train and validation)."""


class DistributionLoss(ABC):
    """A loss between two batches of sequences; call it as ``loss(generated, target, target_key=...)``."""

    name: str = ""

    def __init__(self) -> None:
        self._cache: OrderedDict[Hashable, tuple[tuple, Any]] = OrderedDict()

    def __call__(self, generated: Tensor, target: Tensor, *, target_key: Hashable | None = None) -> Tensor:
        """The loss (a 0-dim tensor, differentiable with respect to ``generated``).

        ``generated``: (B, T, K) or (B, D); ``target``: (M, T, K) or (M, D), same D = T·K, dtype and
        device. ``target_key``: reuse target-only quantities stored under this key (see module doc).
        """
        x, y = _check_pair(generated, target)
        if target_key is None:
            return self._compute(x, y, self._prepare(y), generated)
        return self._compute(x, y, self._cached(target_key, y), generated)

    @abstractmethod
    def describe(self) -> str:
        """One line naming the loss and its parameters."""

    @abstractmethod
    def _prepare(self, y: Tensor) -> Any:
        """What depends on the target (M, D) alone."""

    @abstractmethod
    def _compute(self, x: Tensor, y: Tensor, prepared: Any, generated: Tensor) -> Tensor:
        """The loss of x (B, D) against y (M, D); ``generated`` is the caller's tensor (for its shape)."""

    def _cached(self, key: Hashable, y: Tensor) -> Any:
        stamp = fingerprint(y)
        entry = self._cache.get(key)
        if entry is not None and entry[0] == stamp:
            self._cache.move_to_end(key)
            return entry[1]
        prepared = self._prepare(y)
        self._cache[key] = (stamp, prepared)
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return prepared


class SinkhornLoss(DistributionLoss):
    """Debiased Sinkhorn divergence, cost |x−y|^p/p, ε = blur^p, ε-scaling ``scaling`` (geomloss's)."""

    name = "sinkhorn"

    def __init__(self, blur: float = 0.2, p: int = 2, scaling: float = 0.5, engine: str = "auto") -> None:
        super().__init__()
        self.blur, self.p, self.scaling, self.engine = blur, p, scaling, engine
        check_options(blur, p, scaling, engine)

    def describe(self) -> str:
        return f"debiased Sinkhorn divergence (p={self.p}, blur={self.blur:g}, scaling={self.scaling:g})"

    def _prepare(self, y: Tensor) -> SinkhornTarget:
        return SinkhornTarget.prepare(y)

    def _compute(self, x: Tensor, y: Tensor, prepared: SinkhornTarget, generated: Tensor) -> Tensor:
        return sinkhorn_divergence(
            generated, y, blur=self.blur, p=self.p, scaling=self.scaling, engine=self.engine, target=prepared
        )


class _KernelLoss(DistributionLoss):
    """½⟨α−β, k⋆(α−β)⟩ = ½ mean k(x,x') + ½ mean k(y,y') − mean k(x,y), uniform weights."""

    @abstractmethod
    def _kernel(self, sq_dist: Tensor, seq_len: int) -> Tensor:
        """k as a function of the squared distances (N, M), for sequences of ``seq_len`` steps."""

    def _prepare(self, y: Tensor) -> dict[int, Tensor]:
        return {}

    def _compute(self, x: Tensor, y: Tensor, prepared: dict[int, Tensor], generated: Tensor) -> Tensor:
        seq_len = self._seq_len(generated)
        if seq_len not in prepared:
            with torch.no_grad():
                yd = y.detach()
                prepared[seq_len] = self._kernel(_sq_dist(yd, yd), seq_len).mean()
        k_xx = self._kernel(_sq_dist(x, x), seq_len).mean()
        k_xy = self._kernel(_sq_dist(x, y), seq_len).mean()
        return 0.5 * k_xx + 0.5 * prepared[seq_len].to(x.dtype) - k_xy

    def _seq_len(self, generated: Tensor) -> int:
        return generated.shape[1] if generated.dim() == 3 else 1


class GaussianMMD(_KernelLoss):
    """Squared MMD with k(x, y) = exp(−|x−y|²/2σ²), σ = bandwidth·√T (T = time steps of a (B, T, K) input).

    For flattened (B, D) inputs T is ``seq_len`` if given, else 1 (σ = bandwidth). Equal to
    geomloss's ``SamplesLoss("gaussian", blur=σ)``.
    """

    name = "mmd"

    def __init__(self, bandwidth: float = 1.0, seq_len: int | None = None) -> None:
        super().__init__()
        if not bandwidth > 0:
            raise ValueError(f"bandwidth must be positive; got {bandwidth}")
        self.bandwidth, self.seq_len = bandwidth, seq_len

    def describe(self) -> str:
        return f"Gaussian-kernel MMD (bandwidth={self.bandwidth:g}·sqrt(T))"

    def sigma(self, seq_len: int) -> float:
        """The kernel width σ (input units) for sequences of ``seq_len`` steps."""
        return self.bandwidth * math.sqrt(seq_len)

    def _kernel(self, sq_dist: Tensor, seq_len: int) -> Tensor:
        return torch.exp(sq_dist / (-2.0 * self.sigma(seq_len) ** 2))

    def _seq_len(self, generated: Tensor) -> int:
        if generated.dim() == 3:
            return generated.shape[1]
        return self.seq_len if self.seq_len is not None else 1


class EnergyDistance(_KernelLoss):
    """Energy distance mean|x−y| − ½ mean|x−x'| − ½ mean|y−y'| (distances floored at 1e-4, as geomloss)."""

    name = "energy"

    def describe(self) -> str:
        return "energy distance"

    def _kernel(self, sq_dist: Tensor, seq_len: int) -> Tensor:
        return -sq_dist.clamp_min(1e-8).sqrt()


LOSSES: dict[str, Callable[[LossConfig], DistributionLoss]] = {
    "sinkhorn": lambda c: SinkhornLoss(blur=c.blur, p=c.p, scaling=c.scaling),
    "mmd": lambda c: GaussianMMD(bandwidth=c.bandwidth),
    "energy": lambda c: EnergyDistance(),
}
"""The registry: loss name → factory from a LossConfig."""


def make_loss(config: LossConfig) -> DistributionLoss:
    """The loss a :class:`~rnnscope.config.schema.LossConfig` names, with its parameters."""
    factory = LOSSES.get(config.name)
    if factory is None:
        raise ConfigError(
            f"unknown loss {config.name!r}; set training.loss.name to one of {sorted(LOSSES)}"
        )
    return factory(config)


def fingerprint(t: Tensor) -> tuple:
    """(shape, dtype, device, sum, weighted sum) of ``t``: what the target cache compares."""
    flat = t.detach().reshape(-1)
    weights = _weights(flat.numel(), flat.device)
    total = flat.sum(dtype=torch.float64)
    weighted = torch.dot(flat.to(torch.float64), weights)
    return (tuple(t.shape), t.dtype, str(t.device), float(total), float(weighted))


_weight_cache: dict[tuple[int, str], Tensor] = {}


def _weights(n: int, device: torch.device) -> Tensor:
    key = (n, str(device))
    if key not in _weight_cache:
        generator = torch.Generator().manual_seed(20250101)
        _weight_cache.clear()
        _weight_cache[key] = torch.rand(n, generator=generator, dtype=torch.float64).add_(0.5).to(device)
    return _weight_cache[key]


def _sq_dist(x: Tensor, y: Tensor) -> Tensor:
    """|x_i − y_j|² of shape (N, M), by the Gram expansion (as geomloss)."""
    return (x * x).sum(1)[:, None] - 2 * x @ y.T + (y * y).sum(1)[None, :]


def _check_pair(generated: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    for name, t in (("generated", generated), ("target", target)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(t).__name__}")
        if t.dim() not in (2, 3) or t.shape[0] == 0:
            raise ValueError(f"{name} must have shape (N, T, K) or (N, D) with N ≥ 1; got {tuple(t.shape)}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be floating point; got {t.dtype}")
    x, y = generated.reshape(generated.shape[0], -1), target.reshape(target.shape[0], -1)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"generated and target must flatten to the same width; got {tuple(generated.shape)} and {tuple(target.shape)}"
        )
    if generated.dim() == 3 and target.dim() == 3 and generated.shape[1:] != target.shape[1:]:
        raise ValueError(f"generated and target (T, K) differ: {tuple(generated.shape)} vs {tuple(target.shape)}")
    if x.dtype != y.dtype or x.device != y.device:
        raise ValueError(
            f"generated and target must share dtype and device; got {x.dtype}/{x.device} and {y.dtype}/{y.device}"
        )
    return x, y
