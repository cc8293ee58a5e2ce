"""Batched Jacobians ``J(h) = ∂F/∂h`` of a state map at many states at once.

Vanilla RNNs: analytic, ``J = diag(φ'(W h + c)) W`` (ReLU: ``relu'(0) = 0``). Any other model:
``torch.func.vmap(torch.func.jacrev(F))`` on a float64 copy of the model.

Shapes: ``N`` states, ``H`` hidden units.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from rnnscope.analysis.fixedpoints.maps import ModelMap, StateMap, VanillaMap, state_map
from rnnscope.models.base import RecurrentModel

JACOBIAN_CHUNK = 256
"""States per batch of the autograd Jacobian (bounds the memory of ``vmap``)."""


def map_jacobians(fmap: StateMap, h_nxh: Tensor) -> Tensor:
    """Jacobians (N, H, H) of ``fmap`` at states ``h_nxh`` (N, H), in the map's dtype."""
    if isinstance(fmap, VanillaMap):
        return fmap.derivative(fmap.preactivation(h_nxh))[:, :, None] * fmap.W[None]
    if isinstance(fmap, ModelMap):
        single = torch.func.jacrev(fmap.single)
        batched = torch.func.vmap(single)
        chunks = [batched(h_nxh[i:i + JACOBIAN_CHUNK]) for i in range(0, h_nxh.shape[0], JACOBIAN_CHUNK)]
        return torch.cat(chunks) if chunks else h_nxh.new_zeros(0, fmap.hidden_size, fmap.hidden_size)
    raise TypeError(f"expected a StateMap, got {type(fmap).__name__}")


def jacobians(model: RecurrentModel, states, input=None) -> np.ndarray:
    """Jacobians ``∂F/∂h`` of ``F(h) = model.step(h, input)`` at ``states`` (N, H) → float64 (N, H, H).

    ``input`` is a constant input vector (I,) or None (no input). The model is never modified.
    """
    fmap = state_map(model, input)
    h_nxh = fmap.as_states(states)
    with torch.no_grad() if isinstance(fmap, VanillaMap) else torch.enable_grad():
        J = map_jacobians(fmap, h_nxh)
    return J.detach().to(torch.float64).cpu().numpy()
