"""Safe rollout: a challenger model replaces the legacy one only after it proved itself on live traffic.

The pieces are pure functions and small records, so a controller (the local stack, a KFP
component, a test) wires them up without any of them knowing where traffic comes from:

1. :func:`compare_offline` -- models side by side on a holdout: AUC-PR, ROC AUC, recall at a
   fixed false-positive rate, Brier score, expected calibration error (ECE).
2. :func:`compare_live` -- from :func:`kfp_mlops.serving.prediction_log.join`: per predictor the same
   label metrics plus the decision KPIs (false-positive rate of declines, approval rate, share of
   the fraud amount caught) and the operational ones (error rate, p99 latency), each with a
   confidence interval, and the challenger-minus-legacy difference of each with an interval.
3. :class:`StagePlan` -- shadow, then canary steps (e.g. 5, 25, 50, 100 %), the labels each
   stage waits for, and the guardrails. :func:`decide` turns a stage and a live comparison into
   ``promote``, ``hold`` or ``rollback`` with reasons; :func:`spec_for` turns a stage into the
   :class:`~kfp_mlops.serving.spec.DeploymentSpec` to apply.
4. :class:`RolloutState` -- the stage and every decision so far, stored as JSON and moved by
   compare-and-swap (:func:`save_rollout`), so two controllers cannot both move it.

Statistics:

* **Single rates** (error rate, approval rate, false-positive rate of declines): Wilson score
  intervals -- good coverage for rare events, where a bootstrap collapses to ``[0, 0]``.
* **p99 latency**: the distribution-free order-statistic interval (ranks from Binomial(n, 0.99)).
* **Everything else and every difference**: the percentile **bootstrap** (``LiveConfig.bootstrap``
  resamples of the rows with replacement, seeded, so a comparison is reproducible). Resamples in
  which a metric is undefined (no fraud drawn) are left out; a metric undefined in more than half
  of them gets no interval.
* **Paired or not**: in the shadow stage both predictors scored the same requests, so the
  difference resamples *requests* and weights both predictors' rows of a request alike (paired,
  much tighter); in a canary they scored different requests, so each side is resampled on its
  own (unpaired). ``LiveConfig.paired=None`` picks paired when at least half of the challenger's
  requests were also scored by the legacy predictor; a paired difference uses the requests both
  scored (and, for label metrics, both answered and have a label).

Decision rules, checked in this order (:func:`decide`):

1. **Guardrails** (no labels needed; immediate ``rollback``): the challenger's error rate or its
   p99 latency is *significantly* above its limit (the interval's lower bound is above it).
2. **Labels**: ``hold`` until both predictors have ``min_labelled`` labelled requests with at
   least ``min_positives`` frauds among them in this stage.
3. **Significantly worse** (``rollback``): the AUC-PR difference's interval lies entirely below
   ``-auc_pr_tolerance``, or the false-positive-rate increase's interval lies entirely above
   ``max_fpr_increase``.
4. **Promote**: to an intermediate stage when the challenger is non-inferior (AUC-PR difference
   lower bound above ``-auc_pr_tolerance``); to 100 % only when it is *better* (lower bound above
   ``min_final_auc_pr_gain``, 0 by default: significantly better; set it negative to accept
   non-inferiority). A model that is merely "not shown worse" never takes all traffic.
5. Otherwise ``hold`` for more labels, and ``rollback`` once the challenger has
   ``max_labelled`` labelled requests in the stage without a verdict: the burden of proof is on
   the challenger.

So a challenger worse than the tolerance passes a stage only when an interval misses (at 95 %,
about one time in 40 per look): it is rolled back in the shadow stage or the first canary.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from kfp_mlops.core import storage
from kfp_mlops.core.errors import AlreadyExistsError, ConfigError, DataError, StorageError
from kfp_mlops.demos.fraud import LABEL
from kfp_mlops.serving.prediction_log import as_utc
from kfp_mlops.serving.spec import DeploymentSpec, PredictorSpec

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

LEGACY = "legacy"
CHALLENGER = "challenger"
STATUSES = ("running", "promoted", "rolled_back")
# Metrics whose single-predictor interval is a bootstrap one (the rest: Wilson, order statistics).
_BOOTSTRAPPED = ("auc_pr", "recall_at_fpr", "brier", "ece", "fraud_amount_caught_share")
_KINDS = ("requests", "labelled")  # the two row sets metrics are computed on
_WEIGHTS_PER_CHUNK = 2_000_000  # bootstrap weights held in memory at once (16 MB)


class InvalidPlan(ConfigError):
    """A stage plan that cannot be followed; the message lists every problem."""


# --- statistics ---------------------------------------------------------------------------------


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
    from scipy.stats import binom

    ordered = np.sort(np.asarray(values, dtype=float))
    n = len(ordered)
    alpha = 1 - confidence
    low_rank = int(binom.ppf(alpha / 2, n, q))
    high_rank = int(binom.ppf(1 - alpha / 2, n, q)) + 1
    return Interval(
        float(np.quantile(ordered, q, method="inverted_cdf")),
        float(ordered[low_rank - 1]) if low_rank >= 1 else -math.inf,
        float(ordered[high_rank - 1]) if high_rank <= n else math.inf,
    )


class _Labelled:
    """One predictor's labelled, scored rows, ready for weighted (bootstrap) metrics.

    Every metric takes a ``(k, n)`` matrix of row weights (ones: the plain estimate; how often a
    resample drew each row: bootstrap replicates) and returns ``k`` values, so replicates need no
    re-sorting.
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
        self.order = np.argsort(-score, kind="stable")
        ranked = score[self.order]
        # Thresholds fall between distinct scores: a positive counts with every row tied with it.
        ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])
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


