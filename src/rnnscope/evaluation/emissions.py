"""Emission fidelity: how closely a generator's output sequences match an HMM's.

``evaluate_emissions(hmm, outputs)`` takes integer outputs (N, T) from any generator (a trained
network, another HMM, a saved array) and returns an :class:`EmissionReport` with

- the reference's metrics: output frequencies (mean ± std over sequences), volatility (output changes
  per sequence), the empirical output-transition matrix (and its difference to an HMM sample, as the
  reference computes it), and the Sinkhorn-matched Euclidean distance (HMM↔HMM vs HMM↔generator);
- metrics against the HMM's *exact* statistics: the transition matrix, total-variation and KL
  divergences of the n-gram distributions (n = 1..4), the spread of per-sequence frequencies, the
  expected volatility, run-length (dwell-time) distributions, and the per-step log-likelihood gap.

Every exact statistic is the one a pooled count over the sample estimates: it averages the HMM's state
distribution over the steps of a T-step sequence started from ``hmm.start`` (at stationarity when the
start is stationary, as in every reference HMM).

Each scalar metric carries a percentile-bootstrap confidence interval (resampling sequences) and the
noise floor of the HMM itself: the same metric computed on ``n_null`` fresh HMM samples of the same
N and T. **Flag rule:** with m̄₀ and s₀ the mean and standard deviation of the metric over those HMM
samples, a metric is *flagged* when its value lies outside [m̄₀ − z·s₀, m̄₀ + z·s₀] (z = ``flag_z``,
default 4). Discrepancies (errors, divergences) are one-sided — only values above the band are
flagged; signed metrics (volatility error, log-likelihood gap, matched distance) are two-sided. For the
matched distance the band is centred on the HMM↔HMM baseline with s₀ = √2 · its standard error. An
HMM's own sample therefore lies within the floor unless a ~4-standard-deviation event occurs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import numpy as np
import scipy.sparse as sparse

from rnnscope.core.io import write_json
from rnnscope.core.random import Seed, child_seeds, numpy_rng
from rnnscope.core.results import Result
from rnnscope.evaluation.matching import MATCHING_RULES, MatchedDistance, matched_distance
from rnnscope.tasks import hmm_stats
from rnnscope.tasks.hmm import HMM, as_symbol_array

TWO_SIDED = ("volatility_error", "loglik_gap_per_step", "matched_distance_generator")
"""Signed metrics, flagged on either side of the noise floor; every other metric is flagged above it."""

DENSE_COUNT_LIMIT = 2**25
"""Count tables with at most this many cells are tallied with a dense bincount; larger ones by sorting."""

DESCRIPTIONS = {
    "max_abs_frequency_error": "max over symbols |mean output frequency − exact|",
    "max_abs_frequency_std_error": "max over symbols |std over sequences of the frequency − exact|",
    "volatility_error": "mean output changes per sequence − exact expectation",
    "max_abs_transition_error": "max |empirical P(o_t+1 | o_t) − exact|",
    "dwell_ks": "max over symbols of sup_l |P(run length <= l) Kaplan-Meier − exact| (Kolmogorov–Smirnov)",
    "loglik_gap_per_step": "mean log-likelihood per step under the HMM: generator − HMM's own samples (nats)",
    "matched_distance_generator": "mean Sinkhorn-matched Euclidean distance HMM↔generator (band: HMM↔HMM)",
}


@dataclasses.dataclass(frozen=True)
class Metric(Result):
    """One scalar emission metric, its bootstrap CI and the HMM-self noise floor.

    ``value``: the metric on the generator's outputs; ``ci_low``/``ci_high``: percentile-bootstrap
    interval over sequences; ``null_mean``/``null_std``: mean and std of the metric on the HMM's own
    samples of the same size; ``floor_low``/``floor_high``: the band outside which it is ``flagged``
    (``floor_low`` is 0 for one-sided metrics); ``two_sided``: whether values below the band flag too.
    """

    name: str
    value: float
    ci_low: float
    ci_high: float
    null_mean: float
    null_std: float
    floor_low: float
    floor_high: float
    two_sided: bool
    flagged: bool
    description: str

    def to_json_dict(self) -> dict[str, Any]:
        """The metric as plain JSON data."""
        return {
            "value": self.value,
            "ci": [self.ci_low, self.ci_high],
            "noise_floor": [self.floor_low, self.floor_high],
            "null_mean": self.null_mean,
            "null_std": self.null_std,
            "two_sided": self.two_sided,
            "flagged": self.flagged,
            "description": self.description,
        }


@dataclasses.dataclass(frozen=True)
class EmissionReport(Result):
    """Emission-fidelity metrics of a generator against an HMM (see the module docstring).

    Sizes: N sequences of T steps, K outputs, L = T−1 run lengths, n = 1..``max_ngram``.

    - ``metrics``: name → :class:`Metric` (``max_abs_frequency_error``, ``max_abs_frequency_std_error``,
      ``volatility_error``, ``max_abs_transition_error``, ``ngram_tv_<n>``, ``ngram_kl_<n>`` (nats),
      ``dwell_ks``, ``loglik_gap_per_step`` (nats per step), ``matched_distance_generator``).
    - Frequencies (K,): ``frequency_exact``/``frequency_std_exact`` (exact mean and std over
      sequences of the per-sequence frequency), ``frequency_mean_generator``/``frequency_std_generator``
      and ``frequency_mean_hmm``/``frequency_std_hmm`` (one HMM sample of the same size).
    - Transitions (K, K): ``transition_exact``, ``transition_generator``, ``transition_hmm`` (empirical,
      from that HMM sample — the reference's "ground truth"); rows with no data are NaN.
    - Volatility: ``volatility_exact`` (expected changes per sequence); ``volatility_counts_generator``
      and ``volatility_counts_hmm`` (T,): number of sequences with c = 0..T−1 changes.
    - Run lengths: ``dwell_lengths`` (L,); ``dwell_exact``, ``dwell_generator``, ``dwell_hmm`` (K, L):
      P(length = ℓ | a run starts) (empirical ones by Kaplan–Meier, runs cut by the sequence end are
      censored, runs at t = 0 excluded); ``dwell_*_tail`` (K,): mass beyond T−1.
    - ``loglik_per_step_generator``, ``loglik_per_step_hmm``: mean log-likelihood per step (nats).
    - ``matched_generator``, ``matched_hmm``: :class:`MatchedDistance` HMM↔generator and HMM↔HMM.
    - Settings: ``epsilon``, ``matching``, ``n_bootstrap``, ``n_null``, ``ci_level``, ``flag_z``.
    """

    n_sequences: int
    seq_len: int
    n_outputs: int
    n_states: int
    metrics: dict
    frequency_exact: np.ndarray
    frequency_std_exact: np.ndarray
    frequency_mean_generator: np.ndarray
    frequency_std_generator: np.ndarray
    frequency_mean_hmm: np.ndarray
    frequency_std_hmm: np.ndarray
    transition_exact: np.ndarray
    transition_generator: np.ndarray
    transition_hmm: np.ndarray
    volatility_exact: float
    volatility_counts_generator: np.ndarray
    volatility_counts_hmm: np.ndarray
    dwell_lengths: np.ndarray
    dwell_exact: np.ndarray
    dwell_exact_tail: np.ndarray
    dwell_generator: np.ndarray
    dwell_generator_tail: np.ndarray
    dwell_hmm: np.ndarray
    dwell_hmm_tail: np.ndarray
    loglik_per_step_generator: float
    loglik_per_step_hmm: float
    matched_generator: MatchedDistance
    matched_hmm: MatchedDistance
    epsilon: float
    matching: str
    n_bootstrap: int
    n_null: int
    ci_level: float
    flag_z: float

    @property
    def max_ngram(self) -> int:
        """The largest n-gram order evaluated."""
        return sum(1 for name in self.metrics if name.startswith("ngram_tv_"))

    @property
    def flags(self) -> dict[str, bool]:
        """Metric name → whether it lies outside the HMM's noise floor."""
        return {name: metric.flagged for name, metric in self.metrics.items()}

    @property
    def flagged(self) -> list[str]:
        """Names of the flagged metrics (empty when the generator is at the noise floor everywhere)."""
        return [name for name, metric in self.metrics.items() if metric.flagged]

    def ngram_values(self, kind: str = "tv") -> np.ndarray:
        """The n-gram divergence ``kind`` ("tv" or "kl") for n = 1..max_ngram, of shape (max_ngram,)."""
        if kind not in ("tv", "kl"):
            raise ValueError(f"kind must be 'tv' or 'kl'; got {kind!r}")
        return np.array([self.metrics[f"ngram_{kind}_{n}"].value for n in range(1, self.max_ngram + 1)])

    def to_json(self, path: Any = None) -> dict[str, Any]:
        """The headline numbers as JSON data; written (atomically) to ``path`` if given.

        Top-level keys include ``max_abs_transition_error``, ``max_abs_frequency_error``,
        ``loglik_gap_per_step``, ``ngram_tv`` and ``ngram_kl`` (lists, n = 1..max_ngram),
        ``matched_distance_hmm``, ``matched_distance_generator`` (and their ``_std``), ``metrics``
        (every metric with its CI, noise floor and ``flagged``) and ``flags`` (name → bool).
        """
        scalars = {
            name: metric.value for name, metric in self.metrics.items() if not name.startswith("ngram_")
        }
        data: dict[str, Any] = {
            **scalars,
            "ngram_tv": self.ngram_values("tv").tolist(),
            "ngram_kl": self.ngram_values("kl").tolist(),
            "matched_distance_hmm": self.matched_hmm.mean,
            "matched_distance_hmm_std": self.matched_hmm.std,
            "matched_distance_generator_std": self.matched_generator.std,
            "max_sq_transition_error_vs_hmm_sample": _nanmax((self.transition_generator - self.transition_hmm) ** 2),
            "volatility_exact": self.volatility_exact,
            "loglik_per_step_generator": self.loglik_per_step_generator,
            "loglik_per_step_hmm": self.loglik_per_step_hmm,
            "n_sequences": self.n_sequences,
            "seq_len": self.seq_len,
            "settings": {
                "epsilon": self.epsilon,
                "matching": self.matching,
                "matched_sequences": int(self.matched_generator.distances.size),
                "n_bootstrap": self.n_bootstrap,
                "n_null": self.n_null,
                "ci_level": self.ci_level,
                "flag_z": self.flag_z,
            },
            "metrics": {name: metric.to_json_dict() for name, metric in self.metrics.items()},
            "flags": self.flags,
            "any_flagged": bool(self.flagged),
        }
        if path is not None:
            write_json(path, data)
        return data

    def summary(self) -> str:
        """A short text table: each metric, its CI, the HMM noise floor and the verdict."""
        level = f"{100 * self.ci_level:g}% CI"
        header = f"{'metric':<30} {'value':>10}  {level:>21}  {'HMM noise floor':>21}  verdict"
        lines = [f"Emission fidelity: {self.n_sequences} sequences x {self.seq_len} steps, {self.n_outputs} outputs", header]
        for name, m in self.metrics.items():
            verdict = "FLAGGED" if m.flagged else "ok"
            lines.append(
                f"{name:<30} {m.value:>10.4g}  [{m.ci_low:>9.4g}, {m.ci_high:>9.4g}]  "
                f"[{m.floor_low:>9.4g}, {m.floor_high:>9.4g}]  {verdict}"
            )
        return "\n".join(lines)


def evaluate_emissions(
    hmm: HMM,
    outputs: Any,
    *,
    seed: Seed = 0,
    n_bootstrap: int = 200,
    n_null: int = 20,
    ci_level: float = 0.95,
    flag_z: float = 4.0,
    epsilon: float = 0.1,
    matching: str = "argmax",
    max_matched: int = 2000,
    max_ngram: int = 4,
    sinkhorn_tol: float = 1e-4,
    device: str = "cpu",
    progress: bool = False,
) -> EmissionReport:
    """Compare ``outputs`` (int, (N, T), numpy or torch) with ``hmm``; return an :class:`EmissionReport`.

    ``n_null`` (≥ 3) fresh HMM samples of the same N and T give the noise floor of every metric (the
    first three also give the matched-distance sets); ``n_bootstrap`` resamples of the sequences give
    the ``ci_level`` intervals; ``flag_z`` sets the flag rule (module docstring). The matched distance
    uses at most ``max_matched`` sequences per set (a seeded random subset of the generator's), Sinkhorn
    regularisation ``epsilon`` (cost units: Euclidean distance between one-hot sequences), the
    ``matching`` rule ("argmax" or "assignment") and row-marginal tolerance ``sinkhorn_tol``.
    """
    outputs_nt = as_symbol_array(outputs, hmm.n_outputs)
    n_seq, seq_len = outputs_nt.shape
    _check_settings(n_seq, seq_len, n_bootstrap, n_null, ci_level, flag_z, max_matched, max_ngram, matching, epsilon)
    null_seed, boot_seed, subset_seed = child_seeds(seed, 3)
    exact = _Exact.of(hmm, seq_len, max_ngram)

    generator = _PerSequence.of(hmm, outputs_nt, max_ngram)
    value = generator.aggregate(np.ones((1, n_seq)))
    weights_bn = _bootstrap_weights(n_seq, n_bootstrap, boot_seed)
    boot = generator.aggregate(weights_bn)

    n_matched = min(n_seq, max_matched)
    null_aggregates, matched_sets = _hmm_replicates(hmm, n_seq, seq_len, max_ngram, n_null, n_matched, null_seed, progress)
    null = _Aggregate.concatenate(null_aggregates)
    hmm_reference = null_aggregates[0]

    value_m, boot_m, null_m = (_metric_values(a, exact) for a in (value, boot, null))
    _loglik_gap(value_m, boot_m, null_m)

    subset = np.sort(numpy_rng(subset_seed).choice(n_seq, size=n_matched, replace=False))
    match_kwargs = dict(epsilon=epsilon, matching=matching, tol=sinkhorn_tol, device=device)
    matched_generator = matched_distance(matched_sets[0], outputs_nt[subset], hmm.n_outputs, **match_kwargs)
    matched_hmm = matched_distance(matched_sets[1], matched_sets[2], hmm.n_outputs, **match_kwargs)

    metrics = {
        name: _metric(name, value_m[name][0], boot_m[name], null_m[name], ci_level, flag_z)
        for name in value_m
        if name != "loglik_per_step"
    }
    metrics["matched_distance_generator"] = _matched_metric(
        matched_generator, matched_hmm, ci_level, flag_z, n_bootstrap, boot_seed
    )
    generator_dwell = value.dwell()
    hmm_dwell = hmm_reference.dwell()
    return EmissionReport(
        n_sequences=n_seq,
        seq_len=seq_len,
        n_outputs=hmm.n_outputs,
        n_states=hmm.n_states,
        metrics=metrics,
        frequency_exact=exact.frequency,
        frequency_std_exact=exact.frequency_std,
        frequency_mean_generator=value.frequency_mean[0],
        frequency_std_generator=value.frequency_std[0],
        frequency_mean_hmm=hmm_reference.frequency_mean[0],
        frequency_std_hmm=hmm_reference.frequency_std[0],
        transition_exact=exact.transition,
        transition_generator=value.transition()[0],
        transition_hmm=hmm_reference.transition()[0],
        volatility_exact=exact.volatility,
        volatility_counts_generator=value.volatility_counts,
        volatility_counts_hmm=hmm_reference.volatility_counts,
        dwell_lengths=np.arange(1, seq_len),
        dwell_exact=exact.dwell.probabilities,
        dwell_exact_tail=exact.dwell.tail,
        dwell_generator=generator_dwell[0][0],
        dwell_generator_tail=generator_dwell[1][0],
        dwell_hmm=hmm_dwell[0][0],
        dwell_hmm_tail=hmm_dwell[1][0],
        loglik_per_step_generator=float(value.loglik_mean[0]),
        loglik_per_step_hmm=float(np.mean(null.loglik_mean)),
        matched_generator=matched_generator,
        matched_hmm=matched_hmm,
        epsilon=float(epsilon),
        matching=matching,
        n_bootstrap=int(n_bootstrap),
        n_null=int(n_null),
        ci_level=float(ci_level),
        flag_z=float(flag_z),
    )


def _hmm_replicates(
    hmm: HMM, n_seq: int, seq_len: int, max_ngram: int, n_null: int, n_matched: int, seed: Seed, progress: bool
) -> tuple[list["_Aggregate"], list[np.ndarray]]:
    """Pooled statistics of ``n_null`` fresh HMM samples (N, T), and the first ``n_matched`` sequences
    of the first three samples (the HMM sets of the matched distance)."""
    aggregates, matched_sets = [], []
    for index, replicate_seed in enumerate(_progress(child_seeds(seed, n_null), progress, "HMM noise floor")):
        sample = hmm.sample(n_seq, seq_len, seed=replicate_seed).outputs
        aggregates.append(_PerSequence.of(hmm, sample, max_ngram).aggregate(np.ones((1, n_seq))))
        if index < 3:
            matched_sets.append(sample[:n_matched])
    return aggregates, matched_sets


# ------------------------------------------------------------------------------ exact statistics


@dataclasses.dataclass(frozen=True)
class _Exact:
    """The HMM's exact statistics for T-step sequences started from ``hmm.start``, pooled over steps."""

    frequency: np.ndarray
    frequency_std: np.ndarray
    transition: np.ndarray
    volatility: float
    ngrams: list
    dwell: hmm_stats.DwellTimeDistribution

    @classmethod
    def of(cls, hmm: HMM, seq_len: int, max_ngram: int) -> "_Exact":
        pis_tm = hmm.state_distributions(seq_len)
        pair_dist = pis_tm[:-1].mean(axis=0)
        a, b = hmm.transition, hmm.emission
        frequency, frequency_std = hmm_stats.frequency_moments(hmm.start, a, b, seq_len)
        same_step = np.trace(hmm_stats.bigram_joint(pair_dist, a, b))
        return cls(
            frequency=frequency,
            frequency_std=frequency_std,
            transition=hmm_stats.output_transition(pair_dist, a, b),
            volatility=float((seq_len - 1) * (1.0 - same_step)),
            ngrams=[
                hmm_stats.ngram(pis_tm[: seq_len - n + 1].mean(axis=0), a, b, n).ravel()
                for n in range(1, max_ngram + 1)
            ],
            dwell=hmm_stats.dwell_times(pair_dist, a, b, seq_len - 1),
        )


# --------------------------------------------------------------------- per-sequence statistics


@dataclasses.dataclass(frozen=True)
class _PerSequence:
    """Sufficient statistics of each sequence, so any reweighting of sequences is one matrix product.

    ``frequency_nk``: per-sequence symbol frequencies; ``ngram_counts``: CSR (N, K^n) n-gram counts for
    n = 1..max_ngram; ``changes_n``: output changes; ``loglik_n``: log-likelihood per step;
    ``runs_ended`` / ``runs_censored``: CSR (N, K·L) counts of runs (started at t ≥ 1) by symbol and
    length, ended inside the sequence or cut by its end.
    """

    n_outputs: int
    seq_len: int
    frequency_nk: np.ndarray
    ngram_counts: list
    changes_n: np.ndarray
    loglik_n: np.ndarray
    runs_ended: sparse.csr_matrix
    runs_censored: sparse.csr_matrix

    @classmethod
    def of(cls, hmm: HMM, outputs_nt: np.ndarray, max_ngram: int) -> "_PerSequence":
        n_seq, seq_len = outputs_nt.shape
        k = hmm.n_outputs
        ended, censored = _run_counts(outputs_nt, k)
        ngram_counts = [_ngram_counts(outputs_nt, k, n) for n in range(1, max_ngram + 1)]
        return cls(
            n_outputs=k,
            seq_len=seq_len,
            frequency_nk=ngram_counts[0].toarray() / seq_len,
            ngram_counts=ngram_counts,
            changes_n=(outputs_nt[:, 1:] != outputs_nt[:, :-1]).sum(axis=1).astype(float),
            loglik_n=hmm.log_likelihood(outputs_nt) / seq_len,
            runs_ended=ended,
            runs_censored=censored,
        )

    def aggregate(self, weights_rn: np.ndarray) -> "_Aggregate":
        """Pool the sequences under R weightings (R, N) (ones: the sample; multinomial: bootstraps)."""
        total_r = weights_rn.sum(axis=1)
        mean_rk = weights_rn @ self.frequency_nk / total_r[:, None]
        second_rk = weights_rn @ self.frequency_nk**2 / total_r[:, None]
        variance_rk = np.clip(second_rk - mean_rk**2, 0.0, None) * (total_r / np.maximum(total_r - 1, 1))[:, None]
        shape = (weights_rn.shape[0], self.n_outputs, self.seq_len - 1)
        return _Aggregate(
            n_outputs=self.n_outputs,
            frequency_mean=mean_rk,
            frequency_std=np.sqrt(variance_rk),
            ngram_tables=[_weighted(counts, weights_rn) for counts in self.ngram_counts],
            changes_mean=weights_rn @ self.changes_n / total_r,
            loglik_mean=_weighted_mean(self.loglik_n, weights_rn, total_r),
            runs_ended=_weighted(self.runs_ended, weights_rn).reshape(shape),
            runs_censored=_weighted(self.runs_censored, weights_rn).reshape(shape),
            volatility_counts=np.bincount(self.changes_n.astype(np.int64), minlength=self.seq_len),
        )


@dataclasses.dataclass(frozen=True)
class _Aggregate:
    """Pooled statistics under R weightings of the sequences; every field but ``volatility_counts``
    (histogram of changes per sequence of the unweighted sample, (T,)) has leading axis R."""

    n_outputs: int
    frequency_mean: np.ndarray
    frequency_std: np.ndarray
    ngram_tables: list
    changes_mean: np.ndarray
    loglik_mean: np.ndarray
    runs_ended: np.ndarray
    runs_censored: np.ndarray
    volatility_counts: np.ndarray

    @staticmethod
    def concatenate(parts: list["_Aggregate"]) -> "_Aggregate":
        return _Aggregate(
            n_outputs=parts[0].n_outputs,
            frequency_mean=np.concatenate([p.frequency_mean for p in parts]),
            frequency_std=np.concatenate([p.frequency_std for p in parts]),
            ngram_tables=[np.concatenate([p.ngram_tables[i] for p in parts]) for i in range(len(parts[0].ngram_tables))],
            changes_mean=np.concatenate([p.changes_mean for p in parts]),
            loglik_mean=np.concatenate([p.loglik_mean for p in parts]),
            runs_ended=np.concatenate([p.runs_ended for p in parts]),
            runs_censored=np.concatenate([p.runs_censored for p in parts]),
            volatility_counts=parts[0].volatility_counts,
        )

    def transition(self) -> np.ndarray:
        """Empirical P(o_{t+1} | o_t), (R, K, K); rows of symbols never followed by a step are NaN."""
        counts = self.ngram_tables[1].reshape(-1, self.n_outputs, self.n_outputs)
        rows = counts.sum(axis=2, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(rows > 0, counts / np.where(rows > 0, rows, 1.0), np.nan)

    def dwell(self) -> tuple[np.ndarray, np.ndarray]:
        """Kaplan–Meier run-length distribution per symbol: P(length = ℓ) (R, K, L) and tail (R, K).

        A run cut by the sequence end after ℓ steps is known to last ≥ ℓ, so it is at risk of ending
        at lengths 1..ℓ−1 only (its fate at ℓ is unknown).
        """
        ended, censored = self.runs_ended, self.runs_censored
        ended_from = np.cumsum(ended[..., ::-1], axis=-1)[..., ::-1]
        censored_from = np.cumsum(censored[..., ::-1], axis=-1)[..., ::-1]
        at_risk = ended_from + np.concatenate([censored_from[..., 1:], np.zeros_like(censored_from[..., :1])], axis=-1)
        hazard = np.divide(ended, at_risk, out=np.zeros_like(ended), where=at_risk > 0)
        survival = np.cumprod(1.0 - hazard, axis=-1)
        before = np.concatenate([np.ones_like(survival[..., :1]), survival[..., :-1]], axis=-1)
        return before * hazard, survival[..., -1]


def _run_counts(outputs_nt: np.ndarray, n_outputs: int) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """Per-sequence counts of runs by (symbol, length): ended inside the sequence, or cut by its end.

    Runs starting at t = 0 are left out (their start is unknown). Columns: symbol · (T−1) + length − 1.
    """
    n_seq, seq_len = outputs_nt.shape
    starts = np.ones((n_seq, seq_len), dtype=bool)
    starts[:, 1:] = outputs_nt[:, 1:] != outputs_nt[:, :-1]
    flat = np.flatnonzero(starts)
    lengths = np.diff(np.append(flat, n_seq * seq_len))
    seq, step = np.divmod(flat, seq_len)
    keep = step > 0
    seq, step, lengths = seq[keep], step[keep], lengths[keep]
    column = outputs_nt[seq, step] * (seq_len - 1) + lengths - 1
    cut = step + lengths == seq_len
    n_columns = n_outputs * (seq_len - 1)
    return (
        _sparse_counts(seq[~cut], column[~cut], n_seq, n_columns),
        _sparse_counts(seq[cut], column[cut], n_seq, n_columns),
    )


def _ngram_counts(outputs_nt: np.ndarray, n_outputs: int, n: int) -> sparse.csr_matrix:
    """CSR (N, K^n) counts of each n-gram (code Σ o_{t+i} K^{n−1−i}) in each sequence."""
    n_seq, seq_len = outputs_nt.shape
    windows = seq_len - n + 1
    code = np.zeros((n_seq, windows), dtype=np.int64)
    for offset in range(n):
        code = code * n_outputs + outputs_nt[:, offset : offset + windows]
    rows = np.repeat(np.arange(n_seq), windows)
    return _sparse_counts(rows, code.ravel(), n_seq, n_outputs**n)


def _sparse_counts(rows: np.ndarray, columns: np.ndarray, n_rows: int, n_columns: int) -> sparse.csr_matrix:
    """CSR (n_rows, n_columns) matrix counting the (row, column) pairs given (duplicates add up)."""
    keys = rows.astype(np.int64) * n_columns + columns
    if n_rows * n_columns <= DENSE_COUNT_LIMIT:
        counts = np.bincount(keys, minlength=n_rows * n_columns)
        flat = np.flatnonzero(counts)
        data = counts[flat]
    else:
        flat, data = np.unique(keys, return_counts=True)
    row, column = np.divmod(flat, n_columns)
    indptr = np.searchsorted(row, np.arange(n_rows + 1))
    return sparse.csr_matrix((data.astype(float), column, indptr), shape=(n_rows, n_columns))


def _weighted(counts_nc: sparse.csr_matrix, weights_rn: np.ndarray) -> np.ndarray:
    """Σ_n w_rn counts_nc, a dense (R, C) array."""
    return np.asarray((counts_nc.T @ weights_rn.T).T)


def _weighted_mean(values_n: np.ndarray, weights_rn: np.ndarray, total_r: np.ndarray) -> np.ndarray:
    """Weighted means of ``values_n`` that stay −inf (not NaN) when a value is −inf."""
    if np.all(np.isfinite(values_n)):
        return weights_rn @ values_n / total_r
    finite = np.where(np.isfinite(values_n), values_n, 0.0)
    has_inf = (weights_rn[:, ~np.isfinite(values_n)] > 0).any(axis=1)
    return np.where(has_inf, -np.inf, weights_rn @ finite / total_r)


def _bootstrap_weights(n_seq: int, n_bootstrap: int, seed: Seed) -> np.ndarray:
    """Multiplicity of each sequence in ``n_bootstrap`` resamples with replacement, (B, N)."""
    draws = numpy_rng(seed).integers(0, n_seq, size=(n_bootstrap, n_seq))
    offsets = (np.arange(n_bootstrap) * n_seq)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=n_bootstrap * n_seq).reshape(n_bootstrap, n_seq).astype(float)


# ------------------------------------------------------------------------------------- metrics


def _metric_values(agg: _Aggregate, exact: _Exact) -> dict[str, np.ndarray]:
    """Every metric (except the matched distance) for each of the R weightings, each of shape (R,)."""
    values = {
        "max_abs_frequency_error": np.abs(agg.frequency_mean - exact.frequency).max(axis=1),
        "max_abs_frequency_std_error": np.abs(agg.frequency_std - exact.frequency_std).max(axis=1),
        "volatility_error": agg.changes_mean - exact.volatility,
        "max_abs_transition_error": _nanmax_rows(np.abs(agg.transition() - exact.transition)),
    }
    for n, (table, probs) in enumerate(zip(agg.ngram_tables, exact.ngrams), start=1):
        empirical = table / table.sum(axis=1, keepdims=True)
        values[f"ngram_tv_{n}"] = 0.5 * np.abs(empirical - probs).sum(axis=1)
        values[f"ngram_kl_{n}"] = _kl(empirical, probs)
    pmf, _ = agg.dwell()
    defined = np.isfinite(exact.dwell.tail)
    gap = np.abs(np.cumsum(pmf, axis=-1) - np.cumsum(exact.dwell.probabilities, axis=-1)).max(axis=-1)
    values["dwell_ks"] = gap[:, defined].max(axis=1) if defined.any() else np.full(gap.shape[0], np.nan)
    values["loglik_per_step"] = agg.loglik_mean
    return values


def _loglik_gap(value_m: dict, boot_m: dict, null_m: dict) -> None:
    """Turn mean log-likelihoods into gaps to the HMM's own samples (pooled; leave-one-out for the null)."""
    own = null_m["loglik_per_step"]
    pooled = own.mean()
    value_m["loglik_gap_per_step"] = value_m["loglik_per_step"] - pooled
    boot_m["loglik_gap_per_step"] = boot_m["loglik_per_step"] - pooled
    leave_one_out = (own.sum() - own) / (own.size - 1)
    null_m["loglik_gap_per_step"] = own - leave_one_out


def _kl(empirical_rc: np.ndarray, probs_c: np.ndarray) -> np.ndarray:
    """KL(empirical ‖ exact) in nats per row; inf if the empirical puts mass where the exact has none."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(empirical_rc > 0, empirical_rc * (np.log(empirical_rc) - np.log(probs_c)), 0.0)
    return terms.sum(axis=1)


def _metric(name: str, value: float, boot: np.ndarray, null: np.ndarray, ci_level: float, flag_z: float) -> Metric:
    low, high = _interval(boot, ci_level)
    null_mean, null_std = float(np.mean(null)), float(np.std(null, ddof=1))
    return _flag(name, float(value), low, high, null_mean, null_std, flag_z)


def _matched_metric(
    generator: MatchedDistance, baseline: MatchedDistance, ci_level: float, flag_z: float, n_bootstrap: int, seed: Seed
) -> Metric:
    """The matched distance against the HMM↔HMM baseline (band: baseline ± z·√2·its standard error)."""
    weights = _bootstrap_weights(generator.distances.size, n_bootstrap, seed)
    boot = weights @ generator.distances / generator.distances.size
    low, high = _interval(boot, ci_level)
    standard_error = baseline.std / np.sqrt(baseline.distances.size)
    return _flag(
        "matched_distance_generator", generator.mean, low, high, baseline.mean, float(np.sqrt(2.0) * standard_error), flag_z
    )


def _flag(name: str, value: float, low: float, high: float, null_mean: float, null_std: float, flag_z: float) -> Metric:
    two_sided = name in TWO_SIDED
    slack = 1e-12 * (1.0 + abs(null_mean))
    floor_high = null_mean + flag_z * null_std + slack
    floor_low = null_mean - flag_z * null_std - slack if two_sided else 0.0
    flagged = bool(value > floor_high or (two_sided and value < floor_low))
    return Metric(
        name=name,
        value=value,
        ci_low=low,
        ci_high=high,
        null_mean=null_mean,
        null_std=null_std,
        floor_low=floor_low,
        floor_high=floor_high,
        two_sided=two_sided,
        flagged=flagged,
        description=_describe(name),
    )


def _describe(name: str) -> str:
    if name.startswith("ngram_"):
        kind, n = name.split("_")[1:]
        what = "total-variation distance" if kind == "tv" else "KL divergence (nats), empirical ‖ exact,"
        return f"{what} between the empirical and exact {n}-gram distributions"
    return DESCRIPTIONS[name]


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval; NaN samples are ignored and infinite ones are kept (no interpolation)."""
    finite = samples[~np.isnan(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2], method="nearest")
    return float(low), float(high)


def _nanmax_rows(values_rkk: np.ndarray) -> np.ndarray:
    flat = values_rkk.reshape(values_rkk.shape[0], -1)
    out = np.full(flat.shape[0], np.nan)
    has = ~np.all(np.isnan(flat), axis=1)
    out[has] = np.nanmax(flat[has], axis=1)
    return out


def _nanmax(values: np.ndarray) -> float:
    return float(np.nanmax(values)) if np.any(np.isfinite(values)) else float("nan")


def _check_settings(
    n_seq: int,
    seq_len: int,
    n_bootstrap: int,
    n_null: int,
    ci_level: float,
    flag_z: float,
    max_matched: int,
    max_ngram: int,
    matching: str,
    epsilon: float,
) -> None:
    if n_seq < 2:
        raise ValueError(f"outputs must hold at least 2 sequences for bootstrap intervals; got {n_seq}")
    if max_ngram < 1 or seq_len < max(2, max_ngram):
        raise ValueError(
            f"sequences of T={seq_len} steps are too short for n-grams up to n={max_ngram} "
            f"(T must be >= max(2, max_ngram)); lower max_ngram"
        )
    if n_bootstrap < 2:
        raise ValueError(f"n_bootstrap must be at least 2; got {n_bootstrap}")
    if n_null < 3:
        raise ValueError(f"n_null must be at least 3 (the matched distance needs three HMM samples); got {n_null}")
    if not 0 < ci_level < 1:
        raise ValueError(f"ci_level must lie in (0, 1); got {ci_level}")
    if not flag_z > 0:
        raise ValueError(f"flag_z must be positive; got {flag_z}")
    if max_matched < 2:
        raise ValueError(f"max_matched must be at least 2; got {max_matched}")
    if matching not in MATCHING_RULES:
        raise ValueError(f"matching must be one of {MATCHING_RULES}; got {matching!r}")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be positive; got {epsilon}")


def _progress(items: list, enabled: bool, label: str) -> Iterable:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=label)
