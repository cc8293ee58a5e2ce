"""Trained models shipped with rnnscope: ``pretrained("ibl")`` and friends.

Each shipped model NAME is four files in the package folder ``rnnscope/pretrained/``:

* ``NAME.safetensors`` + ``NAME.json`` — a native checkpoint (weights and what rebuilds the model);
* ``NAME.config.json`` — the run configuration it was trained with (``rnnscope train`` accepts it);
* ``NAME.metrics.json`` — its evaluation headline numbers (``metrics.json`` of its run).

``scripts/train_pretrained.py NAME`` reproduces them. The loader knows nothing of any one system:
a model of any registered kind (the IBL task RNN, the HMM noise RNN, …) loads the same way.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import torch

from rnnscope.core.io import read_json
from rnnscope.errors import CheckpointError, ConfigError

_KIND_MODULES = ("rnnscope.models.noise_rnn", "rnnscope.models.task_rnn")
"""Modules that register the model kinds a shipped checkpoint may hold."""


def pretrained_dir() -> Path:
    """The folder of the shipped models (``rnnscope/pretrained``)."""
    return Path(str(importlib.resources.files("rnnscope") / "pretrained"))


def available_pretrained() -> list[str]:
    """Names of the shipped models, sorted (those with both a ``.safetensors`` and a ``.json``)."""
    folder = pretrained_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.safetensors") if p.with_suffix(".json").is_file())


def pretrained_path(name: str) -> Path:
    """The ``.safetensors`` file of the shipped model ``name``; an unknown name raises ``ConfigError``."""
    names = available_pretrained()
    if name not in names:
        listed = ", ".join(names) if names else "none are installed"
        raise ConfigError(f"no pretrained model {name!r}; available: {listed}")
    return pretrained_dir() / f"{name}.safetensors"


def pretrained(name: str) -> torch.nn.Module:
    """The shipped trained model ``name`` (e.g. ``"ibl"``, the paper's 50-unit RNN), ready to use."""
    import importlib

    from rnnscope.models.checkpoints import load_checkpoint

    path = pretrained_path(name)
    for module in _KIND_MODULES:
        importlib.import_module(module)
    return load_checkpoint(path)[0]


def pretrained_config(name: str):
    """The run configuration the shipped model ``name`` was trained with (validated)."""
    from rnnscope.config.overrides import parse_run_config

    path = pretrained_path(name).with_name(f"{name}.config.json")
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the pretrained model {name!r} was installed incompletely")
    return parse_run_config(read_json(path))


def pretrained_metrics(name: str) -> dict[str, Any]:
    """The evaluation headline numbers of the shipped model ``name`` (its ``metrics.json``)."""
    path = pretrained_path(name).with_name(f"{name}.metrics.json")
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the pretrained model {name!r} was installed incompletely")
    return read_json(path)
