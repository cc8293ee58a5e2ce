"""Presets, overrides and configuration files."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rnnscope.config import apply_overrides, list_presets, load_config, preset, valid_keys
from rnnscope.errors import ConfigError

PAPER = {
    # name: (states, seq_len, epochs, grad_clip)
    "hmm-two": (2, 100, 500, 0.9),
    "hmm-three": (3, 30, 500, 0.9),
    "hmm-four": (4, 30, 500, 0.9),
    "hmm-five": (5, 40, 500, 0.9),
    "hmm-fully": (3, 30, 1000, 0.3),
    "hmm-cyclic": (4, 40, 500, 0.3),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_presets_carry_the_paper_settings(name):
    states, seq_len, epochs, clip = PAPER[name]
    config = preset(name)
    assert config.task.n_states == states and config.task.n_outputs == 3
    assert config.data.seq_len == seq_len and config.data.num_seq == 30_000
    assert config.training.epochs == epochs and config.training.grad_clip == clip
    assert config.training.batch_size == 4096 and config.training.learning_rates == [1e-3]
    assert config.training.betas == (0.9, 0.9)
    assert config.model.hidden_size == 150 and config.model.input_size == 100
    assert config.model.h0 == "zeros" and config.training.loss.blur == 0.2


def test_preset_returns_independent_copies():
    first = preset("hmm-two")
    first.training.epochs = 3
    assert preset("hmm-two").training.epochs == 500


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ConfigError, match="hmm-two"):
        preset("hmm-seven")


def test_overrides_are_typed_and_validated():
    config = apply_overrides(preset("hmm-two"), ["training.epochs=50", "model.hidden_size=50", "training.learning_rates=[0.01, 0.001]"])
    assert config.training.epochs == 50 and config.model.hidden_size == 50
    assert config.training.learning_rates == [0.01, 0.001]
    with pytest.raises(ConfigError, match="valid keys are: .*training.epochs"):
        apply_overrides(config, ["training.epoch=5"])
    with pytest.raises(ConfigError, match="training.epochs"):
        apply_overrides(config, ["training.epochs=0"])
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(config, ["training.epochs"])
    assert "training.loss.blur" in valid_keys(config)


def test_custom_transition_needs_its_matrix():
    with pytest.raises(ConfigError, match="custom_transition"):
        apply_overrides(preset("hmm-two"), ["task.transition=custom"])


def test_yaml_file_with_preset_base(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("preset: hmm-three\ntraining:\n  epochs: 7\nmodel:\n  hidden_size: 20\n")
    config = load_config(path, ["training.batch_size=128"])
    assert config.task.n_states == 3 and config.training.epochs == 7
    assert config.model.hidden_size == 20 and config.training.batch_size == 128
    path.write_text("preset: hmm-three\ntraining:\n  epoks: 7\n")
    with pytest.raises(ConfigError, match="training.epoks"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_cli_lists_presets_and_version():
    out = subprocess.run([sys.executable, "-m", "rnnscope.cli", "presets"], capture_output=True, text=True, check=True)
    for name in PAPER:
        assert name in out.stdout
    version = subprocess.run([sys.executable, "-m", "rnnscope.cli", "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("rnnscope ") and version.stderr == ""
    assert set(PAPER) <= set(list_presets())
