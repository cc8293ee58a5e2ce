"""Benchmark: exact ReLU fixed points / 2-cycles and gradient slow points on an H = 150, I = 100 network.

    python benchmarks/fixedpoints.py [--repeats 3] [--threads N]

The network is a random bias-free ReLU RNN (the HMM-emulator architecture) with spectral radius
ρ(W_hh) = 1, driven by N(0, 1) noise: its activity is bounded and varied (about half the units active).
Targets (2 cores): the exact finder seeded from 10 000 visited states ≤ 30 s; the gradient finder from
1 000 initial states ≤ 30 s. Reference approach (hmmrnn's statespace.py): 30 000 noise-driven steps to
draw 100 initial conditions, then the "fixed point" as the mean end state of 100 autonomous runs of 500
steps, all stepped one vector at a time with a ``.item()`` per step; compared with
``autonomous_collapse`` (which also checks residuals, spread, exact fixed points and growth rates).
Prints medians over ``--repeats`` runs; timings on a shared machine include its load, and torch's
OpenMP threads slow small batched operations down badly when other processes hold the cores (compare
``--threads 1``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from rnnscope.analysis.fixedpoints import autonomous_collapse, find_fixed_points, sample_states
from rnnscope.analysis.simulate import simulate
from rnnscope.models.vanilla import VanillaRNN

H, I, K = 150, 100, 3
FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "hmmrnn_2state_h150_i100.pth"


def random_network(seed: int = 0) -> VanillaRNN:
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((H, H)) / np.sqrt(H)
    W /= np.abs(np.linalg.eigvals(W)).max()
    return VanillaRNN.from_weights(W, rng.standard_normal((H, I)) / np.sqrt(I), None, rng.standard_normal((K, H)))


def timed(function, repeats: int):
    """(median seconds, last result) of ``repeats`` calls."""
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def reference_fixed_point(model: VanillaRNN, n_initial: int = 100, steps: int = 500, seed: int = 0) -> np.ndarray:
    """The reference's pipeline, one vector and one step at a time with a ``.item()`` per step: 30 000
    noise-driven steps from h = 0, ``n_initial`` of the visited states as initial conditions, ``steps``
    autonomous steps from each; the "fixed point" is the mean end state."""
    generator = torch.Generator().manual_seed(seed)
    W, W_in, W_out = model.weight_hh.detach(), model.weight_ih.detach(), model.weight_out.detach()
    visited = []
    with torch.no_grad():
        h = torch.zeros(H)
        for _ in range(30_000):
            h = torch.relu(W @ h + W_in @ torch.randn(I, generator=generator))
            torch.argmax(W_out @ h).item()
            visited.append(h)
        rows = torch.randperm(len(visited), generator=generator)[:n_initial]
        ends = []
        for row in rows.tolist():
            h = visited[row]
            for _ in range(steps):
                h = torch.relu(W @ h)
                torch.argmax(W_out @ h).item()
            ends.append(h.numpy())
    return np.mean(ends, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} runs")
    model = random_network()
    seconds, sim = timed(lambda: simulate(model, 100, 100, noise_std=1.0, warmup=100, seed=0), args.repeats)
    states = sim.states()
    print(f"simulate 100 × (100 + 100 warm-up) steps: {seconds:.3f} s; {states.shape[0]} visited states, "
          f"mean ‖h‖ {np.linalg.norm(states, axis=1).mean():.2f}, fraction active {(states > 0).mean():.2f}")

    u = np.random.default_rng(1).standard_normal(I)
    for label, value in (("no input (c = 0)", None), ("constant input u ~ N(0, I)", u)):
        seconds, report = timed(lambda: find_fixed_points(model, value, method="exact", initial_states=states,
                                                          max_period=2), args.repeats)
        print(f"exact, {label}, seeded from {states.shape[0]} states, fixed points + 2-cycles: {seconds:.2f} s "
              f"(target ≤ 30 s); {report.settings['n_sequences']} regions solved for fixed points, "
              f"{len(report)} point(s) {report.stability}, {len(report.cycles)} 2-cycle(s)")

    initial = sample_states(states, 1000, seed=2)
    seconds, report = timed(lambda: find_fixed_points(model, u, method="gradient", initial_states=initial),
                            args.repeats)
    print(f"gradient, constant input, 1000 initial states: {seconds:.2f} s (target ≤ 30 s); "
          f"{len(report)} point(s) {report.stability}, max speed {report.speeds.max():.1e}")

    reference_seconds, reference = timed(lambda: reference_fixed_point(model), 1)
    seconds, collapse = timed(lambda: autonomous_collapse(model, n_initial=100, steps=500), args.repeats)
    print(f"no-input fixed point from 100 visited states × 500 steps: reference loop {reference_seconds:.2f} s "
          f"(mean end state ‖·‖ {np.linalg.norm(reference):.1e}), autonomous_collapse {seconds:.2f} s "
          f"(ratio {reference_seconds / seconds:.1f}×; also residuals, spread, exact fixed points, growth rates); "
          f"collapsed: {collapse.collapsed}, max growth rate {np.max(collapse.growth_rates):.3f}")

    if FIXTURE.is_file():
        state = torch.load(FIXTURE, map_location="cpu", weights_only=True)
        fixture = VanillaRNN.from_weights(state["rnn.weight_hh_l0"].clone(), state["rnn.weight_ih_l0"].clone(), None,
                                          state["fc.weight"].clone())
        seconds, collapse = timed(lambda: autonomous_collapse(fixture), args.repeats)
        print(f"reference fixture: autonomous_collapse {seconds:.2f} s; median ‖h_500‖ "
              f"{np.median(collapse.end_norms):.1e}, growth rates in [{collapse.growth_rates.min():.4f}, "
              f"{collapse.growth_rates.max():.4f}], collapsed: {collapse.collapsed}")


if __name__ == "__main__":
    main()
