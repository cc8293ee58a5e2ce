"""Seeds, result round-trips and atomic writes."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from rnnscope.core.io import atomic_path, write_json
from rnnscope.core.random import child_seeds, numpy_rng, torch_generator
from rnnscope.core.results import Result


@dataclasses.dataclass(frozen=True)
class _Inner(Result):
    values: np.ndarray
    label: str


@dataclasses.dataclass(frozen=True)
class _Outer(Result):
    inner: _Inner
    big: np.ndarray
    eig: np.ndarray
    per_group: dict
    items: list
    score: float


def test_same_int_seed_gives_same_numbers():
    assert np.array_equal(numpy_rng(3).normal(size=5), numpy_rng(3).normal(size=5))
    a = torch.randn(5, generator=torch_generator(3))
    b = torch.randn(5, generator=torch_generator(3))
    assert torch.equal(a, b)
    assert not np.array_equal(numpy_rng(3).normal(size=5), numpy_rng(4).normal(size=5))


def test_generators_pass_through_and_advance():
    rng = np.random.default_rng(0)
    assert numpy_rng(rng) is rng
    gen = torch.Generator().manual_seed(0)
    assert torch_generator(gen) is gen
    first, second = child_seeds(7, 2)
    assert first != second and child_seeds(7, 2) == [first, second]


def test_bad_seed_is_rejected():
    with pytest.raises(TypeError, match="seed must be"):
        numpy_rng("zero")
    with pytest.raises(ValueError, match="non-negative"):
        numpy_rng(-1)


def test_result_round_trip(tmp_path):
    original = _Outer(
        inner=_Inner(values=np.arange(3.0), label="x"),
        big=np.random.default_rng(0).normal(size=(40, 20)),
        eig=np.array([1 + 2j, 0.5 - 1j]),
        per_group={"a": np.ones(4), "b": np.zeros((300, 2))},
        items=[_Inner(values=np.eye(2), label="y")],
        score=0.25,
    )
    path = original.save(tmp_path / "result")
    assert path.name == "result.json" and (tmp_path / "result.npz").exists()
    loaded = _Outer.load(tmp_path / "result")
    assert np.array_equal(loaded.big, original.big)
    assert np.array_equal(loaded.eig, original.eig)
    assert np.array_equal(loaded.inner.values, original.inner.values) and loaded.inner.label == "x"
    assert np.array_equal(loaded.per_group["b"], original.per_group["b"])
    assert np.array_equal(loaded.items[0].values, np.eye(2))
    assert loaded.score == 0.25
    with pytest.raises(TypeError, match="holds a _Outer"):
        _Inner.load(path)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text().strip().startswith("{") and list(tmp_path.iterdir()) == [target]
