"""The run directory: one folder that holds everything about a run (DESIGN.md, "A run on disk").

```
runs/<name>/
  config.json            everything needed to rebuild the task, the model and the training
  checkpoints/           best.safetensors (best validation), last.safetensors (resume point)
  snapshots/             epoch_0000.safetensors … (optional)
  history.csv            one row per epoch
  tb/                    TensorBoard event files
  metrics.json           evaluation results
  analysis/              one .json (+ .npz) per analysis
  figures/               PNG and SVG (and HTML for interactive 3-D)
  report.html            the page a person opens first
```
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from rnnscope.config.overrides import parse_run_config
from rnnscope.config.schema import Strict
from rnnscope.core.io import read_json, write_json
from rnnscope.errors import CheckpointError, ConfigError

_SNAPSHOT = re.compile(r"^(?:lr(?P<lr>\d+)_)?epoch_(?P<epoch>\d+)\.safetensors$")


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory. Creating the object touches nothing on disk."""

    path: Path

    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.safetensors"

    @property
    def last_state(self) -> Path:
        return self.checkpoints / "last.safetensors"

    @property
    def snapshots(self) -> Path:
        return self.path / "snapshots"

    @property
    def history_file(self) -> Path:
        return self.path / "history.csv"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tb"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.json"

    @property
    def analysis(self) -> Path:
        return self.path / "analysis"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    @property
    def report_file(self) -> Path:
        return self.path / "report.html"

    def exists(self) -> bool:
        """Whether this directory holds a run (a ``config.json``)."""
        return self.config_file.is_file()

    def read_config(self) -> Strict:
        """The run's validated configuration."""
        if not self.config_file.is_file():
            raise CheckpointError(
                f"{self.path} is not a run directory (no config.json); give a run directory made by "
                "`rnnscope train`, or a checkpoint file"
            )
        try:
            return parse_run_config(read_json(self.config_file))
        except ConfigError as error:
            raise CheckpointError(f"{self.config_file} is not a valid rnnscope configuration: {error}") from None

    def write_config(self, config: Strict) -> Path:
        """Write ``config.json`` (atomically)."""
        return write_json(self.config_file, config.model_dump(mode="json"))

    def snapshot_path(self, epoch: int, lr_index: int | None = None) -> Path:
        """Path of the snapshot of ``epoch`` (prefixed by the learning-rate index when several are tried)."""
        prefix = "" if lr_index is None else f"lr{lr_index}_"
        return self.snapshots / f"{prefix}epoch_{epoch:04d}.safetensors"

    def list_snapshots(self, lr_index: int | None = None) -> list[tuple[int, Path]]:
        """``(epoch, path)`` of every snapshot (of one learning-rate index), sorted by epoch."""
        found = []
        if self.snapshots.is_dir():
            for entry in self.snapshots.iterdir():
                match = _SNAPSHOT.match(entry.name)
                if match is None:
                    continue
                index = None if match["lr"] is None else int(match["lr"])
                if index == lr_index:
                    found.append((int(match["epoch"]), entry))
        return sorted(found)


def resolve_run(path: str | os.PathLike) -> RunDir:
    """The run directory at ``path``; raises ``CheckpointError`` if it is not one."""
    run = RunDir(Path(path))
    if not run.exists():
        raise CheckpointError(
            f"{path} is not a run directory (no config.json); runs are made by `rnnscope train`"
        )
    return run
