"""Validated run configurations, the built-in presets, and ``--set key=value`` overrides."""

from rnnscope.config.overrides import apply_overrides, load_config, valid_keys
from rnnscope.config.presets import list_presets, preset
from rnnscope.config.schema import (
    DataConfig,
    HMMRunConfig,
    HMMTaskConfig,
    LossConfig,
    NoiseRNNConfig,
    RunConfig,
    TrainingConfig,
)

__all__ = [
    "DataConfig",
    "HMMRunConfig",
    "HMMTaskConfig",
    "LossConfig",
    "NoiseRNNConfig",
    "RunConfig",
    "TrainingConfig",
    "apply_overrides",
    "list_presets",
    "load_config",
    "preset",
    "valid_keys",
]

from rnnscope.config import ibl as _ibl  # noqa: E402,F401
