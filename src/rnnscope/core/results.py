"""The base class of every evaluation and analysis result.

A result is a frozen dataclass of numpy arrays, numbers, strings and nested results. It saves to
``NAME.json`` (scalars, small arrays inline) plus ``NAME.npz`` (large arrays) and loads back into the
same class, so figures and reports can be drawn from disk without recomputing anything.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from rnnscope.core.io import read_json, to_jsonable, write_json, write_npz

R = TypeVar("R", bound="Result")

INLINE_ARRAY_MAX = 256
"""Arrays with at most this many elements are written inline in the JSON file (readable by eye)."""

_REGISTRY: dict[str, type["Result"]] = {}


@dataclasses.dataclass(frozen=True)
class Result:
    """Base class: subclass it with ``@dataclasses.dataclass(frozen=True)``.

    Subclasses document each field with its shape and units. ``save``/``load`` round-trip every field
    that is an ndarray, a dict of ndarrays, a nested ``Result``, a list of ``Result``, or plain JSON data.
    """

    kind: ClassVar[str] = "result"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.__name__] = cls

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path.json`` (and ``path.npz`` if any large array) and return the JSON path.

        ``path`` may be given with or without the ``.json`` suffix.
        """
        base = Path(path)
        if base.suffix == ".json":
            base = base.with_suffix("")
        arrays: dict[str, np.ndarray] = {}
        encoded = self._encode("", arrays)
        npz_path = base.with_suffix(".npz")
        if arrays:
            write_npz(npz_path, arrays)
            encoded["__npz__"] = npz_path.name
        elif npz_path.exists():
            npz_path.unlink()
        return write_json(base.with_suffix(".json"), encoded)

    @classmethod
    def load(cls: type[R], path: str | os.PathLike) -> R:
        """Load a result written by :meth:`save`; raises ``TypeError`` if the file holds another kind."""
        json_path = Path(path)
        if json_path.suffix != ".json":
            json_path = json_path.with_suffix(".json")
        encoded = read_json(json_path)
        arrays: dict[str, np.ndarray] = {}
        if "__npz__" in encoded:
            with np.load(json_path.parent / encoded["__npz__"]) as handle:
                arrays = {key: handle[key] for key in handle.files}
        result = _decode(encoded, arrays)
        if not isinstance(result, cls):
            raise TypeError(f"{json_path} holds a {type(result).__name__}, not a {cls.__name__}")
        return result

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain JSON data (arrays as nested lists)."""
        return {f.name: to_jsonable(_plain(getattr(self, f.name))) for f in dataclasses.fields(self)}

    def _encode(self, prefix: str, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
        out: dict[str, Any] = {"__kind__": type(self).__name__}
        for field in dataclasses.fields(self):
            out[field.name] = _encode_value(getattr(self, field.name), f"{prefix}{field.name}", arrays)
        return out


def _encode_value(value: Any, key: str, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, Result):
        return value._encode(key + ".", arrays)
    if isinstance(value, np.ndarray):
        if value.size <= INLINE_ARRAY_MAX and value.dtype.kind in "biufc":
            if value.dtype.kind == "c":
                return {"__complex__": [value.real.tolist(), value.imag.tolist()], "dtype": str(value.dtype)}
            return {"__ndarray__": value.tolist(), "dtype": str(value.dtype), "shape": list(value.shape)}
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, dict):
        return {"__dict__": {str(k): _encode_value(v, f"{key}/{k}", arrays) for k, v in value.items()}}
    if isinstance(value, (list, tuple)) and any(isinstance(v, (Result, np.ndarray)) for v in value):
        return {"__list__": [_encode_value(v, f"{key}#{i}", arrays) for i, v in enumerate(value)]}
    return to_jsonable(value)


def _decode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, dict):
        if "__kind__" in value:
            cls = _REGISTRY.get(value["__kind__"])
            if cls is None:
                raise TypeError(
                    f"unknown result kind {value['__kind__']!r}; import the module that defines it first"
                )
            names = {f.name for f in dataclasses.fields(cls)}
            kwargs = {k: _decode(v, arrays) for k, v in value.items() if k in names}
            return cls(**kwargs)
        if "__array__" in value:
            return arrays[value["__array__"]]
        if "__ndarray__" in value:
            return np.asarray(value["__ndarray__"], dtype=value["dtype"]).reshape(value["shape"])
        if "__complex__" in value:
            real, imag = value["__complex__"]
            return (np.asarray(real) + 1j * np.asarray(imag)).astype(value["dtype"])
        if "__dict__" in value:
            return {k: _decode(v, arrays) for k, v in value["__dict__"].items()}
        if "__list__" in value:
            return [_decode(v, arrays) for v in value["__list__"]]
        return {k: _decode(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Result):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray) and value.dtype.kind == "c":
        return {"real": value.real, "imag": value.imag}
    return value
