"""Benchmark closed-loop IBL training: time per gradient step, RNN steps per second, time to the paper.

    python benchmarks/ibl_train.py [--repeats 5] [--run RUN_DIR]

Prints medians of several runs of:

1. one gradient step of the ``ibl`` recipe (32 sessions of 4 blocks: closed-loop rollout without
   gradient, fused re-run, backward, SGD step), split into rollout and re-run + backward, for an
   untrained network (every trial times out: 12 steps per trial) and for the shipped trained one
   (about 3.3 steps per trial); with the RNN steps per second (steps of running sessions);
2. the reference's approach on one session (batch 1, float64, the closed loop itself recorded by
   autograd step by step, ``torch.nn.RNN`` + ``Linear`` + softmax as in ``utils/models.py``, then
   backward and SGD) — a lower bound of the reference's cost, which also writes ~17 pandas cells
   per step — and the ratio of the two per *session* trained;
3. the time to the paper's behaviour, read from a training run's ``history.csv`` (``--run``; by
   default the ``ibl`` preset is trained into a temporary directory, ~10 minutes): the first
   validation with zero-contrast accuracy within 0.05 of the paper's 0.72 (concordant) and 0.27
   (discordant) and at most 3.5 steps per trial.

Timings on the shared 2-core test machine are inflated by other processes' load; medians limit it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rnnscope.config import preset
from rnnscope.tasks.ibl import IBLEnv, IBLTaskParams
from rnnscope.tasks.ibl.rollout import torch_threads
from rnnscope.training.ibl_losses import session_loss
from rnnscope.training.ibl_trainer import IBLTrainHistory, initial_model, make_optimizer, rollout

PAPER_ZERO_CONTRAST = (0.72, 0.27)
TOLERANCE = 0.05
MAX_STEPS_PER_TRIAL = 3.5


def gradient_step_times(model: torch.nn.Module, repeats: int, seed: int = 0) -> dict[str, float]:
    """Median seconds of the rollout and of the re-run + backward + step, and RNN steps per second."""
    config = preset("ibl")
    optimizer = make_optimizer(model, config.training)
    env = IBLEnv(config.params, config.training.sessions_per_step, seed=seed, dtype=model.dtype)
    rollouts, updates, steps = [], [], []
    with torch_threads(1):
        for _ in range(repeats):
            t0 = time.perf_counter()
            ro = rollout(model, env)
            t1 = time.perf_counter()
            logits = model(ro.inputs.transpose(0, 1)).logits.transpose(0, 1)
            loss = session_loss(logits, ro.trial_side, ro.is_observation, ro.n_steps, config.training.loss)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            t2 = time.perf_counter()
            rollouts.append(t1 - t0)
            updates.append(t2 - t1)
            steps.append(int(ro.n_steps.sum()) / (t2 - t0))
            trials = int(ro.trial_end.sum())
    return {
        "rollout": statistics.median(rollouts),
        "update": statistics.median(updates),
        "step": statistics.median(r + u for r, u in zip(rollouts, updates)),
        "rnn_steps_per_s": statistics.median(steps),
        "steps_per_trial": int(ro.n_steps.sum()) / trials,
    }


def reference_step_time(repeats: int, seed: int = 0) -> tuple[float, float]:
    """(median seconds, steps per trial) of one reference-style gradient step on one 4-block session."""
    from rnnscope.models.pretrained import pretrained

    trained = pretrained("ibl")
    rnn = torch.nn.RNN(3, 50, batch_first=True).double()
    readout = torch.nn.Linear(50, 2).double()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(trained.weight_ih)
        rnn.weight_hh_l0.copy_(trained.weight_hh)
        rnn.bias_ih_l0.copy_(trained.bias)
        rnn.bias_hh_l0.zero_()
        readout.weight.copy_(trained.weight_out)
        readout.bias.copy_(trained.bias_out)
    params = list(rnn.parameters()) + list(readout.parameters())
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.1)
    env = IBLEnv(IBLTaskParams(), 1, seed=seed, dtype=torch.float64)
    times, per_trial = [], []
    with torch_threads(1):
        for _ in range(repeats):
            t0 = time.perf_counter()
            x, h = env.reset(), None
            losses, n_steps, n_trials = [], 0, 0
            while not env.all_done():
                out, h = rnn(x[:, None, :], h)
                probs = torch.softmax(readout(out[:, 0]), dim=1)
                step = env.step(probs)
                if bool(step.is_observation):
                    losses.append(-probs[0, int(step.trial_side > 0)])
                n_steps += 1
                n_trials += int(step.trial_end)
                x = step.x
            loss = torch.stack(losses).sum() / n_steps
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - t0)
            per_trial.append(n_steps / n_trials)
    return statistics.median(times), statistics.median(per_trial)


def time_to_paper(run_dir: Path) -> tuple[int | None, float | None, float]:
    """(first gradient step at the paper's behaviour, seconds to reach it, total seconds) from history.csv."""
    history = IBLTrainHistory.read_csv(run_dir / "history.csv")
    seconds = np.cumsum(history["seconds"])
    for i in np.flatnonzero(np.isfinite(history["val_accuracy"])):
        concordant, discordant = history["val_zero_concordant"][i], history["val_zero_discordant"][i]
        if (abs(concordant - PAPER_ZERO_CONTRAST[0]) <= TOLERANCE and abs(discordant - PAPER_ZERO_CONTRAST[1]) <= TOLERANCE
                and history["val_steps_per_trial"][i] <= MAX_STEPS_PER_TRIAL):
            return int(history.step[i]), float(seconds[i]), float(seconds[-1])
    return None, None, float(seconds[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--run", type=Path, default=None, help="a trained `ibl` run directory (else train one)")
    args = parser.parse_args()
    from rnnscope.models.pretrained import pretrained

    config = preset("ibl")
    sessions = config.training.sessions_per_step
    for label, model in (("untrained", initial_model(config)), ("trained (shipped ibl)", pretrained("ibl"))):
        t = gradient_step_times(model, args.repeats)
        print(f"gradient step, {sessions} sessions, {label}: {t['step']:.3f} s (rollout {t['rollout']:.3f} s, "
              f"re-run + backward + step {t['update']:.3f} s); {t['rnn_steps_per_s']:,.0f} RNN steps/s; "
              f"{t['steps_per_trial']:.2f} steps/trial")
        if label.startswith("trained"):
            ours_per_session = t["step"] / sessions
    ref, ref_steps = reference_step_time(max(3, args.repeats // 2))
    print(f"reference approach, 1 session (batch 1, float64, per-step autograd), trained network: {ref:.3f} s "
          f"({ref_steps:.2f} steps/trial)")
    print(f"per session trained: rnnscope {ours_per_session * 1e3:.1f} ms vs reference ≥ {ref * 1e3:.1f} ms: "
          f"{ref / ours_per_session:.0f}× faster; the reference's 100 001 sessions ≥ {100_001 * ref / 3600:.1f} h")

    run_dir = args.run
    if run_dir is None:
        from rnnscope.training.ibl_trainer import train_ibl_run
        from rnnscope.training.runs import RunDir

        run = RunDir(Path(tempfile.mkdtemp()) / "ibl")
        run.path.mkdir(parents=True)
        run.write_config(config)
        train_ibl_run(config, run, progress=True, tensorboard=False)
        run_dir = run.path
    step, seconds, total = time_to_paper(run_dir)
    if step is None:
        print(f"the run never reached the paper's behaviour on its validation sessions ({total / 60:.1f} min)")
    else:
        print(f"paper's behaviour (validation: c=0 within {TOLERANCE} of {PAPER_ZERO_CONTRAST}, ≤ "
              f"{MAX_STEPS_PER_TRIAL} steps/trial) first at step {step}: {seconds / 60:.1f} min "
              f"(whole run {total / 60:.1f} min)")


if __name__ == "__main__":
    main()