class _Requests:
    """One predictor's requests (answered or not), for weighted operational metrics."""

    def __init__(self, error: np.ndarray, approved: np.ndarray, latency_ms: np.ndarray, quantile: float) -> None:
        import numpy as np

        self.n = len(error)
        self.error = error.astype(float)
        self.approved = approved.astype(float)
        self.order = np.argsort(latency_ms, kind="stable")
        self.latency_ranked = latency_ms[self.order]
        self.quantile = quantile

    def metrics(self, w: np.ndarray) -> dict[str, np.ndarray]:
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


def _point(engine: _Labelled | _Requests) -> dict[str, float]:
    import numpy as np

    return {name: float(values[0]) for name, values in engine.metrics(np.ones((1, engine.n))).items()}


def _replicates(
    engines: Sequence[_Labelled | _Requests], replicates: int, seed: Sequence[int]
) -> list[dict[str, np.ndarray]]:
    """Bootstrap replicates of each engine's metrics.

    Each replicate draws ``n`` rows with replacement, as a weight per row (how often it was
    drawn). The engines' rows are aligned and share each replicate's weights: one engine is a
    plain bootstrap, two a paired one.
    """
    import numpy as np

    rng = np.random.default_rng(list(seed))
    n = engines[0].n
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


def _percentile_interval(value: float, replicates: np.ndarray, confidence: float) -> Interval | None:
    import numpy as np

    finite = replicates[np.isfinite(replicates)]
    if not math.isfinite(value) or len(finite) < 0.5 * len(replicates):
        return None  # undefined on the data, or on most resamples: no honest interval
    tail = 50 * (1 - confidence)
    low, high = np.percentile(finite, [tail, 100 - tail])
    return Interval(value, float(low), float(high))


# --- offline comparison ----------------------------------------------------------------------


def compare_offline(
    models: Mapping[str, tuple[Any, Sequence[str]]],
    holdout: pd.DataFrame,
    *,
    label: str = LABEL,
    positive: str = "1",
    target_fpr: float = 0.01,
    ece_bins: int = 10,
) -> dict[str, dict[str, float]]:
    """Scores fitted models on the same holdout rows.

    Args:
        models: Name -> (fitted classifier with ``predict_proba`` and ``classes_``, the feature
            columns it takes), e.g. a pipeline from ``fit_model`` and ``fraud.LEGACY_FEATURES``.
        holdout: Rows with every model's features and ``label``.
        label: The label column.
        positive: The positive class, compared as a string (``fit_model`` trains on strings).
        target_fpr: The false-positive rate at which ``recall_at_fpr`` is read off the ROC curve.
        ece_bins: Equal-mass score bins of the expected calibration error.

    Returns:
        Name -> ``auc_pr`` (average precision), ``roc_auc``, ``recall_at_fpr``, ``brier``,
        ``ece``, ``mean_score`` and ``positive_rate`` (calibration in the large), ``rows``,
        ``positives``.

    Raises:
        DataError: a model's features or the label are missing, the holdout has only one class,
            or a model has no ``positive`` class.
    """
    import numpy as np
    from sklearn.metrics import roc_auc_score

    if label not in holdout.columns:
        raise DataError(f"holdout: no label column {label!r}")
    y = (holdout[label].astype(str) == positive).to_numpy().astype(float)
    if y.min() == y.max():
        raise DataError(f"holdout: all {len(y)} rows are of one class; AUC-PR and ROC AUC need both")
    results: dict[str, dict[str, float]] = {}
    for name, (model, features) in models.items():
        missing = [f for f in features if f not in holdout.columns]
        if missing:
            raise DataError(f"model {name!r}: holdout lacks feature(s) {', '.join(missing)}")
        score = positive_scores(model, holdout[list(features)], positive=positive, name=name)
        point = _point(_Labelled(y, score, target_fpr=target_fpr, ece_bins=ece_bins))
        results[name] = {
            **point,
            "roc_auc": float(roc_auc_score(y, score)),
            "mean_score": float(score.mean()),
            "positive_rate": float(y.mean()),
            "rows": len(y),
            "positives": int(np.sum(y)),
        }
    return results


