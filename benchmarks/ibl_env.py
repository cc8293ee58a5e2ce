"""Benchmark the batched IBL environment in a closed loop with a 50-unit tanh RNN.

    python benchmarks/ibl_env.py [--repeats 3] [--batch 256] [--blocks 1000]

Prints the median of several runs of:

1. RNN steps per second at batch 256 (sessions of 4 blocks; a ``torch.nn.RNNCell(3, 50)`` +
   ``Linear(50, 2)`` + softmax policy stepping inside the loop under ``torch.no_grad()``), counting
   only steps of sessions still running; the target is ≥ 100 000 steps/s;
2. the time to record one single-session analysis run of ``--blocks`` blocks with hidden states
   (record built once at the end), and the time of the exact ideal observer on it;
3. an estimate of the reference's cost for the same session: its per-step pandas ``.at`` writes of
   17 cells plus a float64 batch-1 ``torch.nn.RNN`` step, timed over 1000 steps and scaled.

Timings on a shared machine are inflated by other processes' load; medians limit the effect.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd
import torch

from rnnscope.tasks.ibl.env import IBLEnv
from rnnscope.tasks.ibl.observers import observe_session
from rnnscope.tasks.ibl.rollout import run_analysis_session, torch_threads

REFERENCE_CELLS_PER_STEP = 17


class RNNPolicy:
    """h_t = tanh(W_ih x_t + W_hh h_{t−1} + b); p_t = softmax(W_out h_t + b_out)."""

    def __init__(self, hidden_size: int = 50, readout_gain: float = 1.0, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.cell = torch.nn.RNNCell(3, hidden_size, nonlinearity="tanh")
        self.readout = torch.nn.Linear(hidden_size, 2)
        with torch.no_grad():
            self.readout.weight.mul_(readout_gain)

    def reset(self, batch_size: int) -> None:
        self.hidden = torch.zeros(batch_size, self.cell.hidden_size)

    def act(self, x: torch.Tensor) -> torch.Tensor:
        self.hidden = self.cell(x, self.hidden)
        return torch.softmax(self.readout(self.hidden), dim=1)


def closed_loop_steps_per_second(batch: int, n_threads: int, seed: int) -> tuple[float, int]:
    """(active RNN steps per second, active steps) of one closed-loop run of ``batch`` 4-block sessions.

    Steps of sessions that have already finished are stepped too (masked) but not counted.
    """
    policy = RNNPolicy(seed=seed)
    env = IBLEnv(n_sessions=batch, seed=seed)
    with torch.no_grad(), torch_threads(n_threads):
        start = time.perf_counter()
        x = env.reset()
        policy.reset(batch)
        active_steps_b = torch.zeros(batch, dtype=torch.int64)
        while True:
            active_steps_b += env.done.logical_not()
            x = env.step(policy.act(x)).x
            if env.n_steps % 32 == 0 and env.all_done():
                break
        elapsed = time.perf_counter() - start
    steps = int(active_steps_b.sum())
    return steps / elapsed, steps


def reference_step_cost(n_steps: int = 1000) -> float:
    """Seconds per step of the reference loop: 17 pandas ``.at`` writes + a float64 batch-1 RNN step."""
    columns = [f"c{i}" for i in range(REFERENCE_CELLS_PER_STEP)]
    frame = pd.DataFrame(np.zeros((n_steps, len(columns)), dtype=np.float16), columns=columns)
    rnn = torch.nn.RNN(3, 50, batch_first=True).double()
    readout = torch.nn.Linear(50, 2).double()
    x = torch.zeros(1, 1, 3, dtype=torch.float64)
    h = None
    with torch.no_grad(), torch_threads(1):
        start = time.perf_counter()
        for t in range(n_steps):
            out, h = rnn(x, h)
            probs = torch.softmax(readout(out[:, -1]), dim=1)
            for column in columns:
                frame.at[t, column] = float(probs[0, 0])
        elapsed = time.perf_counter() - start
    return elapsed / n_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--blocks", type=int, default=1000)
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads available; medians of {args.repeats} runs")
    for n_threads in (1, 2):
        runs = [closed_loop_steps_per_second(args.batch, n_threads, seed) for seed in range(args.repeats)]
        rates = [rate for rate, _ in runs]
        print(
            f"closed loop, batch {args.batch}, {n_threads} thread(s): median {statistics.median(rates):,.0f} "
            f"RNN steps/s (runs: {', '.join(f'{r:,.0f}' for r in rates)}; {runs[0][1]:,} steps per run)"
        )

    policy = RNNPolicy(readout_gain=25.0)
    record_times, observe_times = [], []
    for seed in range(args.repeats):
        start = time.perf_counter()
        record = run_analysis_session(policy, n_blocks=args.blocks, seed=seed, record="hidden")
        record_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        observe_session(record)
        observe_times.append(time.perf_counter() - start)
    steps_per_trial = record.n_steps / record.n_trials
    ours = statistics.median(record_times)
    print(
        f"analysis session, 1 session x {args.blocks} blocks ({record.n_trials:,} trials, {record.n_steps:,} steps, "
        f"{steps_per_trial:.2f} steps/trial), hidden states recorded: median {ours:.1f} s "
        f"({ours / record.n_steps * 1e6:.0f} us/step); exact ideal observer on it: "
        f"median {statistics.median(observe_times):.1f} s"
    )
    reference = statistics.median(reference_step_cost() for _ in range(args.repeats)) * record.n_steps
    print(
        f"reference estimate for the same {record.n_steps:,} steps (17 pandas .at writes + float64 RNN step "
        f"per step): {reference:.1f} s -> ratio {reference / ours:.1f}x"
    )


if __name__ == "__main__":
    main()
