"""Closed-loop training of a task RNN on the IBL block/trial task, with backpropagation through sessions.

One gradient step:

1. **Roll out** ``sessions_per_step`` fresh sessions closed loop (no gradient): the network reads
   ``x_t``, outputs ``p_t``, the environment judges ``p_t`` (an action when max p > 0.9) and returns
   ``x_{t+1}``, until every session has finished. The inputs (T, B, 3) and what each step was are
   recorded.
2. **Re-run** the network on those recorded inputs as one differentiable sequence (the fused
   recurrence of :meth:`TaskRNN.forward`) and take the session loss
   (:func:`rnnscope.training.ibl_losses.session_loss`) of its outputs.
3. Backpropagate through every step of every session and take an optimiser step.

Step 2 gives the gradient of a rollout run with autograd on: no gradient flows through the action
threshold (the environment reads detached probabilities), so the inputs are constants of the
weights, and the re-run reproduces the rollout's states (to rounding; the same operations run in
the same order). Recording under ``no_grad`` and re-running as one fused node avoids building an autograd graph
of tens of thousands of tiny operations.

Run directory (as for every rnnscope run): ``checkpoints/best.safetensors`` — the weights with the
best validation measure (``training.select_by``) on fixed validation sessions; ``checkpoints/last``
— the resume point (model, optimiser, environment generator; resuming continues bit-for-bit);
``history.csv`` — one row per ``log_every`` steps (:data:`HISTORY_COLUMNS`); ``tb/`` — TensorBoard
scalars named as the reference's (``train/…``, ``val/…``, ``pc/frac_variance_explained_k``).
"""

from __future__ import annotations

import csv
import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rnnscope.config.ibl import IBLRunConfig, IBLTrainingConfig
from rnnscope.core.io import atomic_path
from rnnscope.core.random import child_seeds
from rnnscope.core.results import Result
from rnnscope.errors import TrainingDiverged
from rnnscope.tasks.ibl.env import IBLEnv
from rnnscope.tasks.ibl.params import IBLTaskParams
from rnnscope.tasks.ibl.rollout import DONE_CHECK_EVERY, torch_threads
from rnnscope.training.ibl_losses import session_loss
from rnnscope.training.runs import RunDir
from rnnscope.training.state import load_training_state, save_training_state

StepCallback = Callable[[dict[str, float]], None]
"""Called after every history row with that row (tests use it to interrupt a run)."""

TRAINING_THREADS = 1
"""Torch threads inside the training loop: its operations are on (B, ≤ 50) tensors, where a thread
pool's fork/join costs more than it saves (measured in ``benchmarks/ibl_train.py``)."""

N_PCS_LOGGED = 4
"""Principal components whose variance fraction is logged (as the reference's TensorBoard scalars)."""

BEHAVIOUR_KEYS = ("loss", "accuracy", "action_rate", "steps_per_trial", "reward_per_step")
VALIDATION_KEYS = (*BEHAVIOUR_KEYS, "zero_concordant", "zero_discordant")

HISTORY_COLUMNS: tuple[str, ...] = (
    # the columns TrainHistory.read_csv reads (epoch = gradient step)
    "lr_index", "learning_rate", "epoch", "train_loss", "val_loss", "grad_norm", "seconds",
    "step", *(k for k in BEHAVIOUR_KEYS if k != "loss"),
    *(f"pc_variance_{k}" for k in range(1, N_PCS_LOGGED + 1)),
    *(f"val_{k}" for k in VALIDATION_KEYS if k != "loss"),
)
"""Columns of an IBL run's ``history.csv``: one row per ``log_every`` gradient steps.

``step``/``epoch``: gradient steps done; ``train_loss``, ``grad_norm`` (before clipping): means over
the interval; ``accuracy`` (correct actions / trials, timeouts count as errors), ``action_rate``
(actions / trials), ``steps_per_trial`` (blank steps included), ``reward_per_step``: over all the
interval's training sessions; ``pc_variance_k``: fraction of the hidden-state variance along the
k-th principal component (last session batch of the interval); ``val_*``: the same on the
validation sessions, plus ``val_zero_concordant``/``val_zero_discordant`` (accuracy at contrast 0
on concordant/discordant trials), empty where not validated; ``seconds``: wall time of the interval.
"""


