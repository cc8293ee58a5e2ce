"""The task RNN of the IBL system (Schaeffer et al., NeurIPS 2020): a small recurrent policy.

At step t it reads ``x_t = [o^L_t, o^R_t, r_{t−1}]`` and outputs action probabilities::

    h_t = φ(W_ih x_t + W_hh h_{t−1} + b)        φ = tanh (the paper's) or ReLU;   h_0 = 0
    p_t = softmax(W_out h_t + b_out)             (p_L, p_R)

or a GRU cell in place of the vanilla update. The paper's network is tanh with H = 50, biases on.
``b`` is the sum of ``torch.nn.RNN``'s two biases (the same map with one parameter fewer).

Two ways to run it:

* :meth:`TaskRNN.forward` — a whole input sequence at once, differentiable (the vanilla cells use
  the fused recurrence of :mod:`rnnscope.models._vanilla_autograd`: one autograd node for the whole
  sequence). Training re-runs the network this way on the inputs a closed-loop rollout produced.
* :meth:`TaskRNN.policy` — a closed-loop policy (``reset(batch)``/``act(x)``/``hidden``) for
  :func:`rnnscope.tasks.ibl.run_session`, stepping one time step at a time.

Shapes: ``B`` sessions, ``T`` steps, ``I`` inputs (3), ``H`` hidden units, ``K`` outputs (2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import torch
from pydantic import ValidationError
from torch import Tensor

from rnnscope.config.ibl import TaskRNNConfig
from rnnscope.core.random import Seed, torch_generator
from rnnscope.errors import ConfigError
from rnnscope.models._vanilla_autograd import vanilla_rnn
from rnnscope.models.base import VanillaDynamics
from rnnscope.models.checkpoints import register_model_kind

Cell = Literal["tanh", "relu", "gru"]
_CELLS = ("tanh", "relu", "gru")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class TaskOutput(NamedTuple):
    """What :meth:`TaskRNN.forward` returns, batch-first (views of time-major buffers).

    ``hidden`` (B, T, H): the states h_1 … h_T, one per input; ``logits`` (B, T, K): their readout.
    """

    hidden: Tensor
    logits: Tensor


class TaskRNN(torch.nn.Module):
    """A tanh/ReLU vanilla RNN or a GRU with a linear readout and a softmax: a policy for a task.

    Parameters of the vanilla cells (initialised like ``torch.nn.RNN`` then ``torch.nn.Linear``:
    every entry U(−1/√H, 1/√H), the bias the sum of two such draws): ``weight_ih`` (H, I),
    ``weight_hh`` (H, H), ``bias`` (H,) or None, ``weight_out`` (K, H), ``bias_out`` (K,) or None.
    A GRU keeps its weights in ``gru`` (a ``torch.nn.GRU``) and has the same readout.

    Args:
        input_size: I (3 for the IBL task).
        hidden_size: H (50 in the paper).
        output_size: K (2: p_L, p_R).
        cell: "tanh", "relu" or "gru".
        bias: recurrent bias(es) on.
        readout_bias: readout bias on.
        dtype: torch.float32 or torch.float64.
        seed: seed of the initial weights (None: torch's global generator, like ``torch.nn``).

    ``system = "ibl"`` tells analysis pipelines which task the model belongs to.
    """

    system = "ibl"

    def __init__(
        self,
        input_size: int = 3,
        hidden_size: int = 50,
        output_size: int = 2,
        *,
        cell: Cell = "tanh",
        bias: bool = True,
        readout_bias: bool = True,
        dtype: torch.dtype = torch.float32,
        seed: Seed = None,
    ) -> None:
        super().__init__()
        for name, size in (("input_size", input_size), ("hidden_size", hidden_size), ("output_size", output_size)):
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ValueError(f"{name} must be a positive integer; got {size!r}")
        if cell not in _CELLS:
            raise ValueError(f"cell must be one of {_CELLS}; got {cell!r}")
        if dtype not in _DTYPES.values():
            raise ValueError(f"dtype must be torch.float32 or torch.float64; got {dtype}")
        self.cell: Cell = cell
        self.gru: torch.nn.GRU | None = None
        if cell == "gru":
            self.gru = torch.nn.GRU(input_size, hidden_size, bias=bias)
            self.weight_ih = self.weight_hh = self.bias = None
        else:
            self.weight_ih = torch.nn.Parameter(torch.empty(hidden_size, input_size))
            self.weight_hh = torch.nn.Parameter(torch.empty(hidden_size, hidden_size))
            self.bias = torch.nn.Parameter(torch.empty(hidden_size)) if bias else None
        self.weight_out = torch.nn.Parameter(torch.empty(output_size, hidden_size))
        self.bias_out = torch.nn.Parameter(torch.empty(output_size)) if readout_bias else None
        self._sizes = (input_size, hidden_size, output_size)
        self.reset_parameters(seed)
        self.to(dtype)

    def reset_parameters(self, seed: Seed = None) -> None:
        """Redraw every weight U(−1/√H, 1/√H) in the order ``nn.RNN``/``nn.GRU`` then ``nn.Linear`` draw them."""
        generator = None if seed is None else torch_generator(seed)
        bound = 1.0 / math.sqrt(self.hidden_size)
        with torch.no_grad():
            if self.gru is not None:
                for weight in self.gru.parameters():
                    weight.uniform_(-bound, bound, generator=generator)
            else:
                self.weight_ih.uniform_(-bound, bound, generator=generator)
                self.weight_hh.uniform_(-bound, bound, generator=generator)
                if self.bias is not None:
                    bias_hh = torch.empty_like(self.bias).uniform_(-bound, bound, generator=generator)
                    self.bias.uniform_(-bound, bound, generator=generator).add_(bias_hh)
            self.weight_out.uniform_(-bound, bound, generator=generator)
            if self.bias_out is not None:
                self.bias_out.uniform_(-bound, bound, generator=generator)

    # ----------------------------------------------------------------------------------- builders

    @classmethod
    def from_config(
        cls, config: TaskRNNConfig | Mapping[str, Any], output_size: int | None = None, *, seed: Seed = None
    ) -> "TaskRNN":
        """A freshly initialised network from a :class:`TaskRNNConfig` (or its dict form).

        ``output_size``, when given, overrides the configuration's (the checkpoint loader passes it).
        """
        if not isinstance(config, TaskRNNConfig):
            try:
                config = TaskRNNConfig.model_validate(dict(config))
            except ValidationError as error:
                raise ConfigError(f"invalid task-RNN configuration: {error}") from None
        return cls(
            config.input_size,
            config.hidden_size,
            config.output_size if output_size is None else output_size,
            cell=config.cell,
            bias=config.bias,
            readout_bias=config.readout_bias,
            dtype=_DTYPES[config.dtype],
            seed=seed,
        )

    def to_config(self) -> TaskRNNConfig:
        """The configuration that rebuilds this architecture."""
        dtype = next(name for name, value in _DTYPES.items() if value == self.dtype)
        has_bias = (self.gru.bias if self.gru is not None else self.bias is not None)
        return TaskRNNConfig(
            input_size=self.input_size,
            hidden_size=self.hidden_size,
            output_size=self.output_size,
            cell=self.cell,
            bias=bool(has_bias),
            readout_bias=self.bias_out is not None,
            dtype=dtype,
        )

    @classmethod
    def from_weights(
        cls,
        W_ih: Any,
        W_hh: Any,
        W_out: Any,
        *,
        b: Any = None,
        b_out: Any = None,
        cell: Literal["tanh", "relu"] = "tanh",
    ) -> "TaskRNN":
        """A vanilla network with given weights (copied), in the dtype of ``W_hh`` (float32 or float64).

        ``W_ih`` (H, I), ``W_hh`` (H, H), ``W_out`` (K, H), ``b`` (H,) or None, ``b_out`` (K,) or None;
        the sizes come from the weights. For a reference ``nn.RNN``, pass ``b = b_ih + b_hh``.
        """
        if cell not in ("tanh", "relu"):
            raise ValueError(f"from_weights builds vanilla cells only ('tanh' or 'relu'); got {cell!r}")
        W_hh = _as_weight(W_hh, "W_hh")
        dtype = W_hh.dtype if W_hh.dtype in (torch.float32, torch.float64) else torch.float32
        W_ih, W_out = _as_weight(W_ih, "W_ih").to(dtype), _as_weight(W_out, "W_out").to(dtype)
        if W_hh.ndim != 2 or W_hh.shape[0] != W_hh.shape[1]:
            raise ValueError(f"W_hh must be a square matrix (H, H); got shape {tuple(W_hh.shape)}")
        H = W_hh.shape[0]
        if W_ih.ndim != 2 or W_ih.shape[0] != H:
            raise ValueError(f"W_ih must have shape (H, I) = ({H}, I); got {tuple(W_ih.shape)}")
        if W_out.ndim != 2 or W_out.shape[1] != H:
            raise ValueError(f"W_out must have shape (K, H) = (K, {H}); got {tuple(W_out.shape)}")
        model = cls(W_ih.shape[1], H, W_out.shape[0], cell=cell, bias=b is not None, readout_bias=b_out is not None,
                    dtype=dtype, seed=0)
        with torch.no_grad():
            model.weight_ih.copy_(W_ih)
            model.weight_hh.copy_(W_hh.to(dtype))
            model.weight_out.copy_(W_out)
            for value, target, name in ((b, model.bias, "b"), (b_out, model.bias_out, "b_out")):
                if value is not None:
                    vector = _as_weight(value, name)
                    if vector.shape != target.shape:
                        raise ValueError(f"{name} must have shape {tuple(target.shape)}; got {tuple(vector.shape)}")
                    target.copy_(vector)
        return model

    # ------------------------------------------------------------------------- the RecurrentModel API

    @property
    def input_size(self) -> int:
        """I, inputs per step."""
        return self._sizes[0]

    @property
    def hidden_size(self) -> int:
        """H, hidden units."""
        return self._sizes[1]

    @property
    def output_size(self) -> int:
        """K, outputs (action probabilities)."""
        return self._sizes[2]

    @property
    def dtype(self) -> torch.dtype:
        """The weights' floating-point type."""
        return self.weight_out.dtype

    def step(self, h: Tensor, x: Tensor | None = None) -> Tensor:
        """One step of the state map: ``h`` (B, H) and ``x`` (B, I) or None (no input) → (B, H).

        The vanilla update runs the same operations in the same order as :meth:`forward`, so a
        closed loop stepped with it and a re-run of its inputs agree to rounding (often bit-for-bit).
        """
        if x is None:
            x = h.new_zeros(h.shape[0], self.input_size)
        if self.gru is not None:
            g = self.gru
            return torch.gru_cell(x, h, g.weight_ih_l0, g.weight_hh_l0, getattr(g, "bias_ih_l0", None),
                                  getattr(g, "bias_hh_l0", None))
        if self.bias is None:
            pre = torch.mm(x, self.weight_ih.T)
        else:
            pre = torch.addmm(self.bias, x, self.weight_ih.T)
        pre = pre.addmm_(h, self.weight_hh.T)
        return pre.relu_() if self.cell == "relu" else pre.tanh_()

    def readout(self, h: Tensor) -> Tensor:
        """Logits (..., K) of hidden states (..., H)."""
        return torch.nn.functional.linear(h, self.weight_out, self.bias_out)

    def probabilities(self, h: Tensor) -> Tensor:
        """Action probabilities ``softmax(readout(h))`` (..., K) of hidden states (..., H)."""
        return torch.softmax(self.readout(h), dim=-1)

    def vanilla_dynamics(self) -> VanillaDynamics | None:
        """The weights as a :class:`VanillaDynamics` (detached), or None for a GRU."""
        if self.gru is not None:
            return None
        W_hh = self.weight_hh.detach()
        return VanillaDynamics(
            W_hh=W_hh,
            W_in=self.weight_ih.detach(),
            b=self.bias.detach() if self.bias is not None else W_hh.new_zeros(self.hidden_size),
            W_out=self.weight_out.detach(),
            b_out=self.bias_out.detach() if self.bias_out is not None else W_hh.new_zeros(self.output_size),
            nonlinearity=self.cell,
        )

    # ------------------------------------------------------------------------------------ sequences

    def forward(self, inputs: Tensor, h0: Tensor | None = None) -> TaskOutput:
        """Run the network on whole input sequences ``inputs`` (B, T, I) from ``h0`` (B, H) (None: zeros).

        Differentiable in the weights. Returns batch-first views of time-major results; a
        time-major caller passes ``inputs_tbi.transpose(0, 1)`` and transposes back for free.
        """
        if inputs.ndim != 3 or inputs.shape[2] != self.input_size:
            raise ValueError(f"inputs must have shape (B, T, {self.input_size}); got {tuple(inputs.shape)}")
        B = inputs.shape[0]
        if h0 is not None and tuple(h0.shape) != (B, self.hidden_size):
            raise ValueError(f"h0 must have shape ({B}, {self.hidden_size}); got {tuple(h0.shape)}")
        inputs_tbi = inputs.transpose(0, 1).to(self.dtype)
        if self.gru is not None:
            hidden_tbh, _ = self.gru(inputs_tbi, None if h0 is None else h0[None].to(self.dtype))
            logits_tbk = self.readout(hidden_tbh)
        else:
            hidden_tbh, logits_tbk = vanilla_rnn(
                inputs_tbi, h0, self.weight_ih, self.weight_hh, self.bias, self.weight_out, self.bias_out, self.cell
            )
        return TaskOutput(hidden=hidden_tbh.transpose(0, 1), logits=logits_tbk.transpose(0, 1))

    def policy(self) -> "TaskRNNPolicy":
        """A closed-loop policy for :func:`rnnscope.tasks.ibl.run_session` (see :class:`TaskRNNPolicy`)."""
        return TaskRNNPolicy(self)

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, hidden_size={self.hidden_size}, output_size={self.output_size}, "
                f"cell={self.cell!r}, bias={self.to_config().bias}, readout_bias={self.bias_out is not None}, "
                f"dtype={self.dtype}")


