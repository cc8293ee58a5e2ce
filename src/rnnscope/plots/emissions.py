"""Figures of an :class:`~rnnscope.evaluation.emissions.EmissionReport` (emission fidelity).

Each ``plot_*`` function takes the report and returns a matplotlib Figure; nothing is recomputed.
``FIGURES`` maps a short name to each function (used to write ``figures/emissions_<name>.png``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from rnnscope.plots.style import RC, SOURCE_COLORS, diverging_norm, new_figure, output_color

if TYPE_CHECKING:
    from rnnscope.evaluation.emissions import EmissionReport

HMM_COLOR = SOURCE_COLORS["hmm"]
GEN_COLOR = SOURCE_COLORS["generator"]
EXACT_COLOR = "black"
FLOOR_COLOR = "#bdbdbd"


def _styled(draw: Callable[..., Figure]) -> Callable[..., Figure]:
    """Run a figure function inside rnnscope's style (so every text element gets its sizes)."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs) -> Figure:
        with plt.rc_context(RC):
            return draw(*args, **kwargs)

    return wrapper


@_styled
def plot_transition_matrices(report: "EmissionReport") -> Figure:
    """P(o_{t+1} | o_t): exact (HMM), empirical (generator), and their difference, annotated."""
    fig, axes = new_figure(3, 1, width=3.0, height=2.9)
    axes = axes.ravel()
    _draw_matrix(axes[0], report.transition_exact, "HMM (exact)", sequential=True)
    _draw_matrix(axes[1], report.transition_generator, "generator (empirical)", sequential=True)
    _draw_difference(axes[2], report)
    fig.suptitle("Output transition matrices P(output at t+1 | output at t)", fontsize=10)
    return fig


@_styled
def plot_frequencies(report: "EmissionReport") -> Figure:
    """Output frequencies per symbol: mean ± std over sequences (HMM sample, generator) and exact."""
    fig, ax = new_figure(1, 1, width=max(3.4, 1.0 * report.n_outputs + 1.6), height=2.8)
    _draw_frequencies(ax, report)
    return fig


@_styled
def plot_volatility(report: "EmissionReport") -> Figure:
    """Distribution over sequences of the number of output changes, with the exact expectation."""
    fig, ax = new_figure(1, 1, width=4.2, height=2.8)
    _draw_volatility(ax, report)
    return fig


@_styled
def plot_dwell_times(report: "EmissionReport") -> Figure:
    """Run-length distribution of each output symbol: exact, HMM sample and generator (Kaplan–Meier)."""
    fig, axes = new_figure(report.n_outputs, 1, width=2.9, height=2.7)
    axes = np.atleast_1d(axes).ravel()
    for k, ax in enumerate(axes):
        _draw_dwell(ax, report, k, legend=(k == 0))
    metric = report.metrics["dwell_ks"]
    fig.suptitle(f"Run lengths: Kolmogorov–Smirnov gap {metric.value:.3g}, {_verdict(metric)}", fontsize=10)
    return fig


@_styled
def plot_ngram_divergence(report: "EmissionReport") -> Figure:
    """Total-variation and KL divergence between empirical and exact n-gram distributions vs n."""
    fig, axes = new_figure(2, 1, width=3.3, height=2.8)
    axes = axes.ravel()
    _draw_ngram(axes[0], report, "tv", legend=True)
    _draw_ngram(axes[1], report, "kl", legend=False)
    return fig


@_styled
def plot_matched_distances(report: "EmissionReport") -> Figure:
    """Histograms of the Sinkhorn-matched Euclidean distances, HMM↔HMM and HMM↔generator."""
    fig, ax = new_figure(1, 1, width=4.2, height=2.8)
    _draw_matched(ax, report)
    return fig


