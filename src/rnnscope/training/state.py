"""The resume point: model, optimiser and random-generator state at the end of an epoch.

Written as ``checkpoints/last.safetensors`` (tensors) plus ``last.json`` (counters), both atomically,
after every epoch; ``rnnscope train --resume RUN`` restores them exactly, so an interrupted run
continues bit-for-bit like an uninterrupted one on the same CPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rnnscope.core.io import atomic_path, read_json, write_json
from rnnscope.errors import CheckpointError

FORMAT = "rnnscope-training-state"


def save_training_state(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    counters: dict[str, Any],
) -> None:
    """Write the resume point; ``counters`` is plain JSON data (epoch, learning-rate index, …)."""
    path = Path(path)
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    optim_state = optimizer.state_dict()
    for index, state in optim_state["state"].items():
        for key, value in state.items():
            tensors[f"optim.{index}.{key}"] = torch.as_tensor(value).detach().contiguous().cpu()
    tensors["rng.noise"] = generator.get_state()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    write_json(
        path.with_suffix(".json"),
        {"format": FORMAT, "counters": counters, "param_groups": optim_state["param_groups"]},
    )


def load_training_state(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> dict[str, Any]:
    """Restore model, optimiser and generator in place from :func:`save_training_state`; return the counters."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise CheckpointError(f"no resume point at {path}; this run has not finished an epoch yet")
    meta = read_json(meta_path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path} is not an rnnscope training state")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path} is corrupt ({error}); delete it to restart the run from scratch") from None
    model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    generator.set_state(tensors["rng.noise"])
    return meta["counters"]
