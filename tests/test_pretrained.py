"""The shipped trained models: they load, their stored metrics are reproducible, and they do the task."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rnnscope.config import preset
from rnnscope.config.ibl import IBLRunConfig
from rnnscope.errors import ConfigError
from rnnscope.evaluation.behaviour import evaluate_behaviour
from rnnscope.models.pretrained import (
    available_pretrained,
    pretrained,
    pretrained_config,
    pretrained_dir,
    pretrained_metrics,
)
from rnnscope.models.task_rnn import TaskRNN

PAPER_ZERO_CONTRAST = (0.72, 0.27)
"""The paper's 50-unit RNN at contrast 0: accuracy on concordant / discordant trials (figures, ±0.02)."""


def test_the_ibl_models_are_shipped_and_unknown_names_are_listed():
    names = available_pretrained()
    assert {"ibl", "ibl-2unit"} <= set(names)
    with pytest.raises(ConfigError, match="available: .*ibl"):
        pretrained("ibl-99unit")
    for name in ("ibl", "ibl-2unit"):
        assert (pretrained_dir() / f"{name}.safetensors").stat().st_size < 20_000


@pytest.mark.parametrize("name, hidden", [("ibl", 50), ("ibl-2unit", 2)])
def test_shipped_models_match_their_configurations(name, hidden):
    model = pretrained(name)
    config = pretrained_config(name)
    assert isinstance(model, TaskRNN) and isinstance(config, IBLRunConfig)
    assert model.system == "ibl" and model.hidden_size == hidden and model.cell == "tanh"
    assert model.to_config() == config.model
    # trained with the preset as it stands, without overrides
    assert config.model_dump(exclude={"description"}) == preset(name).model_dump(exclude={"description"})
    assert pretrained_metrics(name)["system"] == "ibl"


@pytest.mark.parametrize("name", ["ibl", "ibl-2unit"])
def test_stored_metrics_match_a_fresh_evaluation(name):
    """A fresh 200-block evaluation (other stimuli) agrees with the stored 1000-block one within 4 SE."""
    stored = pretrained_metrics(name)
    fresh = evaluate_behaviour(pretrained(name), pretrained_config(name).params, n_blocks=200, seed=7,
                               observer=False, actor=False)
    behaviour = fresh["rnn"]
    zero = np.flatnonzero(fresh.signed_contrasts == 0)
    checks = {
        "accuracy": behaviour.accuracy.trials.sum(),
        "zero_contrast_concordant": behaviour.accuracy_concordance.trials[1, zero].sum(),
        "zero_contrast_discordant": behaviour.accuracy_concordance.trials[0, zero].sum(),
    }
    head = fresh.headline("rnn")
    for key, n in checks.items():
        p = stored[f"rnn_{key}"]
        assert abs(head[key] - p) < 4 * np.sqrt(p * (1 - p) / n) + 1e-9, key
    assert head["steps_per_trial"] == pytest.approx(stored["rnn_steps_per_trial"], abs=0.1)


def test_the_shipped_ibl_network_behaves_like_the_papers():
    metrics = pretrained_metrics("ibl")
    assert abs(metrics["rnn_zero_contrast_concordant"] - PAPER_ZERO_CONTRAST[0]) < 0.04
    assert abs(metrics["rnn_zero_contrast_discordant"] - PAPER_ZERO_CONTRAST[1]) < 0.04
    assert metrics["rnn_pc2_cumulative"] >= 0.85  # a 2-D subspace
    assert metrics["rnn_recovered_accuracy"] >= 0.84 and metrics["rnn_recovery_trials"] <= 12
    assert metrics["rnn_first_trial_after_switch"] < metrics["rnn_recovered_accuracy"] - 0.1
    assert metrics["rnn_steps_per_trial_zero_contrast"] < 3.7 and metrics["rnn_timeout_rate"] < 0.01
    assert metrics["n_blocks"] == 1000


def test_the_two_unit_network_uses_the_block_prior_less():
    """The paper: the 2-unit task-trained RNN barely uses the block (c = 0: ≈0.55 / 0.44)."""
    large, small = pretrained_metrics("ibl"), pretrained_metrics("ibl-2unit")

    def block_effect(metrics):
        return metrics["rnn_zero_contrast_concordant"] - metrics["rnn_zero_contrast_discordant"]

    assert block_effect(small) < 0.5 * block_effect(large)


def test_the_pretrained_network_runs_closed_loop_deterministically():
    model = pretrained("ibl")
    x = torch.tensor([[0.0, 0.0, 0.0], [0.3, 2.1, 0.0], [1.0, -0.5, -0.05]])
    policy = model.policy()
    policy.reset(1)
    probs = torch.cat([policy.act(row[None]) for row in x])
    torch.testing.assert_close(probs, torch.softmax(model(x[None]).logits[0], dim=-1), atol=1e-6, rtol=0)
    assert float(probs[1, 1]) > 0.9  # a strong right stimulus at the first observation: act right