class TaskRNNPolicy:
    """A :class:`TaskRNN` as a closed-loop policy: ``reset(batch)``, ``act(x) -> (p_L, p_R)``, ``hidden``.

    ``reset(B)`` sets h_0 = 0 for B sessions; ``act(x)`` reads x_t (B, I) (cast to the model's dtype
    and device), updates h_t and returns ``softmax(W_out h_t + b_out)`` (B, K). ``hidden`` (B, H) is
    h_t after the last ``act``. Gradients are not tracked (the runner wraps it in ``no_grad`` anyway).
    """

    def __init__(self, model: TaskRNN) -> None:
        self.model = model
        self.hidden: Tensor | None = None

    def reset(self, batch_size: int) -> None:
        """Start ``batch_size`` sessions from h_0 = 0."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
        weight = self.model.weight_out
        self.hidden = torch.zeros(batch_size, self.model.hidden_size, dtype=weight.dtype, device=weight.device)

    def act(self, x: Tensor) -> Tensor:
        """One closed-loop step: inputs ``x`` (B, I) → probabilities (B, K)."""
        if self.hidden is None:
            raise RuntimeError("call reset(batch_size) before act()")
        with torch.no_grad():
            self.hidden = self.model.step(self.hidden, x.to(self.hidden.dtype))
            return self.model.probabilities(self.hidden)


def _as_weight(value: Any, name: str) -> Tensor:
    tensor = value.detach().clone() if isinstance(value, Tensor) else torch.as_tensor(value)
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must hold floating-point numbers; got dtype {tensor.dtype}")
    return tensor


register_model_kind("task_rnn", TaskRNN)
