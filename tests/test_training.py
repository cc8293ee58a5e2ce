"""The HMM trainer: best checkpoints, resume, divergence, snapshots, and the train → evaluate pipeline."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from rnnscope.config import apply_overrides, preset
from rnnscope.errors import ConfigError, TrainingDiverged
from rnnscope.models.checkpoints import load, load_checkpoint
from rnnscope.pipelines.train import train
from rnnscope.training.api import configure, open_run
from rnnscope.training.data import make_hmm_data
from rnnscope.training.history import TrainHistory
from rnnscope.training.hmm_trainer import train_hmm_run, validation_loss, validation_seed
from rnnscope.training.losses import make_loss
from rnnscope.training.runs import RunDir

TINY = [
    "data.num_seq=240",
    "data.seq_len=12",
    "model.hidden_size=12",
    "model.input_size=6",
    "training.epochs=6",
    "training.batch_size=40",
    "training.val_every=1",
]


def _fresh_run(tmp_path, name, overrides=TINY):
    config = configure("hmm-two", overrides)
    run = RunDir(tmp_path / name)
    run.path.mkdir()
    run.write_config(config)
    return config, run


def test_best_checkpoint_holds_the_weights_of_the_best_epoch(tmp_path):
    config, run = _fresh_run(tmp_path, "run")
    summary = train_hmm_run(config, run, progress=False, tensorboard=False)
    history = TrainHistory.read_csv(run.history_file)
    lr_index, epoch, value = history.best
    assert (summary.best_epoch, summary.best_val_loss) == (epoch, value)
    model, metadata = load_checkpoint(run.best_checkpoint)
    assert metadata["epoch"] == epoch
    data = make_hmm_data(config)
    loss = make_loss(config.training.loss)
    recomputed = validation_loss(model, loss, data, config, validation_seed(config, lr_index, epoch))
    assert recomputed == pytest.approx(value, rel=1e-6)
    if epoch != config.training.epochs:
        last = load_file(str(run.last_state))
        assert not torch.equal(last["model.weight_hh"], model.weight_hh.detach())


def test_resume_continues_bit_for_bit(tmp_path):
    config, uninterrupted = _fresh_run(tmp_path, "whole")
    train_hmm_run(config, uninterrupted, progress=False, tensorboard=False)

    config, interrupted = _fresh_run(tmp_path, "split")

    def stop_after_three(row):
        if row["epoch"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_hmm_run(config, interrupted, progress=False, tensorboard=False, on_epoch_end=stop_after_three)
    assert len(TrainHistory.read_csv(interrupted.history_file)) == 3
    train(None, resume=interrupted.path, progress=False, tensorboard=False, evaluate=False)

    whole = load_file(str(uninterrupted.last_state))
    split = load_file(str(interrupted.last_state))
    assert whole.keys() == split.keys()
    for key in whole:
        assert torch.equal(whole[key], split[key]), key
    assert uninterrupted.history_file.read_text().splitlines()[1:] != []
    strip = lambda path: [line.rsplit(",", 1)[0] for line in path.read_text().splitlines()]  # noqa: E731
    assert strip(uninterrupted.history_file) == strip(interrupted.history_file)


def test_several_learning_rates_keep_the_best(tmp_path):
    overrides = TINY + ["training.learning_rates=[0.01, 0.001]", "training.epochs=3"]
    config, run = _fresh_run(tmp_path, "lrs", overrides)
    summary = train_hmm_run(config, run, progress=False, tensorboard=False)
    history = TrainHistory.read_csv(run.history_file)
    assert sorted(set(history.lr_index.tolist())) == [0, 1] and len(history) == 6
    lr_index, epoch, value = history.best
    assert summary.best_lr_index == lr_index and summary.best_learning_rate == [0.01, 0.001][lr_index]
    _, metadata = load_checkpoint(run.best_checkpoint)
    assert (metadata["lr_index"], metadata["epoch"]) == (lr_index, epoch)


def test_a_huge_learning_rate_diverges_with_a_clear_error(tmp_path):
    overrides = TINY + ["training.learning_rates=[10000.0]", "training.grad_clip=null", "training.epochs=30"]
    config, run = _fresh_run(tmp_path, "diverge", overrides)
    with pytest.raises(TrainingDiverged, match="diverged at epoch .*learning_rates"):
        train_hmm_run(config, run, progress=False, tensorboard=False)
    if run.last_state.is_file():
        good = load_file(str(run.last_state))
        assert all(torch.isfinite(v.float()).all() for k, v in good.items() if k.startswith("model."))


def test_divergence_keeps_the_last_good_state(tmp_path, monkeypatch):
    from rnnscope.training import hmm_trainer

    real_epoch = hmm_trainer._run_epoch

    def poisoned(model, *args):
        row = real_epoch(model, *args)
        if row["epoch"] == 3:
            with torch.no_grad():
                model.weight_hh.fill_(float("nan"))
        return row

    monkeypatch.setattr(hmm_trainer, "_run_epoch", poisoned)
    config, run = _fresh_run(tmp_path, "poisoned")
    with pytest.raises(TrainingDiverged, match="epoch 3 .*non-finite weights.*last good state"):
        train_hmm_run(config, run, progress=False, tensorboard=False)
    good = load_file(str(run.last_state))
    assert json.loads(run.last_state.with_suffix(".json").read_text())["counters"]["epoch"] == 2
    assert all(torch.isfinite(v.float()).all() for v in good.values() if v.is_floating_point())
    assert len(TrainHistory.read_csv(run.history_file)) == 2


def test_snapshots_every_k_epochs(tmp_path):
    config, run = _fresh_run(tmp_path, "snap", TINY + ["training.snapshot_every=2"])
    train_hmm_run(config, run, progress=False, tensorboard=False)
    assert [epoch for epoch, _ in run.list_snapshots()] == [0, 2, 4, 6]
    first = load(run.list_snapshots()[0][1])
    last = load(run.list_snapshots()[-1][1])
    assert not torch.equal(first.weight_hh, last.weight_hh)


def test_existing_run_directory_is_not_overwritten(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(ConfigError, match="--resume"):
        train("hmm-two", overrides=TINY, out=tmp_path / "taken", progress=False)


def test_tiny_train_then_evaluate_end_to_end(tmp_path):
    run = train("hmm-two", overrides=TINY + ["training.epochs=2"], out=tmp_path / "e2e", progress=False)
    opened = open_run(run.path)
    metrics = json.loads((run.path / "metrics.json").read_text())
    for key in ("max_abs_transition_error", "max_abs_frequency_error", "loglik_gap_per_step", "ngram_tv",
                "matched_distance_hmm", "matched_distance_generator"):
        assert key in metrics
    assert len(metrics["ngram_tv"]) == 4 and math.isfinite(metrics["loglik_gap_per_step"])
    assert opened.metrics == metrics and opened.config.training.epochs == 2
    assert (run.path / "figures" / "training_loss.png").is_file()
    assert any(p.name.startswith("emissions_") for p in (run.path / "figures").glob("*.png"))
    page = (run.path / "report.html").read_text()
    assert "Emission fidelity" in page and "figures/training_loss.png" in page
    model = opened.model
    assert model.hidden_size == 12 and model.input_size == 6


def test_seed_override_changes_the_run_and_is_recorded(tmp_path):
    a = configure("hmm-two", TINY, seed=3)
    assert a.seed == 3 and apply_overrides(preset("hmm-two"), ["seed=3"]).seed == 3
