"""Benchmark: the noise-driven RNN's training pass and its generation, against the reference's approach.

Training pass, per batch (B=4096, T=100, H=150, I=100, K=3), including drawing the noise:
  * rnnscope: ``NoiseRNN.forward`` (fused recurrence, hard Gumbel-softmax) + backward of a scalar loss
    on the one-hot outputs;
  * reference path: ``torch.randn`` + ``torch.nn.RNN`` + ``nn.Linear`` + ``F.gumbel_softmax(hard=True)``
    + the same backward.
Generation of 10 000 sequences of length 100:
  * rnnscope: ``NoiseRNN.generate`` (batched over sequences);
  * reference approach: one sequence at a time, one Python step at a time (``nn.RNN`` on a single
    vector, ``nn.Linear``, ``F.gumbel_softmax``). Only a few hundred steps are timed and the time is
    extrapolated to the 10^6 steps, which the output says.

Run: ``python benchmarks/rnn_forward_backward.py [--repeats 5] [--quick]``. Timings are medians over
``--repeats`` runs (after one warm-up); on a shared machine they are inflated by other processes.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from rnnscope.models.noise_rnn import NoiseRNN


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    """Median wall-clock seconds of ``repeats`` calls, after one untimed warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def training_pass(model: NoiseRNN, batch: int, seq_len: int, generator: torch.Generator) -> Callable[[], None]:
    weights = torch.randn(batch, seq_len, model.output_size, generator=generator)

    def run() -> None:
        model.zero_grad(set_to_none=True)
        out = model(batch, seq_len, generator=generator)
        (out.onehot * weights).sum().backward()

    return run


def reference_training_pass(
    rnn: torch.nn.RNN, fc: torch.nn.Linear, batch: int, seq_len: int, generator: torch.Generator
) -> Callable[[], None]:
    weights = torch.randn(batch, seq_len, fc.out_features, generator=generator)

    def run() -> None:
        rnn.zero_grad(set_to_none=True)
        fc.zero_grad(set_to_none=True)
        noise = torch.randn(batch, seq_len, rnn.input_size, generator=generator)
        hidden, _ = rnn(noise)
        onehot = F.gumbel_softmax(fc(hidden), tau=1.0, hard=True)
        (onehot * weights).sum().backward()

    return run


def reference_generation_steps(rnn: torch.nn.RNN, fc: torch.nn.Linear, steps: int) -> Callable[[], None]:
    """``steps`` single-vector Python steps, the way the reference's ``gen_seq`` runs one sequence."""

    def run() -> None:
        with torch.no_grad():
            h = torch.zeros(1, 1, rnn.hidden_size)
            outputs = []
            for _ in range(steps):
                hidden, h = rnn(torch.randn(1, 1, rnn.input_size), h)
                onehot = F.gumbel_softmax(fc(hidden), tau=1.0, hard=True)
                outputs.append(onehot.argmax(-1))
            torch.cat(outputs)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median reported)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    args = parser.parse_args()
    batch, seq_len, hidden, inputs, outputs = (256, 20, 150, 100, 3) if args.quick else (4096, 100, 150, 100, 3)
    num_seq = 500 if args.quick else 10_000
    reference_steps = 300

    torch.manual_seed(0)
    model = NoiseRNN(inputs, hidden, outputs)
    rnn = torch.nn.RNN(inputs, hidden, nonlinearity="relu", bias=False, batch_first=True)
    fc = torch.nn.Linear(hidden, outputs, bias=False)
    generator = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.repeats} runs")
    print(f"training pass, B={batch} T={seq_len} H={hidden} I={inputs} K={outputs} (noise + forward + backward):")

    mine = median_seconds(training_pass(model, batch, seq_len, generator), args.repeats)
    reference = median_seconds(reference_training_pass(rnn, fc, batch, seq_len, generator), args.repeats)
    print(f"  rnnscope NoiseRNN                      {mine:8.3f} s")
    print(f"  nn.RNN + F.gumbel_softmax (reference)  {reference:8.3f} s   ratio {reference / mine:5.1f}x")

    print(f"generation of {num_seq} sequences of length {seq_len}:")
    generation = median_seconds(lambda: model.generate(num_seq, seq_len, seed=0), args.repeats)
    per_step = median_seconds(reference_generation_steps(rnn, fc, reference_steps), args.repeats) / reference_steps
    extrapolated = per_step * num_seq * seq_len
    print(f"  rnnscope NoiseRNN.generate             {generation:8.3f} s")
    print(
        f"  per-step Python loop (reference)       {extrapolated:8.1f} s   ratio {extrapolated / generation:5.0f}x"
        f"   (extrapolated from {reference_steps} timed steps: {per_step * 1e6:.0f} µs/step)"
    )


if __name__ == "__main__":
    main()
