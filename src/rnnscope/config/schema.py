"""Pydantic schemas of everything needed to rebuild a task, a model and its training.

A run configuration is plain data: it is written to ``runs/<name>/config.json`` and read back to
rebuild the run. Unknown keys are rejected (``extra="forbid"``) and every number is range-checked,
so a typo or an impossible value fails at once with the key's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from rnnscope.tasks.hmm import HMM


class Strict(BaseModel):
    """Base model: unknown keys are errors; assignments are re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class HMMTaskConfig(Strict):
    """A hidden Markov model to emulate (see ``rnnscope.tasks.hmm`` for the builders).

    ``transition``: ``linear_chain`` (by ``target_prob``, or by ``stay_prob`` when ``target_prob`` is
    None — the reference's legacy rule), ``fully_connected`` (``stay_prob`` on the diagonal, the rest
    spread evenly), ``cyclic`` (a ring: ``stay_prob`` on the diagonal, the rest split between the two
    neighbours) or ``custom`` (``custom_transition``). ``emission``: ``linear``, ``gaussian`` (legacy),
    ``triangular`` (``emission_peak`` on the diagonal) or ``custom`` (``custom_emission``).
    """

    kind: Literal["hmm"] = "hmm"
    n_states: int = Field(2, ge=1, le=256)
    n_outputs: int = Field(3, ge=2, le=256)
    transition: Literal["linear_chain", "fully_connected", "cyclic", "custom"] = "linear_chain"
    target_prob: float | None = Field(0.05, gt=0.0, lt=1.0)
    stay_prob: float | None = Field(None, ge=0.0, le=1.0)
    emission: Literal["linear", "gaussian", "triangular", "custom"] = "linear"
    emission_peak: float = Field(0.98, gt=0.0, le=1.0)
    custom_transition: list[list[float]] | None = None
    custom_emission: list[list[float]] | None = None
    start: Literal["uniform", "stationary"] | list[float] = "uniform"

    @model_validator(mode="after")
    def _check_choices(self) -> "HMMTaskConfig":
        if self.transition == "custom" and self.custom_transition is None:
            raise ValueError("transition='custom' needs custom_transition (an n_states x n_states list)")
        if self.emission == "custom" and self.custom_emission is None:
            raise ValueError("emission='custom' needs custom_emission (an n_states x n_outputs list)")
        needs_stay = self.transition in ("fully_connected", "cyclic") or (
            self.transition == "linear_chain" and self.target_prob is None
        )
        if needs_stay and self.stay_prob is None:
            raise ValueError(f"transition={self.transition!r} needs stay_prob")
        return self

    def build(self) -> "HMM":
        """Build the :class:`rnnscope.tasks.hmm.HMM` this configuration describes."""
        from rnnscope.tasks.hmm import hmm_from_config

        return hmm_from_config(self)


class DataConfig(Strict):
    """Training data drawn from the task: ``num_seq`` sequences of ``seq_len`` steps, split train/val/test."""

    num_seq: int = Field(30_000, ge=3)
    seq_len: int = Field(100, ge=1, le=100_000)
    split: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3)

    @model_validator(mode="after")
    def _check_split(self) -> "DataConfig":
        if any(s <= 0 for s in self.split) or abs(sum(self.split) - 1.0) > 1e-6:
            raise ValueError(f"split must be three positive fractions summing to 1; got {self.split}")
        return self


class NoiseRNNConfig(Strict):
    """The noise-driven RNN: ``h_t = φ(W_hh h_{t-1} + W_ih x_t [+ b])``, ``x_t ~ N(0, noise_std² I)``.

    ``h0``: ``zeros`` (the paper's configurations) or ``normal`` (N(0, 1) per sequence).
    ``tau``: temperature of the hard Gumbel-softmax readout used in training.
    """

    kind: Literal["noise_rnn"] = "noise_rnn"
    input_size: int = Field(100, ge=1, le=100_000)
    hidden_size: int = Field(150, ge=1, le=100_000)
    nonlinearity: Literal["relu", "tanh"] = "relu"
    bias: bool = False
    readout_bias: bool = False
    noise_std: float = Field(1.0, gt=0.0)
    h0: Literal["zeros", "normal"] = "zeros"
    tau: float = Field(1.0, gt=0.0)


class LossConfig(Strict):
    """The distribution-matching loss between generated and target one-hot sequences.

    ``sinkhorn``: debiased Sinkhorn divergence with cost ``|x-y|^p / p``, entropic blur ``blur``
    (ε = blur^p) and ε-scaling ratio ``scaling`` — geomloss's conventions; the reference's effective
    setting is blur 0.2, p 2, scaling 0.5. ``mmd``: Gaussian-kernel MMD with bandwidth ``bandwidth``
    (in units of sqrt(seq_len)). ``energy``: the energy distance.
    """

    name: Literal["sinkhorn", "mmd", "energy"] = "sinkhorn"
    blur: float = Field(0.2, gt=0.0)
    p: Literal[1, 2] = 2
    scaling: float = Field(0.5, gt=0.0, lt=1.0)
    bandwidth: float = Field(1.0, gt=0.0)


class TrainingConfig(Strict):
    """Optimisation settings (Adam, the reference's betas (0.9, 0.9), gradient-norm clipping).

    ``learning_rates``: each is tried from the same initial weights and the best (lowest best
    validation loss) is kept, as the reference does. ``val_every``: validate every k epochs (and
    always at the last epoch). ``snapshot_every``: save weights every k epochs (0 = never), for the
    training-evolution analysis.
    """

    epochs: int = Field(500, ge=1)
    batch_size: int = Field(4096, ge=1)
    learning_rates: list[float] = Field(default_factory=lambda: [1e-3], min_length=1)
    betas: tuple[float, float] = (0.9, 0.9)
    weight_decay: float = Field(0.0, ge=0.0)
    grad_clip: float | None = Field(0.9, gt=0.0)
    loss: LossConfig = Field(default_factory=LossConfig)
    val_every: int = Field(5, ge=1)
    snapshot_every: int = Field(0, ge=0)
    divergence_factor: float = Field(1e3, gt=1.0)

    @model_validator(mode="after")
    def _check_rates(self) -> "TrainingConfig":
        if any(lr <= 0 for lr in self.learning_rates):
            raise ValueError(f"learning_rates must be positive; got {self.learning_rates}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1); got {self.betas}")
        return self


class HMMRunConfig(Strict):
    """Everything needed to rebuild an HMM-emulation run."""

    system: Literal["hmm"] = "hmm"
    name: str = Field("run", min_length=1)
    description: str = ""
    seed: int = Field(0, ge=0)
    task: HMMTaskConfig = Field(default_factory=HMMTaskConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    model: NoiseRNNConfig = Field(default_factory=NoiseRNNConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @property
    def hmm(self) -> "HMM":
        """The HMM of this configuration."""
        return self.task.build()


RunConfig = Union[HMMRunConfig]
"""Any run configuration; its ``system`` key says which (see :data:`RUN_CONFIG_TYPES`)."""

RUN_CONFIG_TYPES: dict[str, type[Strict]] = {"hmm": HMMRunConfig}
"""Run-configuration class for each value of the ``system`` key."""
