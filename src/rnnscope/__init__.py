"""rnnscope: train recurrent networks on tasks with hidden discrete structure, then reverse-engineer them.

The short public API is importable from the top level; modules load lazily, so
``import rnnscope`` (and ``rnnscope --version``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from rnnscope._version import __version__

_LAZY: dict[str, str] = {
    "preset": "rnnscope.config",
    "list_presets": "rnnscope.config",
    "load_config": "rnnscope.config",
    "apply_overrides": "rnnscope.config",
    "HMMRunConfig": "rnnscope.config",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rnnscope' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
