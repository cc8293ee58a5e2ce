"""The block/trial schedule of IBL sessions: its exact statistics and its vectorised sampling.

A session is a sequence of blocks whose sides alternate (the first side is Right with probability
``first_block_right_prob``). A block lasts L trials with L geometric (success probability p) truncated
to [min, max]: P(L = k) = p (1−p)^(k−1) / Z for min ≤ k ≤ max. The reference draws L by rejection
sampling; here it is drawn by inverting the exact cumulative distribution, which gives the same
distribution without a loop. Within a block, each trial's side equals the block side with probability
``block_side_prob``, and its contrast is uniform over ``params.contrasts``.

Sides are coded −1 (Left) and +1 (Right).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch import Tensor

from rnnscope.core.random import Seed, torch_generator
from rnnscope.tasks.ibl.params import IBLTaskParams


def block_length_pmf(params: IBLTaskParams) -> np.ndarray:
    """P(block length = k) for k = 0 … max_trials_per_block, of shape (max + 1,), float64.

    Zero below ``min_trials_per_block``; the truncated geometric p (1−p)^(k−1) / Z on [min, max].
    With the defaults the mean is ≈ 49.4 trials.
    """
    k = np.arange(params.max_trials_per_block + 1)
    p = params.block_geometric_p
    weights = np.where(k >= params.min_trials_per_block, p * (1.0 - p) ** (k - 1.0), 0.0)
    return weights / weights.sum()


def block_length_mean(params: IBLTaskParams) -> float:
    """The mean block length in trials (≈ 49.4 with the defaults)."""
    pmf = block_length_pmf(params)
    return float(np.arange(pmf.size) @ pmf)


def block_hazard(params: IBLTaskParams) -> np.ndarray:
    """h(k) = P(L = k | L ≥ k), the probability that a block ends after its k-th trial.

    Of shape (max + 1,) indexed by k (entry 0 is 0). Zero for k < min (trials 1–19), ≈ 0.025 at
    k = 20, ≈ 0.031 at 50, ≈ 0.51 at 99 and exactly 1 at k = max = 100.
    """
    pmf = block_length_pmf(params)
    survival = np.cumsum(pmf[::-1])[::-1]
    hazard = np.divide(pmf, survival, out=np.zeros_like(pmf), where=survival > 0)
    hazard[params.max_trials_per_block] = 1.0
    return hazard


def contrast_probabilities(params: IBLTaskParams) -> np.ndarray:
    """P(μ = params.contrasts[i]) for each contrast, of shape (n_contrasts,): uniform, 1/n each."""
    return np.full(params.n_contrasts, 1.0 / params.n_contrasts)


def trial_side_probability(params: IBLTaskParams) -> float:
    """P(trial side = block side), the same for every trial (0.8)."""
    return float(params.block_side_prob)


@dataclasses.dataclass(frozen=True)
class IBLSchedule:
    """The pre-sampled block and trial schedule of B sessions (torch tensors on one device).

    Sessions have different numbers of trials; the trial axis is padded to ``N = n_trials.max()``
    and padded entries are 0 (sides, contrasts) or −1 (indices).

    ``block_lengths`` (B, n_blocks) int64 — trials per block.
    ``block_sides`` (B, n_blocks) int64 — ±1, alternating.
    ``n_trials`` (B,) int64 — trials per session (the sum of its block lengths).
    ``trial_block`` (B, N) int64 — block index of each trial.
    ``trial_in_block`` (B, N) int64 — 0-based position of each trial in its block.
    ``trial_sides`` (B, N) int64 — ±1.
    ``contrast_index`` (B, N) int64 — index into ``params.contrasts``.
    ``contrasts`` (B, N) float64 — μ ≥ 0.
    """

    block_lengths: Tensor
    block_sides: Tensor
    n_trials: Tensor
    trial_block: Tensor
    trial_in_block: Tensor
    trial_sides: Tensor
    contrast_index: Tensor
    contrasts: Tensor

    @property
    def n_sessions(self) -> int:
        """B, the number of sessions."""
        return int(self.block_lengths.shape[0])

    @property
    def max_trials(self) -> int:
        """N, the padded trial-axis length (the longest session's trial count)."""
        return int(self.trial_sides.shape[1])

    @property
    def valid(self) -> Tensor:
        """(B, N) bool: True where the trial exists in its session."""
        return self.trial_block >= 0


def sample_block_lengths(params: IBLTaskParams, n_sessions: int, n_blocks: int, seed: Seed = None) -> Tensor:
    """Block lengths (n_sessions, n_blocks) int64, i.i.d. from :func:`block_length_pmf` (inverse CDF)."""
    gen = torch_generator(seed)
    cdf = torch.from_numpy(np.cumsum(block_length_pmf(params))[params.min_trials_per_block:])
    u = torch.rand(n_sessions, n_blocks, generator=gen, dtype=torch.float64)
    index = torch.searchsorted(cdf, u).clamp_(max=cdf.numel() - 1)
    return index + params.min_trials_per_block


def sample_schedule(
    params: IBLTaskParams,
    n_sessions: int,
    n_blocks: int | None = None,
    seed: Seed = None,
    device: str | torch.device = "cpu",
) -> IBLSchedule:
    """Sample the block and trial schedule of ``n_sessions`` sessions of ``n_blocks`` blocks each.

    ``n_blocks`` defaults to ``params.blocks_per_session``. Sampling runs on the CPU from one
    ``torch.Generator`` (so a seed gives the same schedule on every device); tensors are then moved
    to ``device``.
    """
    n_blocks = params.blocks_per_session if n_blocks is None else n_blocks
    _check_positive_int("n_sessions", n_sessions)
    _check_positive_int("n_blocks", n_blocks)
    gen = torch_generator(seed)
    lengths_bxk = sample_block_lengths(params, n_sessions, n_blocks, gen)
    first_right = torch.rand(n_sessions, generator=gen, dtype=torch.float64) < params.first_block_right_prob
    first_side_b = torch.where(first_right, 1, -1)
    alternation_k = 1 - 2 * (torch.arange(n_blocks) % 2)
    sides_bxk = first_side_b[:, None] * alternation_k[None, :]

    n_trials_b = lengths_bxk.sum(dim=1)
    n_max = int(n_trials_b.max())
    block_end_bxk = lengths_bxk.cumsum(dim=1)
    trial_bxn = torch.arange(n_max).expand(n_sessions, n_max).contiguous()
    valid_bxn = trial_bxn < n_trials_b[:, None]
    block_bxn = torch.searchsorted(block_end_bxk, trial_bxn, right=True).clamp_(max=n_blocks - 1)
    block_start_bxk = block_end_bxk - lengths_bxk
    in_block_bxn = trial_bxn - torch.gather(block_start_bxk, 1, block_bxn)
    block_side_bxn = torch.gather(sides_bxk, 1, block_bxn)

    concordant_bxn = torch.rand(n_sessions, n_max, generator=gen, dtype=torch.float64) < params.block_side_prob
    side_bxn = torch.where(concordant_bxn, block_side_bxn, -block_side_bxn)
    contrast_index_bxn = torch.randint(0, params.n_contrasts, (n_sessions, n_max), generator=gen)
    contrast_bxn = torch.from_numpy(params.contrasts)[contrast_index_bxn]

    def pad(t: Tensor, fill: float) -> Tensor:
        return torch.where(valid_bxn, t, torch.full_like(t, fill)).to(device)

    return IBLSchedule(
        block_lengths=lengths_bxk.to(device),
        block_sides=sides_bxk.to(device),
        n_trials=n_trials_b.to(device),
        trial_block=pad(block_bxn, -1),
        trial_in_block=pad(in_block_bxn, -1),
        trial_sides=pad(side_bxn, 0),
        contrast_index=pad(contrast_index_bxn, -1),
        contrasts=pad(contrast_bxn, 0.0),
    )


def _check_positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
