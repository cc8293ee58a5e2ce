"""Hidden Markov models with categorical outputs: validated specs, fast sampling, exact statistics.

An :class:`HMM` is three matrices — start π₀ (M,), transition A (M, M), emission B (M, K) — checked
on construction. ``hmm.sample`` draws N sequences of T steps at once (vectorised over sequences; the
loop runs over the T steps only). Every statistic of the output process (state and output
distributions, output-transition matrix, n-grams, run lengths, likelihoods) is computed exactly from
the matrices; see :mod:`rnnscope.tasks.hmm_stats` for the formulas and
:mod:`rnnscope.tasks.hmm_builders` for the reference's families of matrices.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from rnnscope.core.random import Seed, numpy_rng
from rnnscope.core.results import Result
from rnnscope.errors import SpecError
from rnnscope.tasks import hmm_stats
from rnnscope.tasks.hmm_builders import (
    cyclic_transition,
    fully_connected_transition,
    gaussian_emission,
    linear_chain_transition,
    linear_emission,
    triangular_emission,
)
from rnnscope.tasks.hmm_stats import DwellTimeDistribution

if TYPE_CHECKING:
    from rnnscope.config.schema import HMMTaskConfig

__all__ = [
    "HMM",
    "HMMSample",
    "DwellTimeDistribution",
    "hmm_from_config",
    "split_sequences",
    "linear_chain_transition",
    "fully_connected_transition",
    "cyclic_transition",
    "linear_emission",
    "gaussian_emission",
    "triangular_emission",
]

ROW_TOLERANCE = 1e-6
"""How far from 1 a row of a stochastic matrix may sum (it is then renormalised exactly)."""


@dataclasses.dataclass(frozen=True)
class HMMSample(Result):
    """Sequences drawn from an HMM.

    ``outputs``: int64 (N, T) output symbols in 0..K−1; ``states``: int64 (N, T) hidden states in
    0..M−1; ``n_outputs``: K (needed for the one-hot view).
    """

    outputs: np.ndarray
    states: np.ndarray
    n_outputs: int

    @property
    def num_seq(self) -> int:
        """N, the number of sequences."""
        return int(self.outputs.shape[0])

    @property
    def seq_len(self) -> int:
        """T, the number of steps per sequence."""
        return int(self.outputs.shape[1])

    def one_hot(self, dtype: Any = np.float32) -> np.ndarray:
        """The outputs one-hot encoded, of shape (N, T, K)."""
        return np.eye(self.n_outputs, dtype=dtype)[self.outputs]


class HMM:
    """A hidden Markov model with M hidden states and K categorical outputs.

    ``start`` (M,), ``transition`` (M, M) and ``emission`` (M, K) must have matching shapes, finite
    entries in [0, 1] and rows summing to 1 within 1e-6 (rows are then renormalised exactly);
    otherwise :class:`~rnnscope.errors.SpecError` names the matrix, the row and the fix. The stored
    matrices are read-only float64 copies.
    """

    def __init__(self, start: Any, transition: Any, emission: Any) -> None:
        transition = _as_matrix("transition", transition)
        emission = _as_matrix("emission", emission)
        start = _as_vector("start", start)
        n_states = transition.shape[0]
        if transition.shape != (n_states, n_states):
            raise SpecError(
                f"transition must be square (M, M); got shape {transition.shape}; "
                "row i must hold P(next state | state i)"
            )
        if start.shape != (n_states,):
            raise SpecError(
                f"start has {start.shape[0]} entries but transition is {n_states}x{n_states}; "
                f"give one start probability per hidden state ({n_states})"
            )
        if emission.shape[0] != n_states:
            raise SpecError(
                f"emission has {emission.shape[0]} rows but there are {n_states} hidden states; "
                f"give one row of output probabilities per state, shape ({n_states}, K)"
            )
        self._start = _stochastic("start", start[None, :])[0]
        self._transition = _stochastic("transition", transition)
        self._emission = _stochastic("emission", emission)
        for array in (self._start, self._transition, self._emission):
            array.setflags(write=False)

    @property
    def start(self) -> np.ndarray:
        """Initial state distribution π₀, float64 (M,)."""
        return self._start

    @property
    def transition(self) -> np.ndarray:
        """Transition matrix A, float64 (M, M): A[i, j] = P(s_{t+1} = j | s_t = i)."""
        return self._transition

    @property
    def emission(self) -> np.ndarray:
        """Emission matrix B, float64 (M, K): B[i, k] = P(o_t = k | s_t = i)."""
        return self._emission

    @property
    def n_states(self) -> int:
        """M, the number of hidden states."""
        return int(self._transition.shape[0])

    @property
    def n_outputs(self) -> int:
        """K, the number of output symbols."""
        return int(self._emission.shape[1])

    def __repr__(self) -> str:
        return f"HMM(n_states={self.n_states}, n_outputs={self.n_outputs})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HMM):
            return NotImplemented
        return all(
            np.array_equal(a, b)
            for a, b in zip(
                (self.start, self.transition, self.emission), (other.start, other.transition, other.emission)
            )
        )

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, list]:
        """The three matrices as nested lists (JSON-ready); ``HMM(**d)`` rebuilds the model."""
        return {"start": self.start.tolist(), "transition": self.transition.tolist(), "emission": self.emission.tolist()}

    # ----------------------------------------------------------------------------------- sampling

    def sample(self, num_seq: int, seq_len: int, *, seed: Seed = 0) -> HMMSample:
        """Draw ``num_seq`` independent sequences of ``seq_len`` steps.

        Vectorised over sequences: one uniform draw per sequence and step selects the next state by
        inverse-CDF lookup in the current state's row, and all emissions are drawn at the end in one
        shot. Returns an :class:`HMMSample` with ``outputs`` and ``states`` of shape (N, T).
        """
        _check_positive("num_seq", num_seq)
        _check_positive("seq_len", seq_len)
        rng = numpy_rng(seed)
        uniform_tn = rng.random((seq_len, num_seq))
        states_tn = np.empty((seq_len, num_seq), dtype=_index_dtype(self.n_states))
        states_tn[0] = _inverse_cdf(_cdf(self._start[None, :]), np.zeros(num_seq, dtype=np.int8), uniform_tn[0])
        transition_cdf = _cdf(self._transition)
        for t in range(1, seq_len):
            states_tn[t] = _inverse_cdf(transition_cdf, states_tn[t - 1], uniform_tn[t])
        states_nt = np.ascontiguousarray(states_tn.T)
        outputs_nt = _inverse_cdf(_cdf(self._emission), states_nt, rng.random((num_seq, seq_len)))
        return HMMSample(
            outputs=outputs_nt.astype(np.int64),
            states=states_nt.astype(np.int64),
            n_outputs=self.n_outputs,
        )

    # ------------------------------------------------------------------------- exact statistics

    def state_distribution(self, t: int) -> np.ndarray:
        """P(s_t) = π₀ A^t, of shape (M,)."""
        _check_step(t)
        return hmm_stats.state_distributions(self._start, self._transition, t + 1)[-1]

    def state_distributions(self, n_steps: int) -> np.ndarray:
        """P(s_t) for t = 0..n_steps−1, of shape (n_steps, M)."""
        _check_positive("n_steps", n_steps)
        return hmm_stats.state_distributions(self._start, self._transition, n_steps)

    def stationary_distribution(self) -> np.ndarray:
        """The stationary state distribution π (π A = π), of shape (M,); SpecError if not unique."""
        return hmm_stats.stationary_distribution(self._transition)

    def output_distribution(self, t: int | None = None) -> np.ndarray:
        """P(o_t) of shape (K,), at step ``t`` or, for ``t=None``, at stationarity."""
        return self._at(t) @ self._emission

    def output_transition_matrix(self, t: int | None = None) -> np.ndarray:
        """P(o_{t+1} = b | o_t = a) of shape (K, K), at step ``t`` or at stationarity (``t=None``).

        The row of a symbol that cannot occur at that step is NaN.
        """
        return hmm_stats.output_transition(self._at(t), self._transition, self._emission)

    def ngram_probabilities(self, n: int, t: int | None = None) -> np.ndarray:
        """P(o_t..o_{t+n−1} = k_1..k_n) as an array of shape (K,)*n, at step ``t`` or at stationarity.

        Refuses tables with more than ``hmm_stats.MAX_NGRAM_CELLS`` entries (K^n · M).
        """
        return hmm_stats.ngram(self._at(t), self._transition, self._emission, n)

    def dwell_time_distribution(self, max_len: int, t: int | None = None) -> DwellTimeDistribution:
        """Run lengths of each output symbol, for a run starting at step ``t`` or at stationarity.

        ``probabilities[k, L-1]`` = P(run of k lasts exactly L steps | a run of k starts at t), where a
        run starts at t if o_t = k and o_{t−1} ≠ k (at t = 0: if o_0 = k); ``tail[k]`` is the mass
        beyond ``max_len``. Exact (transfer matrices), counted in the infinite continuation of the
        sequence. See :class:`~rnnscope.tasks.hmm_stats.DwellTimeDistribution`.
        """
        if t == 0:
            return hmm_stats.dwell_times(None, self._transition, self._emission, max_len, start_dist=self._start)
        previous = self._at(None if t is None else t - 1)
        return hmm_stats.dwell_times(previous, self._transition, self._emission, max_len)

    def log_likelihood(self, outputs: Any) -> np.ndarray:
        """log P(sequence) under the HMM for each row of ``outputs`` (int, (N, T) or (T,)), shape (N,).

        Scaled forward algorithm, vectorised over sequences. Impossible sequences get −inf.
        """
        outputs_nt = as_symbol_array(outputs, self.n_outputs, allow_1d=True)
        return hmm_stats.log_likelihood(self._start, self._transition, self._emission, outputs_nt)

    def _at(self, t: int | None) -> np.ndarray:
        if t is None:
            return self.stationary_distribution()
        return self.state_distribution(t)


def as_symbol_array(outputs: Any, n_outputs: int, *, allow_1d: bool = False) -> np.ndarray:
    """``outputs`` (numpy or torch, integer) as an int64 numpy array of shape (N, T), checked to lie in 0..K−1."""
    if hasattr(outputs, "detach"):
        outputs = outputs.detach().cpu().numpy()
    array = np.asarray(outputs)
    if allow_1d and array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(
            f"outputs must be integer symbols of shape (N, T); got shape {array.shape} "
            "(for one-hot arrays of shape (N, T, K) pass x.argmax(-1))"
        )
    if array.dtype.kind not in "iu":
        raise TypeError(f"outputs must hold integers (symbols 0..K-1); got dtype {array.dtype}")
    if array.size == 0:
        raise ValueError(f"outputs is empty (shape {array.shape}); pass at least one step of one sequence")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= n_outputs:
        raise ValueError(
            f"outputs must lie in 0..{n_outputs - 1} for an HMM with {n_outputs} outputs; "
            f"got values in {low}..{high}"
        )
    return array.astype(np.int64, copy=False)


A = TypeVar("A")


def split_sequences(arr: A, fractions: Sequence[float] = (1 / 3, 1 / 3, 1 / 3)) -> tuple[A, A, A]:
    """Split ``arr`` (numpy array or torch tensor, sequences on axis 0) into (train, val, test).

    Contiguous blocks, like the reference: train = the first floor(N·f₀) sequences, val the next
    floor(N·f₁), test the rest. ``fractions``: three positive numbers summing to 1.
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three positive numbers summing to 1; got {fractions}")
    n = int(arr.shape[0])
    train_end = int(np.floor(n * fractions[0] + 1e-9))
    val_end = train_end + int(np.floor(n * fractions[1] + 1e-9))
    return arr[:train_end], arr[train_end:val_end], arr[val_end:]


