"""PSI by hand, and the current shares of the profile's bins."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kfp_mlops.drift.methods.psi import PSI_EPSILON, psi, shares_in_bins


def test_psi_by_hand() -> None:
    """sum((c - r) ln(c / r)); an empty bin counts as PSI_EPSILON."""
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))
    assert PSI_EPSILON == 1e-4
    assert psi([0.5, 0.5, 0.0], [0.5, 0.4, 0.1]) == pytest.approx(
        -0.1 * math.log(0.8) + (0.1 - 1e-4) * math.log(0.1 / 1e-4)
    )
    assert psi([0.2, 0.8], [0.6, 0.4]) == pytest.approx(psi([0.6, 0.4], [0.2, 0.8]))  # symmetric


def test_shares_in_bins_from_cumulative_shares() -> None:
    """Bins (-inf, e0], (e0, e1], (e1, +inf) from the cumulative shares at the grid points."""
    grid = np.array([1.0, 2.0, 3.0, 4.0])
    at_or_below = np.array([0.1, 0.3, 0.6, 0.9])
    np.testing.assert_allclose(shares_in_bins(at_or_below, grid, [2.0, 4.0]), [0.3, 0.6, 0.1])
