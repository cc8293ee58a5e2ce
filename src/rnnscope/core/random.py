"""One place that turns a user's ``seed`` argument into a random generator.

Every stochastic function in rnnscope takes ``seed``: an ``int`` (reproducible), an existing
``numpy.random.Generator`` or ``torch.Generator`` (used as is, so a caller can thread one generator
through several calls), or ``None`` (fresh entropy from the operating system).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

import numpy as np

if TYPE_CHECKING:
    import torch

Seed = Union[int, np.random.Generator, "torch.Generator", None]


def numpy_rng(seed: Seed) -> np.random.Generator:
    """Return a numpy Generator for ``seed``.

    A ``torch.Generator`` is accepted too: a numpy generator is seeded from one draw of it, so the
    result is still determined by the torch generator's state.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, (int, np.integer)):
        _check_int_seed(seed)
        return np.random.default_rng(seed)
    if _is_torch_generator(seed):
        import torch

        draw = int(torch.randint(0, 2**62, (1,), generator=seed).item())
        return np.random.default_rng(draw)
    raise TypeError(
        f"seed must be an int, a numpy.random.Generator, a torch.Generator or None; got {type(seed).__name__}"
    )


def torch_generator(seed: Seed, device: str | "torch.device" = "cpu") -> "torch.Generator":
    """Return a ``torch.Generator`` on ``device`` for ``seed``.

    A numpy Generator is accepted: the torch generator is seeded from one draw of it.
    """
    import torch

    if _is_torch_generator(seed):
        return seed
    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
        return gen
    if isinstance(seed, np.random.Generator):
        gen.manual_seed(int(seed.integers(0, 2**62)))
        return gen
    if isinstance(seed, (int, np.integer)):
        _check_int_seed(seed)
        gen.manual_seed(int(seed))
        return gen
    raise TypeError(
        f"seed must be an int, a numpy.random.Generator, a torch.Generator or None; got {type(seed).__name__}"
    )


def child_seeds(seed: Seed, n: int) -> list[int]:
    """Derive ``n`` independent integer seeds from ``seed`` (for sub-steps or parallel workers)."""
    if isinstance(seed, (int, np.integer)):
        _check_int_seed(seed)
        sequence = np.random.SeedSequence(int(seed))
        return [int(s.generate_state(1, dtype=np.uint64)[0] >> 2) for s in sequence.spawn(n)]
    rng = numpy_rng(seed)
    return [int(x) for x in rng.integers(0, 2**62, size=n)]


def _check_int_seed(seed: int | None) -> None:
    if seed is not None and int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed}")


def _is_torch_generator(obj: object) -> bool:
    return type(obj).__module__.startswith("torch") and type(obj).__name__ == "Generator"
