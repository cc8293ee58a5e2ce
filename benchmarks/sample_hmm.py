"""Time sampling 30 000 sequences of length 100 from hmm-two, against the reference's approach.

rnnscope: ``preset("hmm-two").hmm.sample(30_000, 100)`` (vectorised over sequences), median of 5 runs.
Reference: hmmlearn ``CategoricalHMM.sample`` called once per sequence, as the reference's
``HMM.gen_seq`` does; timed on ``REFERENCE_SEQUENCES`` sequences and extrapolated linearly to 30 000
(the loop's cost is linear in the number of sequences).

Run: ``python benchmarks/sample_hmm.py``. The machine may be shared: the numbers are medians.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from rnnscope.config.presets import preset

NUM_SEQ, SEQ_LEN = 30_000, 100
REPEATS = 5
REFERENCE_SEQUENCES = 2_000


def time_rnnscope(hmm) -> float:
    """Median wall time (s) of one full vectorised sample."""
    times = []
    for repeat in range(REPEATS):
        start = time.perf_counter()
        hmm.sample(NUM_SEQ, SEQ_LEN, seed=repeat)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_reference(hmm) -> float | None:
    """Median wall time (s) of the per-sequence hmmlearn loop, extrapolated to NUM_SEQ sequences."""
    try:
        from hmmlearn.hmm import CategoricalHMM
    except ImportError:
        return None
    model = CategoricalHMM(n_components=hmm.n_states, n_features=hmm.n_outputs)
    model.startprob_, model.transmat_, model.emissionprob_ = hmm.start, hmm.transition, hmm.emission
    outputs = np.zeros((REFERENCE_SEQUENCES, SEQ_LEN))
    times = []
    for repeat in range(3):
        model.random_state = repeat
        start = time.perf_counter()
        for i in range(REFERENCE_SEQUENCES):
            observations, _ = model.sample(SEQ_LEN)
            outputs[i] = observations[:, 0]
        times.append(time.perf_counter() - start)
    return statistics.median(times) * NUM_SEQ / REFERENCE_SEQUENCES


def main() -> None:
    hmm = preset("hmm-two").hmm
    ours = time_rnnscope(hmm)
    print(f"rnnscope HMM.sample({NUM_SEQ}, {SEQ_LEN}) on hmm-two: median {ours:.3f} s over {REPEATS} runs")
    reference = time_reference(hmm)
    if reference is None:
        print("hmmlearn is not installed: reference timing skipped")
        return
    print(
        f"reference (hmmlearn CategoricalHMM.sample, one call per sequence): {reference:.1f} s for {NUM_SEQ} "
        f"(median of 3 runs on {REFERENCE_SEQUENCES} sequences, extrapolated linearly)"
    )
    print(f"speed-up: {reference / ours:.0f}x")


if __name__ == "__main__":
    main()