def hmm_from_config(config: "HMMTaskConfig") -> HMM:
    """Build the :class:`HMM` described by a :class:`~rnnscope.config.schema.HMMTaskConfig`."""
    n_states = config.n_states
    transition = _transition_from_config(config)
    emission = _emission_from_config(config)
    if config.start == "uniform":
        start = np.full(n_states, 1.0 / n_states)
    elif config.start == "stationary":
        start = hmm_stats.stationary_distribution(np.asarray(transition, dtype=float))
    else:
        start = np.asarray(config.start, dtype=float)
        if start.shape != (n_states,):
            raise SpecError(
                f"start has {start.size} entries but n_states = {n_states}; give one probability per state"
            )
    return HMM(start, transition, emission)


def _transition_from_config(config: "HMMTaskConfig") -> np.ndarray:
    n = config.n_states
    if config.transition == "linear_chain":
        if config.target_prob is not None:
            return linear_chain_transition(n, target_prob=config.target_prob)
        return linear_chain_transition(n, stay_prob=config.stay_prob)
    if config.transition == "fully_connected":
        return fully_connected_transition(n, config.stay_prob)
    if config.transition == "cyclic":
        return cyclic_transition(n, config.stay_prob)
    matrix = np.asarray(config.custom_transition, dtype=float)
    if matrix.shape != (n, n):
        raise SpecError(
            f"custom_transition has shape {matrix.shape} but n_states = {n}; "
            f"give an {n}x{n} matrix or set n_states to match it"
        )
    return matrix


