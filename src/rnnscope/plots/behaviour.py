"""Figures of IBL behaviour: the RNN, the ideal observer and the Bayesian actors in the same axes.

Each ``plot_*`` function takes a :class:`~rnnscope.evaluation.behaviour.BehaviourReport` (or an
IBL training history) and returns a Figure; nothing is simulated. One colour per agent throughout;
shaded bands are Wilson 95 % intervals (means: ± 1 standard error). ``FIGURES`` maps the short
names used for ``figures/behaviour_<name>.png`` to the functions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from rnnscope.evaluation.behaviour import AGENT_LABELS as AGENT_NAMES
from rnnscope.plots.style import RC, SOURCE_COLORS, new_figure

if TYPE_CHECKING:
    from rnnscope.evaluation.behaviour import BehaviourReport, Proportions
    from rnnscope.training.ibl_trainer import IBLTrainHistory

AGENT_STYLE: dict[str, dict] = {
    "rnn": {"color": SOURCE_COLORS["rnn"], "marker": "o", "lw": 1.8, "zorder": 4},
    "observer": {"color": SOURCE_COLORS["observer"], "marker": "", "lw": 1.3, "zorder": 3},
    "actor": {"color": SOURCE_COLORS["actor"], "marker": "s", "lw": 1.3, "zorder": 2},
    "actor_exact": {"color": "#9467bd", "marker": "^", "lw": 1.0, "zorder": 1},
}
"""Colour, marker and width of each agent's lines."""

MIN_TRIALS_SHOWN = 30
"""Points of curves over trials or observations backed by fewer trials than this are not drawn."""

OUTCOME_COLORS = ("#2ca02c", "#d62728", "#7f7f7f")


