"""A plain vanilla RNN built from given weights: ``h_{t+1} = φ(W_hh h_t + W_in x_{t+1} + b)``.

It is the test bed of the dynamical-systems analyses (hand-built networks with known fixed points and
cycles) and the container of small distilled models. It satisfies
:class:`rnnscope.models.base.RecurrentModel`.

Shapes: ``B`` batch, ``H`` hidden units, ``I`` input dimensions (may be 0), ``K`` outputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnscope.models.base import Nonlinearity, VanillaDynamics

_NONLINEARITIES = ("relu", "tanh")


class VanillaRNN(torch.nn.Module):
    """A vanilla RNN ``h_{t+1} = φ(W_hh h_t + W_in x_{t+1} + b)`` with readout ``W_out h + b_out``.

    Parameters: ``weight_hh`` (H, H), ``weight_ih`` (H, I), ``bias`` (H,) or None, ``weight_out``
    (K, H), ``bias_out`` (K,) or None. Build one with :meth:`from_weights`.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        *,
        nonlinearity: Nonlinearity = "relu",
        bias: bool = True,
        readout_bias: bool = True,
    ) -> None:
        super().__init__()
        if nonlinearity not in _NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {_NONLINEARITIES}; got {nonlinearity!r}")
        for name, size in (("input_size", input_size), ("hidden_size", hidden_size), ("output_size", output_size)):
            if int(size) < 0 or (name == "hidden_size" and int(size) == 0):
                raise ValueError(f"{name} must be a positive integer (input_size may be 0); got {size}")
        self.nonlinearity: Nonlinearity = nonlinearity
        self.weight_hh = torch.nn.Parameter(torch.zeros(hidden_size, hidden_size))
        self.weight_ih = torch.nn.Parameter(torch.zeros(hidden_size, input_size))
        self.bias = torch.nn.Parameter(torch.zeros(hidden_size)) if bias else None
        self.weight_out = torch.nn.Parameter(torch.zeros(output_size, hidden_size))
        self.bias_out = torch.nn.Parameter(torch.zeros(output_size)) if readout_bias else None

    @classmethod
    def from_weights(
        cls,
        W_hh,
        W_in=None,
        b=None,
        W_out=None,
        b_out=None,
        nonlinearity: Nonlinearity = "relu",
    ) -> "VanillaRNN":
        """Build a network from arrays or tensors (copied; float32).

        ``W_hh`` (H, H); ``W_in`` (H, I) or None for a network without input (I = 0); ``b`` (H,) or
        None (no bias); ``W_out`` (K, H) or None, meaning the identity readout (K = H: the logits are
        the hidden state); ``b_out`` (K,) or None.
        """
        W_hh = _as_tensor(W_hh, "W_hh")
        if W_hh.ndim != 2 or W_hh.shape[0] != W_hh.shape[1] or W_hh.shape[0] == 0:
            raise ValueError(f"W_hh must be a square matrix of shape (H, H); got shape {tuple(W_hh.shape)}")
        H = W_hh.shape[0]
        W_in = torch.zeros(H, 0) if W_in is None else _as_tensor(W_in, "W_in")
        if W_in.ndim != 2 or W_in.shape[0] != H:
            raise ValueError(f"W_in must have shape (H, I) = ({H}, I); got shape {tuple(W_in.shape)}")
        W_out = torch.eye(H) if W_out is None else _as_tensor(W_out, "W_out")
        if W_out.ndim != 2 or W_out.shape[1] != H:
            raise ValueError(f"W_out must have shape (K, H) = (K, {H}); got shape {tuple(W_out.shape)}")
        model = cls(W_in.shape[1], H, W_out.shape[0], nonlinearity=nonlinearity, bias=b is not None,
                    readout_bias=b_out is not None)
        with torch.no_grad():
            model.weight_hh.copy_(W_hh)
            model.weight_ih.copy_(W_in)
            model.weight_out.copy_(W_out)
            if b is not None:
                model.bias.copy_(_vector(b, H, "b"))
            if b_out is not None:
                model.bias_out.copy_(_vector(b_out, W_out.shape[0], "b_out"))
        return model

    @property
    def hidden_size(self) -> int:
        return self.weight_hh.shape[0]

    @property
    def input_size(self) -> int:
        return self.weight_ih.shape[1]

    @property
    def output_size(self) -> int:
        return self.weight_out.shape[0]

    def step(self, h: Tensor, x: Tensor | None = None) -> Tensor:
        """One step: ``h`` (B, H), ``x`` (B, I) or None (no input) → (B, H)."""
        pre = h @ self.weight_hh.T
        if self.bias is not None:
            pre = pre + self.bias
        if x is not None and self.input_size > 0:
            pre = pre + x @ self.weight_ih.T
        return torch.relu(pre) if self.nonlinearity == "relu" else torch.tanh(pre)

    def readout(self, h: Tensor) -> Tensor:
        """Logits (..., K) of hidden states (..., H)."""
        logits = h @ self.weight_out.T
        return logits if self.bias_out is None else logits + self.bias_out

    def vanilla_dynamics(self) -> VanillaDynamics:
        """The weights as detached tensors (zeros for absent biases)."""
        H, K = self.hidden_size, self.output_size
        zeros = self.weight_hh.new_zeros
        return VanillaDynamics(
            W_hh=self.weight_hh.detach(),
            W_in=self.weight_ih.detach(),
            b=zeros(H) if self.bias is None else self.bias.detach(),
            W_out=self.weight_out.detach(),
            b_out=zeros(K) if self.bias_out is None else self.bias_out.detach(),
            nonlinearity=self.nonlinearity,
        )

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, output_size={self.output_size}, "
                f"nonlinearity={self.nonlinearity!r}, bias={self.bias is not None}")


def _as_tensor(value, name: str) -> Tensor:
    try:
        return torch.as_tensor(value).detach().to(torch.float32).clone()
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"{name} must be an array or tensor of numbers; got {type(value).__name__}") from exc


def _vector(value, size: int, name: str) -> Tensor:
    tensor = _as_tensor(value, name)
    if tensor.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},); got shape {tuple(tensor.shape)}")
    return tensor