def _emission_from_config(config: "HMMTaskConfig") -> np.ndarray:
    n, k = config.n_states, config.n_outputs
    if config.emission == "linear":
        return linear_emission(n, k)
    if config.emission == "gaussian":
        return gaussian_emission(n, k)
    if config.emission == "triangular":
        return triangular_emission(n, k, config.emission_peak)
    matrix = np.asarray(config.custom_emission, dtype=float)
    if matrix.shape != (n, k):
        raise SpecError(
            f"custom_emission has shape {matrix.shape} but (n_states, n_outputs) = ({n}, {k}); "
            "give one row per state and one column per output, or change n_states/n_outputs"
        )
    return matrix


def _as_matrix(name: str, value: Any) -> np.ndarray:
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise SpecError(f"{name} must be a 2-D array of probabilities; could not read it as numbers ({error})") from None
    if array.ndim != 2 or array.size == 0:
        raise SpecError(f"{name} must be a non-empty 2-D array; got shape {array.shape}")
    return array


def _as_vector(name: str, value: Any) -> np.ndarray:
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise SpecError(f"{name} must be a 1-D array of probabilities; could not read it as numbers ({error})") from None
    if array.ndim != 1 or array.size == 0:
        raise SpecError(f"{name} must be a non-empty 1-D array; got shape {array.shape}")
    return array


