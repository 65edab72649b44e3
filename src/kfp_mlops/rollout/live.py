"""Live comparison: two predictors on what they answered and the labels known so far.

:func:`compare_live` reads a joined prediction log (:func:`kfp_mlops.serving.prediction_log.join`
of one stage's window) and gives, per predictor, the label metrics of the offline comparison
(AUC-PR, recall at a fixed false-positive rate, Brier, ECE), the decision KPIs (false-positive
rate of declines, approval rate, share of the fraud amount caught) and the operational ones
(error rate, p99 latency), each with a confidence interval, and the challenger-minus-legacy
difference of each with an interval (:class:`LiveComparison`).

Requests the server **refused** (status ``rejected``: a 4xx, the client's fault) are left out of
every metric -- the error rate, the latency, the approval rate -- and only counted
(``counts[...]["rejected"]``): otherwise anyone able to send garbage to the challenger (``X-Predictor:
challenger``) could force a rollback, or dilute its real failures. ``error`` (a server failure or a
timeout) is what the error-rate guardrail counts.

Intervals (methods in :mod:`kfp_mlops.rollout.intervals`):

* **Single rates** (error rate, approval rate, false-positive rate of declines): Wilson score
  intervals -- good coverage for rare events, where a bootstrap collapses to ``[0, 0]``.
* **p99 latency**: the distribution-free order-statistic interval (ranks from Binomial(n, 0.99)).
* **Everything else and every difference**: the percentile **bootstrap** (``LiveConfig.bootstrap``
  resamples of the rows with replacement, seeded, so a comparison is reproducible). Resamples in
  which a metric is undefined (no fraud drawn) are left out; a metric undefined in more than half
  of them gets no interval. Above ``LiveConfig.bootstrap_rows`` rows, a seeded subsample is
  resampled and rescaled (:mod:`kfp_mlops.rollout.intervals`), so a step over tens of millions of
  logged predictions stays within seconds.
* **Paired or not**: in the shadow stage both predictors scored the same requests, so the
  difference resamples *requests* and weights both predictors' rows of a request alike (paired,
  much tighter); in a canary they scored different requests, so each side is resampled on its
  own (unpaired). ``LiveConfig.paired=None`` picks paired when at least half of the challenger's
  requests were also scored by the legacy predictor; a paired difference uses the requests both
  scored (and, for label metrics, both answered and have a label).

These intervals are *reported*. The decisions that gate traffic (:func:`kfp_mlops.rollout.plan.decide`)
use anytime-valid confidence sequences (:mod:`kfp_mlops.rollout.sequential`), built from what the
comparison also carries:

* **standard errors** of the gating differences (AUC-PR, false-positive rate), delta-method ones
  from each row's influence value (:meth:`~kfp_mlops.rollout.metrics.LabelledRows.influence`):
  deterministic, free of resampling noise, and the form the sequences' theory is stated in. With
  each the sample size it scales with: paired, the labelled requests both scored; unpaired, the
  challenger's labelled requests -- within a canary stage the legacy share is fixed, so the
  two-sample variance ``s_c^2 / n_c + s_l^2 / n_l`` is ``sigma^2 / n_c`` with a constant ``sigma``
  (any count proportional to the stage's traffic would do; this one is the unit of the plan's
  ``max_labelled``);
* **counts** of requests and errors (the error-rate guardrail);
* **latency exceedances**: per predictor, how many requests were slower than each threshold of a
  fixed logarithmic grid (100 per decade, from the 90th percentile up past the slowest request),
  so the latency guardrail can count the requests slower than the plan's limit without this
  module knowing the plan (:meth:`LiveComparison.slower_than`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from kfp_mlops.core.configs import Config
from kfp_mlops.rollout.intervals import (
    Interval,
    bootstrap_replicates,
    percentile_interval,
    quantile_interval,
    wilson_interval,
)
from kfp_mlops.rollout.metrics import LabelledRows, RequestRows, difference_standard_errors, point_estimate
from kfp_mlops.rollout.sequential import StandardError
from kfp_mlops.serving.prediction_log import REJECTED

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# The predictor names a rollout's deployments and prediction log use.
LEGACY = "legacy"
CHALLENGER = "challenger"
# Metrics whose single-predictor interval is a bootstrap one (the rest: Wilson, order statistics).
_BOOTSTRAPPED = ("auc_pr", "recall_at_fpr", "brier", "ece", "fraud_amount_caught_share")
_KINDS = ("requests", "labelled")  # the two row sets metrics are computed on
_GRID_PER_DECADE = 100  # latency thresholds of the exceedance counts: 2.3 % apart
_GRID_FROM_QUANTILE = 0.9  # the lowest threshold counted: at or below this latency quantile


@dataclass(frozen=True)
class LiveConfig(Config):
    """How live metrics and their intervals are computed (a :class:`~kfp_mlops.core.configs.Config`).

    Attributes:
        target_fpr: The false-positive rate at which ``recall_at_fpr`` is read.
        confidence: Of every interval (0.95: 95 %).
        bootstrap: Bootstrap replicates.
        bootstrap_rows: Rows a bootstrap resamples at most; above, a subsample of this size,
            rescaled.
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
    bootstrap_rows: int = 100_000
    seed: int = 0
    ece_bins: int = 10
    decline: str = "decline"
    amount_feature: str = "amount"
    latency_quantile: float = 0.99
    paired: bool | None = None

    config_name: ClassVar[str] = "live_config"

    def problems(self) -> list[str]:
        """Every setting out of range (empty when valid)."""
        found = []
        for name in ("target_fpr", "confidence", "latency_quantile"):
            if not 0 < getattr(self, name) < 1:
                found.append(f"{name}={getattr(self, name)!r} must be between 0 and 1")
        if self.bootstrap < 100:
            found.append(f"bootstrap={self.bootstrap!r} must be at least 100 replicates")
        if self.bootstrap_rows < 1000:
            found.append(f"bootstrap_rows={self.bootstrap_rows!r} must be at least 1000 rows")
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
        counts: Predictor -> ``requests`` and ``errors`` (refused requests left out), ``rejected``
            (requests the server refused), ``approved``, ``labelled`` (answered and labelled),
            ``positives`` (frauds among those), ``false_positives`` (legitimate ones declined)
            and, when the inputs carry an amount, ``fraud_amount`` and ``fraud_amount_caught``
            (declined).
        metrics: Predictor -> metric -> interval; a metric is absent when the data cannot
            define it (e.g. no fraud labelled yet).
        difference: Metric -> interval of challenger minus legacy.
        standard_errors: Metric -> standard error of the difference and its sample size, for
            the metrics decisions rest on (``auc_pr``, ``fpr``); empty in comparisons recorded
            before they existed.
        latency_exceedances: Predictor -> ``(threshold_ms, requests slower)`` pairs on the
            module's latency grid, thresholds increasing.
    """

    legacy: str
    challenger: str
    paired: bool
    confidence: float
    counts: Mapping[str, Mapping[str, float]]
    metrics: Mapping[str, Mapping[str, Interval]]
    difference: Mapping[str, Interval]
    standard_errors: Mapping[str, StandardError] = field(default_factory=dict)
    latency_exceedances: Mapping[str, tuple[tuple[float, int], ...]] = field(default_factory=dict)

    def slower_than(self, predictor: str, limit_ms: float) -> tuple[int, float] | None:
        """How many of ``predictor``'s requests were certainly slower than ``limit_ms``.

        Returns:
            ``(count, threshold_ms)``: the requests slower than the first grid threshold at or
            above the limit -- a lower bound of those slower than the limit itself; the threshold
            is at most 2.3 % above the limit where the grid is kept (from the 90th percentile
            up) -- and that threshold; None without requests.
        """
        pairs = self.latency_exceedances.get(predictor)
        if not pairs:
            return None
        return next(((count, t) for t, count in pairs if t >= limit_ms), (0, limit_ms))

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
            "standard_errors": {m: e.to_dict() for m, e in self.standard_errors.items()},
            "latency_exceedances": {p: [list(pair) for pair in pairs] for p, pairs in self.latency_exceedances.items()},
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
            standard_errors={m: StandardError.from_dict(e) for m, e in doc.get("standard_errors", {}).items()},
            latency_exceedances={
                p: tuple((float(t), int(c)) for t, c in pairs)
                for p, pairs in doc.get("latency_exceedances", {}).items()
            },
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
    config.validate()
    names = (legacy, challenger)
    sides = [_Side(joined[joined["predictor"] == name], config) for name in names]
    points: list[dict[str, float]] = [{}, {}]
    replicates: list[dict[str, np.ndarray]] = [{}, {}]
    labelled: list[LabelledRows | RequestRows | None] = [None, None]  # each side's labelled rows: standard errors
    for index, side in enumerate(sides):
        for stream, kind in enumerate(_KINDS):
            engine = side.engine(kind)
            if kind == "labelled":
                labelled[index] = engine
            if engine is not None:
                points[index].update(point_estimate(engine))
                drawn = bootstrap_replicates(
                    [engine], config.bootstrap, (config.seed, index, stream), config.bootstrap_rows
                )
                replicates[index].update(drawn[0])

    challenger_ids = sides[1].ids("requests")
    common_requests = challenger_ids & sides[0].ids("requests")
    paired = config.paired
    if paired is None:
        paired = bool(challenger_ids) and 2 * len(common_requests) >= len(challenger_ids)
    difference: dict[str, Interval] = {}
    if paired:
        labelled = [None, None]  # the standard errors use the requests both scored, row by row
        for stream, kind in enumerate(_KINDS):
            common = sorted(sides[0].ids(kind) & sides[1].ids(kind))
            legacy_rows, challenger_rows = (side.engine(kind, only=common) for side in sides)
            if legacy_rows is None or challenger_rows is None:
                continue
            if kind == "labelled":
                labelled = [legacy_rows, challenger_rows]
            base, new = point_estimate(legacy_rows), point_estimate(challenger_rows)
            draws = bootstrap_replicates(
                [legacy_rows, challenger_rows], config.bootstrap, (config.seed, 2, stream), config.bootstrap_rows
            )
            for metric in base:
                interval = percentile_interval(
                    new[metric] - base[metric], draws[1][metric] - draws[0][metric], config.confidence
                )
                if interval is not None:
                    difference[metric] = interval
    else:
        for metric in set(replicates[0]) & set(replicates[1]):
            interval = percentile_interval(
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
        standard_errors=_standard_errors(*labelled, paired=paired),
        latency_exceedances={name: side.exceedances() for name, side in zip(names, sides) if side.tally["requests"]},
    )


def _standard_errors(
    legacy_rows: LabelledRows | RequestRows | None, challenger_rows: LabelledRows | RequestRows | None, *, paired: bool
) -> dict[str, StandardError]:
    """The delta-method standard errors of the gating differences (see the module docstring)."""
    if not isinstance(legacy_rows, LabelledRows) or not isinstance(challenger_rows, LabelledRows):
        return {}
    found = difference_standard_errors(legacy_rows, challenger_rows, paired=paired)
    return {
        metric: StandardError(float(se[0]), challenger_rows.n)
        for metric, se in sorted(found.items())
        if math.isfinite(se[0])
    }


def latency_exceedances(latency_ms: np.ndarray) -> tuple[tuple[float, int], ...]:
    """``(threshold_ms, requests slower)`` on the logarithmic grid, from the 90th percentile past the slowest.

    Thresholds are ``10 ** (j / 100)`` ms rounded to 6 significant digits (the counts use the
    rounded values), so every comparison shares one grid.
    """
    import numpy as np

    values = np.asarray(latency_ms, dtype=float)
    values = values[np.isfinite(values)]  # a request without a latency counts as not slow
    if len(values) == 0:
        return ()
    ordered = np.sort(np.maximum(values, 1e-3))
    first = math.floor(_GRID_PER_DECADE * math.log10(np.quantile(ordered, _GRID_FROM_QUANTILE)))
    last = math.floor(_GRID_PER_DECADE * math.log10(ordered[-1])) + 1
    thresholds = [float(f"{10 ** (j / _GRID_PER_DECADE):.6g}") for j in range(first, last + 1)]
    slower = len(ordered) - np.searchsorted(ordered, thresholds, side="right")
    return tuple((t, int(c)) for t, c in zip(thresholds, slower))


class _Side:
    """One predictor's rows of a joined log: its requests, and its answered, labelled ones."""

    def __init__(self, rows: pd.DataFrame, config: LiveConfig) -> None:
        self.config = config
        # A request the server refused is the client's doing: counted, but in no metric (module docstring).
        refused = (rows["status"] == REJECTED).to_numpy()
        self.rows = rows[~refused].set_index("request_id", drop=False)
        ok = (self.rows["status"] == "ok").to_numpy()
        declined = (self.rows["decision"] == config.decline).to_numpy()
        labelled = ok & self.rows["label"].notna().to_numpy()
        label = self.rows["label"].fillna(0).to_numpy(dtype=float)
        amount = _amounts(self.rows[labelled], config.amount_feature)
        # Whole numbers, the sample sizes of the Wilson intervals; ``counts`` adds the amounts.
        self.tally: dict[str, int] = {
            "requests": len(self.rows),
            "errors": int((~ok).sum()),
            "approved": int((ok & ~declined).sum()),
            "labelled": int(labelled.sum()),
            "positives": int(label[labelled].sum()),
            "false_positives": int(((1 - label) * declined)[labelled].sum()),
            "rejected": int(refused.sum()),
        }
        self.counts: dict[str, float] = dict(self.tally)
        if amount is not None:
            fraud_amount = label[labelled] * amount
            self.counts["fraud_amount"] = float(fraud_amount.sum())
            self.counts["fraud_amount_caught"] = float((fraud_amount * declined[labelled]).sum())
        self._labelled = labelled

    def ids(self, kind: str) -> set[str]:
        """The request ids of this side's requests or labelled answers."""
        index = self.rows.index if kind == "requests" else self.rows.index[self._labelled]
        return set(index)

    def engine(self, kind: str, only: Sequence[str] | None = None) -> LabelledRows | RequestRows | None:
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
            return RequestRows(~ok, ok & ~declined, rows["latency_ms"].to_numpy(dtype=float), config.latency_quantile)
        y = rows["label"].to_numpy(dtype=float)
        if y.min() == y.max():
            return None  # label metrics need both classes
        return LabelledRows(
            y,
            rows["score"].to_numpy(dtype=float),
            target_fpr=config.target_fpr,
            ece_bins=config.ece_bins,
            declined=declined.astype(float),
            amount=_amounts(rows, config.amount_feature),
        )

    def exceedances(self) -> tuple[tuple[float, int], ...]:
        """This side's latency exceedance counts (:func:`latency_exceedances`)."""
        return latency_exceedances(self.rows["latency_ms"].to_numpy(dtype=float))

    def intervals(self, points: Mapping[str, float], replicates: Mapping[str, np.ndarray]) -> dict[str, Interval]:
        """Wilson for rates, order statistics for the latency quantile, bootstrap for the rest."""
        confidence = self.config.confidence
        c = self.tally
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
                interval = percentile_interval(points[metric], replicates[metric], confidence)
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
