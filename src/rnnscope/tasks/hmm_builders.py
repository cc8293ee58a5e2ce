"""Builders of the transition and emission matrices of the reference's HMM families.

Each builder returns a plain float64 array whose rows sum to 1; :class:`rnnscope.tasks.hmm.HMM`
validates it. Notation: M hidden states, K output symbols.

Transitions (M, M):

- ``linear_chain_transition(M, target_prob=p)``: states on a line. With q = p^(1/(M−1)), the two end
  states stay with 1−q and move inward with q; interior states stay with 1−2q and move to each
  neighbour with q (the reference's ``target_prob`` rule: M=2 gives stay 0.95 for p=0.05).
- ``linear_chain_transition(M, stay_prob=s)``: the reference's legacy rule. Every state stays with s;
  end states move inward with 1−s, interior states move to each neighbour with (1−s)/2.
- ``fully_connected_transition(M, s)``: s on the diagonal, (1−s)/(M−1) everywhere else.
- ``cyclic_transition(M, s)``: a ring; s on the diagonal, (1−s)/2 to each of the two neighbours
  (M=2: both neighbours are the other state, which receives 1−s).

Emissions (M, K):

- ``linear_emission``: state i emits [0.99(1−α), 0.01, 0.99α] with α = i/(M−1) (K=3). For K≠3 the
  row is linspace(0.99(1−α), 0.99α, K) renormalised to sum to 1 (the reference left it unnormalised).
- ``gaussian_emission`` (legacy): centres c_i = linspace(0, K−1, M);
  e_ij ∝ exp(−0.2·(|j − c_i| / (0.1·(K−1)))²), rows normalised.
- ``triangular_emission``: ``peak`` on the output assigned to state i — output round(i·(K−1)/(M−1))
  (output i when M = K; output 0 when M = 1) — and (1−peak)/(K−1) on every other output.
"""

from __future__ import annotations

import numpy as np

from rnnscope.errors import SpecError


def linear_chain_transition(
    n_states: int, *, target_prob: float | None = None, stay_prob: float | None = None
) -> np.ndarray:
    """Transition matrix (M, M) of a linear chain, by ``target_prob`` or (legacy) by ``stay_prob``.

    Exactly one of ``target_prob`` (in (0, 1)) and ``stay_prob`` (in [0, 1]) must be given; see the
    module docstring for the two rules. With M = 1 the matrix is [[1]].
    """
    _check_n("n_states", n_states)
    if (target_prob is None) == (stay_prob is None):
        raise ValueError(
            "linear_chain_transition needs exactly one of target_prob= and stay_prob=; "
            f"got target_prob={target_prob!r}, stay_prob={stay_prob!r}"
        )
    matrix = np.zeros((n_states, n_states))
    if n_states == 1:
        matrix[0, 0] = 1.0
        return matrix
    idx = np.arange(n_states - 1)
    if target_prob is not None:
        _check_open_prob("target_prob", target_prob)
        q = float(target_prob) ** (1.0 / (n_states - 1))
        if n_states > 2 and q > 0.5:
            limit = 0.5 ** (n_states - 1)
            raise SpecError(
                f"target_prob={target_prob} gives q = target_prob^(1/(M-1)) = {q:.4f} > 0.5, so the "
                f"interior states of the {n_states}-state chain would stay with 1-2q < 0; "
                f"use target_prob <= 0.5^(M-1) = {limit:.4g}, or stay_prob= instead"
            )
        matrix[idx, idx + 1] = q
        matrix[idx + 1, idx] = q
        np.fill_diagonal(matrix, 1.0 - 2.0 * q)
        matrix[0, 0] = matrix[-1, -1] = 1.0 - q
        return matrix
    _check_closed_prob("stay_prob", stay_prob)
    move = 1.0 - float(stay_prob)
    matrix[idx, idx + 1] = move / 2.0
    matrix[idx + 1, idx] = move / 2.0
    matrix[0, 1] = matrix[-1, -2] = move
    np.fill_diagonal(matrix, float(stay_prob))
    return matrix


