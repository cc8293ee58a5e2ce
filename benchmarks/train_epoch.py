"""Seconds per training epoch on the hmm-two paper configuration: rnnscope vs the reference's approach.

The paper configuration: 10 000 training and 10 000 validation sequences, T = 100, H = 150, I = 100,
batch 4096, Sinkhorn divergence (blur 0.2). rnnscope's epoch is timed with validation every epoch and
at the default cadence (training.val_every = 5, i.e. one fifth of a validation pass per epoch). The
reference's epoch is ``torch.nn.RNN`` + ``F.gumbel_softmax`` + ``geomloss.SamplesLoss`` (tensorized)
over the same batches, as in EliaTorre/hmmrnn ``rnn.py``.

Usage: python benchmarks/train_epoch.py [--runs 3] [--reference-runs 1] [--skip-reference]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from rnnscope.config import apply_overrides, preset
from rnnscope.training.data import make_hmm_data
from rnnscope.training.hmm_trainer import _run_epoch, initial_model
from rnnscope.training.losses import make_loss


def rnnscope_epochs(runs: int) -> tuple[list[float], list[float], float]:
    """Per-epoch seconds with validation every epoch and without validation; peak RSS in MiB."""
    config = apply_overrides(preset("hmm-two"), {"training.val_every": 1})
    data = make_hmm_data(config)
    model = initial_model(config, config.hmm.n_outputs)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.9))
    generator = torch.Generator().manual_seed(0)
    loss = make_loss(config.training.loss)
    no_val = apply_overrides(config, {"training.val_every": 10_000, "training.epochs": 10_000})
    _run_epoch(model, optimizer, generator, loss, data, config, 0, 1, "cpu")  # warm-up (kernel build, caches)
    with_val, without_val = [], []
    for epoch in range(2, 2 + runs):
        start = time.perf_counter()
        _run_epoch(model, optimizer, generator, loss, data, config, 0, epoch, "cpu")
        with_val.append(time.perf_counter() - start)
        start = time.perf_counter()
        _run_epoch(model, optimizer, generator, loss, data, no_val, 0, epoch, "cpu")
        without_val.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return with_val, without_val, peak


def reference_epoch(runs: int) -> list[float]:
    """The reference's epoch: nn.RNN forward+backward, hard Gumbel-softmax, geomloss Sinkhorn."""
    import geomloss
    import torch.nn.functional as F

    config = preset("hmm-two")
    data = make_hmm_data(config)
    rnn = torch.nn.RNN(100, 150, nonlinearity="relu", bias=False, batch_first=True)
    fc = torch.nn.Linear(150, 3, bias=False)
    params = list(rnn.parameters()) + list(fc.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.9))
    criterion = geomloss.SamplesLoss("sinkhorn", p=2, blur=0.2, backend="tensorized")
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        noise = torch.randn(data.train.shape[0], 100, 100)
        for i in range(0, data.train.shape[0], 4096):
            target = data.train[i : i + 4096]
            optimizer.zero_grad()
            hidden, _ = rnn(noise[i : i + 4096], torch.zeros(1, target.shape[0], 150))
            out = F.gumbel_softmax(fc(hidden), tau=1.0, hard=True, eps=1e-10, dim=-1)
            value = criterion(out.reshape(out.shape[0], -1), target.reshape(target.shape[0], -1))
            value.backward()
            torch.nn.utils.clip_grad_norm_(params, 0.9)
            optimizer.step()
        with torch.no_grad():
            noise = torch.randn(data.val.shape[0], 100, 100)
            for i in range(0, data.val.shape[0], 4096):
                target = data.val[i : i + 4096]
                hidden, _ = rnn(noise[i : i + 4096], torch.zeros(1, target.shape[0], 150))
                out = F.gumbel_softmax(fc(hidden), tau=1.0, hard=True, eps=1e-10, dim=-1)
                criterion(out.reshape(out.shape[0], -1), target.reshape(target.shape[0], -1))
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--reference-runs", type=int, default=1)
    parser.add_argument("--skip-reference", action="store_true")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with_val, without_val, peak = rnnscope_epochs(args.runs)
    every = statistics.median(with_val)
    train_only = statistics.median(without_val)
    cadence = train_only + (every - train_only) / 5
    print(f"rnnscope, validation every epoch : median {every:6.2f} s  (runs: {', '.join(f'{t:.2f}' for t in with_val)})")
    print(f"rnnscope, no validation          : median {train_only:6.2f} s  (runs: {', '.join(f'{t:.2f}' for t in without_val)})")
    print(f"rnnscope, default cadence (1/5)  : {cadence:6.2f} s per epoch")
    print(f"rnnscope peak memory (max RSS)   : {peak:6.0f} MiB")
    if args.skip_reference:
        return
    reference = statistics.median(reference_epoch(args.reference_runs))
    print(f"reference (nn.RNN + geomloss)    : median {reference:6.2f} s per epoch (validation every epoch)")
    print(f"speed-up, validation every epoch : {reference / every:5.1f}x")
    print(f"speed-up, default cadence        : {reference / cadence:5.1f}x")


if __name__ == "__main__":
    main()
