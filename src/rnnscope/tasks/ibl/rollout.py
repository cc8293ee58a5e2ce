"""Run any policy closed-loop through the batched IBL environment and record what happened.

A policy is any object with ``reset(batch_size)`` and ``act(x) -> probs``: given the inputs x_t of
shape (B, 3) it returns the probabilities (p_L, p_R) of shape (B, 2). If it also has a ``hidden``
attribute — its state after reading x_t, of shape (B, H) — the runner can record it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from rnnscope.core.random import Seed
from rnnscope.tasks.ibl.env import IBLEnv
from rnnscope.tasks.ibl.params import IBLTaskParams
from rnnscope.tasks.ibl.session import SessionRecord

DONE_CHECK_EVERY = 32
"""Steps between two checks of whether every session has finished (each check synchronises)."""

CLOSED_LOOP_THREADS = 1
"""Torch intra-op threads used by default inside closed loops and filters.

A closed loop is hundreds of thousands of operations on tensors of a few hundred numbers. Those
that enter torch's thread pool pay a fork/join far larger than their work — milliseconds when the
other cores are busy — so one thread is faster. The previous setting is restored afterwards.
"""


@contextlib.contextmanager
def torch_threads(n_threads: int | None) -> Iterator[None]:
    """Run the body with ``n_threads`` torch intra-op threads (None: leave the setting alone)."""
    if n_threads is None:
        yield
        return
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
        raise ValueError(f"n_threads must be a positive integer or None; got {n_threads!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@runtime_checkable
class Policy(Protocol):
    """What the runner needs from a policy (an RNN wrapper, a Bayesian actor, a scripted rule)."""

    def reset(self, batch_size: int) -> None:
        """Start ``batch_size`` new sessions (for an RNN: h_0 = 0)."""
        ...

    def act(self, x: Tensor) -> Tensor:
        """Probabilities (B, 2) = (p_L, p_R) for the inputs ``x`` (B, 3) of the current step."""
        ...


def run_session(
    policy: Policy,
    params: IBLTaskParams | None = None,
    n_sessions: int = 1,
    blocks_per_session: int | None = None,
    seed: Seed = None,
    record: Literal["steps", "hidden"] = "steps",
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    n_threads: int | None = CLOSED_LOOP_THREADS,
    progress: bool = False,
) -> SessionRecord:
    """Run ``policy`` closed-loop on ``n_sessions`` sessions until all have finished.

    Runs under ``torch.no_grad()`` with ``n_threads`` torch threads (see
    :data:`CLOSED_LOOP_THREADS`). ``record="steps"`` records the step table; ``"hidden"`` also the
    policy's ``hidden`` state (B, H) after each step's input, as a float32 array aligned with the
    step table. ``blocks_per_session`` defaults to ``params.blocks_per_session``. Inputs are of
    ``dtype`` on ``device``; the policy must accept them.
    """
    if record not in ("steps", "hidden"):
        raise ValueError(f"record must be 'steps' or 'hidden'; got {record!r}")
    for method in ("reset", "act"):
        if not callable(getattr(policy, method, None)):
            raise TypeError(f"policy must have a `{method}` method; {type(policy).__name__} has none")
    env = IBLEnv(params, n_sessions, blocks_per_session, seed=seed, device=device, dtype=dtype)
    with torch.no_grad(), torch_threads(n_threads):
        return _run(policy, env, record == "hidden", progress)


def run_analysis_session(
    policy: Policy,
    params: IBLTaskParams | None = None,
    n_blocks: int = 1000,
    seed: Seed = None,
    record: Literal["steps", "hidden"] = "hidden",
    *,
    n_parallel: int = 1,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    n_threads: int | None = CLOSED_LOOP_THREADS,
    progress: bool = False,
) -> SessionRecord:
    """A long analysis session of ``n_blocks`` blocks (the reference runs 1 session of 1000 blocks).

    ``n_parallel = 1`` runs one session of ``n_blocks`` blocks, as the reference does. A larger
    ``n_parallel`` splits the blocks over that many independent sessions stepped together (each of
    ``n_blocks / n_parallel`` blocks, which must divide evenly), which is much faster; the only
    difference is that the policy restarts ``n_parallel − 1`` more times.
    """
    if isinstance(n_parallel, bool) or not isinstance(n_parallel, int) or n_parallel < 1:
        raise ValueError(f"n_parallel must be a positive integer; got {n_parallel!r}")
    if isinstance(n_blocks, bool) or not isinstance(n_blocks, int) or n_blocks < 1:
        raise ValueError(f"n_blocks must be a positive integer; got {n_blocks!r}")
    if n_blocks % n_parallel:
        raise ValueError(f"n_parallel ({n_parallel}) must divide n_blocks ({n_blocks})")
    return run_session(
        policy, params, n_parallel, n_blocks // n_parallel, seed, record,
        device=device, dtype=dtype, n_threads=n_threads, progress=progress,
    )


def _run(policy: Policy, env: IBLEnv, with_hidden: bool, progress: bool) -> SessionRecord:
    x_bx3 = env.reset()
    policy.reset(env.n_sessions)
    if with_hidden and not hasattr(policy, "hidden"):
        raise TypeError(
            f"record='hidden' needs a policy with a `hidden` attribute (B, H); {type(policy).__name__} has none"
        )
    n_sessions = env.n_sessions
    capacity = _initial_capacity(env)
    keys_txb = torch.empty(capacity, n_sessions, dtype=torch.int64, device=env.device)
    probs_txbx2 = torch.empty(capacity, n_sessions, 2, dtype=torch.float64, device=env.device)
    hidden_txbxh: Tensor | None = None
    bar = tqdm(total=env.max_steps, disable=not progress, desc="IBL session", unit="step")
    t = 0
    while True:
        if t >= capacity:
            keys_txb, probs_txbx2 = _grow(keys_txb), _grow(probs_txbx2)
            hidden_txbxh = None if hidden_txbxh is None else _grow(hidden_txbxh)
            capacity = keys_txb.shape[0]
        probs_bx2 = policy.act(x_bx3)
        if with_hidden:
            h_bxh = policy.hidden.detach().reshape(n_sessions, -1)
            if hidden_txbxh is None:
                hidden_txbxh = torch.empty(capacity, n_sessions, h_bxh.shape[1], dtype=torch.float32, device=env.device)
            hidden_txbxh[t] = h_bxh
        out = env.step(probs_bx2)
        keys_txb[t] = out.key
        probs_txbx2[t] = probs_bx2.detach()
        x_bx3 = out.x
        t += 1
        if t % DONE_CHECK_EVERY == 0:
            bar.update(DONE_CHECK_EVERY)
            if env.all_done():
                break
    bar.close()
    hidden = None if hidden_txbxh is None else hidden_txbxh[:t]
    return SessionRecord.from_rollout(env, keys_txb[:t], probs_txbx2[:t], hidden)


def _initial_capacity(env: IBLEnv) -> int:
    """Room for trials of 4 steps on average (rounded up to the done-check period); grown on demand."""
    steps = int(env.schedule.n_trials.max()) * 4
    return max(DONE_CHECK_EVERY, -(-steps // DONE_CHECK_EVERY) * DONE_CHECK_EVERY)


def _grow(buffer_txbx_: Tensor) -> Tensor:
    grown = torch.empty((2 * buffer_txbx_.shape[0], *buffer_txbx_.shape[1:]), dtype=buffer_txbx_.dtype,
                        device=buffer_txbx_.device)
    grown[: buffer_txbx_.shape[0]] = buffer_txbx_
    return grown
