"""Benchmark: rnnscope's debiased Sinkhorn divergence against geomloss (tensorized) on one-hot batches.

Two batches of 4096 one-hot sequences (T = 100 steps, K = 3 symbols, so D = 300) are drawn from two
slightly different sticky 2-state HMMs. For each implementation the script times forward+backward
and forward only (validation, under ``torch.no_grad``), prints the median of several runs, the
ratio, the agreement of values and gradients, and the peak resident memory. Process CPU time is
printed beside wall time: on a machine shared with other jobs it is the steadier figure (with all
threads busy, wall ≈ CPU / threads).

    python benchmarks/sinkhorn.py [--n 4096] [--steps 100] [--runs 5] [--reference-runs 3] [--no-reference]

Our timings run first, so the peak memory printed after them is rnnscope's alone (geomloss's is
larger and is printed after its runs). The machine's other load inflates every timing alike.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from rnnscope.training.losses import SinkhornLoss
from rnnscope.training.sinkhorn import sinkhorn_divergence


def hmm_sequences(n: int, steps: int, seed: int, stay: float, peak: float) -> torch.Tensor:
    """One-hot (n, steps, 3) outputs of a sticky 2-state HMM (state 0 favours symbol 0, state 1 symbol 2)."""
    g = torch.Generator().manual_seed(seed)
    side = (1.0 - peak) / 2
    emissions = torch.tensor([[peak, side, side], [side, side, peak]])
    transitions = torch.tensor([[stay, 1 - stay], [1 - stay, stay]])
    state = torch.randint(0, 2, (n,), generator=g)
    symbols = []
    for _ in range(steps):
        symbols.append(torch.multinomial(emissions[state], 1, generator=g).squeeze(1))
        state = torch.multinomial(transitions[state], 1, generator=g).squeeze(1)
    return torch.nn.functional.one_hot(torch.stack(symbols, 1), 3).float()


def median_seconds(fn, runs: int) -> tuple[float, float]:
    """Median wall-clock seconds and median process CPU seconds of ``runs`` calls of ``fn``."""
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096, help="sequences per batch")
    parser.add_argument("--steps", type=int, default=100, help="sequence length T")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of rnnscope per measurement")
    parser.add_argument("--reference-runs", type=int, default=3, help="timed runs of geomloss per measurement")
    parser.add_argument("--no-reference", action="store_true", help="skip geomloss")
    args = parser.parse_args()

    generated = hmm_sequences(args.n, args.steps, seed=1, stay=0.9, peak=0.75)
    target = hmm_sequences(args.n, args.steps, seed=2, stay=0.95, peak=0.8)
    print(f"batches: {args.n} x {args.steps} x 3 one-hot (D = {3 * args.steps}); threads: {torch.get_num_threads()}")
    base_rss = peak_rss_mib()

    loss = SinkhornLoss(blur=0.2, p=2, scaling=0.5)

    def ours_train(key=("train", 0)):
        x = generated.clone().requires_grad_(True)
        value = loss(x, target, target_key=key)
        value.backward()
        return value.detach(), x.grad

    def ours_validate(key=("val", 0)):
        with torch.no_grad():
            return loss(generated, target, target_key=key)

    start = time.perf_counter()
    value, grad = ours_train()
    first_call = time.perf_counter() - start
    ours_validate()
    rows = {
        "fwd+bwd (cached target, training)": median_seconds(ours_train, args.runs),
        "fwd only (cached target, validation)": median_seconds(ours_validate, args.runs),
        "fwd+bwd (no cache)": median_seconds(lambda: ours_train(None), args.runs),
        "fwd only (no cache)": median_seconds(lambda: ours_validate(None), args.runs),
    }
    ours_rss = peak_rss_mib()
    print(f"rnnscope first call (kernel build or cache load, target preparation): {first_call:.3f} s")
    for name, (wall, cpu) in rows.items():
        print(f"rnnscope {name:40s} median {wall * 1e3:8.1f} ms wall, {cpu * 1e3:8.1f} ms CPU ({args.runs} runs)")
    print(f"rnnscope peak RSS {ours_rss:.0f} MiB (process baseline {base_rss:.0f} MiB)")
    print(f"rnnscope value {float(value):.6f}")
    if args.no_reference:
        return

    from geomloss import SamplesLoss

    reference = SamplesLoss("sinkhorn", p=2, blur=0.2, scaling=0.5, debias=True, backend="tensorized")
    flat_x, flat_y = generated.reshape(args.n, -1), target.reshape(args.n, -1)

    def geomloss_train():
        x = flat_x.clone().requires_grad_(True)
        value = reference(x, flat_y)
        value.backward()
        return value.detach(), x.grad

    def geomloss_validate():
        with torch.no_grad():
            return reference(flat_x, flat_y)

    ref_value, ref_grad = geomloss_train()
    ref_rows = {
        "fwd+bwd (cached target, training)": median_seconds(geomloss_train, args.reference_runs),
        "fwd only (cached target, validation)": median_seconds(geomloss_validate, args.reference_runs),
    }
    print(f"geomloss peak RSS {peak_rss_mib():.0f} MiB")
    for name, (wall, cpu) in ref_rows.items():
        kind = name.split(" (")[0]
        uncached = rows[kind + " (no cache)"]
        runs = args.reference_runs
        print(f"geomloss {kind:40s} median {wall * 1e3:8.1f} ms wall, {cpu * 1e3:8.1f} ms CPU ({runs} runs)")
        print(f"   ratio geomloss / rnnscope {name}: {wall / rows[name][0]:.1f}x wall, {cpu / rows[name][1]:.1f}x CPU;"
              f" without the cache: {wall / uncached[0]:.1f}x wall, {cpu / uncached[1]:.1f}x CPU")
    rel_value = abs(float(value) - float(ref_value)) / abs(float(ref_value))
    rel_grad = float((grad.reshape(args.n, -1) - ref_grad).norm() / ref_grad.norm())
    print(f"geomloss value {float(ref_value):.6f}; relative difference: value {rel_value:.2e}, gradient {rel_grad:.2e}")
    check = sinkhorn_divergence(generated, target)
    print(f"functional form value {float(check):.6f}")


if __name__ == "__main__":
    main()