@_styled
def plot_emission_summary(report: "EmissionReport") -> Figure:
    """Six panels: transition difference, frequencies, volatility, run lengths, n-gram TV, verdicts."""
    fig, axes = new_figure(3, 2, width=3.4, height=2.9)
    _draw_difference(axes[0, 0], report)
    _draw_frequencies(axes[0, 1], report)
    _draw_volatility(axes[0, 2], report)
    _draw_dwell(axes[1, 0], report, int(np.argmax(report.frequency_exact)), legend=True)
    _draw_ngram(axes[1, 1], report, "tv", legend=True)
    _draw_verdicts(axes[1, 2], report)
    flagged = report.flagged
    verdict = "at the HMM noise floor on every metric" if not flagged else f"{len(flagged)} metric(s) flagged"
    fig.suptitle(
        f"Emission fidelity — {report.n_sequences} sequences × {report.seq_len} steps: {verdict}", fontsize=11
    )
    return fig


FIGURES: dict[str, Callable] = {
    "summary": plot_emission_summary,
    "transitions": plot_transition_matrices,
    "frequencies": plot_frequencies,
    "volatility": plot_volatility,
    "dwell": plot_dwell_times,
    "ngrams": plot_ngram_divergence,
    "matched": plot_matched_distances,
}
"""Every emission figure by short name."""


# --------------------------------------------------------------------------------- panels


def _draw_matrix(ax: Axes, matrix: np.ndarray, title: str, *, sequential: bool, norm=None, fmt: str = "{:.3f}") -> None:
    k = matrix.shape[0]
    if sequential:
        image = ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0)
    else:
        image = ax.imshow(matrix, cmap="RdBu_r", norm=norm)
    for (i, j), value in np.ndenumerate(matrix):
        text = "n/a" if not np.isfinite(value) else fmt.format(value)
        shade = abs(value) > (0.6 if sequential else 0.6 * np.nanmax(np.abs(matrix)))
        ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if shade else "black")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("output at t+1")
    ax.set_ylabel("output at t")
    ax.set_title(title)
    ax.figure.colorbar(image, ax=ax, shrink=0.8)


def _draw_difference(ax: Axes, report) -> None:
    difference = report.transition_generator - report.transition_exact
    metric = report.metrics["max_abs_transition_error"]
    _draw_matrix(
        ax,
        difference,
        f"generator − HMM\nmax |Δ| {metric.value:.3g}, {_verdict(metric)}",
        sequential=False,
        norm=diverging_norm(difference),
        fmt="{:+.3f}",
    )


def _draw_frequencies(ax: Axes, report) -> None:
    symbols = np.arange(report.n_outputs)
    width = 0.36
    ax.bar(symbols - width / 2, report.frequency_mean_hmm, width, yerr=report.frequency_std_hmm,
           color=HMM_COLOR, alpha=0.55, capsize=3, label="HMM sample")
    ax.bar(symbols + width / 2, report.frequency_mean_generator, width, yerr=report.frequency_std_generator,
           color=GEN_COLOR, alpha=0.8, capsize=3, label="generator")
    ax.errorbar(symbols, report.frequency_exact, yerr=report.frequency_std_exact, fmt="_", color=EXACT_COLOR,
                markersize=16, capsize=0, elinewidth=0.8, label="exact")
    for k, tick in zip(symbols, ax.get_xticklabels()):
        tick.set_color(output_color(int(k)))
    ax.set_xticks(symbols)
    ax.set_xlabel("output symbol")
    ax.set_ylabel("frequency (mean ± std)")
    metric = report.metrics["max_abs_frequency_error"]
    ax.set_title(f"Output frequencies\nmax |Δ mean| {metric.value:.3g}, {_verdict(metric)}")
    tops = [report.frequency_mean_hmm + report.frequency_std_hmm,
            report.frequency_mean_generator + report.frequency_std_generator,
            report.frequency_exact + report.frequency_std_exact]
    ax.set_ylim(0, 1.3 * float(np.max(tops)))
    ax.legend(loc="upper center", ncols=3, fontsize=7, handlelength=1.2, columnspacing=1.0)


