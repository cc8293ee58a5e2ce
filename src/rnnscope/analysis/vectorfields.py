"""Vector fields of a recurrent map on a 2-D plane of its state space, per input condition.

The plane is spanned by an orthonormal basis ``e1, e2`` (rows of ``basis`` (2, H), e.g. the first two
principal components) through a point ``center`` (H,). Grid point ``(u, v)`` is lifted to the full
state ``h = center + u·e1 + v·e2``; the flow there is the one-step displacement ``F(h) − h`` (H,),
shown projected onto the plane, ``(e1·(F(h) − h), e2·(F(h) − h))``. The full-space speed
``‖F(h) − h‖`` is kept too: the component of the flow that leaves the plane is not drawn but is in it.

Shapes: ``G`` grid points per axis, ``C`` input conditions, ``H`` hidden units, ``I`` inputs.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from rnnscope.analysis.fixedpoints.maps import check_input, state_map
from rnnscope.core.results import Result
from rnnscope.models.base import RecurrentModel

ORTHONORMAL_TOL = 1e-5
"""Largest allowed entry of ``|basis basisᵀ − I|``."""

EXTENT_MARGIN = 0.1
"""Extent taken from ``states``: their projected bounding box widened by this fraction on each side."""


@dataclasses.dataclass(frozen=True)
class VectorField(Result):
    """The flow ``F(h) − h`` on a grid in a plane, for one or several constant inputs.

    Fields:
        u: float64 (G,) grid coordinates along ``e1``.
        v: float64 (G,) grid coordinates along ``e2``.
        flow: float64 (C, G, G, 2) the flow projected on the plane; ``flow[c, i, j]`` is at
            ``(u[j], v[i])`` (rows follow v, like ``numpy.meshgrid(u, v)`` and matplotlib's quiver).
        speed: float64 (C, G, G) the full-space speed ``‖F(h) − h‖`` (state units per step).
        states: float64 (G, G, H) the lifted states ``center + u[j]·e1 + v[i]·e2``.
        basis: float64 (2, H) the orthonormal rows ``e1, e2``.
        center: float64 (H,) the state at ``(u, v) = (0, 0)``.
        conditions: C condition names.
        inputs: C constant inputs, each float64 (I,) or None (no input).
        extent: float64 (4,) ``(u_min, u_max, v_min, v_max)``.
    """

    u: np.ndarray
    v: np.ndarray
    flow: np.ndarray
    speed: np.ndarray
    states: np.ndarray
    basis: np.ndarray
    center: np.ndarray
    conditions: list
    inputs: list
    extent: np.ndarray

    kind = "vector_field"

    @property
    def planar_speed(self) -> np.ndarray:
        """float64 (C, G, G) the length of the projected flow."""
        return np.linalg.norm(self.flow, axis=-1)

    def project(self, states) -> np.ndarray:
        """Plane coordinates float64 (..., 2) of states (..., H): ``(h − center) · e_k``."""
        return (np.asarray(states, dtype=np.float64) - self.center) @ self.basis.T

    def condition(self, name: str) -> int:
        """Index of condition ``name``."""
        try:
            return self.conditions.index(name)
        except ValueError:
            raise KeyError(f"no condition {name!r}; this field has {self.conditions}") from None


def vector_field(
    model: RecurrentModel,
    basis,
    center=None,
    *,
    input=None,
    extent=None,
    grid: int = 25,
    states=None,
) -> VectorField:
    """Evaluate the flow ``F(h) − h`` of ``model`` on a ``grid × grid`` lattice in a plane.

    Args:
        model: any :class:`~rnnscope.models.base.RecurrentModel` (never modified).
        basis: (2, H) orthonormal rows, or a fitted ``sklearn.decomposition.PCA`` (its first two
            components; its ``mean_`` is the default ``center``).
        center: (H,) the plane's origin; default the PCA mean, or zeros.
        input: None (no input), a constant input (I,), or a dict ``name → input`` (each an (I,) vector
            or None) for several conditions at once.
        extent: ``(u_min, u_max, v_min, v_max)``; default the bounding box of ``states`` projected on
            the plane, widened by 10 % per side, or ``(−1, 1, −1, 1)`` without ``states``.
        grid: G, grid points per axis (≥ 2).
        states: optional visited states (N, H) or (B, T, H) that set the default extent.

    Returns:
        a :class:`VectorField`; all grid points of a condition are evaluated in one batch.
    """
    H = model.hidden_size
    basis, default_center = plane_basis(basis, H)
    center = default_center if center is None else _vector(center, H, "center")
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 2:
        raise ValueError(f"grid must be an integer >= 2; got {grid!r}")
    names, inputs = _conditions(model, input)
    extent = _extent(extent, states, basis, center)
    u = np.linspace(extent[0], extent[1], int(grid))
    v = np.linspace(extent[2], extent[3], int(grid))
    uu, vv = np.meshgrid(u, v)
    lifted = center + uu[..., None] * basis[0] + vv[..., None] * basis[1]
    flows, speeds = [], []
    for value in inputs:
        fmap = state_map(model, value)
        h = fmap.as_states(lifted.reshape(-1, H))
        with torch.no_grad():
            displacement = (fmap(h) - h).detach().to(torch.float64).cpu().numpy()
        flows.append((displacement @ basis.T).reshape(grid, grid, 2))
        speeds.append(np.linalg.norm(displacement, axis=1).reshape(grid, grid))
    return VectorField(
        u=u,
        v=v,
        flow=np.stack(flows),
        speed=np.stack(speeds),
        states=lifted,
        basis=basis,
        center=center,
        conditions=names,
        inputs=[None if value is None else np.asarray(value, dtype=np.float64) for value in inputs],
        extent=np.asarray(extent, dtype=np.float64),
    )


def plane_basis(basis, hidden_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate a plane basis: an orthonormal (2, H) array, or a fitted PCA (its first two components).

    Returns the basis float64 (2, H) and the default center (the PCA's ``mean_``, or zeros).
    """
    H = hidden_size
    center = np.zeros(H)
    if hasattr(basis, "components_"):
        components = np.asarray(basis.components_, dtype=np.float64)
        if components.shape[0] < 2:
            raise ValueError(f"the PCA has {components.shape[0]} component(s); fit it with n_components >= 2")
        if getattr(basis, "mean_", None) is not None:
            center = np.asarray(basis.mean_, dtype=np.float64)
        basis = components[:2]
    basis = np.asarray(basis.detach().cpu() if isinstance(basis, torch.Tensor) else basis, dtype=np.float64)
    if basis.shape != (2, H):
        raise ValueError(f"basis must have shape (2, H) = (2, {H}); got {basis.shape}")
    if not np.isfinite(basis).all():
        raise ValueError("basis contains NaN or infinite values")
    gram_error = float(np.abs(basis @ basis.T - np.eye(2)).max())
    if gram_error > ORTHONORMAL_TOL:
        raise ValueError(
            f"basis rows must be orthonormal (|B Bᵀ − I| max {gram_error:.2e} > {ORTHONORMAL_TOL}); "
            "orthonormalise them first, e.g. np.linalg.qr(basis.T)[0].T"
        )
    return basis, center


def _vector(value, size: int, name: str) -> np.ndarray:
    array = np.asarray(value.detach().cpu() if isinstance(value, torch.Tensor) else value, dtype=np.float64)
    if array.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},); got {array.shape}")
    return array


