"""The Sinkhorn-matched Euclidean distance between two sets of output sequences (the reference's metric).

Each sequence is flattened to its one-hot vector x ∈ {0,1}^{T·K}; two sequences with m mismatching
steps are at Euclidean distance ‖x − y‖ = sqrt(2m). An entropic optimal-transport plan P between the
uniform measures on the reference set X (rows) and the generated set Y (columns) is computed by
log-domain Sinkhorn on the cost C_ij = ‖x_i − y_j‖ (Euclidean, not squared) with regularisation ε.
Each generated sequence is then matched to one reference sequence and the distance of every matched
pair is reported:

- ``matching="argmax"`` (the reference's rule): y_j is matched to argmax_i P_ij. Several generated
  sequences may share a match (many-to-one).
- ``matching="assignment"``: a true one-to-one matching minimising Σ C (``linear_sum_assignment``, the
  ε → 0 limit of the plan); no Sinkhorn is needed.

Unlike the reference (a loose stopping threshold of 0.1 on the potentials), Sinkhorn here runs with
ε-annealing until the row marginal of the plan is within ``tol`` (L1) of uniform; the column marginal
is exact after each update.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from rnnscope.core.results import Result
from rnnscope.errors import AnalysisError

MATCHING_RULES = ("argmax", "assignment")


@dataclasses.dataclass(frozen=True)
class MatchedDistance(Result):
    """Distances between generated sequences and their matched reference sequences.

    ``distances``: float (n_gen,) the Euclidean distance of each matched pair (sqrt(2 · #mismatches));
    ``matches``: int (n_gen,) the index of the reference sequence matched to each generated one;
    ``mean``, ``std``: of ``distances``; ``epsilon``: the entropic regularisation (in cost units);
    ``matching``: "argmax" or "assignment"; ``iterations``: Sinkhorn updates at the target ε (0 for
    "assignment"); ``marginal_error``: final L1 error of the plan's row marginal (0 for "assignment").
    """

    distances: np.ndarray
    matches: np.ndarray
    mean: float
    std: float
    epsilon: float
    matching: str
    iterations: int
    marginal_error: float


def one_hot_distances(reference_nt: np.ndarray, generated_nt: np.ndarray, n_outputs: int, *, device: str | torch.device = "cpu") -> torch.Tensor:
    """Euclidean distances between flattened one-hot sequences, float64 tensor of shape (n_ref, n_gen).

    Computed from dot products: the number of matching steps is X Yᵀ for one-hot X, Y, so
    ‖x − y‖² = 2(T − matches).
    """
    if reference_nt.shape[1] != generated_nt.shape[1]:
        raise ValueError(
            f"sequences must have the same length; got T={reference_nt.shape[1]} and T={generated_nt.shape[1]}"
        )
    seq_len = reference_nt.shape[1]
    x = _flat_one_hot(reference_nt, n_outputs, device)
    y = _flat_one_hot(generated_nt, n_outputs, device)
    matches = (x @ y.T).to(torch.float64)
    return torch.sqrt(torch.clamp(2.0 * (seq_len - matches), min=0.0))


def sinkhorn_potentials(
    cost: torch.Tensor,
    epsilon: float,
    *,
    tol: float = 1e-4,
    max_iter: int = 10_000,
    scaling: float = 0.7,
) -> tuple[torch.Tensor, torch.Tensor, int, float]:
    """Entropic OT between uniform measures for ``cost`` (n, m); returns (f, g, iterations, error).

    The plan is P_ij = exp((f_i + g_j − C_ij)/ε), with row sums 1/n and column sums 1/m. The potentials f, g are kept in the log
    domain; between absorptions the updates are matrix–vector products with the stabilised kernel
    K̃_ij = exp((f_i + g_j − C_ij)/ε), whose largest entry per row and column stays ≥ 1, so nothing
    underflows (log-domain stabilised Sinkhorn). ε is annealed geometrically (ratio ``scaling``) from
    max C down to ``epsilon``; at ``epsilon`` updates continue until the row marginal's L1 error is below
    ``tol``. Raises ``AnalysisError`` if ``max_iter`` updates at ``epsilon`` do not get there.
    """
    n, m = cost.shape
    f = torch.zeros(n, dtype=cost.dtype, device=cost.device)
    g = torch.zeros(m, dtype=cost.dtype, device=cost.device)
    for eps in _annealing(float(cost.max()), epsilon, scaling):
        f, g, _, _ = _scaling_iterations(cost, f, g, eps, iterations=1, tol=None)
    f, g, iterations, error = _scaling_iterations(cost, f, g, epsilon, iterations=max_iter, tol=tol)
    if error >= tol:
        raise AnalysisError(
            f"Sinkhorn did not converge in {max_iter} iterations at epsilon={epsilon} (row-marginal error "
            f"{error:.2e} > tol={tol:g}); raise epsilon, tol or max_iter"
        )
    return f, g, iterations, error


def _scaling_iterations(cost, f, g, eps, *, iterations, tol, absorb_above=1e30, check_every=10):
    """Up to ``iterations`` Sinkhorn updates at ``eps`` (stopping early once the row error < ``tol``).

    Scalings u, v multiply the stabilised kernel; every ``check_every`` updates the row error is
    measured and, if u or v has grown beyond ``absorb_above``, they are absorbed into the potentials
    (f += ε log u, g += ε log v) and the kernel is rebuilt.
    """
    n, m = cost.shape
    a, b = 1.0 / n, 1.0 / m
    kernel = torch.exp((f[:, None] + g[None, :] - cost) / eps)
    u = torch.ones(n, dtype=cost.dtype, device=cost.device)
    v = torch.ones(m, dtype=cost.dtype, device=cost.device)
    error = math.inf
    done = 0
    for done in range(1, iterations + 1):
        u = a / (kernel @ v)
        v = b / (kernel.T @ u)
        if done % check_every and done != iterations:
            continue
        if tol is not None:
            error = float((u * (kernel @ v) - a).abs().sum())
            if error < tol:
                break
        if float(torch.maximum(u.max(), v.max())) > absorb_above:
            f, g = f + eps * torch.log(u), g + eps * torch.log(v)
            kernel = torch.exp((f[:, None] + g[None, :] - cost) / eps)
            u, v = torch.ones_like(u), torch.ones_like(v)
    return f + eps * torch.log(u), g + eps * torch.log(v), done, error


def matched_distance(
    reference: np.ndarray,
    generated: np.ndarray,
    n_outputs: int,
    *,
    epsilon: float = 0.1,
    matching: str = "argmax",
    tol: float = 1e-4,
    max_iter: int = 10_000,
    device: str | torch.device = "cpu",
) -> MatchedDistance:
    """Match every generated sequence to a reference sequence and return the matched distances.

    ``reference`` (n_ref, T) and ``generated`` (n_gen, T) are integer symbols; see the module docstring
    for the two matching rules (``"assignment"`` needs n_ref ≥ n_gen).
    """
    if matching not in MATCHING_RULES:
        raise ValueError(f"matching must be one of {MATCHING_RULES}; got {matching!r}")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be positive; got {epsilon}")
    cost = one_hot_distances(reference, generated, n_outputs, device=device)
    if matching == "assignment":
        if reference.shape[0] < generated.shape[0]:
            raise ValueError(
                f"matching='assignment' needs at least as many reference sequences ({reference.shape[0]}) "
                f"as generated ones ({generated.shape[0]})"
            )
        from scipy.optimize import linear_sum_assignment

        cost_np = cost.cpu().numpy()
        rows, cols = linear_sum_assignment(cost_np.T)
        matches = np.empty(generated.shape[0], dtype=np.int64)
        matches[rows] = cols
        iterations, error = 0, 0.0
    else:
        f, _, iterations, error = sinkhorn_potentials(cost, epsilon, tol=tol, max_iter=max_iter)
        # argmax_i P_ij = argmax_i (f_i − C_ij): the column terms g_j and the uniform weights are constant.
        matches = torch.argmax(f[:, None] - cost, dim=0).cpu().numpy()
    distances = cost[torch.as_tensor(matches, device=cost.device), torch.arange(cost.shape[1], device=cost.device)]
    distances = distances.cpu().numpy()
    return MatchedDistance(
        distances=distances,
        matches=matches,
        mean=float(distances.mean()),
        std=float(distances.std(ddof=1)) if distances.size > 1 else 0.0,
        epsilon=float(epsilon),
        matching=matching,
        iterations=int(iterations),
        marginal_error=float(error),
    )


def _annealing(start: float, target: float, ratio: float) -> list[float]:
    schedule = []
    eps = max(start, target)
    while eps > target:
        schedule.append(eps)
        eps *= ratio
    return schedule


def _flat_one_hot(symbols_nt: np.ndarray, n_outputs: int, device) -> torch.Tensor:
    symbols = torch.as_tensor(np.asarray(symbols_nt), dtype=torch.int64, device=device)
    return torch.nn.functional.one_hot(symbols, n_outputs).reshape(symbols.shape[0], -1).to(torch.float32)
