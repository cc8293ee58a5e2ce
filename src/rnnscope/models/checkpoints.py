"""Model checkpoints: rnnscope's native format, the reference's ``.pth`` files, and ``load(path)``.

Native format: ``NAME.safetensors`` holds the weights (the model's ``state_dict``) and the sibling
``NAME.json`` holds what rebuilds the model::

    {"format": "rnnscope-checkpoint", "version": 1,
     "model": {"kind": "noise_rnn", ...the model's to_config()..., "output_size": K},
     "weights": {"sha256": "...checksum of NAME.safetensors..."},
     "metadata": {...anything JSON...}}

Both files are written atomically. The checksum catches a weights file that was truncated, corrupted
or swapped for another after saving.

Reference format (EliaTorre/hmmrnn): a PyTorch-pickled ``state_dict`` with ``rnn.weight_ih_l0``
(H, I), ``rnn.weight_hh_l0`` (H, H) and ``fc.weight`` (K, H). It is read only with
``torch.load(path, map_location="cpu", weights_only=True)``, which refuses arbitrary pickled objects.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from rnnscope.core.io import atomic_path, to_jsonable, write_json
from rnnscope.errors import CheckpointError
from rnnscope.models.noise_rnn import NoiseRNN

FORMAT = "rnnscope-checkpoint"
VERSION = 1

REFERENCE_KEYS = ("rnn.weight_ih_l0", "rnn.weight_hh_l0", "fc.weight")
"""Keys every reference ``.pth`` holds: W_ih (H, I), W_hh (H, H), W_out (K, H)."""

REFERENCE_BIAS_KEYS = ("rnn.bias_ih_l0", "rnn.bias_hh_l0", "fc.bias")
"""Optional bias keys of a reference-style ``.pth`` (``nn.RNN``'s two biases are summed on import)."""

_TRAINING_STATE_FORMAT = "rnnscope-training-state"
_LFS_POINTER = b"version https://git-lfs"

_MODEL_KINDS: dict[str, type[torch.nn.Module]] = {}


def register_model_kind(kind: str, model_class: type[torch.nn.Module]) -> None:
    """Let checkpoints of ``kind`` be rebuilt as ``model_class``.

    The class provides ``to_config()`` (a pydantic model whose dump has a ``kind`` key),
    ``from_config(config_dict, output_size)``, an ``output_size`` attribute and ``state_dict()``.
    Registering the same class again is a no-op; another class under a taken kind is an error.
    A built-in kind lives in the module ``rnnscope.models.<kind>``, which the loader imports on demand.
    """
    existing = _MODEL_KINDS.get(kind)
    if existing is not None and existing is not model_class:
        raise ValueError(f"model kind {kind!r} is already registered to {existing.__name__}")
    _MODEL_KINDS[kind] = model_class


def model_kind(model: torch.nn.Module) -> str:
    """The registered kind of ``model`` (raises ``TypeError`` for an unregistered class)."""
    for kind, model_class in _MODEL_KINDS.items():
        if type(model) is model_class:
            return kind
    raise TypeError(
        f"{type(model).__name__} is not a registered model kind (known: {', '.join(sorted(_MODEL_KINDS))}); "
        "call rnnscope.models.checkpoints.register_model_kind first"
    )


# --------------------------------------------------------------------------------------- native


def save_checkpoint(
    model: torch.nn.Module, path: str | os.PathLike, *, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write ``model`` to ``path`` (``.safetensors``, the weights) and its sibling ``.json``; return ``path``.

    ``metadata`` is any JSON-serialisable mapping (epoch, losses, the task, …); it comes back from
    :func:`load_checkpoint`. A path without suffix gets ``.safetensors``.
    """
    weights_path = _weights_path(Path(path))
    kind = model_kind(model)
    entry = {**model.to_config().model_dump(mode="json"), "kind": kind, "output_size": int(model.output_size)}
    metadata_json = to_jsonable(dict(metadata or {}))
    try:
        json.dumps(metadata_json, allow_nan=True)
    except TypeError as error:
        raise TypeError(f"checkpoint metadata must be JSON-serialisable: {error}") from None
    tensors = {name: _cpu_copy(value) for name, value in model.state_dict().items()}
    with atomic_path(weights_path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
        digest = _sha256(tmp)
    write_json(
        weights_path.with_suffix(".json"),
        {
            "format": FORMAT,
            "version": VERSION,
            "model": entry,
            "weights": {"sha256": digest},
            "metadata": metadata_json,
        },
    )
    return weights_path


def load_checkpoint(path: str | os.PathLike) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Read a native checkpoint (its ``.safetensors`` or its ``.json``) → ``(model, metadata)``.

    Raises ``CheckpointError`` if either file is missing, the JSON is not an rnnscope checkpoint,
    the weights are corrupt or do not match their checksum, or they do not fit the configuration.
    """
    path = Path(path)
    if path.suffix not in (".safetensors", ".json"):
        raise CheckpointError(f"{path} is not a native checkpoint; give its .safetensors or .json file")
    json_path = path.with_suffix(".json")
    header = _read_header(json_path)
    weights_path = path.with_suffix(".safetensors")
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path} is missing: the weights of {json_path} must sit beside it")
    expected = header["weights"].get("sha256")
    if expected is not None and _sha256(weights_path) != expected:
        raise CheckpointError(
            f"{weights_path} does not match the checksum recorded in {json_path.name}: the weights file was "
            "truncated, corrupted or replaced after saving; restore it or save the checkpoint again"
        )
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{weights_path} is not a readable safetensors file ({error})") from None
    model = _build_model(header["model"], json_path)
    _load_weights(model, tensors, weights_path)
    return model, header.get("metadata", {})


def _read_header(json_path: Path) -> dict[str, Any]:
    """The validated JSON side of a native checkpoint."""
    if not json_path.is_file():
        raise CheckpointError(
            f"{json_path} is missing: a native checkpoint is a .safetensors file plus this JSON "
            "(written by save_checkpoint); a bare safetensors file cannot be rebuilt into a model"
        )
    try:
        header = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{json_path} is not valid JSON ({error}); the checkpoint is corrupt") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else None
        if found == _TRAINING_STATE_FORMAT:
            raise CheckpointError(
                f"{json_path} is a training resume point, not a model checkpoint; load the run directory "
                "or its checkpoints/best.safetensors instead"
            )
        raise CheckpointError(
            f"{json_path} is not an rnnscope checkpoint (format {found!r}, expected {FORMAT!r})"
        )
    version = header.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"{json_path} has checkpoint version {version!r}; this rnnscope reads version {VERSION} and "
            "older — upgrade rnnscope"
        )
    if not isinstance(header.get("model"), dict) or "kind" not in header["model"]:
        raise CheckpointError(f"{json_path} has no 'model' entry with a 'kind'; the checkpoint is corrupt")
    header.setdefault("weights", {})
    if not isinstance(header["weights"], dict):
        raise CheckpointError(f"{json_path} has a malformed 'weights' entry; the checkpoint is corrupt")
    return header


