"""Native checkpoints, the reference's .pth files, ``load(path)``, and clear errors on bad files."""

from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pytest
import torch

from rnnscope.errors import CheckpointError
from rnnscope.models.checkpoints import (
    export_reference,
    load,
    load_checkpoint,
    load_reference,
    register_model_kind,
    save_checkpoint,
)
from rnnscope.models.noise_rnn import NoiseRNN


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) and sa[k].dtype == sb[k].dtype for k in sa)


class _ReferenceModel(torch.nn.Module):
    """The reference's module layout: ``rnn`` (nn.RNN, ReLU) and ``fc`` (nn.Linear)."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int, bias: bool = False) -> None:
        super().__init__()
        self.rnn = torch.nn.RNN(input_size, hidden_size, nonlinearity="relu", bias=bias, batch_first=True)
        self.fc = torch.nn.Linear(hidden_size, output_size, bias=bias)


def _hidden_of(model: NoiseRNN, inputs_bti: torch.Tensor) -> torch.Tensor:
    """Hidden states (B, T, H) of ``model`` on given inputs, through its training path."""
    B, T, _ = inputs_bti.shape
    noise = model.draw_noise(B, T, generator=torch.Generator().manual_seed(0))
    noise = noise._replace(inputs=inputs_bti / model.noise_std)
    with torch.no_grad():
        return model.forward_from_noise(noise).hidden


# ------------------------------------------------------------------------------------- native


@pytest.mark.parametrize("options", [{}, dict(bias=True, readout_bias=True, nonlinearity="tanh", h0="normal")])
def test_native_round_trip_is_exact(tmp_path, options):
    model = NoiseRNN(4, 6, 3, noise_std=0.4, tau=0.7, seed=0, **options)
    path = save_checkpoint(model, tmp_path / "ck", metadata={"epoch": 7, "val_loss": np.float32(0.5)})
    assert path == tmp_path / "ck.safetensors" and (tmp_path / "ck.json").is_file()
    for given in (path, tmp_path / "ck.json"):
        loaded, metadata = load_checkpoint(given)
        assert _same_weights(model, loaded) and loaded.to_config() == model.to_config()
        assert metadata == {"epoch": 7, "val_loss": 0.5}
    header = json.loads((tmp_path / "ck.json").read_text())
    assert header["format"] == "rnnscope-checkpoint" and header["version"] == 1
    assert header["model"]["kind"] == "noise_rnn" and header["model"]["output_size"] == 3


def test_float64_model_keeps_its_dtype(tmp_path):
    model = NoiseRNN(2, 3, 2, seed=0).double()
    loaded, _ = load_checkpoint(save_checkpoint(model, tmp_path / "ck.safetensors"))
    assert loaded.weight_hh.dtype == torch.float64 and _same_weights(model, loaded)


def test_load_accepts_a_run_directory(tmp_path):
    model = NoiseRNN(3, 5, 2, seed=1)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    save_checkpoint(model, run / "checkpoints" / "best.safetensors")
    assert _same_weights(load(run), model)
    assert _same_weights(load(run / "checkpoints"), model)
    assert _same_weights(load(run / "checkpoints" / "best.json"), model)


def test_load_does_not_disturb_the_global_random_state(tmp_path):
    path = save_checkpoint(NoiseRNN(3, 5, 2, seed=1), tmp_path / "ck")
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    load(path)
    assert torch.equal(torch.rand(3), expected)


def test_unserialisable_metadata_writes_nothing(tmp_path):
    with pytest.raises(TypeError, match="JSON-serialisable"):
        save_checkpoint(NoiseRNN(2, 3, 2, seed=0), tmp_path / "ck", metadata={"model": object()})
    assert list(tmp_path.iterdir()) == []


def test_model_kind_registry():
    register_model_kind("noise_rnn", NoiseRNN)
    with pytest.raises(ValueError, match="already registered"):
        register_model_kind("noise_rnn", torch.nn.Linear)
    with pytest.raises(TypeError, match="not a registered model kind"):
        save_checkpoint(torch.nn.Linear(2, 2), "unused.safetensors")


# ---------------------------------------------------------------------------------- reference


def test_reference_fixture_loads_with_sizes_from_the_weights(reference_checkpoint):
    model = load(reference_checkpoint)
    assert isinstance(model, NoiseRNN)
    assert (model.hidden_size, model.input_size, model.output_size) == (150, 100, 3)
    assert model.nonlinearity == "relu" and model.bias is None and model.bias_out is None
    radius = torch.linalg.eigvals(model.weight_hh.detach().double()).abs().max().item()
    assert radius == pytest.approx(4.05, abs=0.01)
    assert model.weight_ih.untyped_storage().data_ptr() != model.weight_hh.untyped_storage().data_ptr()


def test_reference_fixture_autonomous_dynamics_decay_to_zero(reference_checkpoint):
    model = load(reference_checkpoint).double()
    h = torch.randn(100, 150, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        for _ in range(500):
            h = model.step(h)
    assert h.norm(dim=1).max() < 1e-50


def test_reference_fixture_evaluates_export_and_reload_are_identical(reference_checkpoint, tmp_path):
    model = load(reference_checkpoint)
    generation = model.generate(1000, 60, seed=0)
    stay = (generation.outputs[:, 1:] == generation.outputs[:, :-1]).mean()
    assert stay == pytest.approx(0.80, abs=0.04)  # the fixture's documented P(output repeats)
    exported = export_reference(model, tmp_path / "exported.pth")
    state = torch.load(exported, map_location="cpu", weights_only=True)
    original = torch.load(reference_checkpoint, map_location="cpu", weights_only=True)
    assert list(state) == list(original)
    assert all(torch.equal(state[k], original[k]) for k in original)
    reference = _ReferenceModel(100, 150, 3)
    reference.load_state_dict(state)
    inputs = torch.randn(4, 30, 100, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hidden_ref = reference.rnn(inputs)[0]
    torch.testing.assert_close(_hidden_of(model, inputs), hidden_ref, rtol=1e-4, atol=1e-4)
    assert _same_weights(load(exported), model)
    assert _same_weights(load_checkpoint(save_checkpoint(model, tmp_path / "native"))[0], model)


@pytest.mark.parametrize("bias", [False, True])
def test_exported_file_runs_in_torch_rnn_with_the_same_hidden_states(tmp_path, bias):
    model = NoiseRNN(6, 9, 3, bias=bias, readout_bias=bias, seed=2)
    reference = _ReferenceModel(6, 9, 3, bias=bias)
    reference.load_state_dict(torch.load(export_reference(model, tmp_path / "m.pth"), weights_only=True))
    inputs = torch.randn(5, 12, 6)
    with torch.no_grad():
        hidden_ref, _ = reference.rnn(inputs)
        logits_ref = reference.fc(hidden_ref)
    torch.testing.assert_close(_hidden_of(model, inputs), hidden_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.readout(hidden_ref), logits_ref)
    assert _same_weights(load_reference(tmp_path / "m.pth"), model)


def test_reference_with_two_rnn_biases_sums_them(tmp_path):
    reference = _ReferenceModel(3, 4, 2, bias=True)
    torch.save(reference.state_dict(), tmp_path / "b.pth")
    model = load(tmp_path / "b.pth")
    assert torch.equal(model.bias, reference.rnn.bias_ih_l0 + reference.rnn.bias_hh_l0)
    inputs = torch.randn(2, 5, 3)
    with torch.no_grad():
        torch.testing.assert_close(_hidden_of(model, inputs), reference.rnn(inputs)[0], rtol=1e-5, atol=1e-6)


def test_reference_options_are_applied(tmp_path):
    torch.save(_ReferenceModel(3, 4, 2).state_dict(), tmp_path / "r.pth")
    model = load_reference(tmp_path / "r.pth", nonlinearity="tanh", noise_std=0.5, h0="normal", tau=0.2)
    assert (model.nonlinearity, model.noise_std, model.h0, model.tau) == ("tanh", 0.5, "normal", 0.2)


# ------------------------------------------------------------------------------- bad checkpoints


def _native(tmp_path):
    return save_checkpoint(NoiseRNN(3, 5, 2, seed=0), tmp_path / "ck.safetensors")


def _edit_json(path, **changes):
    json_path = path.with_suffix(".json")
    header = json.loads(json_path.read_text())
    for key, value in changes.items():
        if value is None:
            header.pop(key)
        else:
            header[key] = value
    json_path.write_text(json.dumps(header))
    return path


def _truncate(path, keep=0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


def _bad_native(kind, tmp_path):
    path = _native(tmp_path)
    if kind == "missing weights":
        path.unlink()
        return path.with_suffix(".json")
    if kind == "missing json":
        path.with_suffix(".json").unlink()
        return path
    if kind == "truncated weights":
        return _truncate(path)
    if kind == "truncated weights, no checksum":
        return _truncate(_edit_json(path, weights={}))
    if kind == "flipped byte":
        return _flip_last_byte(path)
    if kind == "json garbage":
        path.with_suffix(".json").write_text("{not json")
        return path
    if kind == "foreign json":
        path.with_suffix(".json").write_text(json.dumps({"format": "something-else"}))
        return path
    if kind == "training state":
        return _edit_json(path, format="rnnscope-training-state")
    if kind == "newer version":
        return _edit_json(path, version=99)
    if kind == "unknown kind":
        return _edit_json(path, model={"kind": "transformer", "output_size": 2})
    if kind == "module that registers nothing":
        return _edit_json(path, model={"kind": "base", "output_size": 2})
    if kind == "shape mismatch":
        header = json.loads(path.with_suffix(".json").read_text())
        return _edit_json(path, model={**header["model"], "hidden_size": 7})
    if kind == "invalid config":
        header = json.loads(path.with_suffix(".json").read_text())
        return _edit_json(path, model={**header["model"], "nonlinearity": "gelu"})
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing weights", "is missing"),
        ("missing json", "is missing: a native checkpoint is a .safetensors file plus this JSON"),
        ("truncated weights", "does not match the checksum"),
        ("truncated weights, no checksum", "not a readable safetensors file"),
        ("flipped byte", "does not match the checksum"),
        ("json garbage", "not valid JSON"),
        ("foreign json", "not an rnnscope checkpoint"),
        ("training state", "training resume point"),
        ("newer version", "upgrade rnnscope"),
        ("unknown kind", "kind 'transformer'"),
        ("module that registers nothing", "kind 'base'"),
        ("shape mismatch", r"shape mismatch.*weight_hh"),
        ("invalid config", "invalid 'noise_rnn' model"),
    ],
)
def test_bad_native_checkpoints_raise_clear_errors(tmp_path, kind, message):
    with pytest.raises(CheckpointError, match=message):
        load(_bad_native(kind, tmp_path))


class _Pickled:
    """An arbitrary object: weights_only loading must refuse to unpickle it."""


def _bad_reference(kind, tmp_path):
    path = tmp_path / "bad.pth"
    good = _ReferenceModel(3, 4, 2).state_dict()
    if kind == "not a state_dict":
        torch.save([torch.zeros(2)], path)
    elif kind == "nested dict":
        torch.save({"model": good, "epoch": 3}, path)
    elif kind == "foreign keys":
        torch.save(torch.nn.LSTM(3, 4).state_dict(), path)
    elif kind == "missing key":
        torch.save(OrderedDict((k, v) for k, v in good.items() if k != "fc.weight"), path)
    elif kind == "extra key":
        torch.save(OrderedDict(good, **{"decoder.weight": torch.zeros(2)}), path)
    elif kind == "arbitrary object":
        torch.save({"rnn.weight_ih_l0": _Pickled()}, path)
    elif kind == "garbage":
        path.write_bytes(b"\x00\x01garbage" * 10)
    elif kind == "truncated":
        torch.save(good, path)
        _truncate(path, 0.5)
    elif kind == "lfs pointer":
        path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 154898\n")
    elif kind == "inconsistent shapes":
        torch.save(OrderedDict(good, **{"fc.weight": torch.zeros(2, 5)}), path)
    else:
        raise AssertionError(kind)
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("not a state_dict", "holds a list, not a state_dict"),
        ("nested dict", "not a state_dict of tensors"),
        ("foreign keys", r"expected keys \['rnn.weight_ih_l0', 'rnn.weight_hh_l0', 'fc.weight'\].*unexpected"),
        ("missing key", r"missing \['fc.weight'\]"),
        ("extra key", r"unexpected \['decoder.weight'\]"),
        ("arbitrary object", "weights_only=True"),
        ("garbage", "could not be read by torch.load"),
        ("truncated", "could not be read"),
        ("lfs pointer", "Git LFS pointer"),
        ("inconsistent shapes", "inconsistent shapes"),
    ],
)
def test_bad_reference_checkpoints_raise_clear_errors(tmp_path, kind, message):
    with pytest.raises(CheckpointError, match=message):
        load(_bad_reference(kind, tmp_path))


def test_bad_paths_raise_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load(tmp_path / "nowhere.safetensors")
    with pytest.raises(CheckpointError, match="holds no model checkpoint"):
        load(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a recognised checkpoint"):
        load(tmp_path / "notes.txt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_reference(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="must end in .safetensors"):
        save_checkpoint(NoiseRNN(2, 3, 2, seed=0), tmp_path / "model.pt")
    with pytest.raises(TypeError, match="takes a NoiseRNN"):
        export_reference(torch.nn.Linear(2, 2), tmp_path / "x.pth")
