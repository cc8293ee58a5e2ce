"""Batched rollouts of any recurrent model: noise-driven, autonomous, clamped input or a given sequence.

Time convention (the same as ``NoiseRNN.generate``): the state starts at ``h_0``; step ``t`` computes
``h_t = F(h_{t-1}, x_t)``; the first ``warmup`` steps are run but not recorded; then every
``record_every``-th state is recorded, so ``hidden[:, j]`` is ``h_{warmup + (j + 1)·record_every}``
and ``logits[:, j]``/``outputs[:, j]`` are read from that state.

Shapes: ``B`` sequences, ``T`` recorded steps, ``H`` hidden units, ``I`` inputs, ``K`` outputs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from rnnscope.core.random import Seed, child_seeds, torch_generator
from rnnscope.core.results import Result
from rnnscope.models.base import RecurrentModel

InputMode = Literal["noise", "autonomous", "clamped", "sequence"]

CHUNK_ELEMENTS = 1 << 23
"""Time chunks hold at most about this many input/drive numbers (32 MB in float32)."""


@dataclasses.dataclass(frozen=True)
class Simulation(Result):
    """Recorded rollouts of a recurrent model.

    Fields:
        hidden: float32 (B, T, H) recorded hidden states, or None when ``return_hidden=False``.
        logits: float32 (B, T, K) readout of the recorded states.
        outputs: int64 (B, T) output symbols (sampled from ``softmax(logits)`` or the argmax).
        initial_hidden: float32 (B, H) the state ``h_0`` before warm-up.
        final_hidden: float32 (B, H) the state after the last simulated step.
        input_mode: "noise" (``x_t ~ N(0, σ² I)``), "autonomous" (no input), "clamped" (a constant
            input, plus noise if ``noise_std > 0``) or "sequence" (a given input sequence, plus noise).
        noise_std: σ, the standard deviation of the Gaussian input noise (input units).
        clamped_input: float32 (I,) or (B, I) for the "clamped" mode, else None.
        warmup: steps run before the first recorded one.
        record_every: steps between recorded states.
        output_mode: "sample" or "argmax".
    """

    hidden: np.ndarray | None
    logits: np.ndarray
    outputs: np.ndarray
    initial_hidden: np.ndarray
    final_hidden: np.ndarray
    input_mode: str
    noise_std: float
    clamped_input: np.ndarray | None
    warmup: int
    record_every: int
    output_mode: str

    kind = "simulation"

    @property
    def times(self) -> np.ndarray:
        """int64 (T,) the step index ``t`` of each recorded state ``h_t`` (``h_0`` is step 0)."""
        T = self.outputs.shape[1]
        return self.warmup + self.record_every * np.arange(1, T + 1, dtype=np.int64)

    def states(self) -> np.ndarray:
        """The recorded hidden states flattened to float32 (B·T, H); raises if they were not kept."""
        if self.hidden is None:
            raise ValueError("this Simulation has no hidden states; simulate again with return_hidden=True")
        return self.hidden.reshape(-1, self.hidden.shape[-1])


def simulate(
    model: RecurrentModel,
    num_seq: int,
    steps: int,
    *,
    input=None,
    noise_std: float | None = None,
    h0="zeros",
    warmup: int = 0,
    seed: Seed = 0,
    outputs: Literal["sample", "argmax"] = "sample",
    record_every: int = 1,
    return_hidden: bool = True,
    progress: bool = False,
) -> Simulation:
    """Run ``num_seq`` trajectories of ``warmup + steps`` steps at once, under ``torch.no_grad``.

    Input modes:
        * noise-driven — ``input=None``: ``x_t ~ N(0, σ² I)`` with σ = ``noise_std``, by default the
          model's own ``noise_std`` attribute if it has one, else 1;
        * autonomous — ``input=None, noise_std=0`` (or a model without inputs): ``F(h, None)``;
        * clamped — ``input`` of shape (I,) or (B, I): ``x_t = input + σ ε_t`` with σ = ``noise_std``,
          by default 0;
        * sequence — ``input`` of shape (B, T_in, I) with ``T_in = warmup + steps``: ``x_t = input[:, t-1]``
          (+ noise if ``noise_std > 0``). (B may be 1 for any per-sequence input: it is broadcast.)

    Args:
        model: any :class:`~rnnscope.models.base.RecurrentModel`; vanilla RNNs take a fused fast path.
        num_seq: B, the number of trajectories.
        steps: simulated steps after warm-up; ``steps // record_every`` of them are recorded.
        h0: "zeros", "normal" (``N(0, 1)`` per unit) or an array/tensor of shape (B, H) or (H,).
        warmup: steps run before recording starts.
        seed: seed of the input noise, of ``h0="normal"`` and of the output sampling (three independent
            streams, so the trajectory does not depend on ``outputs``).
        outputs: "sample" (categorical from ``softmax(logits)``) or "argmax".
        record_every: keep one state every this many steps (long runs with bounded memory).
        return_hidden: keep the hidden states (else only logits and outputs).
        progress: show a progress bar over time chunks.

    Returns:
        a :class:`Simulation`.
    """
    num_seq, steps, warmup, record_every = _check_counts(num_seq, steps, warmup, record_every)
    if outputs not in ("sample", "argmax"):
        raise ValueError(f"outputs must be 'sample' or 'argmax'; got {outputs!r}")
    device, dtype = _device_dtype(model)
    H, I, K = model.hidden_size, model.input_size, model.output_size
    mode, clamp, sigma = _input_mode(model, input, noise_std, num_seq, warmup + steps, device, dtype)
    noise_seed, h0_seed, output_seed = child_seeds(seed, 3)
    h = initial_states(h0, num_seq, H, seed=h0_seed, device=device, dtype=dtype)
    noise_gen = torch_generator(noise_seed, device=device)
    output_gen = torch_generator(output_seed, device=device)

    T = steps // record_every
    hidden_bxtxh = torch.empty(num_seq, T, H, dtype=torch.float32) if return_hidden else None
    logits_bxtxk = torch.empty(num_seq, T, K, dtype=torch.float32)
    outputs_bxt = torch.empty(num_seq, T, dtype=torch.int64)
    stepper = _Stepper(model, mode, clamp, sigma, noise_gen, num_seq, I)
    h_initial = h.clone()
    total = warmup + steps
    chunk = max(1, CHUNK_ELEMENTS // max(1, num_seq * max(I, H)))
    chunk = max(chunk, record_every)
    starts = range(0, total, chunk)
    with torch.no_grad():
        for start in _progress(starts, progress, total=math.ceil(total / chunk)):
            stop = min(total, start + chunk)
            h, recorded_cxbxh, first = stepper.run(h, start, stop, warmup, record_every)
            if recorded_cxbxh is None:
                continue
            n = recorded_cxbxh.shape[0]
            logits_cxbxk = model.readout(recorded_cxbxh)
            logits_bxcxk = logits_cxbxk.transpose(0, 1).to(torch.float32).cpu()
            logits_bxtxk[:, first:first + n] = logits_bxcxk
            outputs_bxt[:, first:first + n] = _choose(logits_bxcxk, outputs, output_gen)
            if hidden_bxtxh is not None:
                hidden_bxtxh[:, first:first + n] = recorded_cxbxh.transpose(0, 1).to(torch.float32).cpu()
    return Simulation(
        hidden=None if hidden_bxtxh is None else hidden_bxtxh.numpy(),
        logits=logits_bxtxk.numpy(),
        outputs=outputs_bxt.numpy(),
        initial_hidden=h_initial.to(torch.float32).cpu().numpy(),
        final_hidden=h.to(torch.float32).cpu().numpy(),
        input_mode=mode,
        noise_std=float(sigma),
        clamped_input=None if mode != "clamped" else _clamp_summary(clamp),
        warmup=warmup,
        record_every=record_every,
        output_mode=outputs,
    )


def initial_states(h0, num_seq: int, hidden_size: int, *, seed: Seed = 0, device="cpu",
                   dtype: torch.dtype = torch.float32) -> Tensor:
    """Initial states (B, H): ``"zeros"``, ``"normal"`` (``N(0, 1)``) or a given (B, H) / (H,) array."""
    if isinstance(h0, str):
        if h0 == "zeros":
            return torch.zeros(num_seq, hidden_size, device=device, dtype=dtype)
        if h0 == "normal":
            gen = torch_generator(seed, device=device)
            return torch.randn(num_seq, hidden_size, generator=gen, device=device, dtype=dtype)
        raise ValueError(f"h0 must be 'zeros', 'normal' or an array of shape (B, H); got {h0!r}")
    states = torch.as_tensor(np.asarray(h0) if not isinstance(h0, Tensor) else h0)
    states = states.detach().to(device=device, dtype=dtype)
    if states.ndim == 1:
        states = states.expand(num_seq, -1)
    if states.shape != (num_seq, hidden_size):
        raise ValueError(
            f"h0 must have shape (B, H) = ({num_seq}, {hidden_size}) or ({hidden_size},); got {tuple(states.shape)}"
        )
    return states.clone()


class _Stepper:
    """Advances a batch of states through a time window, drawing the inputs chunk by chunk."""

    def __init__(self, model: RecurrentModel, mode: str, clamp: Tensor | None, sigma: float,
                 generator: torch.Generator, num_seq: int, input_size: int) -> None:
        self.model = model
        self.mode = mode
        self.clamp = clamp
        self.sigma = sigma
        self.generator = generator
        self.num_seq = num_seq
        self.input_size = input_size
        dynamics = model.vanilla_dynamics()
        self.dynamics = dynamics
        if dynamics is not None:
            self.W_hhT = dynamics.W_hh.T.contiguous()
            self.W_inT = dynamics.W_in.T.contiguous()
            self.act = torch.relu if dynamics.nonlinearity == "relu" else torch.tanh

    def run(self, h: Tensor, start: int, stop: int, warmup: int, record_every: int):
        """Steps ``start + 1 … stop``; returns the new state, the states recorded in this window
        (C, B, H) and the index ``j`` of the first of them (or None and 0 when none is recorded)."""
        x_cxbxi = self._inputs(start, stop, h)
        drive = self._drive(x_cxbxi, h) if self.dynamics is not None else None
        recorded, first = [], 0
        for offset in range(stop - start):
            if drive is not None:
                h = self.act(torch.addmm(drive[offset] if drive.ndim == 3 else drive, h, self.W_hhT))
            else:
                h = self.model.step(h, None if x_cxbxi is None else x_cxbxi[offset])
            since_warmup = start + offset + 1 - warmup
            if since_warmup > 0 and since_warmup % record_every == 0:
                if not recorded:
                    first = since_warmup // record_every - 1
                recorded.append(h)
        return h, (torch.stack(recorded) if recorded else None), first

    def _inputs(self, start: int, stop: int, h: Tensor) -> Tensor | None:
        if self.mode == "autonomous":
            return None
        shape = (stop - start, self.num_seq, self.input_size)
        x = None
        if self.sigma > 0:
            x = self.sigma * torch.randn(shape, generator=self.generator, device=h.device, dtype=h.dtype)
        if self.mode == "clamped":
            x = self.clamp.expand(shape) if x is None else x + self.clamp
        elif self.mode == "sequence":
            window = self.clamp[:, start:stop].transpose(0, 1)
            x = window.expand(shape) if x is None else x + window
        return x

    def _drive(self, x_cxbxi: Tensor | None, h: Tensor) -> Tensor:
        """The input drive ``W_in x_t + b``: (C, B, H), or (B, H) when there is no input."""
        b = self.dynamics.b.to(h)
        if x_cxbxi is None:
            return b.expand_as(h).contiguous()
        return torch.matmul(x_cxbxi, self.W_inT.to(h)) + b


def _choose(logits_bxcxk: Tensor, mode: str, generator: torch.Generator) -> Tensor:
    if mode == "argmax":
        return logits_bxcxk.argmax(-1)
    uniform = torch.rand(logits_bxcxk.shape, generator=generator, dtype=torch.float32)
    uniform = uniform.clamp_(torch.finfo(torch.float32).tiny, 1.0 - torch.finfo(torch.float32).eps)
    gumbel = -torch.log(-torch.log(uniform))
    return (logits_bxcxk + gumbel).argmax(-1)


def _input_mode(model, input, noise_std, num_seq: int, total: int, device, dtype):
    I = model.input_size
    if noise_std is not None and (not np.isfinite(noise_std) or noise_std < 0):
        raise ValueError(f"noise_std must be a finite number >= 0; got {noise_std}")
    if input is None:
        own = getattr(model, "noise_std", None)
        sigma = float(noise_std if noise_std is not None else (own if own is not None else 1.0))
        mode = "noise" if sigma > 0 and I > 0 else "autonomous"
        return mode, None, (sigma if mode == "noise" else 0.0)
    values = torch.as_tensor(np.asarray(input) if not isinstance(input, Tensor) else input)
    values = values.detach().to(device=device, dtype=dtype)
    sigma = float(noise_std) if noise_std is not None else 0.0
    if values.ndim == 0 or values.shape[-1] != I:
        raise ValueError(
            f"input must end with the model's input dimension I = {I}: shape (I,), (B, I) or (B, T, I); "
            f"got shape {tuple(values.shape)}"
        )
    if values.ndim in (1, 2):
        if values.ndim == 2 and values.shape[0] not in (1, num_seq):
            raise ValueError(
                f"a clamped input of shape (B, I) needs B = num_seq = {num_seq} or 1; got {tuple(values.shape)}"
            )
        return "clamped", values, sigma
    if values.ndim == 3:
        if values.shape[0] not in (1, num_seq) or values.shape[1] != total:
            raise ValueError(
                f"an input sequence must have shape (B, warmup + steps, I) = ({num_seq}, {total}, {I}); "
                f"got {tuple(values.shape)}"
            )
        return "sequence", values, sigma
    raise ValueError(f"input must have shape (I,), (B, I) or (B, T, I); got {tuple(values.shape)}")


def _clamp_summary(clamp: Tensor) -> np.ndarray:
    values = clamp.to(torch.float32).cpu().numpy()
    return values[0] if values.ndim == 2 and values.shape[0] == 1 else values


def _check_counts(num_seq, steps, warmup, record_every) -> tuple[int, int, int, int]:
    for name, value, low in (("num_seq", num_seq, 1), ("steps", steps, 1), ("warmup", warmup, 0),
                             ("record_every", record_every, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
    if steps < record_every:
        raise ValueError(f"steps ({steps}) must be at least record_every ({record_every}) to record anything")
    return int(num_seq), int(steps), int(warmup), int(record_every)


def _device_dtype(model) -> tuple[torch.device, torch.dtype]:
    if isinstance(model, torch.nn.Module):
        for parameter in model.parameters():
            return parameter.device, parameter.dtype
    return torch.device("cpu"), torch.float32


def _progress(iterable, enabled: bool, total: int):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc="simulate", unit="chunk")
