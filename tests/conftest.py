"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
# OpenMP threads that spin while waiting slow every small torch op tenfold when the cores are shared
# (by test subprocesses or other jobs); passive waiting keeps the suite fast on 2 cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE_CHECKPOINT = REPO_ROOT.parent / "shared" / "fixtures" / "hmmrnn_2state_h150_i100.pth"


@pytest.fixture
def reference_checkpoint() -> Path:
    """The reference authors' 2-state checkpoint; tests using it skip where it is absent."""
    if not FIXTURE_CHECKPOINT.is_file():
        pytest.skip(f"reference fixture not found at {FIXTURE_CHECKPOINT}")
    return FIXTURE_CHECKPOINT
