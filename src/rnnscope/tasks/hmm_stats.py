"""Exact statistics of an HMM's output process, computed from its matrices (never by sampling).

Notation: start π₀ (M,), transition A (M, M), emission B (M, K); π_t = π₀ A^t is the state
distribution at step t; b_k = B[:, k]; D_k = diag(b_k). Every function takes a *state distribution*
``state_dist`` (M,) at the first step of the window it describes, so the same code serves one step t
(π_t), stationarity (π) and a window average (mean of π_t over the steps of a finite sequence, which
is what pooled counts over a sample estimate).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rnnscope.core.results import Result
from rnnscope.errors import SpecError

MAX_NGRAM_CELLS = 2**24
"""Largest n-gram table (K^n · M entries) computed exactly; beyond it ``ngram_probabilities`` refuses."""


@dataclasses.dataclass(frozen=True)
class DwellTimeDistribution(Result):
    """Distribution of the length of a run of each output symbol (a maximal block of equal symbols).

    ``probabilities[k, L-1]`` = P(run length = L | a run of symbol k starts), for L = 1..max_len
    (a run of k starts at step t when o_t = k and o_{t-1} ≠ k; at t = 0 when o_0 = k). Runs are
    counted in the infinite sequence: no truncation at a sequence end.

    Fields: ``lengths`` int (L,) = 1..max_len; ``probabilities`` float (K, L); ``tail`` (K,) the mass
    P(length > max_len | start); ``mean`` (K,) the exact mean run length in steps (inf if a symbol can
    repeat forever); ``start_probability`` (K,) P(a run of k starts at that step). Rows of a symbol
    that never starts a run are NaN.
    """

    lengths: np.ndarray
    probabilities: np.ndarray
    tail: np.ndarray
    mean: np.ndarray
    start_probability: np.ndarray


def state_distributions(start: np.ndarray, transition: np.ndarray, n_steps: int) -> np.ndarray:
    """State distributions π_t = π₀ A^t for t = 0..n_steps−1, of shape (n_steps, M)."""
    out = np.empty((n_steps, start.shape[0]))
    current = start.astype(float)
    for t in range(n_steps):
        out[t] = current
        current = current @ transition
    return out


def stationary_distribution(transition: np.ndarray) -> np.ndarray:
    """The stationary distribution π (π A = π, Σπ = 1) of shape (M,).

    Raises ``SpecError`` if it is not unique (the chain has more than one closed class).
    """
    n = transition.shape[0]
    system = transition.T - np.eye(n)
    if np.linalg.matrix_rank(system, tol=1e-10) < n - 1:
        raise SpecError(
            "the transition matrix has several closed classes of states, so its stationary "
            "distribution is not unique; connect the classes, or pass an explicit start and use t="
        )
    system[-1, :] = 1.0
    rhs = np.zeros(n)
    rhs[-1] = 1.0
    pi = np.linalg.solve(system, rhs)
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum()


def bigram_joint(state_dist: np.ndarray, transition: np.ndarray, emission: np.ndarray) -> np.ndarray:
    """Joint P(o_t = a, o_{t+1} = b) = Bᵀ diag(π_t) A B, of shape (K, K)."""
    return emission.T @ (state_dist[:, None] * transition) @ emission


def output_transition(state_dist: np.ndarray, transition: np.ndarray, emission: np.ndarray) -> np.ndarray:
    """P(o_{t+1} = b | o_t = a) of shape (K, K); the row of a symbol with P(o_t = a) = 0 is NaN."""
    joint = bigram_joint(state_dist, transition, emission)
    mass = joint.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mass > 0, joint / np.where(mass > 0, mass, 1.0), np.nan)


def ngram(state_dist: np.ndarray, transition: np.ndarray, emission: np.ndarray, n: int) -> np.ndarray:
    """P(o_t = k_1, …, o_{t+n−1} = k_n) as an array of shape (K,)*n, by a forward pass over n steps."""
    n_states, n_outputs = emission.shape
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer; got {n!r}")
    if n_outputs**n * n_states > MAX_NGRAM_CELLS:
        raise ValueError(
            f"an exact {n}-gram table over {n_outputs} symbols has {n_outputs**n} cells; "
            f"choose n with K^n * M <= {MAX_NGRAM_CELLS}"
        )
    # forward_pm[p, j] = P(o_t..o_{t+m-1} = prefix p, s_{t+m-1} = j); prefixes in row-major order.
    forward_pm = (state_dist[:, None] * emission).T
    for _ in range(n - 1):
        moved_pm = forward_pm @ transition
        forward_pm = (moved_pm[:, None, :] * emission.T[None, :, :]).reshape(-1, n_states)
    return forward_pm.sum(axis=1).reshape((n_outputs,) * n)


def dwell_times(
    prev_dist: np.ndarray | None,
    transition: np.ndarray,
    emission: np.ndarray,
    max_len: int,
    start_dist: np.ndarray | None = None,
) -> DwellTimeDistribution:
    """Exact run-length distribution of every output symbol for runs starting at one step.

    ``prev_dist`` (M,) is the state distribution one step before the run start; pass ``prev_dist=None``
    and ``start_dist`` (M,) for a run starting at t = 0 (no preceding symbol). The state at the run
    start has weight w_k(j) = Σ_i prev(i)(1 − b_k(i)) A_ij b_k(j) (or start(j) b_k(j) at t = 0); the run
    continues with Q_k = A D_k, so P(length ≥ L) = w_k Q_k^{L−1} 1 / Σ w_k.
    """
    if not isinstance(max_len, (int, np.integer)) or max_len < 1:
        raise ValueError(f"max_len must be a positive integer; got {max_len!r}")
    n_states, n_outputs = emission.shape
    if prev_dist is None:
        weights_km = start_dist[None, :] * emission.T
    else:
        leave_mk = prev_dist[:, None] * (1.0 - emission)
        weights_km = (leave_mk.T @ transition) * emission.T
    start_probability = weights_km.sum(axis=1)
    defined = start_probability > 0
    norm_km = weights_km / np.where(defined, start_probability, 1.0)[:, None]
    continue_kmm = transition[None, :, :] * emission.T[:, None, :]
    stop_km = 1.0 - (transition @ emission).T
    probabilities = np.empty((n_outputs, max_len))
    survive_km = norm_km
    for length in range(max_len):
        probabilities[:, length] = np.einsum("km,km->k", survive_km, stop_km)
        survive_km = np.einsum("km,kmj->kj", survive_km, continue_kmm)
    tail = survive_km.sum(axis=1)
    mean = _mean_run_length(norm_km, continue_kmm)
    probabilities[~defined] = np.nan
    tail[~defined] = np.nan
    mean[~defined] = np.nan
    return DwellTimeDistribution(
        lengths=np.arange(1, max_len + 1),
        probabilities=probabilities,
        tail=tail,
        mean=mean,
        start_probability=start_probability,
    )


def _mean_run_length(norm_km: np.ndarray, continue_kmm: np.ndarray) -> np.ndarray:
    """E[length] = w (I − Q)^{-1} 1 per symbol; inf where I − Q is singular (a run can last forever)."""
    n_outputs, n_states = norm_km.shape
    mean = np.empty(n_outputs)
    for k in range(n_outputs):
        system = np.eye(n_states) - continue_kmm[k]
        if np.linalg.cond(system) > 1e12:
            mean[k] = np.inf
            continue
        mean[k] = norm_km[k] @ np.linalg.solve(system, np.ones(n_states))
    return mean


def frequency_moments(
    start: np.ndarray, transition: np.ndarray, emission: np.ndarray, seq_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over sequences of the per-sequence frequency of each symbol.

    f_k = (1/T) Σ_t 1[o_t = k] over a sequence of T = ``seq_len`` steps started from ``start``. Uses
    E[f_k²] = (1/T²)(Σ_t π_t b_k + 2 Σ_{s<t} π_s D_k A^{t−s} b_k). Returns two arrays of shape (K,).
    """
    pis_tm = state_distributions(start, transition, seq_len)
    occupancy_tk = pis_tm @ emission
    mean = occupancy_tk.sum(axis=0) / seq_len
    # ahead_lmk[l] = Σ_{j=1..l} A^j B: probability-weighted future emissions within l steps.
    ahead_lmk = np.zeros((seq_len, *emission.shape))
    power_mk = emission
    for lag in range(1, seq_len):
        power_mk = transition @ power_mk
        ahead_lmk[lag] = ahead_lmk[lag - 1] + power_mk
    remaining = seq_len - 1 - np.arange(seq_len)
    pairs = np.einsum("tm,mk,tmk->k", pis_tm, emission, ahead_lmk[remaining])
    second = (occupancy_tk.sum(axis=0) + 2.0 * pairs) / seq_len**2
    return mean, np.sqrt(np.clip(second - mean**2, 0.0, None))


def log_likelihood(
    start: np.ndarray, transition: np.ndarray, emission: np.ndarray, outputs_nt: np.ndarray
) -> np.ndarray:
    """log P(o_0..o_{T−1}) of each sequence by the scaled forward algorithm, of shape (N,).

    Vectorised over the N sequences, looping over the T steps. A sequence the HMM cannot emit gets −inf.
    """
    emission_km = emission.T
    alpha_nm = start[None, :] * emission_km[outputs_nt[:, 0]]
    total_n = np.zeros(outputs_nt.shape[0])
    with np.errstate(divide="ignore"):
        for t in range(outputs_nt.shape[1]):
            if t > 0:
                alpha_nm = (alpha_nm @ transition) * emission_km[outputs_nt[:, t]]
            scale_n = alpha_nm.sum(axis=1)
            total_n += np.log(scale_n)
            alpha_nm /= np.where(scale_n > 0, scale_n, 1.0)[:, None]
    return total_n