def _stochastic(name: str, matrix: np.ndarray) -> np.ndarray:
    """Check finite entries in [0, 1] and unit row sums; return the rows renormalised exactly."""
    label = (lambda i: name) if name == "start" else (lambda i: f"{name} row {i}")
    bad = ~np.isfinite(matrix)
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        raise SpecError(f"{label(row)} holds a non-finite value ({matrix[row].tolist()}); use finite probabilities")
    bad = (matrix < 0) | (matrix > 1)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise SpecError(
            f"{label(row)} has entry {matrix[row, col]!r} at column {col}, outside [0, 1]; "
            "every entry must be a probability"
        )
    sums = matrix.sum(axis=1)
    off = np.abs(sums - 1.0) > ROW_TOLERANCE
    if off.any():
        row = int(np.argmax(off))
        raise SpecError(
            f"{label(row)} sums to {sums[row]:.8g}, not 1 (tolerance {ROW_TOLERANCE:g}); "
            f"normalise it (divide the row by its sum) so it is a probability distribution"
        )
    return matrix / sums[:, None]


def _inverse_cdf(cdf: np.ndarray, rows: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """Index of the category each uniform draw falls in, using the CDF row ``cdf[rows]`` of each draw.

    Counts, column by column, how many CDF entries lie at or below the draw (cheaper than building the
    (..., C) array of comparisons). ``rows`` and ``uniform`` have the same shape.
    """
    index = np.zeros(uniform.shape, dtype=_index_dtype(cdf.shape[1]))
    for column in range(cdf.shape[1] - 1):
        index += uniform >= cdf[:, column][rows]
    return index


def _index_dtype(n: int) -> type:
    return np.int8 if n <= 127 else np.int64


def _cdf(matrix: np.ndarray) -> np.ndarray:
    """Row-wise cumulative sums with the last column forced to exactly 1 (safe inverse-CDF lookup)."""
    cdf = np.cumsum(matrix, axis=1)
    cdf[:, -1] = 1.0
    return cdf


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")


def _check_step(t: int) -> None:
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
        raise ValueError(f"t must be a non-negative integer step (or None for stationarity); got {t!r}")
