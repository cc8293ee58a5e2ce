"""The gradient fixed/slow-point finder: batched minimisation of ``q(h) = ½‖F(h) − h‖²``.

All initial states are optimised at once with Adam. Each point has its own learning rate: it grows
(×``LR_GROW``, up to the initial rate) after a step that lowered its ``q`` and is halved after a step
that raised it; a point stops when ``q ≤ tol_q`` (converged) or when its rate fell below
``lr × LR_FLOOR`` (stuck: a slow point or a local minimum of ``q``).

With ``newton_steps > 0`` Newton steps ``h ← h − (J − I)⁻¹ (F(h) − h)`` are also tried on the
running points every ``NEWTON_EVERY`` iterations, and up to ``newton_steps`` of them polish all points
at the end; a Newton step is kept only where it lowers ``q``. Near a root Newton converges
quadratically (for a ReLU map, one step lands on the fixed point of the current activation region);
far from one its steps are rejected and Adam continues. Newton moves slow points to roots, so map
slow manifolds with ``newton_steps=0``.

Shapes: ``N`` initial states, ``H`` hidden units.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from rnnscope.analysis.fixedpoints.jacobians import map_jacobians
from rnnscope.analysis.fixedpoints.maps import StateMap
from rnnscope.core.random import Seed, numpy_rng

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-30
"""Far below the usual 1e-8: near a fixed point the gradients are ~1e-15 and must still move the point."""
LR_GROW = 1.05
LR_SHRINK = 0.5
LR_FLOOR = 1e-8
"""A point whose learning rate fell below ``LR_FLOOR ×`` its initial value stops (it is stuck)."""
NEWTON_EVERY = 50
"""Adam iterations between two Newton attempts on the running points."""


class Minimisation(NamedTuple):
    """The end of a batched minimisation of ``q``."""

    points: Tensor
    """(N, H) final states."""
    q: Tensor
    """(N,) ``q`` at the final states."""
    iterations: Tensor
    """int64 (N,) optimiser steps taken by each point."""


def minimise_q(
    fmap: StateMap,
    initial_nxh: Tensor,
    *,
    tol_q: float = 1e-12,
    max_iters: int = 5000,
    lr: float = 0.05,
    newton_steps: int = 0,
    progress: bool = False,
) -> Minimisation:
    """Minimise ``q`` from every initial state at once (see the module docstring).

    ``lr`` is relative: the initial Adam step size is ``lr × s``, with ``s`` the root-mean-square
    coordinate of the initial states about their mean (their mean absolute coordinate, at least 1, if
    they are all equal).
    """
    if tol_q < 0 or max_iters < 0 or lr <= 0 or newton_steps < 0:
        raise ValueError("tol_q and max_iters must be >= 0, lr > 0 and newton_steps >= 0")
    h = initial_nxh.detach().clone()
    n = h.shape[0]
    scale = float((h - h.mean(0)).pow(2).mean().sqrt()) if n > 1 else 0.0
    scale = scale if scale > 0 else max(float(h.abs().mean()), 1.0)
    lr_max = lr * scale
    rate = torch.full((n,), lr_max, dtype=h.dtype, device=h.device)
    m = torch.zeros_like(h)
    v = torch.zeros_like(h)
    iterations = torch.zeros(n, dtype=torch.int64, device=h.device)
    _, q, grad = fmap.residual_and_gradient(h)
    beta1, beta2 = ADAM_BETAS
    for it in _progress(range(1, max_iters + 1), progress):
        active = (q > tol_q) & (rate > lr_max * LR_FLOOR)
        if not bool(active.any()):
            break
        if newton_steps and it % NEWTON_EVERY == 0:
            h, q, accepted = newton_step(fmap, h, q, torch.nonzero(active, as_tuple=True)[0])
            if bool(accepted.any()):
                _, q, grad = fmap.residual_and_gradient(h)
                continue
        m.mul_(beta1).add_(grad, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step = (m / (1 - beta1**it)) / ((v / (1 - beta2**it)).sqrt() + ADAM_EPS)
        step.mul_((rate * active)[:, None])
        h = h - step
        _, q_new, grad = fmap.residual_and_gradient(h)
        rate = torch.where(q_new < q, torch.clamp(rate * LR_GROW, max=lr_max), rate * LR_SHRINK)
        iterations += active.to(torch.int64)
        q = q_new
    if newton_steps:
        h, q = newton_polish(fmap, h, q, steps=newton_steps)
    return Minimisation(points=h, q=q, iterations=iterations)


def newton_step(fmap: StateMap, h_nxh: Tensor, q_n: Tensor, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One Newton step ``h ← h − (J − I)⁻¹ (F(h) − h)`` on the points ``rows``, kept where it lowers ``q``.

    Returns the states, their ``q`` and a bool (len(rows),) of the accepted steps. For a ReLU map the
    step lands on the affine fixed point of the point's current activation region.
    """
    if rows.numel() == 0:
        return h_nxh, q_n, torch.zeros(0, dtype=torch.bool, device=h_nxh.device)
    h = h_nxh[rows]
    r_nxh, q, _ = fmap.residual_and_gradient(h)
    J_nxhxh = map_jacobians(fmap, h).detach()
    eye = torch.eye(fmap.hidden_size, dtype=h.dtype, device=h.device)
    delta, info = torch.linalg.solve_ex(J_nxhxh - eye, -r_nxh)
    candidate = h + delta
    _, q_new, _ = fmap.residual_and_gradient(candidate)
    keep = (info == 0) & torch.isfinite(q_new) & (q_new < q)
    h_out, q_out = h_nxh.clone(), q_n.clone()
    h_out[rows] = torch.where(keep[:, None], candidate, h)
    q_out[rows] = torch.where(keep, q_new, q)
    return h_out, q_out, keep


