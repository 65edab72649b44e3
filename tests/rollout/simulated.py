"""Simulated data shared by the rollout tests: fraud scorers, joined prediction logs, hand-made comparisons."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from kfp_mlops.demos import fraud
from kfp_mlops.modeling.training import fit_model
from kfp_mlops.rollout import CHALLENGER, LEGACY, Interval, LiveComparison, LiveConfig, Stage, positive_scores
from kfp_mlops.rollout.sequential import StandardError

T0 = datetime(2026, 11, 2, tzinfo=timezone.utc)
TICK = timedelta(hours=6)
SHADOW, CANARY_5, CANARY_50 = Stage("shadow"), Stage("canary", 5), Stage("canary", 50)
# Small enough to run in seconds; the statistics are the same as with the defaults.
LIVE = LiveConfig(bootstrap=200)


@dataclass(frozen=True)
class Scorer:
    """A fitted model, its features and its decline threshold (1 % of legitimate training rows above)."""

    model: Any
    features: tuple[str, ...]
    threshold: float

    def scores(self, rows: pd.DataFrame) -> np.ndarray:
        with threadpool_limits(1):
            return positive_scores(self.model, rows[list(self.features)])


def fit_scorers() -> dict[str, Scorer]:
    """``legacy`` (logistic, few features), ``better`` (gradient boosting, all) and ``worse`` (hour only)."""
    train = fraud.generate(
        40_000, seed=11, start=T0 - timedelta(days=30), label_delay=timedelta(days=1), span=timedelta(days=20)
    )
    legit = train[fraud.LABEL].to_numpy() == 0
    found = {}
    # One thread: OpenMP threads oversubscribe a shared 2-core machine and slow the fit down.
    with threadpool_limits(1):
        for name, estimator, features in (
            ("legacy", "logistic_regression", fraud.LEGACY_FEATURES),
            ("better", "gradient_boosting", fraud.FEATURES),
            ("worse", "logistic_regression", ("hour",)),
        ):
            model, _ = fit_model(train[[*features, fraud.LABEL]], fraud.LABEL, estimator, {}, seed=0)
            scores = positive_scores(model, train[list(features)])
            found[name] = Scorer(model, tuple(features), float(np.quantile(scores[legit], 0.99)))
    return found


def synthetic_log(
    rng: np.random.Generator,
    n: int,
    *,
    paired: bool,
    fraud_rate: float = 0.05,
    separation: tuple[float, float] = (1.5, 2.5),
) -> pd.DataFrame:
    """A joined log without the storage round trip: two predictors, scores from a known model."""
    frames = []
    ids = [f"r{i}" for i in range(n)]
    y = (rng.random(n) < fraud_rate).astype(float)
    shared = rng.normal(0, 1, n)  # the part of the signal both models see
    for index, (name, strength) in enumerate(zip((LEGACY, CHALLENGER), separation)):
        rows = ids if paired else [f"{name}-{i}" for i in range(n)]
        labels = y if paired else (rng.random(n) < fraud_rate).astype(float)
        noise = 0.9 * shared + 0.45 * rng.normal(0, 1, n) if paired else rng.normal(0, 1, n)
        score = 1 / (1 + np.exp(-(strength * labels + noise - 3.5)))
        frames.append(
            pd.DataFrame(
                {
                    "request_id": rows,
                    "predictor": name,
                    "model_version": "v1",
                    "timestamp": T0,
                    "features": [{"amount": 10.0 + i % 7} for i in range(n)],
                    "score": score,
                    "decision": np.where(score > 0.25, "decline", "approve"),
                    "latency_ms": rng.lognormal(np.log(10 + 5 * index), 0.4, n),
                    "status": "ok",
                    "error": None,
                    "label": labels,
                    "labelled_at": T0,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def live(
    *,
    labelled: int = 5_000,
    positives: int = 50,
    requests: int | None = None,
    auc: tuple[float, float, float] | None = (0.1, 0.05, 0.15),
    errors: tuple[float, float, float] = (0.0, 0.0, 0.001),
    p99: tuple[float, float, float] = (20, 18, 25),
    slow: float = 0.0,
    fpr: tuple[float, float, float] = (0.0, -0.002, 0.002),
) -> LiveComparison:
    """A hand-made live comparison: both predictors alike, the differences as given.

    Every difference's standard error is its 95 % interval's half-width / 1.96, at ``labelled``;
    ``requests`` (default ``labelled + 100``) have ``errors[0]`` errors, and a share ``slow`` of
    them is slower than the p99 value ``p99[0]`` (none slower than twice it).
    """
    requests = labelled + 100 if requests is None else requests
    counts = {
        "requests": requests,
        "errors": round(errors[0] * requests),
        "labelled": labelled,
        "positives": positives,
    }
    guardrails = {"error_rate": Interval(*errors), "p99_latency_ms": Interval(*p99)}
    difference = {"fpr": Interval(*fpr)} | ({"auc_pr": Interval(*auc)} if auc else {})
    tail = ((1.0, requests), (float(p99[0]), round(slow * requests)), (2 * float(p99[0]), 0))
    return LiveComparison(
        LEGACY,
        CHALLENGER,
        True,
        0.95,
        {LEGACY: counts, CHALLENGER: counts},
        {LEGACY: guardrails, CHALLENGER: guardrails},
        difference,
        {name: StandardError((i.high - i.low) / (2 * 1.96), labelled) for name, i in difference.items()},
        {LEGACY: tail, CHALLENGER: tail},
    )
