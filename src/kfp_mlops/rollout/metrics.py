"""Weighted metrics of scored rows, the form the bootstrap resamples.

A metric engine holds one predictor's rows, sorted and indexed once; its ``metrics(w)`` takes a
``(k, n)`` matrix of row weights and returns ``k`` values of every metric. Ones give the plain
estimate (:func:`point_estimate`); how often a resample drew each row gives a bootstrap replicate
(:func:`kfp_mlops.rollout.intervals.bootstrap_replicates`), so a thousand replicates cost a few
matrix products rather than a thousand sorts.

* :class:`LabelledRows` -- answered, labelled rows: AUC-PR (average precision), recall at a fixed
  false-positive rate, Brier score, expected calibration error (ECE, equal-mass bins) and, when
  the decisions and amounts are known, the false-positive rate of declines and the share of the
  fraud amount caught.
* :class:`RequestRows` -- every request: error rate, approval rate, a latency quantile.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np


class WeightedMetrics(Protocol):
    """Rows whose metrics are computed under row weights (see the module docstring)."""

    n: int

    def metrics(self, w: np.ndarray) -> dict[str, np.ndarray]:
        """Every metric under each row of the ``(k, n)`` weights ``w``: ``k`` values each."""
        ...

    def subset(self, rows: np.ndarray) -> WeightedMetrics:
        """The same engine over the rows at the positions ``rows`` only."""
        ...


class LabelledRows:
    """One predictor's labelled, scored rows, ready for weighted (bootstrap) metrics.

    Every metric takes a ``(k, n)`` matrix of row weights (ones: the plain estimate; how often a
    resample drew each row: bootstrap replicates) and returns ``k`` values, so replicates need no
    re-sorting.

    Args:
        y: The labels, 1 for the positive class (fraud) and 0 otherwise.
        score: The predicted probability of the positive class.
        target_fpr: The false-positive rate at which ``recall_at_fpr`` is read.
        ece_bins: Equal-mass score bins of the expected calibration error.
        declined: 1 where the decision declined the transaction (adds ``fpr``).
        amount: The transaction amounts (with ``declined``: adds ``fraud_amount_caught_share``).
    """

    def __init__(
        self,
        y: np.ndarray,
        score: np.ndarray,
        *,
        target_fpr: float,
        ece_bins: int,
        declined: np.ndarray | None = None,
        amount: np.ndarray | None = None,
    ) -> None:
        import numpy as np
        from scipy import sparse

        self.n = len(y)
        self.target_fpr = target_fpr
        self._inputs = (y, score, ece_bins, declined, amount)  # what :meth:`subset` rebuilds from
        self.order = np.argsort(-score, kind="stable")
        ranked = score[self.order]
        # Thresholds fall between distinct scores: a positive counts with every row tied with it.
        ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])
        # Per rank: the last and the first rank of its group of tied scores (for the influence values).
        self.group_end = np.repeat(ends, np.diff(np.r_[-1, ends]))
        self.group_start = np.repeat(np.r_[0, ends[:-1] + 1], np.diff(np.r_[-1, ends]))
        self.tied = len(ends) < self.n
        self.label_ranked = y[self.order].astype(float)
        positive_ranks = np.flatnonzero(y[self.order] == 1)
        self.positive_rows = self.order[positive_ranks]
        group_end = ends[np.searchsorted(ends, positive_ranks)]
        self.last_positive = np.searchsorted(positive_ranks, group_end, side="right") - 1
        # Each row joins the segment of the first positive's threshold at or after its rank (rows
        # ranked below every positive join none); the weight flagged at a threshold is then a
        # running sum over segments: no per-replicate sort or cumulative sum over all rows.
        cuts = np.unique(group_end)
        rank = np.empty(self.n, dtype=np.int64)
        rank[self.order] = np.arange(self.n)
        segment = np.searchsorted(cuts, rank)
        inside = segment < len(cuts)
        self.segments = sparse.csr_matrix(
            (np.ones(int(inside.sum())), (np.flatnonzero(inside), segment[inside])), shape=(self.n, len(cuts))
        )
        self.cut_of_positive = np.searchsorted(cuts, group_end)
        self.squared_error = (score - y) ** 2
        # Equal-mass bins of the scores: equal-width bins would put nearly every row of a rare
        # event in the first bin.
        edges = np.quantile(score, np.linspace(0, 1, ece_bins + 1)[1:-1])
        member = np.eye(ece_bins)[np.searchsorted(edges, score, side="right")]
        self.bin_gap = member * (score - y)[:, None]
        self.negative = 1.0 - y
        self.false_alarm = None if declined is None else self.negative * declined
        self.fraud_amount = None if amount is None else y * amount
        self.caught_amount = None if amount is None or declined is None else y * amount * declined

    def metrics(self, w: np.ndarray) -> dict[str, np.ndarray]:
        """AUC-PR, recall at the target FPR, Brier, ECE (and FPR, fraud amount caught) under ``w``.

        AUC-PR and recall are NaN for a weighting without positives or without negatives.
        """
        import numpy as np

        # Precision and recall change only at positives, so both curves are read there: the
        # weight of positives, and of all rows, scored at least as high as each positive.
        at_positive = w[:, self.positive_rows]
        tp = np.cumsum(at_positive, axis=1)[:, self.last_positive]
        flagged = np.cumsum((self.segments.T @ w.T).T, axis=1)[:, self.cut_of_positive]
        total = w.sum(axis=1)
        positives = at_positive.sum(axis=1)
        negatives = total - positives
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(flagged > 0, tp / np.maximum(flagged, 1e-300), 0.0)
            within_fpr = flagged - tp <= self.target_fpr * negatives[:, None]
            out = {
                "auc_pr": (at_positive * precision).sum(axis=1) / positives,
                "recall_at_fpr": np.where(within_fpr, tp, 0.0).max(axis=1, initial=0.0) / positives,
                "brier": w @ self.squared_error / total,
                "ece": np.abs(w @ self.bin_gap).sum(axis=1) / total,
            }
            if self.false_alarm is not None:
                out["fpr"] = w @ self.false_alarm / (w @ self.negative)
            if self.caught_amount is not None:
                out["fraud_amount_caught_share"] = w @ self.caught_amount / (w @ self.fraud_amount)
        undefined = (positives == 0) | (negatives == 0)
        out["auc_pr"][undefined] = np.nan
        out["recall_at_fpr"][undefined] = np.nan
        return out

    def subset(self, rows: np.ndarray) -> LabelledRows:
        """The same metrics over the rows at the positions ``rows`` only."""
        y, score, ece_bins, declined, amount = self._inputs
        return LabelledRows(
            y[rows],
            score[rows],
            target_fpr=self.target_fpr,
            ece_bins=ece_bins,
            declined=None if declined is None else declined[rows],
            amount=None if amount is None else amount[rows],
        )

    def influence(self, w: np.ndarray) -> dict[str, np.ndarray]:
        """Each row's influence on AUC-PR (and the FPR of declines) under each row of the weights ``w``.

        The influence function of a metric ``T`` at a row is how much ``T`` moves, per unit of
        weight, when that row gains weight: ``T(sample) - T(truth)`` behaves like the weighted mean
        of the influence values, so ``sum(w * IF^2) / sum(w)^2`` is the delta-method variance of
        ``T`` (:func:`difference_standard_errors`). For average precision ``AP = E[pi(S) | Y=1]``,
        ``pi(t) = P(Y=1 | S >= t)``, the influence of a row ``(y, s)`` is ``(y pi(s) + sum over
        positives j scored at most s of w_j (y - pi_j) / FL_j - AP y) / p``, with ``FL_j`` the
        weight scored at least ``s_j`` (ties included, as in :meth:`metrics`) and ``p`` the weighted
        share of positives; for the FPR ``F/N``, ``(false_alarm - FPR negative) / (N / total)``.

        Returns:
            Metric -> a ``(k, n)`` array in the rows' order; 0 where a row has no weight.
        """
        import numpy as np

        ranked_w = w[:, self.order]
        positive_w = ranked_w * self.label_ranked
        total = ranked_w.sum(axis=1, keepdims=True)
        positives = positive_w.sum(axis=1, keepdims=True)
        flagged, caught = np.cumsum(ranked_w, axis=1), np.cumsum(positive_w, axis=1)
        if self.tied:  # a row's threshold takes its whole group of tied scores
            flagged, caught = flagged[:, self.group_end], caught[:, self.group_end]
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.divide(caught, flagged, out=np.zeros_like(flagged), where=flagged > 0)
            auc_pr = (positive_w * precision).sum(axis=1, keepdims=True) / positives
            per_positive = np.divide(positive_w, flagged, out=np.zeros_like(flagged), where=flagged > 0)
            ranked = self.label_ranked * (precision + self._at_or_below(per_positive) - auc_pr)
            ranked -= self._at_or_below(per_positive * precision)
            ranked *= total / positives
            out = {"auc_pr": np.empty_like(ranked)}
            out["auc_pr"][:, self.order] = ranked
            if self.false_alarm is not None:
                negatives = w @ self.negative
                fpr = (w @ self.false_alarm) / negatives
                out["fpr"] = (self.false_alarm - fpr[:, None] * self.negative) * (total / negatives[:, None])
        return {name: np.where(w > 0, values, 0.0) for name, values in out.items()}

    def _at_or_below(self, ranked: np.ndarray) -> np.ndarray:
        """Per rank, the sum of ``ranked`` over the ranks scored at most as high (ties included)."""
        import numpy as np

        before = np.cumsum(ranked, axis=1)
        before -= ranked  # exclusive running sums: the ranks strictly above
        if self.tied:
            before = before[:, self.group_start]
        return ranked.sum(axis=1, keepdims=True) - before


class RequestRows:
    """One predictor's requests (answered or not), for weighted operational metrics.

    Args:
        error: True where the request failed.
        approved: True where it was answered and not declined.
        latency_ms: Each request's latency.
        quantile: The latency quantile reported as ``p99_latency_ms``.
    """

    def __init__(self, error: np.ndarray, approved: np.ndarray, latency_ms: np.ndarray, quantile: float) -> None:
        import numpy as np

        self.n = len(error)
        self.error = error.astype(float)
        self.approved = approved.astype(float)
        self.latency_ms = latency_ms
        self.order = np.argsort(latency_ms, kind="stable")
        self.latency_ranked = latency_ms[self.order]
        self.quantile = quantile

    def subset(self, rows: np.ndarray) -> RequestRows:
        """The same metrics over the requests at the positions ``rows`` only."""
        return RequestRows(self.error[rows] > 0, self.approved[rows] > 0, self.latency_ms[rows], self.quantile)

    def metrics(self, w: np.ndarray) -> dict[str, np.ndarray]:
        """Error rate, approval rate (of answered requests) and the latency quantile under ``w``."""
        import numpy as np

        total = w.sum(axis=1)
        errors = w @ self.error
        cumulative = np.cumsum(w[:, self.order], axis=1)
        # The inverted-CDF quantile: the first latency whose cumulative weight reaches q.
        at = np.argmax(cumulative >= self.quantile * total[:, None], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return {
                "error_rate": errors / total,
                "approval_rate": w @ self.approved / (total - errors),
                "p99_latency_ms": self.latency_ranked[at],
            }


def difference_standard_errors(
    legacy: LabelledRows,
    challenger: LabelledRows,
    *,
    paired: bool,
    legacy_weights: np.ndarray | None = None,
    challenger_weights: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Delta-method standard errors of challenger minus legacy, from the rows' influence values.

    Args:
        legacy: The legacy predictor's labelled rows.
        challenger: The challenger's; aligned with ``legacy`` row by row when ``paired``.
        paired: The same requests scored by both: the difference's influence is the difference
            of the two influences at each request. Unpaired, the two sides are independent and
            their variances add.
        legacy_weights: ``(k, n)`` row weights (default: every row once, ``k = 1``).
        challenger_weights: The challenger's (paired: ignored, the legacy weights are shared).

    Returns:
        Metric (``auc_pr``, and ``fpr`` when both sides know their declines) -> ``k`` standard
        errors (NaN where a side cannot define the metric).
    """
    import numpy as np

    w_legacy = np.ones((1, legacy.n)) if legacy_weights is None else legacy_weights
    w_challenger = (
        w_legacy if paired else np.ones((1, challenger.n)) if challenger_weights is None else challenger_weights
    )
    old, new = legacy.influence(w_legacy), challenger.influence(w_challenger)
    found = {}
    for metric in set(old) & set(new):
        if paired:
            variance = (w_legacy * (new[metric] - old[metric]) ** 2).sum(axis=1) / w_legacy.sum(axis=1) ** 2
        else:
            variance = sum(
                (w * f[metric] ** 2).sum(axis=1) / w.sum(axis=1) ** 2 for w, f in ((w_legacy, old), (w_challenger, new))
            )
        found[metric] = np.sqrt(variance)
    return found


def point_estimate(engine: WeightedMetrics) -> dict[str, float]:
    """The engine's metrics on its rows as they are (every weight 1)."""
    import numpy as np

    return {name: float(values[0]) for name, values in engine.metrics(np.ones((1, engine.n))).items()}