def _build_model(entry: dict[str, Any], json_path: Path) -> torch.nn.Module:
    """A freshly initialised model of the architecture ``entry`` describes."""
    kind = entry["kind"]
    model_class = _MODEL_KINDS.get(kind) or _import_kind(kind)
    if model_class is None:
        raise CheckpointError(
            f"{json_path} holds a model of kind {kind!r}, which this session does not know "
            f"(known: {', '.join(sorted(_MODEL_KINDS))}); import the module that registers it first"
        )
    config = {key: value for key, value in entry.items() if key != "output_size"}
    output_size = entry.get("output_size")
    if not isinstance(output_size, int) or output_size < 1:
        raise CheckpointError(f"{json_path} has no valid model output_size (got {output_size!r})")
    try:
        with torch.random.fork_rng(devices=[]):
            return model_class.from_config(config, output_size)
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{json_path} describes an invalid {kind!r} model: {error}") from None


def _import_kind(kind: Any) -> type[torch.nn.Module] | None:
    """Import ``rnnscope.models.<kind>`` (where each built-in kind registers itself), if it exists."""
    if isinstance(kind, str) and kind.isidentifier():
        try:
            importlib.import_module(f"rnnscope.models.{kind}")
        except ImportError:
            return None
    return _MODEL_KINDS.get(kind) if isinstance(kind, str) else None


