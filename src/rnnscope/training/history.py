"""The per-epoch training history (``history.csv``) and its result object."""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from pathlib import Path

import numpy as np

from rnnscope.core.results import Result

COLUMNS = ("lr_index", "learning_rate", "epoch", "train_loss", "val_loss", "grad_norm", "seconds")
"""Columns of ``history.csv``; ``val_loss`` is empty on epochs without validation."""


@dataclasses.dataclass(frozen=True)
class TrainHistory(Result):
    """Losses per epoch of every learning rate tried.

    Arrays of shape (E,) over all recorded epochs: ``lr_index``, ``learning_rate``, ``epoch``
    (1-based), ``train_loss`` (mean over the epoch's batches), ``val_loss`` (NaN where not
    validated), ``grad_norm`` (mean pre-clipping gradient norm), ``seconds`` (wall time of the epoch).
    """

    lr_index: np.ndarray
    learning_rate: np.ndarray
    epoch: np.ndarray
    train_loss: np.ndarray
    val_loss: np.ndarray
    grad_norm: np.ndarray
    seconds: np.ndarray

    @property
    def best(self) -> tuple[int, int, float]:
        """``(lr_index, epoch, val_loss)`` of the lowest validation loss."""
        if not np.isfinite(self.val_loss).any():
            raise ValueError("no validated epoch in this history")
        i = int(np.nanargmin(self.val_loss))
        return int(self.lr_index[i]), int(self.epoch[i]), float(self.val_loss[i])

    def __len__(self) -> int:
        return int(self.epoch.shape[0])

    @classmethod
    def read_csv(cls, path: str | os.PathLike) -> "TrainHistory":
        """Read ``history.csv``."""
        rows = read_rows(path)
        columns = {name: [] for name in COLUMNS}
        for row in rows:
            for name in COLUMNS:
                raw = row.get(name, "")
                columns[name].append(float(raw) if raw not in ("", None) else math.nan)
        ints = {"lr_index", "epoch"}
        return cls(**{k: np.asarray(v, dtype=np.int64 if k in ints else np.float64) for k, v in columns.items()})


def read_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a history CSV (empty list if it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def append_row(path: str | os.PathLike, row: dict[str, float]) -> None:
    """Append one epoch to the CSV, writing the header first if the file is new."""
    path = Path(path)
    new = not path.is_file()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})


def truncate_rows(path: str | os.PathLike, keep) -> None:
    """Rewrite the CSV keeping only the rows for which ``keep(row)`` is true (used on resume)."""
    from rnnscope.core.io import atomic_path

    rows = [row for row in read_rows(path) if keep(row)]
    with atomic_path(path) as tmp:
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
