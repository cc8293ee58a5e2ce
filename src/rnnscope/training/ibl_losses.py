"""The two task losses of IBL training, side by side.

At every observation step t of a session the target is the true side s of the current trial, as an
index c ∈ {0 (Left), 1 (Right)}, whether or not the network acts at that step; blank steps carry no
loss. With p_t = softmax(z_t) the network's output:

===========================  ========================  ===================================
                             ``neg_prob`` (reference)  ``cross_entropy``
===========================  ========================  ===================================
per observation step         ℓ_t = −p_t[c]             ℓ_t = −log p_t[c]
gradient ∂ℓ_t/∂z_t[j]        −p_t[c] (δ_cj − p_t[j])   p_t[j] − δ_cj
minimiser for a belief q     p[c] = 1 on argmax q      p = q (calibrated)
===========================  ========================  ===================================

``neg_prob`` is what the reference code computes: ``torch.nn.NLLLoss`` applied to the softmax
*probabilities* rather than log-probabilities, i.e. −p(correct side). Being linear in p, it is
minimised by putting all probability on the more likely side as early as possible, so a network
trained with it is confident — and acts — after one or two observations, as the paper's RNN does;
its gradient vanishes as p saturates (p (1 − p) factor). ``cross_entropy`` is the proper scoring
rule: its minimiser reports the posterior, so the network waits until the evidence crosses the
action threshold, like the Bayesian actor.

Either loss is summed over a session and divided by the session's number of steps, blank steps
included (the reference's ``avg_loss_per_dt``); the batch loss is the mean over sessions.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

LossName = Literal["neg_prob", "cross_entropy"]
LOSSES: tuple[str, ...] = ("neg_prob", "cross_entropy")


def neg_prob_per_step(logits: Tensor, target: Tensor) -> Tensor:
    """−p(target) = −softmax(logits)[target], of the shape of ``target``.

    ``logits`` (..., K); ``target`` (...) int64 class indices.
    """
    return -torch.softmax(logits, dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)


def cross_entropy_per_step(logits: Tensor, target: Tensor) -> Tensor:
    """−log p(target) = −log_softmax(logits)[target], of the shape of ``target``.

    ``logits`` (..., K); ``target`` (...) int64 class indices. Computed from ``log_softmax``, so it
    stays finite when p(target) underflows.
    """
    return -torch.log_softmax(logits, dim=-1).gather(-1, target.unsqueeze(-1)).squeeze(-1)


_PER_STEP = {"neg_prob": neg_prob_per_step, "cross_entropy": cross_entropy_per_step}


def session_loss(
    logits_tbk: Tensor,
    trial_side_tb: Tensor,
    is_observation_tb: Tensor,
    n_steps_b: Tensor,
    loss: LossName = "neg_prob",
) -> Tensor:
    """The batch loss: the mean over sessions of (Σ over observation steps of ℓ_t) / (session steps).

    ``logits_tbk`` (T, B, 2): the network's logits at every step (left, right);
    ``trial_side_tb`` (T, B): the side of each step's trial, −1 Left / +1 Right (any value where
    there is no observation); ``is_observation_tb`` (T, B) bool: where a loss applies;
    ``n_steps_b`` (B,): steps of each session, blank steps included (the normaliser).
    ``loss``: "neg_prob" or "cross_entropy". Returns a scalar tensor.
    """
    if loss not in _PER_STEP:
        raise ValueError(f"loss must be one of {LOSSES}; got {loss!r}")
    if logits_tbk.ndim != 3 or logits_tbk.shape[2] != 2:
        raise ValueError(f"logits_tbk must have shape (T, B, 2); got {tuple(logits_tbk.shape)}")
    if trial_side_tb.shape != logits_tbk.shape[:2] or is_observation_tb.shape != logits_tbk.shape[:2]:
        raise ValueError(
            f"trial_side_tb and is_observation_tb must have shape {tuple(logits_tbk.shape[:2])}; got "
            f"{tuple(trial_side_tb.shape)} and {tuple(is_observation_tb.shape)}"
        )
    target_tb = (trial_side_tb > 0).long()
    per_step_tb = _PER_STEP[loss](logits_tbk, target_tb)
    per_session_b = torch.where(is_observation_tb, per_step_tb, 0.0).sum(dim=0)
    return (per_session_b / n_steps_b.to(per_session_b.dtype).clamp_min(1.0)).mean()
