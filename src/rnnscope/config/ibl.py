"""Run configurations of the IBL system (Schaeffer et al., NeurIPS 2020) and its presets.

``IBLRunConfig`` holds everything needed to rebuild an IBL run: the task (``IBLTaskConfig``, whose
fields are generated from :class:`~rnnscope.tasks.ibl.IBLTaskParams` so the two never drift), the
network (``TaskRNNConfig``) and the closed-loop training (``IBLTrainingConfig``). Importing this
module registers the ``ibl`` system and the presets ``ibl``, ``ibl-2unit`` and ``ibl-reference``.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal

from pydantic import Field, create_model, model_validator

from rnnscope.config.presets import register_preset
from rnnscope.config.schema import RUN_CONFIG_TYPES, Strict
from rnnscope.errors import SpecError
from rnnscope.tasks.ibl.params import IBLTaskParams


def _task_fields() -> dict[str, Any]:
    """``{name: (type, default)}`` of every field of :class:`IBLTaskParams`, for pydantic."""
    hints = typing.get_type_hints(IBLTaskParams)
    return {field.name: (hints[field.name], field.default) for field in dataclasses.fields(IBLTaskParams)}


_TASK_FIELD_NAMES = tuple(field.name for field in dataclasses.fields(IBLTaskParams))

_IBLTaskFields = create_model("_IBLTaskFields", __base__=Strict, **_task_fields())


class IBLTaskConfig(_IBLTaskFields):
    """The IBL task: one field per field of :class:`~rnnscope.tasks.ibl.IBLTaskParams`, same defaults.

    The fields are generated from the dataclass, so the two always agree; see ``IBLTaskParams`` for
    their meaning. ``blocks_per_session`` is the length of the training (and validation) sessions.
    The whole set is validated by building the parameters, so an impossible combination (min >
    max trials, a threshold below 0.5, …) fails at construction with the parameter's own message.
    """

    kind: Literal["ibl"] = "ibl"

    @model_validator(mode="after")
    def _check_params(self) -> "IBLTaskConfig":
        try:
            self.build()
        except SpecError as error:
            raise ValueError(str(error)) from None
        return self

    def build(self) -> IBLTaskParams:
        """The :class:`~rnnscope.tasks.ibl.IBLTaskParams` this configuration describes."""
        return IBLTaskParams(**{name: getattr(self, name) for name in _TASK_FIELD_NAMES})


class TaskRNNConfig(Strict):
    """The task RNN: ``h_t = φ(W_ih x_t + W_hh h_{t−1} + b)`` (or a GRU), ``p_t = softmax(W_out h_t + b_out)``.

    ``cell``: "tanh" (the paper's), "relu" or "gru". ``bias``: the recurrent bias (the sum of
    ``nn.RNN``'s two biases; for a GRU, its input and recurrent biases). ``readout_bias``: ``b_out``.
    ``dtype``: the weights' and states' floating-point type (the reference runs float64).
    """

    kind: Literal["task_rnn"] = "task_rnn"
    input_size: int = Field(3, ge=1, le=10_000)
    hidden_size: int = Field(50, ge=1, le=100_000)
    output_size: int = Field(2, ge=2, le=10_000)
    cell: Literal["tanh", "relu", "gru"] = "tanh"
    bias: bool = True
    readout_bias: bool = True
    dtype: Literal["float32", "float64"] = "float32"


class IBLTrainingConfig(Strict):
    """Closed-loop training through whole sessions (backpropagation through each whole session).

    Every gradient step rolls out ``sessions_per_step`` fresh sessions of ``task.blocks_per_session``
    blocks closed-loop, then backpropagates the session loss through every step of every session.

    ``grad_steps``: gradient steps. ``optimizer``: "adam" (``betas``) or "sgd" (``momentum``);
    ``learning_rate``; ``weight_decay``. ``loss``: "neg_prob" (the reference's: −p(correct side) at
    every observation step) or "cross_entropy" (−log p(correct side)); both are summed over a
    session and divided by its number of steps, blank steps included. ``grad_clip``: maximum
    gradient norm (None: no clipping, like the reference).

    ``log_every``: gradient steps per ``history.csv`` row (and TensorBoard point).
    ``val_every``: steps between validations on ``val_sessions`` fixed sessions (the same schedule
    and stimuli every time); ``select_by``: the validation measure that picks
    ``checkpoints/best.safetensors`` — "reward_per_step" (default: the task's reward rate, the
    reference's ``feedback_by_dt``), "accuracy" (correct actions / trials; it favours networks that
    wait longer, so under the −p loss it picks early, slow checkpoints) or "loss" (lower is better;
    but both losses are divided by all steps, blank steps included, so a network that waits has
    more loss-bearing steps per step and a lower loss: values are not comparable across behaviours). ``checkpoint_every``: steps between resume points
    (``checkpoints/last.safetensors``). ``snapshot_every``: steps between weight snapshots for the
    training-evolution analysis (0 = none). ``val_every``, ``checkpoint_every`` and
    ``snapshot_every`` must be multiples of ``log_every``.
    """

    grad_steps: int = Field(3125, ge=1)
    sessions_per_step: int = Field(32, ge=1, le=4096)
    optimizer: Literal["sgd", "adam"] = "sgd"
    learning_rate: float = Field(0.032, gt=0.0, allow_inf_nan=False)
    momentum: float = Field(0.1, ge=0.0, lt=1.0)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0.0)
    loss: Literal["neg_prob", "cross_entropy"] = "neg_prob"
    grad_clip: float | None = Field(None, gt=0.0, allow_inf_nan=False)
    log_every: int = Field(10, ge=1)
    val_every: int = Field(100, ge=1)
    val_sessions: int = Field(64, ge=1, le=4096)
    select_by: Literal["reward_per_step", "accuracy", "loss"] = "reward_per_step"
    checkpoint_every: int = Field(100, ge=1)
    snapshot_every: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check_cadences(self) -> "IBLTrainingConfig":
        if not all(0.0 <= beta < 1.0 for beta in self.betas):
            raise ValueError(f"betas must lie in [0, 1); got {self.betas}")
        for name in ("val_every", "checkpoint_every", "snapshot_every"):
            value = getattr(self, name)
            if value % self.log_every:
                raise ValueError(
                    f"{name} ({value}) must be a multiple of log_every ({self.log_every}), so that every "
                    "validation, resume point and snapshot falls on a history row"
                )
        return self


class IBLRunConfig(Strict):
    """Everything needed to rebuild an IBL run: task, model and closed-loop training."""

    system: Literal["ibl"] = "ibl"
    name: str = Field("ibl", min_length=1)
    description: str = ""
    seed: int = Field(0, ge=0)
    task: IBLTaskConfig = Field(default_factory=IBLTaskConfig)
    model: TaskRNNConfig = Field(default_factory=TaskRNNConfig)
    training: IBLTrainingConfig = Field(default_factory=IBLTrainingConfig)

    @model_validator(mode="after")
    def _check_sizes(self) -> "IBLRunConfig":
        if self.model.input_size != 3 or self.model.output_size != 2:
            raise ValueError(
                "the IBL task feeds 3 inputs (left, right, previous reward) and reads 2 outputs "
                f"(p_L, p_R); set model.input_size=3 and model.output_size=2 (got {self.model.input_size} "
                f"and {self.model.output_size})"
            )
        return self

    @property
    def params(self) -> IBLTaskParams:
        """The task parameters of this run."""
        return self.task.build()


RUN_CONFIG_TYPES["ibl"] = IBLRunConfig


REFERENCE_SESSIONS = 100_001
"""Training sessions the reference sees: 100 001 gradient steps of one 4-block session each."""


@register_preset("ibl")
def _ibl() -> IBLRunConfig:
    return IBLRunConfig(
        name="ibl",
        description=(
            "50-unit tanh RNN on the IBL block/trial task, closed loop, the reference's −p(correct) loss and "
            "optimiser batched: SGD momentum 0.1, 32 sessions per step at lr 32 × 1e-3, 3125 steps (100 000 sessions)"
        ),
        training=IBLTrainingConfig(
            grad_steps=REFERENCE_SESSIONS // 32,
            sessions_per_step=32,
            optimizer="sgd",
            learning_rate=32 * 1e-3,
            momentum=0.1,
            log_every=25,
            val_every=125,
            checkpoint_every=125,
            snapshot_every=625,
        ),
    )


@register_preset("ibl-2unit")
def _ibl_2unit() -> IBLRunConfig:
    config = _ibl()
    config.name = "ibl-2unit"
    config.description = "the IBL task with a 2-unit tanh RNN (the paper's small task-trained control)"
    config.model.hidden_size = 2
    return config


@register_preset("ibl-reference")
def _ibl_reference() -> IBLRunConfig:
    return IBLRunConfig(
        name="ibl-reference",
        description=(
            "the reference's recipe: SGD lr 1e-3 momentum 0.1, 1 session per step, 100 001 steps, "
            "float64, seed 1 (2–3 hours on 2 cores)"
        ),
        seed=1,
        model=TaskRNNConfig(dtype="float64"),
        training=IBLTrainingConfig(
            grad_steps=100_001,
            sessions_per_step=1,
            optimizer="sgd",
            learning_rate=1e-3,
            momentum=0.1,
            log_every=100,
            val_every=5000,
            checkpoint_every=5000,
        ),
    )
