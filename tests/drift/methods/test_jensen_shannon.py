"""The Jensen-Shannon distance against scipy's."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from kfp_mlops.drift.methods.jensen_shannon import js_distance


def test_js_distance_matches_scipy() -> None:
    """Base-2 Jensen-Shannon distance: scipy's value, 0 for identical and 1 for disjoint shares."""
    rng = np.random.default_rng(3)
    for _ in range(5):
        p, q = rng.random(6), rng.random(6)
        q[2] = 0.0
        assert js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2))
    assert js_distance([0.3, 0.7], [0.3, 0.7]) == pytest.approx(0.0, abs=1e-12)
    assert js_distance([1.0, 0.0], [0.0, 1.0]) == pytest.approx(1.0)