def positive_scores(model: Any, rows: pd.DataFrame, *, positive: str = "1", name: str = "model") -> np.ndarray:
    """The probability of the ``positive`` class (compared as a string) for each row.

    Raises:
        DataError: the model has no such class.
    """
    classes = [str(c) for c in model.classes_]
    if positive not in classes:
        raise DataError(f"model {name!r}: no class {positive!r} among its classes {', '.join(classes)}")
    return model.predict_proba(rows)[:, classes.index(positive)]


# --- live comparison ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveConfig:
    """How live metrics and their intervals are computed.

    Attributes:
        target_fpr: The false-positive rate at which ``recall_at_fpr`` is read.
        confidence: Of every interval (0.95: 95 %).
        bootstrap: Bootstrap replicates.
        seed: Seed of the bootstrap (the same log gives the same intervals).
        ece_bins: Equal-mass bins of the expected calibration error.
        decline: The decision value that blocks a transaction (any other value approves).
        amount_feature: The input feature holding the transaction amount.
        latency_quantile: The latency quantile reported as ``p99_latency_ms``.
        paired: Force a paired (True) or unpaired (False) difference; None decides from the log.
    """

    target_fpr: float = 0.01
    confidence: float = 0.95
    bootstrap: int = 1000
    seed: int = 0
    ece_bins: int = 10
    decline: str = "decline"
    amount_feature: str = "amount"
    latency_quantile: float = 0.99
    paired: bool | None = None

    def problems(self) -> list[str]:
        """Every setting out of range (empty when valid)."""
        found = []
        for name in ("target_fpr", "confidence", "latency_quantile"):
            if not 0 < getattr(self, name) < 1:
                found.append(f"{name}={getattr(self, name)!r} must be between 0 and 1")
        if self.bootstrap < 100:
            found.append(f"bootstrap={self.bootstrap!r} must be at least 100 replicates")
        if self.ece_bins < 2:
            found.append(f"ece_bins={self.ece_bins!r} must be at least 2")
        return found


