"""Exceptions raised by rnnscope.

Every error raised on bad user input is one of these, and its message names the problem and the fix.
They subclass the built-in exception a caller would naturally catch (``ValueError`` for bad values,
``FileNotFoundError`` for missing files), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class RnnscopeError(Exception):
    """Base class of every error rnnscope raises on purpose."""


class SpecError(RnnscopeError, ValueError):
    """A task specification (an HMM's matrices, an environment's parameters) is invalid."""


class ConfigError(RnnscopeError, ValueError):
    """A configuration key does not exist, or its value is out of range."""


class CheckpointError(RnnscopeError, ValueError):
    """A checkpoint or run directory is missing, corrupt, or not one rnnscope can read."""


class TrainingDiverged(RnnscopeError, RuntimeError):
    """Training produced a non-finite or exploding loss; the last good checkpoint was kept."""


class AnalysisError(RnnscopeError, RuntimeError):
    """An analysis could not produce its result (for example, no output switch was ever observed)."""