def fully_connected_transition(n_states: int, stay_prob: float) -> np.ndarray:
    """Transition matrix (M, M): ``stay_prob`` on the diagonal, (1−stay_prob)/(M−1) elsewhere ([[1]] if M=1)."""
    _check_n("n_states", n_states)
    _check_closed_prob("stay_prob", stay_prob)
    if n_states == 1:
        return np.ones((1, 1))
    matrix = np.full((n_states, n_states), (1.0 - float(stay_prob)) / (n_states - 1))
    np.fill_diagonal(matrix, float(stay_prob))
    return matrix


def cyclic_transition(n_states: int, stay_prob: float) -> np.ndarray:
    """Transition matrix (M, M) of a ring: ``stay_prob`` on the diagonal, half the rest to each neighbour."""
    _check_n("n_states", n_states)
    _check_closed_prob("stay_prob", stay_prob)
    if n_states == 1:
        return np.ones((1, 1))
    matrix = np.zeros((n_states, n_states))
    rows = np.arange(n_states)
    half = (1.0 - float(stay_prob)) / 2.0
    np.add.at(matrix, (rows, (rows + 1) % n_states), half)
    np.add.at(matrix, (rows, (rows - 1) % n_states), half)
    matrix[rows, rows] = float(stay_prob)
    return matrix


def linear_emission(n_states: int, n_outputs: int) -> np.ndarray:
    """Emission matrix (M, K): state i emits [0.99(1−α), 0.01, 0.99α], α = i/(M−1) (α = 0 if M = 1).

    For K ≠ 3 each row is linspace(0.99(1−α), 0.99α, K), renormalised to sum to 1.
    """
    _check_n("n_states", n_states)
    _check_n("n_outputs", n_outputs, minimum=2)
    alpha = np.arange(n_states) / (n_states - 1) if n_states > 1 else np.zeros(1)
    low, high = 0.99 * (1.0 - alpha), 0.99 * alpha
    if n_outputs == 3:
        return np.stack([low, np.full(n_states, 0.01), high], axis=1)
    rows = np.linspace(low, high, n_outputs, axis=1)
    return rows / rows.sum(axis=1, keepdims=True)


def gaussian_emission(n_states: int, n_outputs: int) -> np.ndarray:
    """Emission matrix (M, K) of the legacy ``gaussian`` rule: e_ij ∝ exp(−0.2·(|j − c_i| / (0.1·(K−1)))²).

    Centres c_i = linspace(0, K−1, M). For M=2, K=3 the rows are about [0.993, 0.007, 0] and
    [0, 0.007, 0.993].
    """
    _check_n("n_states", n_states)
    _check_n("n_outputs", n_outputs, minimum=2)
    centres = np.linspace(0.0, n_outputs - 1.0, n_states)
    distance = np.abs(np.arange(n_outputs)[None, :] - centres[:, None]) / (0.1 * (n_outputs - 1))
    rows = np.exp(-0.2 * distance**2)
    return rows / rows.sum(axis=1, keepdims=True)


def triangular_emission(n_states: int, n_outputs: int, peak: float = 0.98) -> np.ndarray:
    """Emission matrix (M, K): ``peak`` on output round(i·(K−1)/(M−1)) of state i, the rest spread evenly.

    The other K−1 outputs each get (1−peak)/(K−1). With M = K, state i peaks on output i.
    """
    _check_n("n_states", n_states)
    _check_n("n_outputs", n_outputs, minimum=2)
    if not 0.0 < float(peak) <= 1.0:
        raise SpecError(f"peak must lie in (0, 1]; got {peak}")
    matrix = np.full((n_states, n_outputs), (1.0 - float(peak)) / (n_outputs - 1))
    scale = (n_outputs - 1) / (n_states - 1) if n_states > 1 else 0.0
    assigned = np.rint(np.arange(n_states) * scale).astype(int)
    matrix[np.arange(n_states), assigned] = float(peak)
    return matrix


def _check_n(name: str, value: int, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")


def _check_open_prob(name: str, value: float) -> None:
    if not 0.0 < float(value) < 1.0:
        raise SpecError(f"{name} must lie in (0, 1); got {value}")


def _check_closed_prob(name: str, value: float) -> None:
    if not 0.0 <= float(value) <= 1.0:
        raise SpecError(f"{name} must lie in [0, 1]; got {value}")
