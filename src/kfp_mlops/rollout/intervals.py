"""Confidence intervals: Wilson for proportions, order statistics for quantiles, the percentile bootstrap.

* **Proportions** (:func:`wilson_interval`): the Wilson score interval -- good coverage for rare
  events, where a bootstrap collapses to ``[0, 0]``.
* **Quantiles** (:func:`quantile_interval`, e.g. p99 latency): the distribution-free
  order-statistic interval (ranks from Binomial(n, q)).
* **Everything else** (:func:`bootstrap_replicates`, :func:`percentile_interval`): the percentile
  bootstrap over the weighted metric engines of :mod:`kfp_mlops.rollout.metrics`, seeded, so an
  interval is reproducible. Resamples in which a metric is undefined (no fraud drawn) are left
  out; a metric undefined in more than half of them gets no interval. Engines whose rows are
  aligned share each replicate's weights: a paired bootstrap. Above ``max_rows`` rows the
  bootstrap resamples a seeded subsample of ``m = max_rows`` rows and scales each replicate's
  deviation from the subsample's estimate by ``sqrt(m / n)`` around the full estimate (the
  rescaled m-out-of-n bootstrap): every metric here is a root-n one, whose spread shrinks as
  ``1 / sqrt(n)``, so the intervals keep their width while a rollout step over millions of
  logged predictions costs what one over ``m`` does.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from kfp_mlops.rollout.metrics import WeightedMetrics

_WEIGHTS_PER_CHUNK = 2_000_000  # bootstrap weights held in memory at once (16 MB)


@dataclass(frozen=True)
class Interval:
    """An estimate and its confidence interval (``low`` may be ``-inf``, ``high`` ``inf``: unbounded)."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float | None]:
        """JSON-ready: non-finite bounds become ``None``."""
        return {k: (float(v) if math.isfinite(v) else None) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, doc: Mapping[str, float | None]) -> Interval:
        """The inverse of :meth:`to_dict`."""
        return cls(
            value=math.nan if doc["value"] is None else doc["value"],
            low=-math.inf if doc["low"] is None else doc["low"],
            high=math.inf if doc["high"] is None else doc["high"],
        )


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """The Wilson score interval of a proportion ``successes / n`` (``n`` > 0)."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def quantile_interval(values: np.ndarray, q: float, confidence: float = 0.95) -> Interval:
    """A quantile of ``values`` with its distribution-free order-statistic interval.

    The bounds are the order statistics whose ranks bracket Binomial(n, q) at the interval's
    tails; a bound needing a rank beyond the sample is infinite.
    """
    import numpy as np

    ordered = np.sort(np.asarray(values, dtype=float))
    n = len(ordered)
    alpha = 1 - confidence
    low_rank = binomial_quantile(alpha / 2, n, q)
    high_rank = binomial_quantile(1 - alpha / 2, n, q) + 1
    return Interval(
        float(np.quantile(ordered, q, method="inverted_cdf")),
        float(ordered[low_rank - 1]) if low_rank >= 1 else -math.inf,
        float(ordered[high_rank - 1]) if high_rank <= n else math.inf,
    )


def binomial_quantile(level: float, n: int, p: float) -> int:
    """The smallest ``k`` with ``P(Binomial(n, p) <= k) >= level`` (``scipy.stats.binom.ppf``).

    From ``scipy.special``'s binomial CDF and its inverse: importing ``scipy.stats`` takes a rollout
    step's process a second or more.
    """
    from scipy.special import bdtr, bdtrik

    guess = float(bdtrik(level, n, p))
    k = max(0, math.ceil(guess) - 1) if math.isfinite(guess) else 0
    while k > 0 and bdtr(k - 1, n, p) >= level:
        k -= 1
    while k < n and bdtr(k, n, p) < level:
        k += 1
    return k


def bootstrap_replicates(
    engines: Sequence[WeightedMetrics], replicates: int, seed: Sequence[int], max_rows: int | None = None
) -> list[dict[str, np.ndarray]]:
    """Bootstrap replicates of each engine's metrics.

    Args:
        engines: Metric engines over the same number of rows.
        replicates: How many resamples.
        seed: Seed of the random generator (e.g. ``(config seed, side, row set)``).
        max_rows: Above this many rows, resample a subsample of this size and rescale (the
            module docstring); None resamples every row.

    Returns:
        Per engine, metric -> ``replicates`` values.

    Each replicate draws ``n`` rows with replacement, as a weight per row (how often it was
    drawn). The engines' rows are aligned and share each replicate's weights: one engine is a
    plain bootstrap, two a paired one.
    """
    import numpy as np

    rng = np.random.default_rng(list(seed))
    n = engines[0].n
    if max_rows is not None and n > max_rows:
        rows = np.sort(rng.choice(n, max_rows, replace=False))
        full = [engine.metrics(np.ones((1, n))) for engine in engines]
        subsets = [engine.subset(rows) for engine in engines]
        at_subset = [engine.metrics(np.ones((1, max_rows))) for engine in subsets]
        drawn_subset = bootstrap_replicates(subsets, replicates, [*seed, max_rows])
        scale = math.sqrt(max_rows / n)
        return [
            {name: full[i][name][0] + scale * (values - at_subset[i][name][0]) for name, values in drawn.items()}
            for i, drawn in enumerate(drawn_subset)
        ]
    chunk = max(1, min(replicates, _WEIGHTS_PER_CHUNK // max(n, 1)))
    parts: list[list[dict[str, np.ndarray]]] = []
    for done in range(0, replicates, chunk):
        k = min(chunk, replicates - done)
        drawn = rng.integers(0, n, (k, n)) + (np.arange(k) * n)[:, None]
        w = np.bincount(drawn.ravel(), minlength=k * n).reshape(k, n).astype(float)
        parts.append([engine.metrics(w) for engine in engines])
    return [
        {name: np.concatenate([part[i][name] for part in parts]) for name in parts[0][i]} for i in range(len(engines))
    ]


def percentile_interval(value: float, replicates: np.ndarray, confidence: float) -> Interval | None:
    """``value`` with the percentile interval of its bootstrap ``replicates``.

    Returns:
        None when ``value`` is not finite or the metric is undefined (NaN) in more than half of
        the replicates.
    """
    import numpy as np

    finite = replicates[np.isfinite(replicates)]
    if not math.isfinite(value) or len(finite) < 0.5 * len(replicates):
        return None  # undefined on the data, or on most resamples: no honest interval
    tail = 50 * (1 - confidence)
    low, high = np.percentile(finite, [tail, 100 - tail])
    return Interval(value, float(low), float(high))