def newton_polish(fmap: StateMap, h_nxh: Tensor, q_n: Tensor, *, steps: int) -> tuple[Tensor, Tensor]:
    """Up to ``steps`` Newton steps for all points at once (:func:`newton_step`)."""
    rows = torch.arange(h_nxh.shape[0], device=h_nxh.device)
    h, q = h_nxh, q_n
    for _ in range(steps):
        h, q, accepted = newton_step(fmap, h, q, rows)
        if not bool(accepted.any()):
            break
        rows = rows[accepted]
    return h, q


def sample_states(states, n: int, *, noise_scale: float = 0.0, seed: Seed = 0) -> np.ndarray:
    """``n`` initial states drawn from visited ``states`` (N, H) or (B, T, H), plus Gaussian noise.

    Rows are drawn without replacement when ``n ≤ N`` (else with replacement); the noise has standard
    deviation ``noise_scale × s`` in every coordinate, with ``s`` the root-mean-square per-coordinate
    standard deviation of ``states``. Returns float64 (n, H).
    """
    pool = _as_pool(states)
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    if noise_scale < 0:
        raise ValueError(f"noise_scale must be >= 0; got {noise_scale}")
    rng = numpy_rng(seed)
    rows = rng.choice(pool.shape[0], size=n, replace=n > pool.shape[0])
    sample = pool[rows].copy()
    if noise_scale > 0:
        spread = float(np.sqrt(pool.var(0).mean())) if pool.shape[0] > 1 else 1.0
        sample += noise_scale * spread * rng.standard_normal(sample.shape)
    return sample


def outlier_mask(points, reference, *, scale: float) -> np.ndarray:
    """bool (P,): points farther than ``scale × r`` from every reference state, where ``r`` is the
    root-mean-square distance of the reference states (N, H) to their centroid (their cloud's radius)."""
    points = np.asarray(points, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if points.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    radius = float(np.sqrt(((reference - reference.mean(0)) ** 2).sum(1).mean()))
    if radius == 0:
        return np.zeros(points.shape[0], dtype=bool)
    nearest = torch.cdist(torch.from_numpy(points), torch.from_numpy(reference)).min(1).values.numpy()
    return nearest > scale * radius


def _as_pool(states) -> np.ndarray:
    if hasattr(states, "states") and callable(states.states):
        states = states.states()
    pool = np.asarray(states.detach().cpu() if isinstance(states, Tensor) else states, dtype=np.float64)
    if pool.ndim == 3:
        pool = pool.reshape(-1, pool.shape[-1])
    if pool.ndim != 2 or pool.shape[0] == 0:
        raise ValueError(f"states must have shape (N, H) or (B, T, H) with N ≥ 1; got shape {pool.shape}")
    return pool


def _progress(iterable, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc="fixed points (gradient)", unit="step")