# ------------------------------------------------------------------------------------------ rollout


@dataclasses.dataclass(frozen=True)
class Rollout:
    """B sessions run closed loop, time-major (T = steps until the longest session ended).

    ``inputs`` (T, B, 3): x_t; ``logits`` (T, B, K): the network's output at t; ``hidden``
    (T, B, H) or None; ``trial_side`` (T, B) int64 ±1 (0 once finished); ``is_observation``,
    ``active``, ``trial_end``, ``action_taken``, ``correct`` (T, B) bool; ``reward`` (T, B): r_t;
    ``trial_in_session`` (T, B) int64 (−1 once finished); ``n_steps`` (B,) int64: each session's
    steps, blank steps included.
    """

    inputs: Tensor
    logits: Tensor
    hidden: Tensor | None
    trial_side: Tensor
    is_observation: Tensor
    active: Tensor
    trial_end: Tensor
    action_taken: Tensor
    correct: Tensor
    reward: Tensor
    trial_in_session: Tensor
    n_steps: Tensor


@torch.no_grad()
def rollout(model: torch.nn.Module, env: IBLEnv, *, record_hidden: bool = False) -> Rollout:
    """Reset ``env`` (B new sessions) and run ``model`` closed loop until every session has finished.

    ``model`` is a :class:`~rnnscope.models.task_rnn.TaskRNN` (any model with ``step``, ``readout``,
    ``hidden_size`` and a dtype matching ``env.dtype`` works). Only keys, inputs and logits are
    written inside the loop, into preallocated buffers; the step table is decoded once at the end.
    """
    x_bi = env.reset()
    n_sessions = env.n_sessions
    capacity = -(-env.max_steps // DONE_CHECK_EVERY) * DONE_CHECK_EVERY
    inputs_tbi = torch.empty(capacity, n_sessions, x_bi.shape[1], dtype=env.dtype, device=env.device)
    logits_tbk = torch.empty(capacity, n_sessions, model.output_size, dtype=env.dtype, device=env.device)
    keys_tb = torch.empty(capacity, n_sessions, dtype=torch.int64, device=env.device)
    hidden_tbh = (
        torch.empty(capacity, n_sessions, model.hidden_size, dtype=env.dtype, device=env.device)
        if record_hidden else None
    )
    h_bh = torch.zeros(n_sessions, model.hidden_size, dtype=env.dtype, device=env.device)
    t = 0
    while t < capacity:
        inputs_tbi[t] = x_bi
        h_bh = model.step(h_bh, x_bi)
        logits_bk = model.readout(h_bh)
        logits_tbk[t] = logits_bk
        if hidden_tbh is not None:
            hidden_tbh[t] = h_bh
        out = env.step(torch.softmax(logits_bk, dim=1))
        keys_tb[t] = out.key
        x_bi = out.x
        t += 1
        if t % DONE_CHECK_EVERY == 0 and env.all_done():
            break
    decoded = env.automaton.describe(keys_tb[:t])
    n_steps_b = decoded["active"].sum(dim=0)
    T = int(n_steps_b.max())
    cut = {name: value[:T] for name, value in decoded.items()}
    return Rollout(
        inputs=inputs_tbi[:T],
        logits=logits_tbk[:T],
        hidden=None if hidden_tbh is None else hidden_tbh[:T],
        trial_side=cut["trial_side"],
        is_observation=cut["is_observation"],
        active=cut["active"],
        trial_end=cut["trial_end"],
        action_taken=cut["action_taken"],
        correct=cut["correct"],
        reward=cut["next_input"][..., 2],
        trial_in_session=cut["trial_in_session"],
        n_steps=n_steps_b,
    )


def behaviour_sums(ro: Rollout) -> Tensor:
    """Counts of a rollout as a float64 tensor (5,): trials, actions, correct, steps, total reward.

    Summable over rollouts; :func:`behaviour_rates` turns the sum into rates.
    """
    return torch.stack([
        ro.trial_end.sum(), ro.action_taken.sum(), ro.correct.sum(), ro.active.sum(),
        torch.where(ro.active, ro.reward, 0.0).sum(),
    ]).to(torch.float64)


def behaviour_rates(sums: Tensor) -> dict[str, float]:
    """``accuracy``, ``action_rate``, ``steps_per_trial``, ``reward_per_step`` from :func:`behaviour_sums`."""
    trials, actions, correct, steps, reward = (float(v) for v in sums)
    return {
        "accuracy": correct / trials if trials else math.nan,
        "action_rate": actions / trials if trials else math.nan,
        "steps_per_trial": steps / trials if trials else math.nan,
        "reward_per_step": reward / steps if steps else math.nan,
    }


def zero_contrast_accuracy(ro: Rollout, env: IBLEnv) -> tuple[float, float]:
    """Accuracy on zero-contrast trials of the rollout: (concordant, discordant) trials."""
    schedule = env.schedule
    session_idx = torch.arange(env.n_sessions, device=ro.trial_end.device).expand_as(ro.trial_end)
    session, trial = session_idx[ro.trial_end], ro.trial_in_session[ro.trial_end]
    correct = ro.correct[ro.trial_end]
    zero = schedule.contrasts[session, trial] == 0
    block_side = torch.gather(schedule.block_sides, 1, schedule.trial_block.clamp_min(0))[session, trial]
    concordant = schedule.trial_sides[session, trial] == block_side
    rates = []
    for mask in (zero & concordant, zero & ~concordant):
        n = int(mask.sum())
        rates.append(float(correct[mask].sum()) / n if n else math.nan)
    return rates[0], rates[1]


def variance_fractions(hidden_tbh: Tensor, active_tb: Tensor, n_components: int = N_PCS_LOGGED) -> np.ndarray:
    """Fractions of the variance of the active hidden states along their first principal components.

    ``hidden_tbh`` (T, B, H), ``active_tb`` (T, B) bool → (n_components,) float64, descending (NaN
    beyond H).
    """
    states = hidden_tbh.detach()[active_tb].to(torch.float64)
    centred = states - states.mean(dim=0)
    eigenvalues = torch.linalg.eigvalsh(centred.T @ centred).flip(0).clamp_min(0.0)
    fractions = (eigenvalues / eigenvalues.sum()).cpu().numpy()
    out = np.full(n_components, np.nan)
    out[: min(n_components, fractions.size)] = fractions[:n_components]
    return out


# ------------------------------------------------------------------------------------- the run


@dataclasses.dataclass(frozen=True)
class IBLTrainSummary:
    """What a finished IBL training reports.

    ``best_value``: the best validation measure (``select_by``) and ``best_step`` where it was
    reached; ``steps_run``: gradient steps done in total (also before a resume); ``seconds``: wall
    time of this call; ``last_validation``: the last validation's measures (see :data:`VALIDATION_KEYS`).
    """

    select_by: str
    best_value: float
    best_step: int
    steps_run: int
    seconds: float
    last_validation: dict[str, float]


def initial_model(config: IBLRunConfig) -> torch.nn.Module:
    """The network before training, drawn from the run's initialisation seed (global RNG untouched)."""
    from rnnscope.models.task_rnn import TaskRNN

    return TaskRNN.from_config(config.model, seed=child_seeds(config.seed, 3)[0])


def training_seed(config: IBLRunConfig) -> int:
    """Seed of the generator that draws every training session."""
    return child_seeds(config.seed, 3)[1]


def validation_seed(config: IBLRunConfig) -> int:
    """Seed of the fixed validation sessions (the same sessions at every validation)."""
    return child_seeds(config.seed, 3)[2]


def make_optimizer(model: torch.nn.Module, tcfg: IBLTrainingConfig) -> torch.optim.Optimizer:
    """Adam (``betas``) or SGD (``momentum``, no Nesterov — the reference's) at ``learning_rate``."""
    if tcfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=tcfg.learning_rate, betas=tcfg.betas,
                                weight_decay=tcfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=tcfg.learning_rate, momentum=tcfg.momentum,
                           weight_decay=tcfg.weight_decay)


