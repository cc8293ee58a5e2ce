"""Fixed points, slow points and cycles of recurrent networks.

* :func:`find_fixed_points` — exact (ReLU networks: certified fixed points and k-cycles) or gradient
  (any network: slow points of ``q(h) = ½‖F(h) − h‖²``), returning a :class:`FixedPointReport`;
* :func:`autonomous_collapse` — does the network without input collapse to one fixed point?
* :func:`jacobians`, :func:`eigenvalues`, :func:`classify` and the Möbius helpers.
"""

from rnnscope.analysis.fixedpoints.api import (
    CollapseReport,
    autonomous_collapse,
    find_fixed_points,
    growth_rates,
    visited_states,
)
from rnnscope.analysis.fixedpoints.gradient import outlier_mask, sample_states
from rnnscope.analysis.fixedpoints.jacobians import jacobians
from rnnscope.analysis.fixedpoints.maps import state_map
from rnnscope.analysis.fixedpoints.report import REPORT_LABELS, Cycle, FixedPointReport, unique_indices
from rnnscope.analysis.fixedpoints.stability import (
    STABILITY_LABELS,
    classify,
    count_critical_pairs,
    count_unstable,
    eigenvalues,
    mobius,
)

__all__ = [
    "REPORT_LABELS",
    "STABILITY_LABELS",
    "CollapseReport",
    "Cycle",
    "FixedPointReport",
    "autonomous_collapse",
    "classify",
    "count_critical_pairs",
    "count_unstable",
    "eigenvalues",
    "find_fixed_points",
    "growth_rates",
    "jacobians",
    "mobius",
    "outlier_mask",
    "sample_states",
    "state_map",
    "unique_indices",
    "visited_states",
]