def _styled(draw: Callable[..., Figure]) -> Callable[..., Figure]:
    """Run a figure function inside rnnscope's style."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs) -> Figure:
        with plt.rc_context(RC):
            return draw(*args, **kwargs)

    return wrapper


def _line(ax: Axes, x: np.ndarray, p: "Proportions", agent: str, *, ls: str = "-", filled: bool = True,
          index: object = slice(None), band: bool = True) -> None:
    """One proportion curve with its Wilson band; cells with fewer than MIN_TRIALS_SHOWN hidden."""
    style = AGENT_STYLE.get(agent, {"color": "0.3", "marker": ".", "lw": 1.0, "zorder": 1})
    rate, low, high = p.rate[index], p.ci_low[index], p.ci_high[index]
    shown = p.trials[index] >= MIN_TRIALS_SHOWN
    rate, low, high = (np.where(shown, v, np.nan) for v in (rate, low, high))
    ax.plot(x, rate, ls=ls, color=style["color"], lw=style["lw"], marker=style["marker"] or None, ms=3.5,
            mfc=style["color"] if filled else "white", zorder=style["zorder"])
    if band:
        ax.fill_between(x, low, high, color=style["color"], alpha=0.15, lw=0, zorder=style["zorder"] - 0.5)


def _agent_handles(report: "BehaviourReport", agents: tuple[str, ...] | None = None) -> list[Line2D]:
    names = [a for a in report.names if agents is None or a in agents]
    return [
        Line2D([], [], color=AGENT_STYLE[a]["color"], marker=AGENT_STYLE[a]["marker"] or None, ms=3.5,
               lw=AGENT_STYLE[a]["lw"], label=AGENT_NAMES.get(a, a))
        for a in names
    ]


def _style_handles(labels: tuple[str, str]) -> list[Line2D]:
    return [
        Line2D([], [], color="0.35", ls="-", marker="o", ms=3.5, label=labels[0]),
        Line2D([], [], color="0.35", ls="--", marker="o", mfc="white", ms=3.5, label=labels[1]),
    ]


@_styled
def plot_psychometric(report: "BehaviourReport") -> Figure:
    """P(choose Right | a choice) against signed contrast, Right blocks (solid) and Left blocks (dashed)."""
    fig, ax = new_figure(width=4.6, height=3.4)
    c = report.signed_contrasts
    for behaviour in report.agents:
        agent = behaviour.name
        _line(ax, c, behaviour.p_right, agent, index=1)
        _line(ax, c, behaviour.p_right, agent, index=0, ls="--", filled=False)
    ax.axhline(0.5, color="0.8", lw=0.8, zorder=0)
    ax.axvline(0.0, color="0.8", lw=0.8, zorder=0)
    ax.set_xlabel("signed contrast (right − left)")
    ax.set_ylabel("P(choose right)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Psychometric curves by block side")
    ax.legend(handles=_agent_handles(report) + _style_handles(("right block", "left block")), loc="upper left")
    return fig


@_styled
def plot_accuracy_concordance(report: "BehaviourReport") -> Figure:
    """Accuracy against signed contrast on concordant (solid) and discordant (dashed) trials."""
    fig, ax = new_figure(width=4.6, height=3.4)
    c = report.signed_contrasts
    for behaviour in report.agents:
        agent = behaviour.name
        _line(ax, c, behaviour.accuracy_concordance, agent, index=1)
        _line(ax, c, behaviour.accuracy_concordance, agent, index=0, ls="--", filled=False)
    ax.axhline(0.5, color="0.8", lw=0.8, zorder=0)
    ax.set_xlabel("signed contrast (trial side × contrast)")
    ax.set_ylabel("accuracy (correct / trials)")
    ax.set_ylim(0.0, 1.02)
    ax.set_title("Accuracy: trial side = block side or not")
    handles = _agent_handles(report) + _style_handles(("concordant", "discordant"))
    ax.legend(handles=handles, loc="lower center", ncol=2, fontsize=7)
    return fig


@_styled
def plot_after_switch(report: "BehaviourReport") -> Figure:
    """Accuracy by trial after a block switch: all trials (left) and zero-contrast trials (right)."""
    fig, axes = new_figure(2, 1, width=4.2, height=3.2)
    axes = axes.ravel()
    for ax, field, title in ((axes[0], "accuracy_after_switch", "all trials"),
                             (axes[1], "accuracy_after_switch_zero", "zero-contrast trials")):
        last = 1
        for behaviour in report.agents:
            agent = behaviour.name
            curve = getattr(behaviour, field)
            x = np.arange(1, curve.trials.size + 1)
            _line(ax, x, curve, agent, band=agent in ("rnn", "actor"))
            shown = np.flatnonzero(curve.trials >= MIN_TRIALS_SHOWN)
            last = max(last, int(shown[-1]) + 1 if shown.size else 1)
        ax.set_xlim(0.5, min(last, 60) + 0.5)
        ax.set_xlabel("trial after a block switch")
        ax.set_ylabel("accuracy")
        ax.set_title(f"Recovery after a switch: {title}")
    axes[0].legend(handles=_agent_handles(report), loc="lower right")
    return fig


@_styled
def plot_chronometric(report: "BehaviourReport") -> Figure:
    """Steps per trial (blank steps included) against signed contrast (the paced observer is the RNN's)."""
    fig, ax = new_figure(width=4.4, height=3.2)
    c = report.signed_contrasts
    shown = [b.name for b in report.agents if not b.paced_by]
    for agent in shown:
        curve = report[agent].steps_per_trial
        style = AGENT_STYLE[agent]
        ax.plot(c, curve.mean, color=style["color"], marker=style["marker"] or None, ms=3.5, lw=style["lw"])
        ax.fill_between(c, curve.mean - curve.sem, curve.mean + curve.sem, color=style["color"], alpha=0.2, lw=0)
    blank = report.params.get("blank_steps", 2)
    floor = blank + 1
    ax.axhline(floor, color="0.6", lw=0.8, ls=":", zorder=0)
    ax.annotate("decision at the first observation", xy=(c[-1], floor), xytext=(0, -3), textcoords="offset points",
                fontsize=7, color="0.4", ha="right", va="top")
    ax.set_ylim(bottom=floor - 0.3)
    ax.set_xlabel("signed contrast")
    ax.set_ylabel("steps per trial (incl. blank steps)")
    ax.set_title("Chronometric curves")
    ax.legend(handles=_agent_handles(report, tuple(shown)), loc="upper right")
    return fig


@_styled
def plot_outcomes(report: "BehaviourReport") -> Figure:
    """The RNN's trial outcomes (stacked bars) by signed contrast, with every agent's accuracy as lines."""
    fig, ax = new_figure(width=5.0, height=3.4)
    c = report.signed_contrasts
    rnn = report["rnn"]
    totals = np.maximum(rnn.outcomes.sum(axis=0), 1)
    bottom = np.zeros(c.size)
    width = 0.7 * (np.min(np.diff(c)) if c.size > 1 else 1.0)
    labels = ("RNN correct", "RNN incorrect", "RNN timeout")
    for k in range(rnn.outcomes.shape[0]):
        share = rnn.outcomes[k] / totals
        ax.bar(c, share, width, bottom=bottom, color=OUTCOME_COLORS[k], alpha=0.45, label=labels[k], lw=0)
        bottom += share
    for behaviour in report.agents:
        agent = behaviour.name
        if agent == "rnn":
            continue
        style = AGENT_STYLE[agent]
        ax.plot(c, behaviour.accuracy.rate, color=style["color"], lw=style["lw"], marker=style["marker"] or None,
                ms=3.5, label=f"{AGENT_NAMES[agent]}: correct")
    ax.set_xlabel("signed contrast")
    ax.set_ylabel("fraction of trials")
    ax.set_ylim(0, 1.0)
    ax.set_title("Trial outcomes")
    ax.legend(loc="lower center", fontsize=6.5, ncol=2)
    return fig


@_styled
def plot_observations(report: "BehaviourReport") -> Figure:
    """Accuracy against the number of observations seen at the decision."""
    fig, ax = new_figure(width=4.4, height=3.2)
    for behaviour in report.agents:
        agent = behaviour.name
        curve = behaviour.accuracy_by_observations
        _line(ax, np.arange(1, curve.trials.size + 1), curve, agent)
    ax.set_xlabel("observations at the decision")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0.0, 1.02)
    ax.set_title("Accuracy by decision time")
    ax.legend(handles=_agent_handles(report), loc="lower left")
    return fig


