"""Training data for HMM emulation: fixed target batches drawn once from the HMM."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from rnnscope.config.schema import HMMRunConfig
from rnnscope.core.random import child_seeds


@dataclass(frozen=True)
class HMMData:
    """One-hot target sequences, split like the reference (contiguous thirds by default).

    ``train``, ``val``, ``test``: float32 tensors of shape (N_split, T, K); ``test_outputs``: the test
    split as int64 symbols (N_test, T), kept for evaluation.
    """

    train: Tensor
    val: Tensor
    test: Tensor
    test_outputs: np.ndarray

    def batches(self, split: str, batch_size: int) -> list[Tensor]:
        """Contiguous batches of ``split`` in a fixed order (the reference does not shuffle)."""
        data = {"train": self.train, "val": self.val, "test": self.test}[split]
        return [data[i : i + batch_size] for i in range(0, data.shape[0], batch_size)]


def data_seed(config: HMMRunConfig) -> int:
    """The seed of the run's target data, derived from the run seed (independent of model/noise seeds)."""
    return child_seeds(config.seed, 3)[0]


def make_hmm_data(config: HMMRunConfig, device: torch.device | str = "cpu") -> HMMData:
    """Sample ``config.data.num_seq`` sequences from the run's HMM and split them."""
    from rnnscope.tasks.hmm import split_sequences

    hmm = config.hmm
    sample = hmm.sample(config.data.num_seq, config.data.seq_len, seed=data_seed(config))
    one_hot = torch.from_numpy(sample.one_hot(np.float32)).to(device)
    train, val, test = split_sequences(one_hot, config.data.split)
    _, _, test_outputs = split_sequences(sample.outputs, config.data.split)
    return HMMData(train=train, val=val, test=test, test_outputs=np.asarray(test_outputs))