def train_ibl_run(
    config: IBLRunConfig,
    run: RunDir,
    *,
    resume: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = True,
    tensorboard: bool = True,
    on_epoch_end: StepCallback | None = None,
) -> IBLTrainSummary:
    """Train the IBL run ``config`` into ``run`` (which already holds ``config.json``).

    ``resume=True`` continues from ``checkpoints/last.safetensors`` when it exists, bit-for-bit like
    an uninterrupted run on the same machine (history rows after the resume point are dropped).
    ``on_epoch_end`` is called with every history row. A non-finite loss or gradient raises
    :class:`~rnnscope.errors.TrainingDiverged`; the last resume point is kept.
    """
    started = time.perf_counter()
    device = torch.device(device)
    tcfg = config.training
    params = config.params
    model = initial_model(config).to(device)
    dtype = model.dtype
    optimizer = make_optimizer(model, tcfg)
    generator = torch.Generator(device="cpu").manual_seed(training_seed(config))
    env = IBLEnv(params, tcfg.sessions_per_step, seed=generator, device=device, dtype=dtype)
    counters = {"step": 0, "best_value": None, "best_step": 0, "last_validation": {}}
    if resume and run.last_state.is_file():
        counters = load_training_state(run.last_state, model, optimizer, generator)
        _truncate_history(run.history_file, counters["step"])
    elif run.history_file.is_file():
        run.history_file.unlink()
    if counters["step"] == 0 and tcfg.snapshot_every:
        _save_snapshot(run, model, config, 0)
    writer = _tensorboard_writer(run, counters["step"], tensorboard)
    bar = _progress_bar(progress, tcfg.grad_steps, counters["step"])
    interval = _Interval()
    try:
        with torch_threads(TRAINING_THREADS):
            for step in range(counters["step"] + 1, tcfg.grad_steps + 1):
                interval.add(*_gradient_step(model, optimizer, env, tcfg))
                if step % tcfg.log_every and step != tcfg.grad_steps:
                    continue
                row = interval.row(step, tcfg)
                if step % tcfg.val_every == 0 or step == tcfg.grad_steps:
                    validation = validate(model, params, tcfg, validation_seed(config), device=device)
                    row.update({f"val_{key}": value for key, value in validation.items()})
                    counters["last_validation"] = validation
                    _keep_best(model, run, config, counters, validation, step)
                _append_history(run.history_file, row)
                counters["step"] = step
                if step % tcfg.checkpoint_every == 0 or step == tcfg.grad_steps:
                    save_training_state(run.last_state, model, optimizer, generator, counters)
                if tcfg.snapshot_every and step % tcfg.snapshot_every == 0:
                    _save_snapshot(run, model, config, step)
                _log(writer, bar, row, counters, tcfg.select_by)
                interval = _Interval()
                if on_epoch_end is not None:
                    on_epoch_end(row)
    finally:
        if writer is not None:
            writer.close()
        if bar is not None:
            bar.close()
    return IBLTrainSummary(
        select_by=tcfg.select_by,
        best_value=math.nan if counters["best_value"] is None else counters["best_value"],
        best_step=counters["best_step"],
        steps_run=counters["step"],
        seconds=time.perf_counter() - started,
        last_validation=dict(counters["last_validation"]),
    )