@dataclass(frozen=True)
class LiveComparison:
    """Live metrics of two predictors and the challenger-minus-legacy differences.

    Attributes:
        legacy: The legacy predictor's name.
        challenger: The challenger's name.
        paired: Whether the differences are paired (both scored the same requests).
        confidence: Of every interval.
        counts: Predictor -> ``requests``, ``errors``, ``approved``, ``labelled`` (answered and
            labelled), ``positives`` (frauds among those), ``false_positives`` (legitimate ones
            declined) and, when the inputs carry an amount, ``fraud_amount`` and
            ``fraud_amount_caught`` (declined).
        metrics: Predictor -> metric -> interval; a metric is absent when the data cannot
            define it (e.g. no fraud labelled yet).
        difference: Metric -> interval of challenger minus legacy.
    """

    legacy: str
    challenger: str
    paired: bool
    confidence: float
    counts: Mapping[str, Mapping[str, float]]
    metrics: Mapping[str, Mapping[str, Interval]]
    difference: Mapping[str, Interval]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the inverse of :meth:`from_dict`)."""
        return {
            "legacy": self.legacy,
            "challenger": self.challenger,
            "paired": self.paired,
            "confidence": self.confidence,
            "counts": {p: dict(c) for p, c in self.counts.items()},
            "metrics": {p: {m: i.to_dict() for m, i in ms.items()} for p, ms in self.metrics.items()},
            "difference": {m: i.to_dict() for m, i in self.difference.items()},
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> LiveComparison:
        """Reads :meth:`to_dict`'s form back (e.g. from a rollout's history)."""
        return cls(
            legacy=doc["legacy"],
            challenger=doc["challenger"],
            paired=doc["paired"],
            confidence=doc["confidence"],
            counts=doc["counts"],
            metrics={p: {m: Interval.from_dict(i) for m, i in ms.items()} for p, ms in doc["metrics"].items()},
            difference={m: Interval.from_dict(i) for m, i in doc["difference"].items()},
        )


def compare_live(
    joined: pd.DataFrame,
    *,
    legacy: str = LEGACY,
    challenger: str = CHALLENGER,
    config: LiveConfig = LiveConfig(),
) -> LiveComparison:
    """Compares two predictors on what they answered and the labels known so far.

    Args:
        joined: :func:`kfp_mlops.serving.prediction_log.join` of one stage's window.
        legacy: The legacy predictor's name in the log.
        challenger: The challenger's name in the log.
        config: Metric and interval settings.

    Returns:
        Per-predictor metrics with intervals, and the challenger-minus-legacy differences (see
        the module docstring for the methods). Label metrics use answered requests with a
        label; the error rate and latency every request; the approval rate answered ones.

    Raises:
        ConfigError: ``config`` is out of range.
    """
    found = config.problems()
    if found:
        raise ConfigError(f"live comparison settings are invalid: {'; '.join(found)}")
    names = (legacy, challenger)
    sides = [_Side(joined[joined["predictor"] == name], config) for name in names]
    points: list[dict[str, float]] = [{}, {}]
    replicates: list[dict[str, np.ndarray]] = [{}, {}]
    for index, side in enumerate(sides):
        for stream, kind in enumerate(_KINDS):
            engine = side.engine(kind)
            if engine is not None:
                points[index].update(_point(engine))
                replicates[index].update(_replicates([engine], config.bootstrap, (config.seed, index, stream))[0])

    challenger_ids = sides[1].ids("requests")
    common_requests = challenger_ids & sides[0].ids("requests")
    paired = config.paired
    if paired is None:
        paired = bool(challenger_ids) and 2 * len(common_requests) >= len(challenger_ids)
    difference: dict[str, Interval] = {}
    if paired:
        for stream, kind in enumerate(_KINDS):
            common = sorted(sides[0].ids(kind) & sides[1].ids(kind))
            engines = [side.engine(kind, only=common) for side in sides]
            if engines[0] is None or engines[1] is None:
                continue
            base, new = (_point(engine) for engine in engines)
            draws = _replicates(engines, config.bootstrap, (config.seed, 2, stream))
            for metric in base:
                interval = _percentile_interval(
                    new[metric] - base[metric], draws[1][metric] - draws[0][metric], config.confidence
                )
                if interval is not None:
                    difference[metric] = interval
    else:
        for metric in set(replicates[0]) & set(replicates[1]):
            interval = _percentile_interval(
                points[1][metric] - points[0][metric], replicates[1][metric] - replicates[0][metric], config.confidence
            )
            if interval is not None:
                difference[metric] = interval
    return LiveComparison(
        legacy=legacy,
        challenger=challenger,
        paired=paired,
        confidence=config.confidence,
        counts={name: side.counts for name, side in zip(names, sides)},
        metrics={name: side.intervals(points[i], replicates[i]) for i, (name, side) in enumerate(zip(names, sides))},
        difference=dict(sorted(difference.items())),
    )


class _Side:
    """One predictor's rows of a joined log: its requests, and its answered, labelled ones."""

    def __init__(self, rows: pd.DataFrame, config: LiveConfig) -> None:

        self.config = config
        self.rows = rows.set_index("request_id", drop=False)
        ok = (self.rows["status"] == "ok").to_numpy()
        declined = (self.rows["decision"] == config.decline).to_numpy()
        labelled = ok & self.rows["label"].notna().to_numpy()
        label = self.rows["label"].fillna(0).to_numpy(dtype=float)
        amount = _amounts(self.rows[labelled], config.amount_feature)
        self.counts: dict[str, float] = {
            "requests": len(self.rows),
            "errors": int((~ok).sum()),
            "approved": int((ok & ~declined).sum()),
            "labelled": int(labelled.sum()),
            "positives": int(label[labelled].sum()),
            "false_positives": int(((1 - label) * declined)[labelled].sum()),
        }
        if amount is not None:
            fraud_amount = label[labelled] * amount
            self.counts["fraud_amount"] = float(fraud_amount.sum())
            self.counts["fraud_amount_caught"] = float((fraud_amount * declined[labelled]).sum())
        self._labelled = labelled

    def ids(self, kind: str) -> set[str]:
        index = self.rows.index if kind == "requests" else self.rows.index[self._labelled]
        return set(index)

    def engine(self, kind: str, only: Sequence[str] | None = None) -> _Labelled | _Requests | None:
        """Metrics of this side's requests or labelled answers (restricted to ids ``only``)."""
        config = self.config
        rows = self.rows if kind == "requests" else self.rows[self._labelled]
        if only is not None:
            rows = rows.loc[list(only)]
        if rows.empty:
            return None
        ok = (rows["status"] == "ok").to_numpy()
        declined = (rows["decision"] == config.decline).to_numpy()
        if kind == "requests":
            return _Requests(~ok, ok & ~declined, rows["latency_ms"].to_numpy(dtype=float), config.latency_quantile)
        y = rows["label"].to_numpy(dtype=float)
        if y.min() == y.max():
            return None  # label metrics need both classes
        return _Labelled(
            y,
            rows["score"].to_numpy(dtype=float),
            target_fpr=config.target_fpr,
            ece_bins=config.ece_bins,
            declined=declined.astype(float),
            amount=_amounts(rows, config.amount_feature),
        )

    def intervals(self, points: Mapping[str, float], replicates: Mapping[str, np.ndarray]) -> dict[str, Interval]:
        """Wilson for rates, order statistics for the latency quantile, bootstrap for the rest."""
        confidence = self.config.confidence
        c = self.counts
        found: dict[str, Interval] = {}
        if c["requests"]:
            found["error_rate"] = wilson_interval(c["errors"], c["requests"], confidence)
            found["p99_latency_ms"] = quantile_interval(
                self.rows["latency_ms"].to_numpy(dtype=float), self.config.latency_quantile, confidence
            )
        if c["requests"] > c["errors"]:
            found["approval_rate"] = wilson_interval(c["approved"], c["requests"] - c["errors"], confidence)
        if "fpr" in points:
            found["fpr"] = wilson_interval(c["false_positives"], c["labelled"] - c["positives"], confidence)
        for metric in _BOOTSTRAPPED:
            if metric in points:
                interval = _percentile_interval(points[metric], replicates[metric], confidence)
                if interval is not None:
                    found[metric] = interval
        return dict(sorted(found.items()))


