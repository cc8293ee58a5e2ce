"""The state map ``F(h) = step(h, u)`` of a model under one constant input ``u``, as the finders see it.

Two kinds: :class:`VanillaMap` for vanilla RNNs (``F(h) = φ(W h + c)`` with ``c = W_in u + b``; analytic
gradients and Jacobians, float64 copies of the weights) and :class:`ModelMap` for any other
:class:`~rnnscope.models.base.RecurrentModel` (autograd on a float64 copy of the model when it is a
``torch.nn.Module``). Neither modifies the caller's model.

Shapes: ``N`` states, ``H`` hidden units, ``I`` inputs.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor

from rnnscope.models.base import RecurrentModel


class StateMap:
    """Base class: ``F(h)`` for states (N, H), with ``q(h) = ½‖F(h) − h‖²`` and its gradient."""

    hidden_size: int
    dtype: torch.dtype
    device: torch.device

    def __call__(self, h_nxh: Tensor) -> Tensor:
        raise NotImplementedError

    def residual_and_gradient(self, h_nxh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``r = F(h) − h`` (N, H), ``q = ½‖r‖²`` (N,) and ``∇q = (J − I)ᵀ r`` (N, H)."""
        raise NotImplementedError

    def as_states(self, states) -> Tensor:
        """``states`` as a (N, H) tensor of this map's dtype and device (a copy)."""
        tensor = torch.as_tensor(np.asarray(states) if not isinstance(states, Tensor) else states)
        tensor = tensor.detach().to(device=self.device, dtype=self.dtype)
        if tensor.ndim == 1:
            tensor = tensor[None]
        if tensor.ndim != 2 or tensor.shape[1] != self.hidden_size:
            raise ValueError(
                f"states must have shape (N, H) with H = {self.hidden_size}; got shape {tuple(tensor.shape)}"
            )
        return tensor.clone()


class VanillaMap(StateMap):
    """``F(h) = φ(W h + c)`` with float64 copies of ``W`` (H, H) and ``c = W_in u + b`` (H,)."""

    def __init__(self, W: Tensor, c: Tensor, nonlinearity: str) -> None:
        self.W = W
        self.c = c
        self.nonlinearity = nonlinearity
        self.hidden_size = W.shape[0]
        self.dtype = W.dtype
        self.device = W.device

    def preactivation(self, h_nxh: Tensor) -> Tensor:
        """``W h + c`` (N, H)."""
        return torch.addmm(self.c, h_nxh, self.W.T)

    def derivative(self, pre_nxh: Tensor) -> Tensor:
        """``φ'(pre)`` (N, H); for ReLU the convention ``relu'(0) = 0``."""
        if self.nonlinearity == "relu":
            return (pre_nxh > 0).to(pre_nxh.dtype)
        return 1.0 - torch.tanh(pre_nxh) ** 2

    def _act(self, pre_nxh: Tensor) -> Tensor:
        return torch.relu(pre_nxh) if self.nonlinearity == "relu" else torch.tanh(pre_nxh)

    def __call__(self, h_nxh: Tensor) -> Tensor:
        return self._act(self.preactivation(h_nxh))

    def residual_and_gradient(self, h_nxh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        pre_nxh = self.preactivation(h_nxh)
        r_nxh = self._act(pre_nxh) - h_nxh
        q_n = 0.5 * (r_nxh * r_nxh).sum(1)
        grad_nxh = (self.derivative(pre_nxh) * r_nxh) @ self.W - r_nxh
        return r_nxh, q_n, grad_nxh


class ModelMap(StateMap):
    """``F(h) = model.step(h, u)`` of any protocol model, differentiated with autograd."""

    def __init__(self, model: RecurrentModel, u: Tensor | None, dtype: torch.dtype, device: torch.device) -> None:
        self.model = model
        self.u = u
        self.hidden_size = model.hidden_size
        self.dtype = dtype
        self.device = device

    def __call__(self, h_nxh: Tensor) -> Tensor:
        x = None if self.u is None else self.u.expand(h_nxh.shape[0], -1)
        return self.model.step(h_nxh, x)

    def single(self, h_h: Tensor) -> Tensor:
        """``F`` of one state (H,) → (H,) (for ``torch.func`` transforms)."""
        return self(h_h[None])[0]

    def residual_and_gradient(self, h_nxh: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        with torch.enable_grad():
            h = h_nxh.detach().requires_grad_(True)
            r_nxh = self(h) - h
            q_n = 0.5 * (r_nxh * r_nxh).sum(1)
            (grad_nxh,) = torch.autograd.grad(q_n.sum(), h)
        return r_nxh.detach(), q_n.detach(), grad_nxh


def state_map(model: RecurrentModel, input=None, *, dtype: torch.dtype = torch.float64) -> StateMap:
    """The map ``h ↦ step(h, input)`` of ``model`` (``input`` (I,) or None for no input).

    Vanilla RNNs give a :class:`VanillaMap` in ``dtype``; other ``torch.nn.Module`` models are deep-copied,
    cast to ``dtype`` and frozen (the copy, not the caller's model); other protocol objects are used as
    they are, in their own dtype (float32), which bounds the reachable precision of ``q`` near 1e-14.
    """
    _check_protocol(model)
    device = _device(model)
    dynamics = model.vanilla_dynamics()
    u = check_input(model, input, device=device, dtype=dtype)
    if dynamics is not None:
        W = dynamics.W_hh.detach().to(device=device, dtype=dtype).clone()
        c = dynamics.b.detach().to(device=device, dtype=dtype).clone()
        if u is not None:
            c = c + dynamics.W_in.detach().to(device=device, dtype=dtype) @ u
        return VanillaMap(W, c, dynamics.nonlinearity)
    if isinstance(model, torch.nn.Module):
        frozen = copy.deepcopy(model).to(dtype=dtype)
        for parameter in frozen.parameters():
            parameter.requires_grad_(False)
        frozen.eval()
        return ModelMap(frozen, u, dtype, device)
    own_dtype = torch.float32
    return ModelMap(model, None if u is None else u.to(own_dtype), own_dtype, device)


def check_input(model: RecurrentModel, input, *, device="cpu", dtype: torch.dtype = torch.float64) -> Tensor | None:
    """Validate a constant input: None (no input) or a vector of shape (I,); returns it as a tensor."""
    if input is None:
        return None
    values = torch.as_tensor(np.asarray(input, dtype=np.float64) if not isinstance(input, Tensor) else input)
    values = values.detach().to(device=device, dtype=dtype)
    if values.ndim != 1 or values.shape[0] != model.input_size:
        raise ValueError(
            f"input must be a constant input vector of shape (I,) = ({model.input_size},); got shape "
            f"{tuple(values.shape)} (pass input=None for no input)"
        )
    if not torch.isfinite(values).all():
        raise ValueError("input contains NaN or infinite values")
    return values


def _check_protocol(model) -> None:
    missing = [name for name in ("hidden_size", "input_size", "step", "vanilla_dynamics") if not hasattr(model, name)]
    if missing:
        raise TypeError(
            f"model must satisfy rnnscope.models.base.RecurrentModel; {type(model).__name__} lacks {missing}"
        )


def _device(model) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for parameter in model.parameters():
            return parameter.device
    return torch.device("cpu")
