"""The Jensen-Shannon distance between two share vectors (categorical features).

``JS(p, q) = sqrt((KL(p || m) + KL(q || m)) / 2)`` with ``m = (p + q) / 2``, in base 2 so that it
lies in [0, 1]: 0 for identical shares, 1 for disjoint ones. Unlike PSI it stays finite when a
bucket is empty on one side, without an epsilon.

The buckets are the reference's categories plus one ``other`` bucket: the reference's pooled rare
categories (the profile's ``other_share``); categories never seen in the reference land there too.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def js_distance(reference: ArrayLike, current: ArrayLike) -> float:
    """Jensen-Shannon distance (base 2: 0 identical, 1 disjoint) of two share vectors over the same buckets."""
    p = np.asarray(reference, dtype=float)
    q = np.asarray(current, dtype=float)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        present = a > 0  # 0 * log(0) = 0
        return float(np.sum(a[present] * np.log2(a[present] / m[present])))

    return float(np.sqrt(max((kl(p) + kl(q)) / 2, 0.0)))
