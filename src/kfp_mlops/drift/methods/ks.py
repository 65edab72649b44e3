"""The Kolmogorov-Smirnov (KS) statistic on the reference's percentile grid (numeric features).

The exact two-sample statistic is ``D = max |F_current(x) - F_reference(x)|`` over every x. The
profile keeps no rows, only the reference CDF on its ``cdf_grid`` (the reference's percentiles),
so the check takes the maximum over those grid points and just below the grid's first point (the
reference's minimum, where its CDF is 0). That is a lower bound of the exact D: it misses at most
the reference mass between two grid points (~0.01 for a continuous feature), and it is exact for a
feature with few distinct values (all of them on the grid).

p-values are not used: at large n they flag trivial shifts. The statistic itself is a distance in
[0, 1], compared with ``DriftConfig.ks_threshold``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def ks_on_grid(at_or_below: np.ndarray, reference_cdf: ArrayLike, below_share: float) -> float:
    """The KS statistic of the current values against the reference CDF on the profile's grid.

    Args:
        at_or_below: Share of the current values at or below each grid point.
        reference_cdf: The profile's ``cdf`` at the same points.
        below_share: Share of the current values below the grid's first point.

    Returns:
        ``max |F_current(g) - F_reference(g)|`` over the grid, or ``below_share`` if larger.
    """
    return max(float(np.max(np.abs(at_or_below - np.asarray(reference_cdf)))), below_share)