def _amounts(rows: pd.DataFrame, feature: str) -> np.ndarray | None:
    """The transaction amounts from the logged inputs; None when any row lacks a numeric one."""
    import numpy as np

    values = [f.get(feature) if isinstance(f, Mapping) else None for f in rows["features"]]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return None
    return np.asarray(values, dtype=float)


# --- stages, plan, decisions -------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """Where a rollout stands.

    Attributes:
        kind: ``shadow`` (the challenger sees a copy of every request, answers none), ``canary``
            (it answers ``percent`` % of requests), ``promoted`` (it answers all; the legacy
            predictor is gone) or ``rolled_back`` (the legacy predictor answers all again).
        percent: The challenger's share of live traffic.
    """

    kind: str
    percent: int = 0

    @property
    def name(self) -> str:
        """``shadow``, ``canary-<percent>``, ``promoted`` or ``rolled_back``."""
        return f"canary-{self.percent}" if self.kind == "canary" else self.kind


PROMOTED = Stage("promoted", 100)
ROLLED_BACK = Stage("rolled_back", 0)


@dataclass(frozen=True)
class StagePlan:
    """The stages a challenger goes through and what each must show.

    Attributes:
        shadow: Start with a shadow stage.
        steps: The challenger's canary traffic shares in percent, strictly increasing, the last
            100 (reaching it is the promotion).
        min_labelled: Labelled requests each predictor needs in a stage before a verdict.
        min_positives: Frauds among them (AUC-PR from a handful of positives means nothing).
        max_labelled: Labelled challenger requests after which a stage without a verdict fails.
        max_error_rate: Guardrail: rollback when the challenger's error rate is significantly above.
        max_p99_latency_ms: Guardrail: rollback when its p99 latency is significantly above.
        auc_pr_tolerance: How much lower the challenger's AUC-PR may be (non-inferiority margin).
        min_final_auc_pr_gain: The AUC-PR difference's lower bound must exceed this to take all
            traffic (0: significantly better; negative: non-inferior by that margin).
        max_fpr_increase: Rollback when the challenger's false-positive rate (of declines) is
            significantly more than this above the legacy one's.
    """

    shadow: bool = True
    steps: tuple[int, ...] = (5, 25, 50, 100)
    min_labelled: int = 2000
    min_positives: int = 20
    max_labelled: int = 50_000
    max_error_rate: float = 0.01
    max_p99_latency_ms: float = 250.0
    auc_pr_tolerance: float = 0.02
    min_final_auc_pr_gain: float = 0.0
    max_fpr_increase: float = 0.005

    def problems(self) -> list[str]:
        """Every problem with the plan (empty when valid)."""
        found: list[str] = []
        if not isinstance(self.shadow, bool):
            found.append(f"shadow={self.shadow!r} must be true or false")
        steps = self.steps
        if not isinstance(steps, (tuple, list)) or not steps:
            found.append(f"steps {steps!r} must be a non-empty list of percentages ending at 100")
        else:
            if any(isinstance(s, bool) or not isinstance(s, int) or not 0 < s <= 100 for s in steps):
                found.append(f"steps {list(steps)}: each must be an integer percentage in (0, 100]")
            elif any(b <= a for a, b in zip(steps, steps[1:])):
                found.append(f"steps {list(steps)} must be strictly increasing")
            if steps[-1] != 100:
                found.append(f"the last step must be 100 (the promotion), got {steps[-1]!r}")
            if not self.shadow and len(steps) == 1:
                found.append("no stage before 100 %: enable shadow or add a canary step below 100")
        counts = {}
        for name in ("min_labelled", "min_positives", "max_labelled"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                found.append(f"{name}={value!r} must be a positive integer")
            else:
                counts[name] = value
        if len(counts) == 3:
            if counts["max_labelled"] < counts["min_labelled"]:
                found.append(f"max_labelled={self.max_labelled} is below min_labelled={self.min_labelled}")
            if counts["min_positives"] > counts["min_labelled"]:
                found.append(f"min_positives={self.min_positives} exceeds min_labelled={self.min_labelled}")
        for name, low, high in (
            ("max_error_rate", 0.0, 1.0),
            ("auc_pr_tolerance", 0.0, 1.0),
            ("max_fpr_increase", 0.0, 1.0),
            ("min_final_auc_pr_gain", -1.0, 1.0),
        ):
            value = getattr(self, name)
            if not _is_number(value) or not low <= value < high:
                found.append(f"{name}={value!r} must be a number in [{low:g}, {high:g})")
        if not _is_number(self.max_p99_latency_ms) or not self.max_p99_latency_ms > 0:
            found.append(f"max_p99_latency_ms={self.max_p99_latency_ms!r} must be a positive number")
        margins_valid = not any(f.startswith(("auc_pr_tolerance=", "min_final_auc_pr_gain=")) for f in found)
        if margins_valid and self.min_final_auc_pr_gain < -self.auc_pr_tolerance:
            found.append(
                f"min_final_auc_pr_gain={self.min_final_auc_pr_gain} is laxer than the canary stages' "
                f"-auc_pr_tolerance={-self.auc_pr_tolerance}"
            )
        return found

    def validate(self) -> StagePlan:
        """Returns the plan if valid.

        Raises:
            InvalidPlan: listing every problem.
        """
        found = self.problems()
        if found:
            raise InvalidPlan(f"stage plan is invalid, traffic left as it is: {'; '.join(found)}")
        return self

    def stages(self) -> tuple[Stage, ...]:
        """Every stage in order, ending with :data:`PROMOTED`."""
        canaries = tuple(Stage("canary", s) for s in self.steps if s < 100)
        return (Stage("shadow"),) * self.shadow + canaries + (PROMOTED,)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the inverse of :meth:`from_dict`)."""
        doc = dataclasses.asdict(self)
        doc["steps"] = list(self.steps)
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> StagePlan:
        """Parses and validates a plan document.

        Raises:
            InvalidPlan: unknown keys, or any problem :meth:`problems` finds.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise InvalidPlan(f"stage plan: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values = dict(doc)
        if isinstance(values.get("steps"), list):
            values["steps"] = tuple(values["steps"])
        return cls(**values).validate()


@dataclass(frozen=True)
class Decision:
    """What to do at a stage, and why.

    Attributes:
        action: ``promote`` (go to ``next_stage``), ``hold`` (stay) or ``rollback``.
        stage: The stage the decision was made at.
        next_stage: The stage to be at afterwards (``stage`` for a hold).
        reasons: Human-readable reasons, each naming the numbers it rests on.
        comparison: The live comparison it rests on (JSON form).
    """

    action: str
    stage: Stage
    next_stage: Stage
    reasons: tuple[str, ...]
    comparison: Mapping[str, Any]


def decide(plan: StagePlan, stage: Stage, live: LiveComparison) -> Decision:
    """Promote, hold or roll back, from one stage's live comparison (see the module docstring).

    Deterministic: the same plan, stage and comparison always give the same decision.

    Raises:
        InvalidPlan: the plan is invalid.
        ConfigError: ``stage`` is not a running stage of the plan.
    """
    plan.validate()
    stages = plan.stages()
    if stage not in stages[:-1]:
        raise ConfigError(
            f"stage {stage.name}: not a running stage of the plan ({', '.join(s.name for s in stages[:-1])}); "
            "a finished rollout has nothing to decide"
        )
    following = stages[stages.index(stage) + 1]
    ch, leg = live.challenger, live.legacy
    mine = live.metrics.get(ch, {})
    level = f"{live.confidence:.0%} CI"

    def verdict(action: str, reasons: list[str]) -> Decision:
        target = {"promote": following, "hold": stage, "rollback": ROLLED_BACK}[action]
        return Decision(action, stage, target, tuple(reasons), live.to_dict())

    breaches = []
    errors, latency = mine.get("error_rate"), mine.get("p99_latency_ms")
    if errors is not None and errors.low > plan.max_error_rate:
        breaches.append(
            f"guardrail: challenger error rate {errors.value:.2%} ({level} {errors.low:.2%}-"
            f"{errors.high:.2%}, {live.counts[ch]['errors']} of {live.counts[ch]['requests']}) "
            f"is above the limit {plan.max_error_rate:.2%}"
        )
    if latency is not None and latency.low > plan.max_p99_latency_ms:
        breaches.append(
            f"guardrail: challenger p99 latency {latency.value:.1f} ms ({level} from "
            f"{latency.low:.1f} ms) is above the limit {plan.max_p99_latency_ms:g} ms"
        )
    if breaches:
        return verdict("rollback", breaches)

    waiting = []
    for role, name in (("challenger", ch), ("legacy", leg)):
        counts = live.counts.get(name, {})
        labelled, positives = counts.get("labelled", 0), counts.get("positives", 0)
        if labelled < plan.min_labelled or positives < plan.min_positives:
            waiting.append(f"{role} {labelled}/{plan.min_labelled} labelled, {positives}/{plan.min_positives} frauds")
    auc = live.difference.get("auc_pr")
    if waiting or auc is None:
        return verdict("hold", [f"waiting for labels: {'; '.join(waiting) or 'AUC-PR difference not defined yet'}"])

    auc_text = f"AUC-PR difference {auc.value:+.3f} ({level} {auc.low:+.3f} to {auc.high:+.3f})"
    worse = []
    if auc.high < -plan.auc_pr_tolerance:
        worse.append(f"challenger significantly worse: {auc_text} lies below -{plan.auc_pr_tolerance:g}")
    fpr = live.difference.get("fpr")
    if fpr is not None and fpr.low > plan.max_fpr_increase:
        worse.append(
            f"challenger declines too many legitimate transactions: false-positive rate "
            f"{fpr.value:+.2%} ({level} {fpr.low:+.2%} to {fpr.high:+.2%}) above the allowed "
            f"increase {plan.max_fpr_increase:.2%}"
        )
    if worse:
        return verdict("rollback", worse)

    bar = plan.min_final_auc_pr_gain if following == PROMOTED else -plan.auc_pr_tolerance
    what = "better enough to take all traffic" if following == PROMOTED else "not worse"
    if auc.low > bar:
        return verdict("promote", [f"challenger {what}: {auc_text} is above {bar:+g}; next: {following.name}"])
    labelled = live.counts[ch]["labelled"]
    if labelled >= plan.max_labelled:
        return verdict(
            "rollback",
            [
                f"no verdict after {labelled} labelled challenger requests (max_labelled "
                f"{plan.max_labelled}): {auc_text} does not clear {bar:+g}"
            ],
        )
    return verdict(
        "hold",
        [
            f"inconclusive: {auc_text} does not clear {bar:+g} yet; collecting labels "
            f"({labelled} of at most {plan.max_labelled})"
        ],
    )


def spec_for(stage: Stage, base: DeploymentSpec, legacy_uri: str, challenger_uri: str) -> DeploymentSpec:
    """The deployment for a stage, keeping ``base``'s name, namespace, protocol and labels.

    Predictors are named :data:`LEGACY` and :data:`CHALLENGER` (replicas from ``base``'s
    predictors of those names, else 1): shadow = legacy 100 % + challenger shadow; canary k =
    legacy 100-k, challenger k; promoted = challenger alone; rolled back = legacy alone.

    Raises:
        InvalidSpec: the result breaks a deployment rule (e.g. names too long for ``base.name``).
    """
    replicas = {p.name: p.replicas for p in base.predictors}

    def predictor(name: str, uri: str, traffic: int, shadow: bool = False) -> PredictorSpec:
        return PredictorSpec(name, uri, traffic, shadow=shadow, replicas=replicas.get(name, 1))

    if stage.kind == "shadow":
        predictors = (predictor(LEGACY, legacy_uri, 100), predictor(CHALLENGER, challenger_uri, 0, shadow=True))
    elif stage.kind == "canary":
        predictors = (
            predictor(LEGACY, legacy_uri, 100 - stage.percent),
            predictor(CHALLENGER, challenger_uri, stage.percent),
        )
    elif stage == PROMOTED:
        predictors = (predictor(CHALLENGER, challenger_uri, 100),)
    elif stage == ROLLED_BACK:
        predictors = (predictor(LEGACY, legacy_uri, 100),)
    else:
        raise ConfigError(f"stage {stage!r}: unknown kind; expected shadow, canary, promoted or rolled_back")
    return dataclasses.replace(base, predictors=predictors).validate()


# --- state ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutState:
    """A rollout's progress: the plan, the models, the current stage and every decision so far.

    Attributes:
        plan: The plan it follows (fixed for the rollout).
        legacy_uri: The legacy model's folder.
        challenger_uri: The challenger's folder.
        stage_index: Index into ``plan.stages()`` of the current (or last running) stage.
        status: ``running``, ``promoted`` or ``rolled_back``.
        stage_started_at: When the current stage began (its live window starts there).
        history: Every decision: time, stage, action, next stage, reasons, comparison.
    """

    plan: StagePlan
    legacy_uri: str
    challenger_uri: str
    stage_index: int
    status: str
    stage_started_at: datetime
    history: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def start(cls, plan: StagePlan, legacy_uri: str, challenger_uri: str, *, at: datetime) -> RolloutState:
        """A new rollout at the plan's first stage."""
        return cls(plan.validate(), legacy_uri, challenger_uri, 0, "running", as_utc(at, "at"))

    @property
    def stage(self) -> Stage:
        """The current stage (:data:`PROMOTED` or :data:`ROLLED_BACK` once over)."""
        return ROLLED_BACK if self.status == "rolled_back" else self.plan.stages()[self.stage_index]

    def apply(self, decision: Decision, *, at: datetime) -> RolloutState:
        """The state after ``decision``, made at ``at`` (a new stage starts then).

        Raises:
            ConfigError: the rollout is over, or the decision was made for another stage.
        """
        if self.status != "running":
            raise ConfigError(f"rollout is {self.status}: no further decisions apply")
        if decision.stage != self.stage:
            raise ConfigError(f"decision made at stage {decision.stage.name}, but the rollout is at {self.stage.name}")
        at = as_utc(at, "at")
        entry = {
            "at": at.isoformat(),
            "stage": decision.stage.name,
            "action": decision.action,
            "next_stage": decision.next_stage.name,
            "reasons": list(decision.reasons),
            "comparison": dict(decision.comparison),
        }
        changes: dict[str, Any] = {"history": (*self.history, entry)}
        if decision.action == "rollback":
            changes.update(status="rolled_back")
        elif decision.action == "promote":
            changes.update(stage_index=self.stage_index + 1, stage_started_at=at)
            if decision.next_stage == PROMOTED:
                changes.update(status="promoted")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the inverse of :meth:`from_dict`; ``stage`` is there for readers only)."""
        return {
            "plan": self.plan.to_dict(),
            "legacy_uri": self.legacy_uri,
            "challenger_uri": self.challenger_uri,
            "stage_index": self.stage_index,
            "stage": self.stage.name,
            "status": self.status,
            "stage_started_at": self.stage_started_at.isoformat(),
            "history": [dict(h) for h in self.history],
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> RolloutState:
        """Parses a state document.

        Raises:
            DataError: a key is missing or a value is invalid.
        """
        try:
            state = cls(
                plan=StagePlan.from_dict(doc["plan"]),
                legacy_uri=doc["legacy_uri"],
                challenger_uri=doc["challenger_uri"],
                stage_index=int(doc["stage_index"]),
                status=doc["status"],
                stage_started_at=datetime.fromisoformat(doc["stage_started_at"]),
                history=tuple(doc.get("history", ())),
            )
        except KeyError as exc:
            raise DataError(f"rollout state: missing key {exc}") from None
        except (TypeError, ValueError, ConfigError) as exc:
            raise DataError(f"rollout state: {exc}") from None
        stages = state.plan.stages()
        consistent = (
            state.status in STATUSES
            and 0 <= state.stage_index < len(stages)
            and (state.status == "promoted") == (stages[state.stage_index] == PROMOTED)
        )
        if not consistent:
            raise DataError(
                f"rollout state: status {state.status!r} at stage index {state.stage_index} is inconsistent"
            )
        return state


def start_rollout(uri: str, plan: StagePlan, legacy_uri: str, challenger_uri: str, *, at: datetime) -> RolloutState:
    """Records a new rollout at ``uri``; a finished one there is replaced, a running one is not.

    Raises:
        AlreadyExistsError: a rollout is running at ``uri``, or another controller wrote it meanwhile.
    """
    data, version = storage.read_versioned(uri)
    if data is not None:
        current = _parse(uri, data)
        if current.status == "running":
            raise AlreadyExistsError(
                f"{uri}: a rollout of {current.challenger_uri} is running at {current.stage.name}; "
                "finish or roll it back first"
            )
    state = RolloutState.start(plan, legacy_uri, challenger_uri, at=at)
    save_rollout(uri, state, version)
    return state


def load_rollout(uri: str) -> tuple[RolloutState, str]:
    """The rollout recorded at ``uri`` and its version token for :func:`save_rollout`.

    Raises:
        StorageError: nothing is recorded there.
        DataError: the document is not a rollout state.
    """
    data, version = storage.read_versioned(uri)
    if data is None or version is None:
        raise StorageError(f"{uri}: no rollout recorded (start one with start_rollout)")
    return _parse(uri, data), version


def save_rollout(uri: str, state: RolloutState, expected_version: str | None) -> None:
    """Writes ``state`` if the stored one still has ``expected_version`` (compare-and-swap).

    Raises:
        AlreadyExistsError: another controller moved the rollout since it was read; not written.
    """
    data = (json.dumps(state.to_dict(), indent=2, sort_keys=True) + "\n").encode()
    try:
        storage.compare_and_swap(uri, data, expected_version)
    except AlreadyExistsError:
        raise AlreadyExistsError(
            f"{uri}: another controller moved the rollout since it was read; this decision was not recorded"
        ) from None


def _parse(uri: str, data: bytes) -> RolloutState:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise DataError(f"{uri}: not valid JSON: {exc}") from None
    try:
        return RolloutState.from_dict(doc)
    except DataError as exc:
        raise DataError(f"{uri}: {exc}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