def _gradient_step(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, env: IBLEnv, tcfg: IBLTrainingConfig
) -> tuple[Tensor, Tensor, Tensor, Rollout, Tensor]:
    """Roll out, re-run with gradients, step the optimiser. Returns (loss, grad norm, sums, rollout, hidden)."""
    ro = rollout(model, env)
    out = model(ro.inputs.transpose(0, 1))
    logits_tbk = out.logits.transpose(0, 1)
    loss = session_loss(logits_tbk, ro.trial_side, ro.is_observation, ro.n_steps, tcfg.loss)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    max_norm = tcfg.grad_clip if tcfg.grad_clip is not None else math.inf
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    if not (torch.isfinite(loss) and torch.isfinite(norm)):
        raise TrainingDiverged(
            f"training diverged: a non-finite {'loss' if not torch.isfinite(loss) else 'gradient'}; the last "
            "resume point is kept. Lower training.learning_rate or set training.grad_clip."
        )
    optimizer.step()
    return loss.detach(), norm.detach(), behaviour_sums(ro), ro, out.hidden.detach().transpose(0, 1)


class _Interval:
    """Accumulates the gradient steps between two history rows (tensors; converted once per row)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.n = 0
        self.loss = self.norm = self.sums = None
        self.last: tuple[Rollout, Tensor] | None = None

    def add(self, loss: Tensor, norm: Tensor, sums: Tensor, ro: Rollout, hidden_tbh: Tensor) -> None:
        self.n += 1
        self.loss = loss if self.loss is None else self.loss + loss
        self.norm = norm if self.norm is None else self.norm + norm
        self.sums = sums if self.sums is None else self.sums + sums
        self.last = (ro, hidden_tbh)

    def row(self, step: int, tcfg: IBLTrainingConfig) -> dict[str, float]:
        ro, hidden_tbh = self.last
        pcs = variance_fractions(hidden_tbh, ro.active)
        row: dict[str, float] = {name: math.nan for name in HISTORY_COLUMNS}
        row.update(
            lr_index=0, learning_rate=tcfg.learning_rate, epoch=step, step=step,
            train_loss=float(self.loss) / self.n, grad_norm=float(self.norm) / self.n,
            seconds=time.perf_counter() - self.started, **behaviour_rates(self.sums),
        )
        row.update({f"pc_variance_{k + 1}": float(pcs[k]) for k in range(N_PCS_LOGGED)})
        return row


@torch.no_grad()
def validate(
    model: torch.nn.Module,
    params: IBLTaskParams,
    tcfg: IBLTrainingConfig,
    seed: int,
    *,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """The model's loss and behaviour on ``tcfg.val_sessions`` fixed sessions drawn from ``seed``.

    Keys: :data:`VALIDATION_KEYS` (the loss is ``tcfg.loss`` on the closed-loop outputs).
    """
    env = IBLEnv(params, tcfg.val_sessions, seed=seed, device=device, dtype=model.dtype)
    ro = rollout(model, env)
    loss = session_loss(ro.logits, ro.trial_side, ro.is_observation, ro.n_steps, tcfg.loss)
    concordant, discordant = zero_contrast_accuracy(ro, env)
    return {
        "loss": float(loss),
        **behaviour_rates(behaviour_sums(ro)),
        "zero_concordant": concordant,
        "zero_discordant": discordant,
    }


def _is_better(value: float, best: float | None, select_by: str) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best if select_by == "loss" else value > best


def _keep_best(
    model: torch.nn.Module, run: RunDir, config: IBLRunConfig, counters: dict[str, Any],
    validation: dict[str, float], step: int,
) -> None:
    from rnnscope.models.checkpoints import save_checkpoint

    select_by = config.training.select_by
    value = validation[select_by]
    if not _is_better(value, counters["best_value"], select_by):
        return
    counters.update(best_value=value, best_step=step)
    save_checkpoint(model, run.best_checkpoint, metadata={
        "system": "ibl",
        "run": config.name,
        "step": step,
        "select_by": select_by,
        "validation": validation,
        "task": config.task.model_dump(mode="json"),
    })


def _save_snapshot(run: RunDir, model: torch.nn.Module, config: IBLRunConfig, step: int) -> None:
    from rnnscope.models.checkpoints import save_checkpoint

    save_checkpoint(model, run.snapshot_path(step), metadata={"system": "ibl", "run": config.name, "step": step})


# ------------------------------------------------------------------------------------- history


@dataclasses.dataclass(frozen=True)
class IBLTrainHistory(Result):
    """An IBL run's ``history.csv``: one array (R,) per column of :data:`HISTORY_COLUMNS`.

    ``values`` maps each column name to its float64 array over the R rows (NaN where empty, e.g.
    validation columns between validations). ``step`` is the gradient step of each row.
    """

    values: dict[str, np.ndarray]

    @property
    def step(self) -> np.ndarray:
        """Gradient steps of the rows, (R,) int64."""
        return self.values["step"].astype(np.int64)

    def __getitem__(self, column: str) -> np.ndarray:
        if column not in self.values:
            raise KeyError(f"no column {column!r}; columns: {', '.join(self.values)}")
        return self.values[column]

    def __len__(self) -> int:
        return int(self.values["step"].size)

    @classmethod
    def read_csv(cls, path: str | Path) -> "IBLTrainHistory":
        """Read an IBL run's ``history.csv`` (an empty history if the file does not exist)."""
        rows = _read_rows(Path(path))
        return cls(values={
            name: np.asarray([_number(row.get(name, "")) for row in rows], dtype=np.float64)
            for name in HISTORY_COLUMNS
        })


