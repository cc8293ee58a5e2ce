"""Opening run directories, choosing the device, and training a configured run."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from rnnscope.config.overrides import apply_overrides, load_config
from rnnscope.config.schema import Strict
from rnnscope.errors import ConfigError
from rnnscope.training.runs import RunDir, resolve_run


@dataclass(frozen=True)
class Run:
    """A run directory opened for use. Attributes load lazily from disk."""

    path: Path

    @cached_property
    def dir(self) -> RunDir:
        return resolve_run(self.path)

    @cached_property
    def config(self) -> Strict:
        """The run's configuration."""
        return self.dir.read_config()

    @cached_property
    def model(self) -> torch.nn.Module:
        """The best-validation network."""
        from rnnscope.models.checkpoints import load

        return load(self.path)

    @cached_property
    def history(self):
        """The per-epoch :class:`~rnnscope.training.history.TrainHistory`."""
        from rnnscope.training.history import TrainHistory

        return TrainHistory.read_csv(self.dir.history_file)

    @cached_property
    def metrics(self) -> dict[str, Any] | None:
        """The evaluation results (``metrics.json``), or None before evaluation."""
        from rnnscope.core.io import read_json

        return read_json(self.dir.metrics_file) if self.dir.metrics_file.is_file() else None

    @property
    def hmm(self):
        """The HMM an HMM-emulation run imitates."""
        return self.config.hmm


def open_run(path: str | os.PathLike) -> Run:
    """Open an existing run directory."""
    run = Run(Path(path))
    run.dir  # noqa: B018 — validates that the directory is a run
    return run


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU; anything else is passed to ``torch.device``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ConfigError(f"unknown device {device!r}: {error}; use cpu, cuda, cuda:N or auto") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but CUDA is not available here; use --device cpu")
    return resolved


def configure(config: str | os.PathLike | Strict, overrides: Iterable[str] = (), seed: int | None = None) -> Strict:
    """A validated configuration from a preset name, a file or an object, with overrides and seed applied."""
    overrides = list(overrides)
    if isinstance(config, Strict):
        cfg = apply_overrides(config, overrides) if overrides else config
    else:
        cfg = load_config(config, overrides)
    if seed is not None:
        cfg = apply_overrides(cfg, {"seed": seed})
    return cfg


def train_run(cfg: Strict, run: RunDir, **kwargs: Any) -> None:
    """Train ``cfg`` into ``run`` (which holds its ``config.json``) with the trainer of its system."""
    if cfg.system == "hmm":
        from rnnscope.training.hmm_trainer import train_hmm_run

        train_hmm_run(cfg, run, **kwargs)
        return
    if cfg.system == "ibl":
        from rnnscope.training.ibl_trainer import train_ibl_run

        train_ibl_run(cfg, run, **kwargs)
        return
    raise ConfigError(f"no trainer for system {cfg.system!r}")