def _load_weights(model: torch.nn.Module, tensors: dict[str, torch.Tensor], weights_path: Path) -> None:
    """Copy ``tensors`` into ``model``, after checking they are exactly the weights it expects."""
    expected = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    found = {name: tuple(value.shape) for name, value in tensors.items()}
    if expected != found:
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        wrong = [
            f"{k}: {found[k]} (config says {expected[k]})" for k in expected if k in found and found[k] != expected[k]
        ]
        details = "; ".join(
            part
            for part in (
                f"missing {missing}" if missing else "",
                f"unexpected {extra}" if extra else "",
                f"shape mismatch {wrong}" if wrong else "",
            )
            if part
        )
        raise CheckpointError(
            f"{weights_path} does not fit the model described in its JSON ({details}); the two files "
            "belong to different checkpoints"
        )
    dtypes = {value.dtype for value in tensors.values()}
    if len(dtypes) == 1:
        model.to(dtypes.pop())
    model.load_state_dict(tensors)


# ------------------------------------------------------------------------------------ reference


def load_reference(
    path: str | os.PathLike,
    *,
    nonlinearity: str = "relu",
    noise_std: float = 1.0,
    h0: str = "zeros",
    tau: float = 1.0,
) -> NoiseRNN:
    """Import a reference ``.pth`` state_dict as a :class:`NoiseRNN` (sizes from the weights).

    The file stores weights only; the keyword options set the rest (the reference's values are the
    defaults). Optional ``rnn.bias_ih_l0``/``rnn.bias_hh_l0`` are summed into one bias, and
    ``fc.bias`` becomes the readout bias. The weights are copied (the reference's two RNN matrices
    share one storage).
    """
    path = Path(path)
    state = _read_reference(path)
    allowed = set(REFERENCE_KEYS) | set(REFERENCE_BIAS_KEYS)
    missing = [key for key in REFERENCE_KEYS if key not in state]
    foreign = sorted(str(key) for key in state if key not in allowed)
    if missing or foreign:
        raise CheckpointError(
            f"{path} is not a reference noise-RNN checkpoint: expected keys {list(REFERENCE_KEYS)} "
            f"(optionally {list(REFERENCE_BIAS_KEYS)}); "
            + (f"missing {missing}" if missing else "")
            + ("; " if missing and foreign else "")
            + (f"unexpected {foreign}" if foreign else "")
        )
    biases = [state[key] for key in REFERENCE_BIAS_KEYS[:2] if key in state]
    try:
        return NoiseRNN.from_weights(
            state["rnn.weight_ih_l0"],
            state["rnn.weight_hh_l0"],
            state["fc.weight"],
            b=sum(biases[1:], biases[0].clone()) if biases else None,
            b_o=state.get("fc.bias"),
            nonlinearity=nonlinearity,
            noise_std=noise_std,
            h0=h0,
            tau=tau,
        )
    except (ValueError, TypeError, RuntimeError) as error:
        raise CheckpointError(f"{path} holds unusable weights: {error}") from None


def _read_reference(path: Path) -> Mapping[str, torch.Tensor]:
    """The state_dict in a reference ``.pth``, read with ``weights_only=True``."""
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    with open(path, "rb") as handle:
        if handle.read(len(_LFS_POINTER)) == _LFS_POINTER:
            raise CheckpointError(
                f"{path} is a Git LFS pointer, not the checkpoint itself; fetch the file (git lfs pull)"
            )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any failure of an untrusted file's decoder is the file's fault
        raise CheckpointError(
            f"{path} could not be read by torch.load(weights_only=True) ({_first_words(error)}); it is "
            "corrupt, not a PyTorch file, or it pickles objects other than tensors — re-save it with "
            "torch.save(model.state_dict(), path)"
        ) from error
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"{path} holds a {type(state).__name__}, not a state_dict of tensors; re-save it with "
            "torch.save(model.state_dict(), path)"
        )
    return state


