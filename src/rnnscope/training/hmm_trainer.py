"""The training loop of HMM emulation: a noise-driven RNN fitted by a distribution-matching loss.

For each learning rate in ``training.learning_rates`` the network starts from the same initial
weights; every epoch draws fresh input noise, steps through the fixed training batches (Adam,
gradient-norm clipping), validates every ``val_every`` epochs, keeps the true best-validation weights
(``checkpoints/best.safetensors``) and a resume point (``checkpoints/last.safetensors``).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from rnnscope.config.schema import HMMRunConfig
from rnnscope.core.random import child_seeds
from rnnscope.errors import TrainingDiverged
from rnnscope.training import history as hist
from rnnscope.training.data import HMMData, make_hmm_data
from rnnscope.training.runs import RunDir
from rnnscope.training.state import load_training_state, save_training_state

EpochCallback = Callable[[dict[str, Any]], None]
"""Called after every epoch with that epoch's history row (tests use it to interrupt a run)."""


@dataclass(frozen=True)
class TrainSummary:
    """What a finished training reports: the best validation loss, where it was reached, the time spent."""

    best_val_loss: float
    best_epoch: int
    best_lr_index: int
    best_learning_rate: float
    epochs_run: int
    seconds: float


def initial_model(config: HMMRunConfig, n_outputs: int) -> torch.nn.Module:
    """The network before training: PyTorch's default initialisation drawn from the run's init seed.

    The global torch RNG is used inside a forked context, so the caller's random state is untouched.
    """
    from rnnscope.models.noise_rnn import NoiseRNN

    init_seed = child_seeds(config.seed, 3)[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(init_seed)
        return NoiseRNN.from_config(config.model, n_outputs)


def noise_seed(config: HMMRunConfig, lr_index: int) -> int:
    """Seed of the training-noise generator of learning rate number ``lr_index``."""
    base = child_seeds(config.seed, 3)[2]
    return child_seeds(base, len(config.training.learning_rates))[lr_index]


def validation_seed(config: HMMRunConfig, lr_index: int, epoch: int) -> int:
    """Seed of the validation noise of one epoch: independent of the training noise and of ``val_every``."""
    return child_seeds(noise_seed(config, lr_index) + 1, 1)[0] + epoch


def train_hmm_run(
    config: HMMRunConfig,
    run: RunDir,
    *,
    resume: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
    tensorboard: bool = True,
    on_epoch_end: EpochCallback | None = None,
) -> TrainSummary:
    """Train the run described by ``config`` into ``run`` (which already holds ``config.json``)."""
    from rnnscope.models.checkpoints import save_checkpoint
    from rnnscope.training.losses import make_loss

    device = torch.device(device)
    started = time.perf_counter()
    hmm = config.hmm
    data = make_hmm_data(config, device)
    loss_fn = make_loss(config.training.loss)
    tcfg = config.training
    n_lrs = len(tcfg.learning_rates)
    base_model = initial_model(config, hmm.n_outputs).to(device)

    counters = _fresh_counters()
    if resume and run.last_state.is_file():
        counters = _peek_counters(run)
    writer = _tensorboard_writer(run, counters, tensorboard)
    bar = _progress_bar(progress, total=n_lrs * tcfg.epochs, initial=counters["completed_epochs"])
    try:
        for lr_index in range(counters["lr_index"], n_lrs):
            model = copy.deepcopy(base_model)
            optimizer = torch.optim.Adam(
                model.parameters(), lr=tcfg.learning_rates[lr_index], betas=tcfg.betas, weight_decay=tcfg.weight_decay
            )
            generator = torch.Generator(device="cpu").manual_seed(noise_seed(config, lr_index))
            start_epoch = 1
            if resume and counters["lr_index"] == lr_index and counters["epoch"] > 0:
                counters = load_training_state(run.last_state, model, optimizer, generator)
                start_epoch = counters["epoch"] + 1
                _truncate_history(run, lr_index, counters["epoch"])
            elif tcfg.snapshot_every:
                _save_snapshot(run, model, config, 0, lr_index if n_lrs > 1 else None)
            for epoch in range(start_epoch, tcfg.epochs + 1):
                row = _run_epoch(model, optimizer, generator, loss_fn, data, config, lr_index, epoch, device)
                _check_divergence(row, model, counters, run, lr_index, epoch, tcfg.divergence_factor)
                if math.isfinite(row["val_loss"]) and row["val_loss"] < counters["best_val_loss"]:
                    counters.update(best_val_loss=row["val_loss"], best_epoch=epoch, best_lr_index=lr_index)
                    save_checkpoint(model, run.best_checkpoint, metadata=_best_metadata(row, config))
                hist.append_row(run.history_file, row)
                counters.update(lr_index=lr_index, epoch=epoch, completed_epochs=counters["completed_epochs"] + 1)
                save_training_state(run.last_state, model, optimizer, generator, counters)
                if tcfg.snapshot_every and epoch % tcfg.snapshot_every == 0:
                    _save_snapshot(run, model, config, epoch, lr_index if n_lrs > 1 else None)
                _log(writer, bar, row, counters)
                if on_epoch_end is not None:
                    on_epoch_end(row)
            counters.update(lr_index=lr_index + 1, epoch=0)
    finally:
        if writer is not None:
            writer.close()
        if bar is not None:
            bar.close()
    return TrainSummary(
        best_val_loss=counters["best_val_loss"],
        best_epoch=counters["best_epoch"],
        best_lr_index=counters["best_lr_index"],
        best_learning_rate=tcfg.learning_rates[counters["best_lr_index"]],
        epochs_run=counters["completed_epochs"],
        seconds=time.perf_counter() - started,
    )


def _fresh_counters() -> dict[str, Any]:
    return {
        "lr_index": 0,
        "epoch": 0,
        "completed_epochs": 0,
        "best_val_loss": math.inf,
        "best_epoch": 0,
        "best_lr_index": 0,
        "reference_loss": None,
    }


def _peek_counters(run: RunDir) -> dict[str, Any]:
    from rnnscope.core.io import read_json

    return read_json(run.last_state.with_suffix(".json"))["counters"]


def _run_epoch(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    loss_fn,
    data: HMMData,
    config: HMMRunConfig,
    lr_index: int,
    epoch: int,
    device: torch.device,
) -> dict[str, float]:
    """One epoch: the training batches, then validation if due. Returns the history row."""
    tcfg = config.training
    seq_len = config.data.seq_len
    t0 = time.perf_counter()
    model.train()
    losses, norms = [], []
    for index, target in enumerate(data.batches("train", tcfg.batch_size)):
        optimizer.zero_grad(set_to_none=True)
        out = model(target.shape[0], seq_len, generator=generator)
        loss = loss_fn(out.onehot, target, target_key=("train", index))
        loss.backward()
        max_norm = tcfg.grad_clip if tcfg.grad_clip is not None else math.inf
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        optimizer.step()
        losses.append(float(loss.detach()))
        norms.append(float(norm))
    val_loss = math.nan
    if epoch % tcfg.val_every == 0 or epoch == tcfg.epochs:
        val_loss = validation_loss(model, loss_fn, data, config, validation_seed(config, lr_index, epoch))
    return {
        "lr_index": lr_index,
        "learning_rate": tcfg.learning_rates[lr_index],
        "epoch": epoch,
        "train_loss": sum(losses) / len(losses),
        "val_loss": val_loss,
        "grad_norm": sum(norms) / len(norms),
        "seconds": time.perf_counter() - t0,
    }


@torch.no_grad()
def validation_loss(model: torch.nn.Module, loss_fn, data: HMMData, config: HMMRunConfig, seed: int) -> float:
    """Mean loss over the validation batches, with fresh noise drawn from ``seed``."""
    model.eval()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    values = []
    for index, target in enumerate(data.batches("val", config.training.batch_size)):
        out = model(target.shape[0], config.data.seq_len, generator=generator)
        values.append(float(loss_fn(out.onehot, target, target_key=("val", index))))
    model.train()
    return sum(values) / len(values)


def _check_divergence(
    row: dict[str, float],
    model: torch.nn.Module,
    counters: dict[str, Any],
    run: RunDir,
    lr_index: int,
    epoch: int,
    factor: float,
) -> None:
    """Raise ``TrainingDiverged`` (before anything of this epoch is saved) if the epoch went wrong."""
    loss = row["train_loss"]
    weights_finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    reference = counters.get("reference_loss")
    if reference is None and math.isfinite(loss) and weights_finite:
        counters["reference_loss"] = loss
        return
    exploded = reference is not None and abs(loss) > factor * max(abs(reference), 1e-12)
    if math.isfinite(loss) and math.isfinite(row["grad_norm"]) and weights_finite and not exploded:
        return
    if not weights_finite:
        what = "non-finite weights"
    elif not math.isfinite(loss):
        what = "a non-finite loss"
    else:
        what = f"a loss of {loss:.4g} (> {factor:g} × the first epoch's)"
    kept = f"the last good state is in {run.last_state}" if run.last_state.is_file() else "no epoch had finished"
    raise TrainingDiverged(
        f"training diverged at epoch {epoch} (learning rate #{lr_index}): {what}; {kept}. "
        "Lower training.learning_rates or clip harder (training.grad_clip)."
    )


def _best_metadata(row: dict[str, float], config: HMMRunConfig) -> dict[str, Any]:
    return {
        "run": config.name,
        "epoch": int(row["epoch"]),
        "lr_index": int(row["lr_index"]),
        "learning_rate": row["learning_rate"],
        "val_loss": row["val_loss"],
        "task": config.task.model_dump(mode="json"),
        "seq_len": config.data.seq_len,
    }


def _save_snapshot(run: RunDir, model: torch.nn.Module, config: HMMRunConfig, epoch: int, lr_index: int | None) -> None:
    from rnnscope.models.checkpoints import save_checkpoint

    save_checkpoint(model, run.snapshot_path(epoch, lr_index), metadata={"run": config.name, "epoch": epoch})


def _truncate_history(run: RunDir, lr_index: int, epoch: int) -> None:
    def keep(row: dict[str, str]) -> bool:
        index, at = int(float(row["lr_index"])), int(float(row["epoch"]))
        return index < lr_index or (index == lr_index and at <= epoch)

    hist.truncate_rows(run.history_file, keep)


def _tensorboard_writer(run: RunDir, counters: dict[str, Any], enabled: bool):
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run.tensorboard), purge_step=counters["completed_epochs"] + 1)


def _progress_bar(enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="epoch", dynamic_ncols=True)


def _log(writer, bar, row: dict[str, float], counters: dict[str, Any]) -> None:
    step = counters["completed_epochs"]
    if writer is not None:
        writer.add_scalar("loss/train", row["train_loss"], step)
        if math.isfinite(row["val_loss"]):
            writer.add_scalar("loss/val", row["val_loss"], step)
        writer.add_scalar("grad_norm", row["grad_norm"], step)
        writer.add_scalar("learning_rate", row["learning_rate"], step)
        writer.add_scalar("seconds_per_epoch", row["seconds"], step)
    if bar is not None:
        postfix = {"train": f"{row['train_loss']:.4g}", "best val": f"{counters['best_val_loss']:.4g}"}
        bar.set_postfix(postfix, refresh=False)
        bar.update(1)
