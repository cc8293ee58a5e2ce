"""Which figures and analyses go in which section of a run's report, in reading order.

A figure belongs to a section by the prefix of its file name (``figures/<prefix>_*.png``); an
analysis by the stem of its result file (``analysis/<stem>.json``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    """A report section: its title, the figure-name prefixes and analysis stems it gathers, a blurb."""

    key: str
    title: str
    prefixes: tuple[str, ...]
    blurb: str


SECTIONS: tuple[Section, ...] = (
    Section("training", "Training", ("training",),
            "Loss per epoch (train: mean over batches; validation: fresh noise). The best-validation "
            "weights are the ones evaluated and analysed below."),
    Section("emissions", "Emission fidelity", ("emissions",),
            "How closely the network's output sequences match the HMM's, against the exact statistics "
            "of the HMM and against the noise floor of an HMM sample of the same size."),
    Section("behaviour", "Behaviour", ("behaviour",),
            "Psychometric and chronometric behaviour, compared with the Bayesian observer and actor."),
    Section("statespace", "State space", ("statespace",),
            "Where the network's activity lives: PCA of long noise-driven runs, trajectories, σ contours, "
            "readout geometry."),
    Section("fixedpoints", "Fixed points and cycles", ("fixedpoints", "collapse"),
            "What the network does without input, and what attracts it."),
    Section("vectorfields", "Vector fields", ("vectorfields",), "The flow F(h) − h in a 2-D plane."),
    Section("residency", "Residency and transitions", ("residency", "transitions", "noise"),
            "How long states stay in their output class, where transitions are decided, and what noise does."),
    Section("kicks", "Kick neurons", ("kicks", "connectivity", "activity"),
            "Neurons whose activity announces an output switch, found automatically, and their wiring."),
    Section("ablation", "Ablations and gain sweeps", ("ablation",),
            "Causal tests: scaling the input to neuron sets and measuring the effect on transitions."),
    Section("evolution", "Training evolution", ("evolution",), "How the mechanism emerges over training."),
    Section("distillation", "Distillation", ("distillation", "radd"), "Small models that reproduce the network."),
    Section("other", "Other figures", ("",), ""),
)