def _number(raw: str | None) -> float:
    return float(raw) if raw not in ("", None) else math.nan


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _append_history(path: Path, row: dict[str, float]) -> None:
    new = not path.is_file()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})


def _truncate_history(path: Path, last_step: int) -> None:
    """Keep only the rows up to ``last_step`` (the resume point), atomically."""
    rows = [row for row in _read_rows(path) if int(float(row["step"])) <= last_step]
    with atomic_path(path) as tmp:
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)


# ------------------------------------------------------------------------------------- logging


def _tensorboard_writer(run: RunDir, step: int, enabled: bool):
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run.tensorboard), purge_step=step + 1)


def _progress_bar(enabled: bool, total: int, initial: int):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", desc="IBL training", dynamic_ncols=True)


_TB_NAMES = {
    "train_loss": "train/avg_loss_per_dt",
    "accuracy": "train/correct_action_taken_by_total_trials",
    "action_rate": "train/action_taken_by_total_trials",
    "steps_per_trial": "train/dts_by_trial",
    "reward_per_step": "train/feedback_by_dt",
    "grad_norm": "train/grad_norm",
    "val_loss": "val/avg_loss_per_dt",
    "val_accuracy": "val/correct_action_taken_by_total_trials",
    "val_action_rate": "val/action_taken_by_total_trials",
    "val_steps_per_trial": "val/dts_by_trial",
    "val_reward_per_step": "val/feedback_by_dt",
    "val_zero_concordant": "val/zero_contrast_concordant_accuracy",
    "val_zero_discordant": "val/zero_contrast_discordant_accuracy",
    **{f"pc_variance_{k}": f"pc/frac_variance_explained_{k}" for k in range(1, N_PCS_LOGGED + 1)},
}


def _log(writer, bar, row: dict[str, float], counters: dict[str, Any], select_by: str) -> None:
    step = int(row["step"])
    if writer is not None:
        for column, tag in _TB_NAMES.items():
            if math.isfinite(row[column]):
                writer.add_scalar(tag, row[column], step)
    if bar is not None:
        best = counters["best_value"]
        bar.set_postfix({
            "loss": f"{row['train_loss']:.4f}",
            "acc": f"{row['accuracy']:.3f}",
            "steps/trial": f"{row['steps_per_trial']:.2f}",
            f"best val {select_by}": "—" if best is None else f"{best:.4f}",
        }, refresh=False)
        bar.update(step - bar.n)
