"""The HMM task library: builders, validation, sampling, and exact statistics against oracles."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from rnnscope.config.presets import preset
from rnnscope.config.schema import HMMTaskConfig
from rnnscope.errors import SpecError
from rnnscope.tasks import hmm_stats
from rnnscope.tasks.hmm import (
    HMM,
    HMMSample,
    cyclic_transition,
    fully_connected_transition,
    gaussian_emission,
    hmm_from_config,
    linear_chain_transition,
    linear_emission,
    split_sequences,
    triangular_emission,
)


def random_hmm(n_states: int, n_outputs: int, seed: int) -> HMM:
    rng = np.random.default_rng(seed)
    return HMM(
        rng.dirichlet(np.ones(n_states)),
        rng.dirichlet(np.ones(n_states), size=n_states),
        rng.dirichlet(np.ones(n_outputs), size=n_states),
    )


def identity_emission_hmm(transition: np.ndarray, start: np.ndarray | None = None) -> HMM:
    """An HMM whose outputs are its states: the output process is the Markov chain itself."""
    n = transition.shape[0]
    return HMM(np.full(n, 1.0 / n) if start is None else start, transition, np.eye(n))


def stationary_copy(hmm: HMM) -> HMM:
    return HMM(hmm.stationary_distribution(), hmm.transition, hmm.emission)


# ------------------------------------------------------------------------------------ builders


def test_linear_chain_by_target_prob_matches_the_reference_rule():
    np.testing.assert_allclose(linear_chain_transition(2, target_prob=0.05), [[0.95, 0.05], [0.05, 0.95]])
    q = 0.05 ** (1 / 4)
    five = linear_chain_transition(5, target_prob=0.05)
    np.testing.assert_allclose(five[0], [1 - q, q, 0, 0, 0])
    np.testing.assert_allclose(five[2], [0, q, 1 - 2 * q, q, 0])
    np.testing.assert_allclose(five[4], [0, 0, 0, q, 1 - q])
    assert q == pytest.approx(0.4729, abs=1e-4) and 1 - 2 * q == pytest.approx(0.054, abs=1e-3)


def test_linear_chain_by_stay_prob_is_the_legacy_rule():
    np.testing.assert_allclose(
        linear_chain_transition(3, stay_prob=0.9), [[0.9, 0.1, 0.0], [0.05, 0.9, 0.05], [0.0, 0.1, 0.9]]
    )


def test_fully_connected_and_cyclic_transitions():
    np.testing.assert_allclose(
        fully_connected_transition(3, 0.95), [[0.95, 0.025, 0.025], [0.025, 0.95, 0.025], [0.025, 0.025, 0.95]]
    )
    ring = cyclic_transition(4, 0.95)
    expected = np.array(
        [[0.95, 0.025, 0, 0.025], [0.025, 0.95, 0.025, 0], [0, 0.025, 0.95, 0.025], [0.025, 0, 0.025, 0.95]]
    )
    np.testing.assert_allclose(ring, expected)
    np.testing.assert_allclose(cyclic_transition(2, 0.8), [[0.8, 0.2], [0.2, 0.8]])
    np.testing.assert_allclose(fully_connected_transition(1, 0.3), [[1.0]])


def test_linear_emission_rows():
    np.testing.assert_allclose(linear_emission(2, 3), [[0.99, 0.01, 0.0], [0.0, 0.01, 0.99]])
    np.testing.assert_allclose(linear_emission(3, 3)[1], [0.495, 0.01, 0.495])
    four = linear_emission(3, 4)
    np.testing.assert_allclose(four.sum(axis=1), 1.0)
    raw = np.linspace(0.99, 0.0, 4)
    np.testing.assert_allclose(four[0], raw / raw.sum())


def test_gaussian_emission_matches_the_reference_numbers():
    rows = gaussian_emission(2, 3)
    first = np.array([1.0, np.exp(-5.0), np.exp(-20.0)])
    np.testing.assert_allclose(rows[0], first / first.sum())
    np.testing.assert_allclose(rows[1], rows[0][::-1])
    assert rows[0, 0] == pytest.approx(0.993, abs=1e-3) and rows[0, 1] == pytest.approx(0.007, abs=1e-3)


def test_triangular_emission_puts_the_peak_on_the_assigned_output():
    np.testing.assert_allclose(triangular_emission(3, 3), np.full((3, 3), 0.01) + np.eye(3) * 0.97)
    two = triangular_emission(2, 3, peak=0.9)
    np.testing.assert_allclose(two, [[0.9, 0.05, 0.05], [0.05, 0.05, 0.9]])
    assert np.argmax(triangular_emission(5, 3), axis=1).tolist() == [0, 0, 1, 2, 2]  # round(i·2/4), half to even


def test_presets_build_the_reference_hmms():
    cyclic = preset("hmm-cyclic").hmm
    np.testing.assert_allclose(cyclic.transition, cyclic_transition(4, 0.95))
    np.testing.assert_allclose(cyclic.emission, [[0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.0, 0.1, 0.9], [0.0, 0.9, 0.1]])
    fully = preset("hmm-fully").hmm
    np.testing.assert_allclose(fully.emission, triangular_emission(3, 3, 0.98))
    for name, n in (("hmm-two", 2), ("hmm-three", 3), ("hmm-four", 4), ("hmm-five", 5)):
        hmm = preset(name).hmm
        np.testing.assert_allclose(hmm.transition, linear_chain_transition(n, target_prob=0.05))
        np.testing.assert_allclose(hmm.start, np.full(n, 1 / n))


def test_config_start_options():
    chain = dict(n_states=3, transition="linear_chain", target_prob=None, stay_prob=0.8)
    stationary = HMMTaskConfig(**chain, start="stationary").build()
    np.testing.assert_allclose(stationary.start @ stationary.transition, stationary.start, atol=1e-12)
    explicit = HMMTaskConfig(**chain, start=[1.0, 0.0, 0.0]).build()
    np.testing.assert_allclose(explicit.start, [1.0, 0.0, 0.0])
    legacy = hmm_from_config(HMMTaskConfig(**chain))
    np.testing.assert_allclose(legacy.transition, linear_chain_transition(3, stay_prob=0.8))


# ---------------------------------------------------------------------------------- validation


GOOD_T = [[0.9, 0.1], [0.2, 0.8]]
GOOD_E = [[0.5, 0.5], [0.1, 0.9]]


@pytest.mark.parametrize(
    ("start", "transition", "emission", "needles"),
    [
        ([0.5, 0.5], [[0.9, 0.1], [0.2, 0.7]], GOOD_E, ["transition row 1", "sums to 0.9", "normalise"]),
        ([0.5, 0.5], GOOD_T, [[0.5, 0.5], [0.3, 0.9]], ["emission row 1", "sums to 1.2"]),
        ([0.6, 0.6], GOOD_T, GOOD_E, ["start sums to 1.2"]),
        ([0.5, 0.5], [[1.1, -0.1], [0.2, 0.8]], GOOD_E, ["transition row 0", "outside [0, 1]"]),
        ([0.5, 0.5], [[np.nan, 1.0], [0.2, 0.8]], GOOD_E, ["transition row 0", "non-finite"]),
        ([0.5, 0.5], [[0.5, 0.5, 0.0], [0.2, 0.8, 0.0]], GOOD_E, ["must be square"]),
        ([1 / 3] * 3, GOOD_T, GOOD_E, ["start has 3 entries", "2x2"]),
        ([0.5, 0.5], GOOD_T, [[0.5, 0.5]], ["emission has 1 rows", "2 hidden states"]),
        ([0.5, 0.5], [0.9, 0.1], GOOD_E, ["2-D"]),
        ([0.5, 0.5], GOOD_T, [["a", "b"], ["c", "d"]], ["could not read"]),
    ],
)
def test_invalid_specs_raise_one_clear_error(start, transition, emission, needles):
    with pytest.raises(SpecError) as info:
        HMM(start, transition, emission)
    for needle in needles:
        assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


def test_rows_within_tolerance_are_renormalised_exactly():
    hmm = HMM([0.5, 0.5], [[0.9, 0.1 + 5e-7], [0.2, 0.8]], GOOD_E)
    np.testing.assert_allclose(hmm.transition.sum(axis=1), 1.0, rtol=0, atol=1e-15)


def test_matrices_are_read_only_copies():
    source = np.array(GOOD_T)
    hmm = HMM([0.5, 0.5], source, GOOD_E)
    source[0, 0] = 0.0
    assert hmm.transition[0, 0] == 0.9
    with pytest.raises(ValueError):
        hmm.transition[0, 0] = 0.5
    assert hmm.transition.dtype == np.float64 and (hmm.n_states, hmm.n_outputs) == (2, 2)


@pytest.mark.parametrize(
    ("call", "error", "needle"),
    [
        (lambda: linear_chain_transition(3, target_prob=0.5), SpecError, "0.5^(M-1)"),
        (lambda: linear_chain_transition(3), ValueError, "exactly one"),
        (lambda: linear_chain_transition(3, target_prob=0.1, stay_prob=0.9), ValueError, "exactly one"),
        (lambda: fully_connected_transition(3, 1.2), SpecError, "stay_prob"),
        (lambda: cyclic_transition(0, 0.9), ValueError, "n_states"),
        (lambda: triangular_emission(3, 3, peak=0.0), SpecError, "peak"),
        (lambda: linear_emission(2, 1), ValueError, "n_outputs"),
    ],
)
def test_invalid_builder_arguments(call, error, needle):
    with pytest.raises(error, match=None) as info:
        call()
    assert needle in str(info.value)


def test_config_with_mismatched_custom_matrix_names_the_keys():
    config = HMMTaskConfig(n_states=3, transition="custom", target_prob=None, custom_transition=GOOD_T)
    with pytest.raises(SpecError, match="custom_transition has shape"):
        config.build()
    config = HMMTaskConfig(n_states=2, n_outputs=3, emission="custom", custom_emission=GOOD_E)
    with pytest.raises(SpecError, match="custom_emission has shape"):
        config.build()


def test_non_unique_stationary_distribution_raises():
    hmm = identity_emission_hmm(np.eye(2))
    with pytest.raises(SpecError, match="not unique"):
        hmm.stationary_distribution()


# ------------------------------------------------------------------------------------ sampling


def test_sample_shapes_types_and_seeding():
    hmm = preset("hmm-two").hmm
    sample = hmm.sample(50, 20, seed=3)
    assert sample.outputs.shape == sample.states.shape == (50, 20)
    assert sample.outputs.dtype == sample.states.dtype == np.int64
    one_hot = sample.one_hot()
    assert one_hot.shape == (50, 20, 3) and one_hot.dtype == np.float32
    np.testing.assert_array_equal(one_hot.argmax(-1), sample.outputs)
    np.testing.assert_array_equal(one_hot.sum(-1), 1.0)
    again = hmm.sample(50, 20, seed=3)
    np.testing.assert_array_equal(again.outputs, sample.outputs)
    assert not np.array_equal(hmm.sample(50, 20, seed=4).outputs, sample.outputs)
    # state 0 never emits output 2 and state 1 never emits output 0 in hmm-two
    assert not np.any((sample.states == 0) & (sample.outputs == 2))
    assert not np.any((sample.states == 1) & (sample.outputs == 0))


def test_sample_accepts_generators_and_round_trips(tmp_path):
    hmm = random_hmm(3, 4, seed=0)
    a = hmm.sample(10, 5, seed=np.random.default_rng(1))
    b = hmm.sample(10, 5, seed=np.random.default_rng(1))
    np.testing.assert_array_equal(a.states, b.states)
    hmm.sample(4, 4, seed=torch.Generator().manual_seed(0))
    a.save(tmp_path / "sample")
    loaded = HMMSample.load(tmp_path / "sample")
    np.testing.assert_array_equal(loaded.outputs, a.outputs)
    assert loaded.n_outputs == 4
    with pytest.raises(ValueError, match="num_seq"):
        hmm.sample(0, 5)


def test_step_marginals_agree_with_exact_distributions_within_binomial_error():
    """Sequences are independent, so the count at one step is exactly binomial."""
    hmm = random_hmm(3, 3, seed=11)
    hmm = HMM([1.0, 0.0, 0.0], hmm.transition, hmm.emission)  # far from stationarity
    n = 20_000
    sample = hmm.sample(n, 8, seed=5)
    for t in (0, 1, 3, 7):
        for empirical, exact in (
            (np.bincount(sample.states[:, t], minlength=3) / n, hmm.state_distribution(t)),
            (np.bincount(sample.outputs[:, t], minlength=3) / n, hmm.output_distribution(t)),
        ):
            se = np.sqrt(exact * (1 - exact) / n) + 1e-12
            assert np.all(np.abs(empirical - exact) < 5 * se)
    codes = sample.outputs[:, 2] * 9 + sample.outputs[:, 3] * 3 + sample.outputs[:, 4]
    empirical = np.bincount(codes, minlength=27) / n
    exact = hmm.ngram_probabilities(3, t=2).ravel()
    assert np.all(np.abs(empirical - exact) < 5 * np.sqrt(exact * (1 - exact) / n) + 1e-12)


def test_pooled_frequencies_and_output_transitions_agree_with_exact_values():
    hmm = preset("hmm-three").hmm  # doubly stochastic, uniform start: stationary at every step
    n, length = 20_000, 50
    outputs = hmm.sample(n, length, seed=2).outputs
    _, std = hmm_stats.frequency_moments(hmm.start, hmm.transition, hmm.emission, length)
    frequency = np.bincount(outputs.ravel(), minlength=3) / outputs.size
    assert np.all(np.abs(frequency - hmm.output_distribution()) < 5 * std / np.sqrt(n))
    counts = np.zeros((3, 3))
    np.add.at(counts, (outputs[:, :-1].ravel(), outputs[:, 1:].ravel()), 1)
    empirical = counts / counts.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(empirical, hmm.output_transition_matrix(), atol=0.01)
    per_sequence = np.stack([(outputs == k).mean(axis=1) for k in range(3)], axis=1)
    np.testing.assert_allclose(per_sequence.std(axis=0), std, rtol=0.03)


# --------------------------------------------------------------------------- exact statistics


def brute_force_sequence_probabilities(hmm: HMM, length: int) -> np.ndarray:
    """P(o_0..o_{T-1}) by enumerating every hidden path and every output sequence, shape (K,)*T."""
    probs = np.zeros((hmm.n_outputs,) * length)
    for path in itertools.product(range(hmm.n_states), repeat=length):
        p_path = hmm.start[path[0]] * np.prod([hmm.transition[a, b] for a, b in zip(path[:-1], path[1:])])
        for outputs in itertools.product(range(hmm.n_outputs), repeat=length):
            probs[outputs] += p_path * np.prod([hmm.emission[s, o] for s, o in zip(path, outputs)])
    return probs


def test_ngrams_match_brute_force_enumeration_over_state_paths():
    hmm = random_hmm(3, 2, seed=4)
    brute = brute_force_sequence_probabilities(hmm, 4)
    np.testing.assert_allclose(hmm.ngram_probabilities(4, t=0), brute, atol=1e-14)
    np.testing.assert_allclose(hmm.ngram_probabilities(3, t=1), brute.sum(axis=0), atol=1e-14)
    np.testing.assert_allclose(np.exp(hmm.log_likelihood(np.array([[0, 1, 1, 0]]))), brute[0, 1, 1, 0])


@pytest.mark.parametrize("t", [None, 0, 3])
def test_ngram_tables_sum_to_one_and_marginalise(t):
    hmm = random_hmm(4, 3, seed=8)
    for n in range(2, 6):
        table = hmm.ngram_probabilities(n, t=t)
        assert table.shape == (3,) * n
        assert table.sum() == pytest.approx(1.0, abs=1e-12)
        np.testing.assert_allclose(table.sum(axis=-1), hmm.ngram_probabilities(n - 1, t=t), atol=1e-14)
        next_t = None if t is None else t + 1
        np.testing.assert_allclose(table.sum(axis=0), hmm.ngram_probabilities(n - 1, t=next_t), atol=1e-14)


def test_output_transition_matrix_is_the_conditional_bigram():
    hmm = random_hmm(3, 4, seed=9)
    for t in (None, 2):
        bigram = hmm.ngram_probabilities(2, t=t)
        np.testing.assert_allclose(hmm.output_transition_matrix(t), bigram / bigram.sum(axis=1, keepdims=True))
    impossible = HMM([0.5, 0.5], GOOD_T, [[0.5, 0.5, 0.0], [0.1, 0.9, 0.0]])
    assert np.all(np.isnan(impossible.output_transition_matrix()[2]))


def test_state_distributions_and_stationarity():
    hmm = random_hmm(4, 2, seed=12)
    powers = [hmm.start @ np.linalg.matrix_power(hmm.transition, t) for t in range(6)]
    np.testing.assert_allclose(hmm.state_distributions(6), powers, atol=1e-14)
    np.testing.assert_allclose(hmm.state_distribution(5), powers[5], atol=1e-14)
    pi = hmm.stationary_distribution()
    np.testing.assert_allclose(pi @ hmm.transition, pi, atol=1e-14)
    assert pi.sum() == pytest.approx(1.0) and np.all(pi >= 0)
    np.testing.assert_allclose(preset("hmm-five").hmm.stationary_distribution(), np.full(5, 0.2), atol=1e-12)
    np.testing.assert_allclose(hmm.output_distribution(), pi @ hmm.emission)


@pytest.mark.parametrize(("n_states", "n_outputs", "seed"), [(2, 3, 0), (3, 3, 1), (5, 4, 2)])
def test_log_likelihood_matches_hmmlearn(n_states, n_outputs, seed):
    hmmlearn = pytest.importorskip("hmmlearn.hmm")
    hmm = random_hmm(n_states, n_outputs, seed)
    outputs = hmm.sample(12, 60, seed=seed).outputs
    oracle = hmmlearn.CategoricalHMM(n_components=n_states, n_features=n_outputs)
    oracle.startprob_, oracle.transmat_, oracle.emissionprob_ = hmm.start, hmm.transition, hmm.emission
    expected = [oracle.score(row.reshape(-1, 1)) for row in outputs]
    np.testing.assert_allclose(hmm.log_likelihood(outputs), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(hmm.log_likelihood(torch.as_tensor(outputs[0])), expected[:1], atol=1e-6)


def test_log_likelihood_of_an_impossible_sequence_is_minus_infinity_and_inputs_are_checked():
    hmm = identity_emission_hmm(np.eye(2), start=np.array([1.0, 0.0]))
    values = hmm.log_likelihood(np.array([[0, 0, 0], [0, 1, 1], [1, 1, 1]]))
    assert values[0] == 0.0 and np.isneginf(values[1]) and np.isneginf(values[2])
    with pytest.raises(ValueError, match=r"0\.\.1"):
        hmm.log_likelihood(np.array([[0, 2]]))
    with pytest.raises(TypeError, match="integers"):
        hmm.log_likelihood(np.array([[0.0, 1.0]]))


def test_dwell_times_of_a_markov_chain_are_geometric():
    stay = np.array([0.9, 0.6, 0.75])
    transition = np.diag(stay) + (1 - stay)[:, None] * (np.ones((3, 3)) - np.eye(3)) / 2
    hmm = identity_emission_hmm(transition)
    dwell = hmm.dwell_time_distribution(40)
    lengths = np.arange(1, 41)
    np.testing.assert_allclose(dwell.probabilities, stay[:, None] ** (lengths - 1) * (1 - stay)[:, None], atol=1e-14)
    np.testing.assert_allclose(dwell.tail, stay**40, atol=1e-14)
    np.testing.assert_allclose(dwell.mean, 1 / (1 - stay))
    np.testing.assert_allclose(dwell.probabilities.sum(axis=1) + dwell.tail, 1.0)


def test_dwell_times_agree_with_simulation():
    hmm = stationary_copy(preset("hmm-three").hmm)
    n, length, max_len = 6000, 120, 30
    outputs = hmm.sample(n, length, seed=1).outputs
    starts = np.ones_like(outputs, dtype=bool)
    starts[:, 1:] = outputs[:, 1:] != outputs[:, :-1]
    flat = np.flatnonzero(starts)
    run_length = np.diff(np.append(flat, outputs.size))
    seq, step = np.divmod(flat, length)
    # runs starting early enough are fully observed for every length <= max_len
    early = (step >= 1) & (step <= length - max_len - 1)
    exact = hmm.dwell_time_distribution(max_len)
    for k in (0, 2):
        chosen = early & (outputs[seq, step] == k)
        observed = np.bincount(np.minimum(run_length[chosen], max_len + 1), minlength=max_len + 2)[1:]
        empirical = observed / chosen.sum()
        expected = np.append(exact.probabilities[k], exact.tail[k])
        se = np.sqrt(expected * (1 - expected) / chosen.sum())
        assert np.all(np.abs(empirical - expected) < 5 * se + 1e-3)
    mean_length = run_length[early & (outputs[seq, step] == 0)].mean()
    assert mean_length == pytest.approx(exact.mean[0], rel=0.05)


def test_frequency_moments_match_the_closed_form_of_a_two_state_chain():
    stay, length = 0.8, 25
    hmm = identity_emission_hmm(np.array([[stay, 1 - stay], [1 - stay, stay]]))
    mean, std = hmm_stats.frequency_moments(hmm.start, hmm.transition, hmm.emission, length)
    lam = 2 * stay - 1
    lags = np.arange(1, length)
    variance_of_sum = length * 0.25 + 2 * 0.25 * np.sum((length - lags) * lam**lags)
    np.testing.assert_allclose(mean, [0.5, 0.5])
    np.testing.assert_allclose(std, np.sqrt(variance_of_sum) / length)


def test_ngram_size_guard_and_argument_checks():
    hmm = random_hmm(2, 16, seed=0)
    with pytest.raises(ValueError, match="cells"):
        hmm.ngram_probabilities(7)
    with pytest.raises(ValueError, match="positive integer"):
        hmm.ngram_probabilities(0)
    with pytest.raises(ValueError, match="non-negative"):
        hmm.state_distribution(-1)


# ------------------------------------------------------------------------------------- splits


def test_split_sequences_in_contiguous_blocks():
    arr = np.arange(30_000)
    train, val, test = split_sequences(arr)
    assert (train.size, val.size, test.size) == (10_000, 10_000, 10_000)
    assert train[-1] + 1 == val[0] and val[-1] + 1 == test[0]
    parts = split_sequences(torch.arange(10), (0.5, 0.3, 0.2))
    assert [p.tolist() for p in parts] == [[0, 1, 2, 3, 4], [5, 6, 7], [8, 9]]
    with pytest.raises(ValueError, match="summing to 1"):
        split_sequences(arr, (0.5, 0.5, 0.5))