@_styled
def plot_variance_explained(report: "BehaviourReport") -> Figure:
    """Cumulative fraction of the RNN's hidden-state variance along its principal components."""
    fig, ax = new_figure(width=4.0, height=3.0)
    cumulative = report.hidden_variance_explained
    if cumulative is None:
        ax.text(0.5, 0.5, "no hidden states recorded", ha="center", va="center", transform=ax.transAxes)
        return fig
    k = np.arange(1, cumulative.size + 1)
    ax.plot(k, cumulative, "o", color=AGENT_STYLE["rnn"]["color"], ms=3.5)
    for i in range(min(3, cumulative.size)):
        ax.annotate(f"{cumulative[i]:.2f}", (k[i], cumulative[i]), xytext=(5, -10), textcoords="offset points",
                    fontsize=7)
    ax.set_ylim(0, 1.04)
    ax.set_xlabel("principal components")
    ax.set_ylabel("cumulative variance explained")
    ax.set_title("Dimensionality of the RNN's activity")
    return fig


FIGURES: dict[str, Callable[["BehaviourReport"], Figure]] = {
    "psychometric": plot_psychometric,
    "accuracy_concordance": plot_accuracy_concordance,
    "after_switch": plot_after_switch,
    "chronometric": plot_chronometric,
    "outcomes": plot_outcomes,
    "observations": plot_observations,
    "variance_explained": plot_variance_explained,
}
"""The behaviour figures of a report, by the name of ``figures/behaviour_<name>``."""


@_styled
def plot_training_behaviour(history: "IBLTrainHistory") -> Figure:
    """Loss, accuracy, steps per trial, zero-contrast accuracy and PC variance over gradient steps."""
    fig, axes = new_figure(4, 1, width=3.2, height=2.8)
    axes = axes.ravel()
    step = history.step
    validated = np.isfinite(history["val_loss"])
    ax = axes[0]
    ax.plot(step, history["train_loss"], color="C0", lw=1.0, label="train")
    ax.plot(step[validated], history["val_loss"][validated], "o--", color="C1", ms=2.5, lw=1.0, label="validation")
    ax.set_ylabel("loss")
    ax.set_title("Loss")
    ax.legend()
    ax = axes[1]
    ax.plot(step, history["accuracy"], color="C0", lw=1.0, label="accuracy")
    ax.plot(step, history["action_rate"], color="0.5", lw=1.0, label="action rate")
    ax.plot(step[validated], history["val_zero_concordant"][validated], "o-", color="C2", ms=2.5, lw=1.0,
            label="c = 0 concordant (val)")
    ax.plot(step[validated], history["val_zero_discordant"][validated], "o--", color="C3", ms=2.5, lw=1.0,
            label="c = 0 discordant (val)")
    ax.set_ylim(0, 1.02)
    ax.set_title("Behaviour")
    ax.legend(fontsize=6.5)
    ax = axes[2]
    ax.plot(step, history["steps_per_trial"], color="C0", lw=1.0)
    ax.set_ylabel("steps per trial")
    ax.set_title("Decision time")
    ax = axes[3]
    cumulative = np.nancumsum(np.stack([history[f"pc_variance_{k}"] for k in range(1, 5)]), axis=0)
    for k in range(cumulative.shape[0]):
        ax.plot(step, cumulative[k], lw=1.0, label=f"PCs 1–{k + 1}" if k else "PC 1")
    ax.set_ylim(0, 1.02)
    ax.set_title("Cumulative PC variance")
    ax.legend(fontsize=6.5)
    for ax in axes:
        ax.set_xlabel("gradient step")
    return fig
