"""The command line, run as a subprocess like a user would."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

TINY = [
    "--set", "data.num_seq=120", "--set", "data.seq_len=10", "--set", "model.hidden_size=8",
    "--set", "model.input_size=4", "--set", "training.epochs=2", "--set", "training.batch_size=40",
]


def rnnscope(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "rnnscope.cli", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"rnnscope {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.mark.parametrize("command", ["train", "evaluate", "analyze", "report", "demo", "presets"])
def test_every_command_explains_its_options(command):
    out = rnnscope(command, "--help").stdout
    assert "Usage" in out and "--help" in out


def test_train_evaluate_report_round_trip(tmp_path):
    run = tmp_path / "run"
    out = rnnscope("train", "hmm-two", *TINY, "model.noise_std=0.5", "--out", str(run), "--quiet").stdout
    assert "report.html" in out
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["noise_std"] == 0.5 and config["training"]["epochs"] == 2
    assert (run / "checkpoints" / "best.safetensors").is_file() and (run / "metrics.json").is_file()
    (run / "report.html").unlink()
    rnnscope("report", str(run))
    assert (run / "report.html").is_file()
    summary = rnnscope("evaluate", str(run), "--num-seq", "200").stdout
    assert "max_abs_transition_error" in summary


def test_user_errors_print_one_line_and_exit_2(tmp_path):
    bad_key = rnnscope("train", "hmm-two", "--set", "training.epoch=3", "--out", str(tmp_path / "x"), check=False)
    assert bad_key.returncode == 2 and "unknown configuration key 'training.epoch'" in bad_key.stderr
    assert "Traceback" not in bad_key.stderr and not (tmp_path / "x").exists()
    bad_preset = rnnscope("train", "hmm-seven", check=False)
    assert bad_preset.returncode == 2 and "available presets" in bad_preset.stderr
    missing = rnnscope("evaluate", str(tmp_path / "nothing"), check=False)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_reference_checkpoint_evaluates_and_exports_unchanged(reference_checkpoint, tmp_path):
    no_hmm = rnnscope("evaluate", str(reference_checkpoint), "--out", str(tmp_path / "a"), check=False)
    assert no_hmm.returncode == 2 and "--hmm" in no_hmm.stderr
    rnnscope("evaluate", str(reference_checkpoint), "--hmm", "hmm-two-legacy", "--num-seq", "300",
             "--out", str(tmp_path / "eval"))
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["seq_len"] == 150 and metrics["n_sequences"] == 300

    from rnnscope.models.checkpoints import export_reference, load

    model = load(reference_checkpoint)
    model.generate(50, 20, seed=0)
    export_reference(model, tmp_path / "back.pth")
    original = torch.load(reference_checkpoint, map_location="cpu", weights_only=True)
    exported = torch.load(tmp_path / "back.pth", map_location="cpu", weights_only=True)
    assert list(original) == list(exported)
    assert all(torch.equal(original[k], exported[k]) for k in original)
