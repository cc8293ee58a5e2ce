"""The contract every recurrent model in rnnscope satisfies, so analyses work on any of them.

A model is a discrete-time map ``h_{t+1} = F(h_t, x_{t+1})`` with a linear readout
``logits_t = W_out h_t + b_out``. Analyses (simulation, fixed points, vector fields, mechanisms) only
use this interface, never a particular class.

Shapes: ``B`` batch, ``H`` hidden units, ``I`` input dimensions, ``K`` outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor

Nonlinearity = Literal["relu", "tanh"]


@dataclass(frozen=True)
class VanillaDynamics:
    """The weights of a vanilla RNN ``F(h, x) = φ(W_hh h + W_in x + b)`` (detached tensors).

    ``W_hh`` (H, H), ``W_in`` (H, I), ``b`` (H,) — zeros when the model has no bias —, ``W_out``
    (K, H), ``b_out`` (K,) — zeros when the readout has no bias —, and ``nonlinearity``. With
    ``nonlinearity="relu"`` the map is piecewise linear, which the exact fixed-point finder uses.
    """

    W_hh: Tensor
    W_in: Tensor
    b: Tensor
    W_out: Tensor
    b_out: Tensor
    nonlinearity: Nonlinearity

    def step(self, h: Tensor, x: Tensor | None = None) -> Tensor:
        """One step ``φ(h W_hhᵀ + x W_inᵀ + b)``; ``h`` (..., H), ``x`` (..., I) or None (no input)."""
        pre = h @ self.W_hh.T + self.b
        if x is not None:
            pre = pre + x @ self.W_in.T
        return torch.relu(pre) if self.nonlinearity == "relu" else torch.tanh(pre)


@runtime_checkable
class RecurrentModel(Protocol):
    """What analyses need from a model."""

    @property
    def hidden_size(self) -> int: ...

    @property
    def input_size(self) -> int: ...

    @property
    def output_size(self) -> int: ...

    def step(self, h: Tensor, x: Tensor | None = None) -> Tensor:
        """One step of the state map: ``h`` (B, H), ``x`` (B, I) or None for no input → (B, H)."""
        ...

    def readout(self, h: Tensor) -> Tensor:
        """Logits (..., K) of hidden states (..., H)."""
        ...

    def vanilla_dynamics(self) -> VanillaDynamics | None:
        """The weights as a :class:`VanillaDynamics`, or None for gated cells (GRU)."""
        ...
