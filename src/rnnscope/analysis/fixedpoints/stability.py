"""Eigenvalues of Jacobians, the stability label of a fixed point, and Möbius-map helpers.

Classification rule (``tol`` = ``marginal_tol``). Let ``g(λ) = |λ| − 1`` in discrete time (a map
``h ↦ F(h)``) and ``g(λ) = Re λ`` in continuous time (a flow ``dh/dt = F(h) − h``, whose Jacobian
eigenvalues are those of ``J_F − I``):

* **stable** — every ``g(λ) < −tol``; a **stable focus** if a dominant eigenvalue (one whose ``g`` is
  within ``tol`` of the largest) is complex (``|Im λ| > 1e-9·max(1, |λ|)``), else a **stable node**;
* **saddle** — some ``g(λ) > tol`` and some ``g(λ) < −tol``;
* **unstable** — some ``g(λ) > tol`` and none ``< −tol``;
* **marginal** — otherwise: no eigenvalue grows, and at least one has ``|g(λ)| ≤ tol`` (a line of
  fixed points, or a bifurcation); its stability is decided by the nonlinear terms.

Shapes: ``P`` points, ``H`` hidden units.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

TimeKind = Literal["discrete", "continuous"]

STABILITY_LABELS = ("stable node", "stable focus", "saddle", "unstable", "marginal")
"""Every label :func:`classify` returns."""

MARGINAL_TOL = 1e-6
"""Default ``tol``: eigenvalues with ``| |λ| − 1 | ≤ tol`` (or ``|Re λ| ≤ tol``) are marginal."""

COMPLEX_TOL = 1e-9
"""An eigenvalue is complex when ``|Im λ| > COMPLEX_TOL · max(1, |λ|)``."""


def eigenvalues(jacobians, *, time: TimeKind = "discrete") -> np.ndarray:
    """Eigenvalues complex128 (P, H) of Jacobians (P, H, H), sorted by :func:`sort_eigenvalues`.

    With ``time="continuous"`` the Jacobians are those of the map ``F`` and the eigenvalues returned are
    those of the flow ``F(h) − h``, i.e. shifted by −1.
    """
    _check_time(time)
    J = torch.as_tensor(np.asarray(jacobians) if not isinstance(jacobians, torch.Tensor) else jacobians)
    if J.ndim != 3 or J.shape[1] != J.shape[2]:
        raise ValueError(f"jacobians must have shape (P, H, H); got {tuple(J.shape)}")
    values = torch.linalg.eigvals(J.detach().to(torch.float64).cpu()).numpy() + (0.0 + 0.0j)
    if time == "continuous":
        values = values - 1.0
    return sort_eigenvalues(values, time=time)


def sort_eigenvalues(values, *, time: TimeKind = "discrete") -> np.ndarray:
    """Sort each row (P, H) by decreasing growth — modulus in discrete time, real part in continuous
    time —, then by decreasing imaginary part.

    Growths are compared after rounding to 12 decimals, so conjugate pairs come out in the same order
    (positive imaginary part first) whatever the rounding noise of the solver.
    """
    _check_time(time)
    values = np.atleast_2d(np.asarray(values, dtype=np.complex128))
    growth = np.round(np.abs(values) if time == "discrete" else values.real, 12)
    order = np.lexsort((-values.imag, -growth), axis=-1)
    return np.take_along_axis(values, order, axis=-1)


def classify(values, *, time: TimeKind = "discrete", tol: float = MARGINAL_TOL) -> list[str]:
    """The stability label of each row of eigenvalues (P, H); see the module docstring for the rule.

    For ``time="continuous"`` pass the eigenvalues of the flow (as :func:`eigenvalues` returns them).
    """
    _check_time(time)
    if tol < 0:
        raise ValueError(f"tol must be >= 0; got {tol}")
    values = np.atleast_2d(np.asarray(values, dtype=np.complex128))
    growth = np.abs(values) - 1.0 if time == "discrete" else values.real
    grows = (growth > tol).any(1)
    decays = (growth < -tol).any(1)
    stable = (growth < -tol).all(1)
    dominant = growth >= growth.max(1, keepdims=True) - tol
    complex_ = np.abs(values.imag) > COMPLEX_TOL * np.maximum(1.0, np.abs(values))
    focus = (dominant & complex_).any(1)
    labels = np.full(values.shape[0], "marginal", dtype=object)
    labels[stable & ~focus] = "stable node"
    labels[stable & focus] = "stable focus"
    labels[grows & decays] = "saddle"
    labels[grows & ~decays] = "unstable"
    return [str(label) for label in labels]


def is_stable(labels) -> np.ndarray:
    """bool (P,): whether each label is a stable node or focus."""
    return np.array([label in ("stable node", "stable focus") for label in labels], dtype=bool)


def mobius(values) -> np.ndarray:
    """The Möbius map ``m = (λ − 1)/(λ + 1)``: ``Re m > 0 ⇔ |λ| > 1`` and ``Re m = 0 ⇔ |λ| = 1``.

    It sends the unit circle to the imaginary axis, so discrete-time eigenvalues can be read like
    continuous-time ones. ``λ = −1`` maps to infinity.
    """
    values = np.asarray(values, dtype=np.complex128)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (values - 1.0) / (values + 1.0)


def count_unstable(values) -> np.ndarray:
    """int64 (P,): eigenvalues with ``|λ| > 1`` in each row of (P, H)."""
    return (np.abs(np.atleast_2d(values)) > 1.0).sum(1).astype(np.int64)


def count_critical_pairs(values, *, re_max: float = 0.1, im_min: float = 0.05) -> np.ndarray:
    """int64 (P,): complex pairs near the unit circle with a nonzero angle, counted once per pair.

    A pair is critical when its Möbius image has ``|Re m| < re_max`` and ``Im m > im_min`` (the
    reference's rule; ``m(λ̄) = conj m(λ)``, so ``Im m > 0`` keeps one member of each pair).
    """
    m = mobius(np.atleast_2d(values))
    return ((np.abs(m.real) < re_max) & (m.imag > im_min)).sum(1).astype(np.int64)


def _check_time(time: str) -> None:
    if time not in ("discrete", "continuous"):
        raise ValueError(f"time must be 'discrete' or 'continuous'; got {time!r}")
