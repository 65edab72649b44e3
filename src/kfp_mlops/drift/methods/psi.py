"""Population stability index (PSI): how far the current shares of some bins moved from the reference's.

``PSI = sum((c - r) * ln(c / r))`` over the bins, with reference shares ``r`` and current shares
``c``; it is symmetric in the two sides and 0 when they agree (0.1-0.2 is read as a "moderate"
shift, above 0.2 as a "significant" one). Shares below :data:`PSI_EPSILON` (1e-4) are raised to it,
so an empty bin on either side costs a large but finite amount.

The bins, by what is compared:

* numeric features: the **reference's quantile bins** -- the profile's ``bin_edges`` (reference
  deciles, open outer bins ``(-inf, c0], ..., (c_last, +inf)``, ties merged) with the reference
  share of each bin (``bin_shares``); :func:`shares_in_bins` gives the current shares;
* categorical features: the reference's categories plus one ``other`` bucket (see
  :mod:`~kfp_mlops.drift.methods.jensen_shannon`);
* predictions: the model's classes, with the mean predicted class probabilities as shares
  (:mod:`kfp_mlops.drift.model_checks`).

Evidently's PSI bins both samples into equal-width (Sturges) bins instead, so its numbers differ
from these and its thresholds do not carry over.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

PSI_EPSILON = 1e-4


def psi(reference: ArrayLike, current: ArrayLike, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index ``sum((c - r) * ln(c / r))`` of two share vectors over the same bins.

    Shares below ``epsilon`` are raised to it first, so an empty bin on either side adds a large
    but finite term.
    """
    ref = np.maximum(np.asarray(reference, dtype=float), epsilon)
    cur = np.maximum(np.asarray(current, dtype=float), epsilon)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def shares_in_bins(at_or_below: np.ndarray, grid: np.ndarray, bin_edges: ArrayLike) -> np.ndarray:
    """The current shares of the profile's bins, from the current cumulative shares on its grid.

    Args:
        at_or_below: Share of the current values at or below each point of ``grid``.
        grid: The profile's ``cdf_grid`` (sorted).
        bin_edges: The profile's ``bin_edges``, each a point of ``grid``.

    Returns:
        One share per bin ``(-inf, e0], (e0, e1], ..., (e_last, +inf)``, summing to 1.
    """
    at_edges = at_or_below[np.searchsorted(grid, bin_edges)]
    return np.diff(np.concatenate([[0.0], at_edges, [1.0]]))