def _draw_volatility(ax: Axes, report) -> None:
    changes = np.arange(report.seq_len)
    for counts, label, color in (
        (report.volatility_counts_hmm, "HMM sample", HMM_COLOR),
        (report.volatility_counts_generator, "generator", GEN_COLOR),
    ):
        fraction = counts / counts.sum()
        ax.step(changes, fraction, where="mid", color=color, label=f"{label} (mean {np.dot(changes, fraction):.2f})")
    ax.axvline(report.volatility_exact, color=EXACT_COLOR, linestyle="--", linewidth=1,
               label=f"exact mean {report.volatility_exact:.2f}")
    upper = _quantile_from_counts(report.volatility_counts_hmm + report.volatility_counts_generator, 0.999)
    ax.set_xlim(-0.5, max(upper, report.volatility_exact) + 1.5)
    ax.set_xlabel("output changes per sequence")
    ax.set_ylabel("fraction of sequences")
    metric = report.metrics["volatility_error"]
    ax.set_title(f"Volatility\nerror {metric.value:+.3g} changes/sequence, {_verdict(metric)}")
    ax.set_ylim(0, 1.45 * ax.get_ylim()[1])
    ax.legend(loc="upper right", fontsize=7)


def _draw_dwell(ax: Axes, report, k: int, *, legend: bool) -> None:
    lengths = report.dwell_lengths
    exact = report.dwell_exact[k]
    if not np.all(np.isfinite(exact)):
        ax.text(0.5, 0.5, f"output {k} never starts a run\nunder the HMM", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    last = int(np.searchsorted(np.cumsum(exact), 0.999)) + 1
    shown = slice(0, min(max(last, 5), lengths.size))
    ax.plot(lengths[shown], exact[shown], color=EXACT_COLOR, linewidth=1.2, label="exact")
    for pmf, label, color, marker in (
        (report.dwell_hmm[k], "HMM sample", HMM_COLOR, "s"),
        (report.dwell_generator[k], "generator", GEN_COLOR, "o"),
    ):
        visible = pmf[shown] > 0
        ax.plot(lengths[shown][visible], pmf[shown][visible], linestyle="none", marker=marker, markersize=3,
                color=color, alpha=0.8, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("run length (steps)")
    ax.set_ylabel("P(run length)")
    ax.set_title(f"Runs of output {k}", color=output_color(k))
    if legend:
        ax.legend(loc="upper right")


def _draw_ngram(ax: Axes, report, kind: str, *, legend: bool) -> None:
    orders = np.arange(1, report.max_ngram + 1)
    metrics = [report.metrics[f"ngram_{kind}_{n}"] for n in orders]
    values = np.array([m.value for m in metrics])
    low = np.array([m.ci_low for m in metrics])
    high = np.array([m.ci_high for m in metrics])
    ax.fill_between(orders, [m.floor_low for m in metrics], [m.floor_high for m in metrics], color=FLOOR_COLOR,
                    alpha=0.5, label="HMM noise floor")
    ax.plot(orders, [m.null_mean for m in metrics], color=HMM_COLOR, linestyle=":", label="HMM samples (mean)")
    yerr = np.vstack([np.clip(values - low, 0, None), np.clip(high - values, 0, None)])
    ax.errorbar(orders, values, yerr=yerr, color=GEN_COLOR, marker="o", markersize=4, capsize=3,
                label=f"generator ({100 * report.ci_level:g}% CI)")
    flagged = np.array([m.flagged for m in metrics])
    if flagged.any():
        ax.plot(orders[flagged], values[flagged], linestyle="none", marker="x", color="#d62728", markersize=8,
                label="flagged")
    ax.set_xticks(orders)
    ax.set_xlabel("n (n-gram length)")
    if kind == "tv":
        ax.set_ylabel("total-variation distance")
        ax.set_title("n-gram distributions\nTV distance to the exact HMM")
    else:
        ax.set_ylabel("KL(empirical ‖ exact) (nats)")
        ax.set_title("n-gram distributions\nKL divergence to the exact HMM")
    top = np.nanmax(np.concatenate([high, values, [m.floor_high for m in metrics]]))
    ax.set_ylim(0, 1.12 * top if np.isfinite(top) and top > 0 else 1.0)
    if legend:
        ax.legend(loc="upper left", fontsize=7)


def _draw_matched(ax: Axes, report) -> None:
    hmm, gen = report.matched_hmm.distances, report.matched_generator.distances
    # One bin per attainable distance sqrt(2m) (m mismatching steps), edges half-way in m.
    top = int(np.ceil(max(hmm.max(), gen.max()) ** 2 / 2)) + 1
    bins = np.sqrt(2.0 * np.clip(np.arange(top + 1) - 0.5, 0.0, None))
    ax.hist(hmm, bins=bins, color=HMM_COLOR, alpha=0.5, label=f"HMM↔HMM (mean {report.matched_hmm.mean:.3f})")
    ax.hist(gen, bins=bins, histtype="step", color=GEN_COLOR, linewidth=1.5,
            label=f"HMM↔generator (mean {report.matched_generator.mean:.3f})")
    ax.axvline(report.matched_hmm.mean, color=HMM_COLOR, linestyle="--", linewidth=1)
    ax.axvline(report.matched_generator.mean, color=GEN_COLOR, linestyle="--", linewidth=1)
    ax.set_xlabel("Euclidean distance of matched one-hot sequences")
    ax.set_ylabel("sequences")
    metric = report.metrics["matched_distance_generator"]
    ax.set_title(
        f"Sinkhorn-matched distance (ε={report.epsilon:g}, {report.matching} matching)\n"
        f"{report.matched_generator.distances.size} sequences per set; {_verdict(metric)}"
    )
    ax.set_ylim(0, 1.35 * ax.get_ylim()[1])
    ax.legend(loc="upper left")


def _draw_verdicts(ax: Axes, report) -> None:
    ax.set_axis_off()
    rows = [
        [_short_name(name), f"{m.value:.2g}", f"≤ {m.floor_high:.2g}" if not m.two_sided
         else f"{m.floor_low:.2g} … {m.floor_high:.2g}", "FLAGGED" if m.flagged else "ok"]
        for name, m in report.metrics.items()
        if not name.startswith("ngram_kl")
    ]
    table = ax.table(cellText=rows, colLabels=["metric", "value", "noise floor", "verdict"], loc="center",
                     cellLoc="left", colLoc="left", colWidths=[0.37, 0.15, 0.31, 0.17])
    table.auto_set_font_size(False)
    table.set_fontsize(6)
    table.scale(1.0, 1.05)
    for (row, col), cell in table.get_celld().items():
        cell.set_linewidth(0.3)
        if row > 0 and col == 3 and rows[row - 1][3] == "FLAGGED":
            cell.get_text().set_color("#d62728")
    ax.set_title("Verdicts against the HMM noise floor")


SHORT_NAMES = {
    "max_abs_frequency_error": "frequency mean",
    "max_abs_frequency_std_error": "frequency std",
    "volatility_error": "volatility",
    "max_abs_transition_error": "transitions",
    "dwell_ks": "run lengths (KS)",
    "loglik_gap_per_step": "log-lik gap/step",
    "matched_distance_generator": "matched distance",
}


def _short_name(name: str) -> str:
    if name.startswith("ngram_"):
        kind, n = name.split("_")[1:]
        return f"{n}-gram {kind.upper()}"
    return SHORT_NAMES.get(name, name)


def _verdict(metric) -> str:
    return "flagged" if metric.flagged else "at noise floor"


def _quantile_from_counts(counts: np.ndarray, q: float) -> int:
    cumulative = np.cumsum(counts) / max(counts.sum(), 1)
    return int(np.searchsorted(cumulative, q))
