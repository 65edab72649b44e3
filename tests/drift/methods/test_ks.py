"""The KS statistic on the reference's grid, by hand (against scipy: tests/drift/test_scores.py)."""

from __future__ import annotations

import numpy as np
import pytest

from kfp_mlops.drift.methods.ks import ks_on_grid


def test_ks_on_grid_by_hand() -> None:
    """The largest CDF gap on the grid, or the share below the grid when that is larger."""
    at_or_below = np.array([0.2, 0.5, 1.0])
    assert ks_on_grid(at_or_below, [0.1, 0.3, 1.0], below_share=0.05) == pytest.approx(0.2)
    assert ks_on_grid(at_or_below, [0.1, 0.3, 1.0], below_share=0.25) == pytest.approx(0.25)
    assert ks_on_grid(np.array([0.5, 1.0]), [0.5, 1.0], below_share=0.0) == 0.0
