"""The built-in configurations: the reference papers' settings, by name.

``preset(name)`` returns a fresh, mutable copy; ``list_presets()`` lists every name with its
one-line description.
"""

from __future__ import annotations

from collections.abc import Callable

from rnnscope.config.schema import (
    DataConfig,
    HMMRunConfig,
    HMMTaskConfig,
    NoiseRNNConfig,
    Strict,
    TrainingConfig,
)
from rnnscope.errors import ConfigError

_PRESETS: dict[str, Callable[[], Strict]] = {}


def register_preset(name: str) -> Callable[[Callable[[], Strict]], Callable[[], Strict]]:
    """Decorator: register a function returning a run configuration under ``name``."""

    def decorator(factory: Callable[[], Strict]) -> Callable[[], Strict]:
        if name in _PRESETS:
            raise ValueError(f"preset {name!r} is registered twice")
        _PRESETS[name] = factory
        return factory

    return decorator


def preset(name: str) -> Strict:
    """Return a fresh copy of the preset called ``name``.

    Raises ``ConfigError`` listing the available names when ``name`` is unknown.
    """
    _load_plugins()
    try:
        factory = _PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown preset {name!r}; available presets: {', '.join(sorted(_PRESETS))}"
        ) from None
    return factory()


def list_presets() -> dict[str, str]:
    """Every preset name with its description, in registration order."""
    _load_plugins()
    return {name: factory().description for name, factory in _PRESETS.items()}


def _load_plugins() -> None:
    """Import the modules that register presets of other systems (kept lazy to stay light)."""
    import importlib

    for module in _PLUGIN_MODULES:
        importlib.import_module(module)


_PLUGIN_MODULES: list[str] = ["rnnscope.config.ibl"]
"""Modules imported before presets are listed, so that each system registers its own presets."""


def _paper_hmm_run(
    name: str,
    description: str,
    task: HMMTaskConfig,
    seq_len: int,
    epochs: int,
    grad_clip: float,
) -> HMMRunConfig:
    """An HMM-emulation run with the paper's settings (Torre et al. 2025, §3 and Appendix A)."""
    return HMMRunConfig(
        name=name,
        description=description,
        task=task,
        data=DataConfig(num_seq=30_000, seq_len=seq_len),
        model=NoiseRNNConfig(input_size=100, hidden_size=150, h0="zeros"),
        training=TrainingConfig(
            epochs=epochs, batch_size=4096, learning_rates=[1e-3], grad_clip=grad_clip
        ),
    )


def _linear_chain(n_states: int) -> HMMTaskConfig:
    return HMMTaskConfig(
        n_states=n_states,
        n_outputs=3,
        transition="linear_chain",
        target_prob=0.05,
        emission="linear",
    )


_CHAIN_NAMES = {2: "two", 3: "three", 4: "four", 5: "five"}
_CHAIN_SEQ_LEN = {2: 100, 3: 30, 4: 30, 5: 40}


def _register_chain(n_states: int) -> None:
    name = f"hmm-{_CHAIN_NAMES[n_states]}"

    @register_preset(name)
    def _factory() -> HMMRunConfig:
        return _paper_hmm_run(
            name,
            f"{n_states}-state linear-chain HMM (target 0.05), linear emission, 3 outputs; paper settings",
            _linear_chain(n_states),
            seq_len=_CHAIN_SEQ_LEN[n_states],
            epochs=500,
            grad_clip=0.9,
        )


for _n in (2, 3, 4, 5):
    _register_chain(_n)


@register_preset("hmm-fully")
def _hmm_fully() -> HMMRunConfig:
    return _paper_hmm_run(
        "hmm-fully",
        "3-state fully connected HMM (stay 0.95), triangular emission (0.98); paper settings",
        HMMTaskConfig(
            n_states=3,
            n_outputs=3,
            transition="fully_connected",
            target_prob=None,
            stay_prob=0.95,
            emission="triangular",
            emission_peak=0.98,
        ),
        seq_len=30,
        epochs=1000,
        grad_clip=0.3,
    )


@register_preset("hmm-cyclic")
def _hmm_cyclic() -> HMMRunConfig:
    return _paper_hmm_run(
        "hmm-cyclic",
        "4-state ring HMM (stay 0.95, 0.025 to each neighbour), custom emission; paper settings",
        HMMTaskConfig(
            n_states=4,
            n_outputs=3,
            transition="cyclic",
            target_prob=None,
            stay_prob=0.95,
            emission="custom",
            custom_emission=[[0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.0, 0.1, 0.9], [0.0, 0.9, 0.1]],
        ),
        seq_len=40,
        epochs=500,
        grad_clip=0.3,
    )


@register_preset("demo")
def _demo() -> HMMRunConfig:
    config = _paper_hmm_run(
        "demo",
        "hmm-two on a small budget: what `rnnscope demo` trains (a few minutes on 2 CPU cores)",
        _linear_chain(2),
        seq_len=100,
        epochs=60,
        grad_clip=0.9,
    )
    config.data.num_seq = 6_000
    config.training.batch_size = 1_000
    config.training.val_every = 5
    config.training.snapshot_every = 5
    return config


@register_preset("hmm-two-legacy")
def _hmm_two_legacy() -> HMMRunConfig:
    config = _paper_hmm_run(
        "hmm-two-legacy",
        "the reference's older 2-state HMM (stay 0.95, 'gaussian' emission, length 150) — "
        "the HMM of the reference authors' fixture checkpoint",
        HMMTaskConfig(
            n_states=2, n_outputs=3, transition="linear_chain", target_prob=None, stay_prob=0.95, emission="gaussian"
        ),
        seq_len=150,
        epochs=1000,
        grad_clip=0.9,
    )
    config.model.h0 = "normal"
    return config