def _conditions(model: RecurrentModel, input) -> tuple[list[str], list]:
    if isinstance(input, dict):
        if not input:
            raise ValueError("input is an empty dict; give at least one condition name → input vector")
        names = [str(name) for name in input]
        values = list(input.values())
    else:
        names, values = ["input" if input is not None else "no input"], [input]
    checked = []
    for name, value in zip(names, values):
        try:
            tensor = check_input(model, value)
        except ValueError as exc:
            raise ValueError(f"condition {name!r}: {exc}") from None
        checked.append(None if tensor is None else tensor.cpu().numpy())
    return names, checked


def _extent(extent, states, basis: np.ndarray, center: np.ndarray) -> tuple[float, float, float, float]:
    if extent is not None:
        values = tuple(float(x) for x in np.asarray(extent, dtype=np.float64).ravel())
        if len(values) != 4 or not (values[0] < values[1] and values[2] < values[3]):
            raise ValueError(f"extent must be (u_min, u_max, v_min, v_max) with min < max; got {extent}")
        return values
    if states is None:
        return (-1.0, 1.0, -1.0, 1.0)
    if hasattr(states, "states") and callable(states.states):
        states = states.states()
    points = np.asarray(states, dtype=np.float64).reshape(-1, basis.shape[1])
    coords = (points - center) @ basis.T
    low, high = coords.min(0), coords.max(0)
    pad = EXTENT_MARGIN * np.maximum(high - low, 1e-12)
    return (low[0] - pad[0], high[0] + pad[0], low[1] - pad[1], high[1] + pad[1])