def export_reference(model: NoiseRNN, path: str | os.PathLike) -> Path:
    """Write ``model``'s weights as a reference ``.pth`` state_dict (atomically); return the path.

    Keys: ``rnn.weight_ih_l0``, ``rnn.weight_hh_l0``, ``fc.weight`` — plus, only for models with
    biases, ``rnn.bias_ih_l0`` (the bias), ``rnn.bias_hh_l0`` (zeros) and ``fc.bias``. The file loads
    with ``torch.load(path, weights_only=True)`` into ``nn.RNN`` + ``nn.Linear``. The nonlinearity, the
    noise level and the other options are not stored (the reference always runs ReLU with σ = 1).
    """
    if not isinstance(model, NoiseRNN):
        raise TypeError(f"export_reference takes a NoiseRNN; got {type(model).__name__}")
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    state["rnn.weight_ih_l0"] = _cpu_copy(model.weight_ih)
    state["rnn.weight_hh_l0"] = _cpu_copy(model.weight_hh)
    if model.bias is not None:
        state["rnn.bias_ih_l0"] = _cpu_copy(model.bias)
        state["rnn.bias_hh_l0"] = torch.zeros_like(state["rnn.bias_ih_l0"])
    state["fc.weight"] = _cpu_copy(model.weight_out)
    if model.bias_out is not None:
        state["fc.bias"] = _cpu_copy(model.bias_out)
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


# ----------------------------------------------------------------------------------------- load


def load(path: str | os.PathLike) -> torch.nn.Module:
    """Load a model from a run directory, a native checkpoint or a reference ``.pth``.

    * a run directory (``runs/<name>/``): its ``checkpoints/best.safetensors`` (the checkpoint's JSON
      holds the model configuration, so the run's ``config.json`` is not needed);
    * a directory holding ``best.safetensors`` (a run's ``checkpoints/``);
    * a native checkpoint: ``NAME.safetensors`` or ``NAME.json``;
    * a reference ``.pth`` (or ``.pt``): imported as a ReLU :class:`NoiseRNN` with σ = 1.

    Raises ``CheckpointError`` naming the problem when nothing loadable is found.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; give a run directory or a checkpoint file")
    if path.is_dir():
        for candidate in (path / "checkpoints" / "best.safetensors", path / "best.safetensors"):
            if candidate.is_file():
                return load_checkpoint(candidate)[0]
        raise CheckpointError(
            f"{path} holds no model checkpoint (looked for checkpoints/best.safetensors): the run has not "
            "validated yet, or this is not a run directory; give a checkpoint file instead"
        )
    if path.suffix in (".safetensors", ".json"):
        return load_checkpoint(path)[0]
    if path.suffix in (".pth", ".pt"):
        return load_reference(path)
    raise CheckpointError(
        f"{path} is not a recognised checkpoint: expected a run directory, a native .safetensors/.json "
        "checkpoint, or a reference .pth state_dict"
    )


def _cpu_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A detached, contiguous CPU copy that shares no storage with anything."""
    return tensor.detach().to("cpu", copy=True).contiguous()


def _first_words(error: Exception, limit: int = 120) -> str:
    """``Type: message`` of an exception, on one line, without terminal escapes, at most ``limit`` long."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).replace("\n", " ").strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _weights_path(path: Path) -> Path:
    if path.suffix == "":
        return path.with_suffix(".safetensors")
    if path.suffix != ".safetensors":
        raise ValueError(f"a native checkpoint path must end in .safetensors (or have no suffix); got {path}")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


register_model_kind("noise_rnn", NoiseRNN)
