"""Emission-fidelity metrics: matched distances, exact-statistics metrics, noise floor and flags."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import numpy as np
import pytest
import torch

from rnnscope.config.presets import preset
from rnnscope.evaluation.emissions import EmissionReport, evaluate_emissions
from rnnscope.evaluation.matching import matched_distance, one_hot_distances, sinkhorn_potentials
from rnnscope.plots.emissions import FIGURES, plot_transition_matrices
from rnnscope.tasks.hmm import HMM, linear_chain_transition

SMALL = dict(n_null=3, n_bootstrap=40, max_matched=40)
"""Settings for tests that check exact values, not flags (fast)."""

BLIND_TO_TIMING = {"max_abs_frequency_error", "ngram_tv_1", "ngram_kl_1"}
"""Metrics of the output marginals only: they cannot see a change of switching rate."""


@pytest.fixture(scope="module")
def hmm_two() -> HMM:
    return preset("hmm-two").hmm


@pytest.fixture(scope="module")
def perturbed(hmm_two) -> HMM:
    """hmm-two with stay 0.90 instead of 0.95."""
    return HMM(hmm_two.start, linear_chain_transition(2, stay_prob=0.90), hmm_two.emission)


@pytest.fixture(scope="module")
def self_report(hmm_two) -> EmissionReport:
    outputs = hmm_two.sample(3000, 100, seed=1000).outputs
    return evaluate_emissions(hmm_two, outputs, seed=0, max_matched=300)


@pytest.fixture(scope="module")
def perturbed_report(hmm_two, perturbed) -> EmissionReport:
    outputs = perturbed.sample(3000, 100, seed=2000).outputs
    return evaluate_emissions(hmm_two, outputs, seed=0, max_matched=300)


# ------------------------------------------------------------------------------------ matching


def test_one_hot_distances_equal_brute_force_norms():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 3, size=(7, 11)), rng.integers(0, 3, size=(5, 11))
    eye = np.eye(3)
    brute = np.linalg.norm(eye[x].reshape(7, 1, -1) - eye[y].reshape(1, 5, -1), axis=-1)
    distances = one_hot_distances(x, y, 3).numpy()
    np.testing.assert_allclose(distances, brute, atol=1e-12)
    np.testing.assert_allclose(distances, np.sqrt(2 * (x[:, None, :] != y[None, :, :]).sum(-1)))


def test_sinkhorn_marginals_and_value_match_geomloss(hmm_two):
    geomloss = pytest.importorskip("geomloss")
    a, b = hmm_two.sample(60, 20, seed=1).outputs, hmm_two.sample(40, 20, seed=2).outputs
    cost = one_hot_distances(a, b, 3)
    f, g, _, error = sinkhorn_potentials(cost, 0.1, tol=1e-9, max_iter=50_000)
    plan = torch.exp((f[:, None] + g[None, :] - cost) / 0.1)
    np.testing.assert_allclose(plan.sum(1).numpy(), 1 / 60, atol=1e-9)
    np.testing.assert_allclose(plan.sum(0).numpy(), 1 / 40, atol=1e-12)
    assert error < 1e-9
    # geomloss's plan carries the product weights (1/n)(1/m), so its potentials differ by ε log(n m).
    ours = float(f.mean() + g.mean()) + 0.1 * np.log(60 * 40)
    x = torch.nn.functional.one_hot(torch.as_tensor(a), 3).reshape(60, -1).double()
    y = torch.nn.functional.one_hot(torch.as_tensor(b), 3).reshape(40, -1).double()
    loss = geomloss.SamplesLoss("sinkhorn", p=1, blur=0.1, debias=False, scaling=0.99, backend="tensorized")
    assert ours == pytest.approx(float(loss(x, y)), rel=2e-3)


@pytest.mark.parametrize("rule", ["argmax", "assignment"])
def test_matching_recovers_a_planted_permutation(rule):
    rng = np.random.default_rng(3)
    reference = rng.integers(0, 3, size=(30, 12))
    assert len({tuple(r) for r in reference}) == 30
    order = rng.permutation(30)
    result = matched_distance(reference, reference[order], 3, matching=rule)
    np.testing.assert_array_equal(result.matches, order)
    assert result.mean == 0.0 and np.all(result.distances == 0)


def test_assignment_is_the_optimal_one_to_one_matching():
    rng = np.random.default_rng(4)
    reference, generated = rng.integers(0, 2, size=(6, 9)), rng.integers(0, 2, size=(6, 9))
    cost = one_hot_distances(reference, generated, 2).numpy()
    best = min(cost[list(p), range(6)].mean() for p in itertools.permutations(range(6)))
    result = matched_distance(reference, generated, 2, matching="assignment")
    assert sorted(result.matches.tolist()) == list(range(6))
    assert result.mean == pytest.approx(best)
    argmax = matched_distance(reference, generated, 2, matching="argmax", epsilon=0.05)
    np.testing.assert_allclose(argmax.distances, cost[argmax.matches, range(6)])


def test_matching_rejects_bad_arguments():
    x = np.zeros((4, 5), dtype=int)
    with pytest.raises(ValueError, match="matching must be one of"):
        matched_distance(x, x, 2, matching="nearest")
    with pytest.raises(ValueError, match="epsilon"):
        matched_distance(x, x, 2, epsilon=0.0)
    with pytest.raises(ValueError, match="at least as many reference"):
        matched_distance(x[:2], x, 2, matching="assignment")
    with pytest.raises(ValueError, match="same length"):
        matched_distance(x, x[:, :3], 2)


# ------------------------------------------------------------------ noise floor and flags


def test_an_hmm_against_its_own_samples_sits_at_the_noise_floor(self_report):
    assert self_report.flagged == []
    for metric in self_report.metrics.values():
        assert metric.floor_low <= metric.value <= metric.floor_high


def test_a_perturbed_hmm_is_flagged_by_every_metric_that_can_see_it(hmm_two, perturbed, perturbed_report):
    expected = set(perturbed_report.metrics) - BLIND_TO_TIMING
    assert set(perturbed_report.flagged) == expected
    assert len(expected) == 12
    # The blind metrics are blind by construction: both HMMs have the same output marginals.
    for t in (0, 1, 50):
        np.testing.assert_allclose(perturbed.output_distribution(t), hmm_two.output_distribution(t))
    report = perturbed_report
    assert report.metrics["volatility_error"].value > 0  # it switches more often
    assert report.metrics["loglik_gap_per_step"].value < 0  # and is less likely under hmm-two
    assert report.matched_generator.mean > report.matched_hmm.mean


def test_bootstrap_intervals_of_mean_statistics_contain_the_estimate(self_report, perturbed_report):
    for report in (self_report, perturbed_report):
        for name in ("volatility_error", "loglik_gap_per_step", "matched_distance_generator"):
            metric = report.metrics[name]
            assert metric.ci_low <= metric.value <= metric.ci_high
            assert metric.ci_low < metric.ci_high


# ------------------------------------------------------------- values against direct counts


def test_report_values_equal_direct_computations():
    hmm = HMM([0.7, 0.2, 0.1], [[0.8, 0.15, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]],
              [[0.9, 0.1, 0.0], [0.2, 0.6, 0.2], [0.0, 0.3, 0.7]])
    other = HMM(hmm.start, linear_chain_transition(3, stay_prob=0.7), hmm.emission)
    n, length = 300, 25
    outputs = other.sample(n, length, seed=7).outputs
    report = evaluate_emissions(hmm, outputs, seed=1, **SMALL)

    counts = np.zeros((3, 3))
    np.add.at(counts, (outputs[:, :-1].ravel(), outputs[:, 1:].ravel()), 1)
    np.testing.assert_allclose(report.transition_generator, counts / counts.sum(1, keepdims=True))
    frequencies = np.stack([(outputs == k).mean(axis=1) for k in range(3)], axis=1)
    np.testing.assert_allclose(report.frequency_mean_generator, frequencies.mean(0))
    np.testing.assert_allclose(report.frequency_std_generator, frequencies.std(0, ddof=1))
    changes = (outputs[:, 1:] != outputs[:, :-1]).sum(1)
    np.testing.assert_array_equal(report.volatility_counts_generator, np.bincount(changes, minlength=length))

    # exact statistics pooled over the steps of a sequence, from the HMM's public per-step API
    bigrams = np.mean([hmm.ngram_probabilities(2, t) for t in range(length - 1)], axis=0)
    np.testing.assert_allclose(report.transition_exact, bigrams / bigrams.sum(1, keepdims=True))
    np.testing.assert_allclose(report.frequency_exact, np.mean([hmm.output_distribution(t) for t in range(length)], 0))
    expected_changes = (length - 1) * (1 - np.trace(bigrams))
    assert report.volatility_exact == pytest.approx(expected_changes)
    assert report.metrics["volatility_error"].value == pytest.approx(changes.mean() - expected_changes)
    assert report.metrics["max_abs_transition_error"].value == pytest.approx(
        np.abs(counts / counts.sum(1, keepdims=True) - report.transition_exact).max()
    )

    for n_gram in (2, 3):
        windows = Counter(tuple(row[t : t + n_gram]) for row in outputs for t in range(length - n_gram + 1))
        total = sum(windows.values())
        exact = np.mean([hmm.ngram_probabilities(n_gram, t) for t in range(length - n_gram + 1)], axis=0)
        empirical = np.zeros_like(exact)
        for key, count in windows.items():
            empirical[key] = count / total
        tv = 0.5 * np.abs(empirical - exact).sum()
        kl = sum(p * np.log(p / exact[key]) for key, p in np.ndenumerate(empirical) if p > 0)
        assert report.metrics[f"ngram_tv_{n_gram}"].value == pytest.approx(tv)
        assert report.metrics[f"ngram_kl_{n_gram}"].value == pytest.approx(kl)

    assert report.loglik_per_step_generator == pytest.approx(hmm.log_likelihood(outputs).mean() / length)


def test_kaplan_meier_run_lengths_handle_censored_and_left_truncated_runs(hmm_two):
    rows = np.array([
        [2, 0, 1, 1, 1, 1, 1],  # run of 0: length 1, ended; run of 1: cut by the end after 5 steps
        [2, 0, 0, 0, 1, 1, 1],  # run of 0: length 3, ended
        [2, 0, 0, 0, 0, 0, 0],  # run of 0: cut by the end after 6 steps (lasts >= 6)
    ])
    report = evaluate_emissions(hmm_two, rows, seed=0, **SMALL)
    # at risk at lengths 1, 2, 3: 3, 2, 2 runs; ends at 1 and 3 -> P(1) = 1/3, P(3) = 2/3 * 1/2
    np.testing.assert_allclose(report.dwell_generator[0], [1 / 3, 0, 1 / 3, 0, 0, 0])
    assert report.dwell_generator_tail[0] == pytest.approx(1 / 3)
    # output 1's only run is censored; output 2's only run starts at t = 0 and is left out
    np.testing.assert_allclose(report.dwell_generator[1], 0.0)
    np.testing.assert_allclose(report.dwell_generator[2], 0.0)
    assert report.dwell_generator_tail[1] == report.dwell_generator_tail[2] == 1.0


def test_a_generator_emitting_an_impossible_symbol_gets_infinite_divergences(tmp_path):
    hmm = HMM([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], [[0.8, 0.2, 0.0], [0.3, 0.7, 0.0]])
    outputs = hmm.sample(40, 10, seed=0).outputs
    outputs[5, 3] = 2
    report = evaluate_emissions(hmm, outputs, seed=0, **SMALL)
    assert np.isneginf(report.metrics["loglik_gap_per_step"].value)
    assert np.isinf(report.metrics["ngram_kl_1"].value)
    assert {"loglik_gap_per_step", "ngram_kl_1", "ngram_kl_2"} <= set(report.flagged)
    data = json.loads(json.dumps(report.to_json(tmp_path / "metrics.json")))
    assert data["loglik_gap_per_step"] == -np.inf


# --------------------------------------------------------------------------- serialisation


def test_to_json_keys_and_round_trips(self_report, tmp_path):
    data = self_report.to_json(tmp_path / "metrics.json")
    for key in ("max_abs_transition_error", "max_abs_frequency_error", "loglik_gap_per_step", "ngram_tv",
                "matched_distance_hmm", "matched_distance_generator", "flags", "metrics"):
        assert key in data
    assert len(data["ngram_tv"]) == 4 and data["ngram_tv"][1] == self_report.metrics["ngram_tv_2"].value
    assert data["matched_distance_hmm"] == self_report.matched_hmm.mean
    for name, entry in data["metrics"].items():
        assert set(entry) >= {"value", "ci", "noise_floor", "flagged"}
        assert entry["flagged"] == data["flags"][name] == self_report.metrics[name].flagged
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(data))

    self_report.save(tmp_path / "emissions")
    loaded = EmissionReport.load(tmp_path / "emissions")
    assert loaded.metrics == self_report.metrics
    np.testing.assert_array_equal(loaded.dwell_generator, self_report.dwell_generator)
    np.testing.assert_array_equal(loaded.matched_generator.matches, self_report.matched_generator.matches)
    summary = self_report.summary()
    assert all(name in summary for name in self_report.metrics) and "FLAGGED" not in summary


def test_torch_and_numpy_inputs_give_the_same_report(hmm_two):
    outputs = hmm_two.sample(30, 12, seed=3).outputs
    from_numpy = evaluate_emissions(hmm_two, outputs, seed=9, **SMALL)
    from_torch = evaluate_emissions(hmm_two, torch.as_tensor(outputs), seed=9, **SMALL)
    assert from_numpy.metrics == from_torch.metrics


@pytest.mark.parametrize(
    ("outputs", "kwargs", "error", "needle"),
    [
        (np.zeros((5, 10)), {}, TypeError, "integers"),
        (np.full((5, 10), 3), {}, ValueError, r"0\.\.2"),
        (np.zeros((5, 10, 3), dtype=int), {}, ValueError, "argmax"),
        (np.zeros((1, 10), dtype=int), {}, ValueError, "at least 2 sequences"),
        (np.zeros((5, 3), dtype=int), {}, ValueError, "max_ngram"),
        (np.zeros((5, 10), dtype=int), {"n_null": 2}, ValueError, "n_null"),
        (np.zeros((5, 10), dtype=int), {"ci_level": 1.0}, ValueError, "ci_level"),
        (np.zeros((5, 10), dtype=int), {"matching": "nearest"}, ValueError, "matching"),
    ],
)
def test_evaluate_rejects_bad_input(hmm_two, outputs, kwargs, error, needle):
    with pytest.raises(error, match=needle):
        evaluate_emissions(hmm_two, outputs, **{**SMALL, **kwargs})


# ---------------------------------------------------------------------------------- figures


def test_transition_figure_shows_the_difference_on_a_centred_scale(perturbed_report):
    fig = plot_transition_matrices(perturbed_report)
    difference_axis = fig.axes[2]
    image = difference_axis.get_images()[0]
    assert image.norm.vcenter == 0.0 and image.norm.vmin == -image.norm.vmax
    shown = {text.get_text() for text in difference_axis.texts}
    difference = perturbed_report.transition_generator - perturbed_report.transition_exact
    assert {f"{v:+.3f}" for v in difference.ravel()} == shown
    assert difference_axis.get_xlabel() == "output at t+1"


def test_every_figure_is_drawn_from_the_report(self_report):
    for name, draw in FIGURES.items():
        fig = draw(self_report)
        labelled = [ax for ax in fig.axes if ax.get_xlabel() and ax.get_ylabel()]
        assert labelled, f"figure {name!r} has no labelled axes"
