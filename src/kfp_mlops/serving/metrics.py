"""The Prometheus metrics every serving runtime exports, under the same names and labels.

Both runtimes (MLServer for ``v2``, Seldon's Python wrapper for ``seldon``) record into
``prometheus_client`` metrics defined here, in the process that runs the model, so a dashboard or
alert written for one protocol works for the other:

==========================================  =========  ===========================================
name                                        type       meaning
==========================================  =========  ===========================================
``kfp_mlops_requests_total``                counter    HTTP requests to the model's predict and
                                                       feedback endpoints, by ``endpoint`` and
                                                       ``status`` (malformed ones included)
``kfp_mlops_request_duration_seconds``      histogram  their latency, by ``endpoint`` and ``status``
``kfp_mlops_predictions_total``             counter    predicted rows, by ``class``
``kfp_mlops_feedback_total``                counter    rows with a true label received as feedback
``kfp_mlops_feedback_correct_total``        counter    of those, rows the model had predicted right
``kfp_mlops_live_accuracy``                 gauge      correct / feedback rows since the start
``kfp_mlops_prediction_log_dropped_total``  counter    prediction-log records dropped (buffer full,
                                                       or storage down beyond the writer's retries)
==========================================  =========  ===========================================

Every series also carries ``deployment``, ``predictor`` and ``model_version``. Correct answers
are counted here rather than through Seldon's reward counters, which skip a reward of 0.

Where to scrape: ``v2`` exports them on MLServer's metrics port (at ``MLSERVER_METRICS_ENDPOINT``,
``/prometheus`` in the image and locally), beside MLServer's own metrics; ``seldon`` at
``GET /prometheus`` on its HTTP port, because Seldon's metrics port is served by another process
that only sees Seldon's own counters.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "kfp_mlops"
IDENTITY_LABELS = ("deployment", "predictor", "model_version")
PREDICT = "predict"
FEEDBACK = "feedback"
# Where both runtimes serve these metrics (v2: on MLServer's metrics port; seldon: on the HTTP port).
METRICS_PATH = "/prometheus"
# From 1 ms (an in-process predict_proba is ~0.3 ms) to 10 s (a stuck request).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class _Families:
    requests: Counter
    latency: Histogram
    predictions: Counter
    feedback: Counter
    correct: Counter
    accuracy: Gauge
    log_dropped: Counter


@cache
def _families(registry: CollectorRegistry) -> _Families:
    # Once per registry: a model reloaded in the same process must not register the names twice.
    request_labels = (*IDENTITY_LABELS, "endpoint", "status")
    return _Families(
        requests=Counter(
            f"{PREFIX}_requests", "HTTP requests to the model's endpoints.", request_labels, registry=registry
        ),
        latency=Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Latency of requests to the model's endpoints.",
            request_labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        predictions=Counter(
            f"{PREFIX}_predictions", "Predicted rows by class.", (*IDENTITY_LABELS, "class"), registry=registry
        ),
        feedback=Counter(
            f"{PREFIX}_feedback", "Rows with a true label received as feedback.", IDENTITY_LABELS, registry=registry
        ),
        correct=Counter(
            f"{PREFIX}_feedback_correct",
            "Feedback rows the model had predicted right.",
            IDENTITY_LABELS,
            registry=registry,
        ),
        accuracy=Gauge(
            f"{PREFIX}_live_accuracy",
            "Share of feedback rows predicted right since the start.",
            IDENTITY_LABELS,
            registry=registry,
        ),
        log_dropped=Counter(
            f"{PREFIX}_prediction_log_dropped",
            "Prediction-log records dropped: buffer full, or storage down beyond the writer's retries.",
            IDENTITY_LABELS,
            registry=registry,
        ),
    )


class ServingMetrics:
    """The metrics of one served model, labelled with its deployment, predictor and version.

    Args:
        deployment: the deployment name.
        predictor: the predictor name.
        model_version: the served model's version.
        registry: where the metrics live; the default is the process-wide registry that MLServer's
            metrics endpoint and ``prometheus_client.generate_latest`` export.
    """

    def __init__(
        self, *, deployment: str, predictor: str, model_version: str, registry: CollectorRegistry = REGISTRY
    ) -> None:
        self._families = _families(registry)
        self._identity = {"deployment": deployment, "predictor": predictor, "model_version": model_version}
        self._lock = threading.Lock()
        self._feedback_rows = 0
        self._correct_rows = 0

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        """Counts one HTTP request to ``endpoint`` (:data:`PREDICT` or :data:`FEEDBACK`) and its latency."""
        labels = {**self._identity, "endpoint": endpoint, "status": str(status)}
        self._families.requests.labels(**labels).inc()
        self._families.latency.labels(**labels).observe(seconds)

    def observe_predictions(self, labels: Sequence[str]) -> None:
        """Counts predicted rows by class."""
        for label, count in collections.Counter(labels).items():  # counted in C: a batch has up to max_batch labels
            self._families.predictions.labels(**self._identity, **{"class": label}).inc(count)

    def observe_log_dropped(self, rows: int) -> None:
        """Counts dropped prediction-log records (a prediction-log writer's ``on_drop``)."""
        self._families.log_dropped.labels(**self._identity).inc(rows)

    def observe_feedback(self, rows: int, correct: int) -> float | None:
        """Counts feedback rows and correct answers.

        Returns:
            The live accuracy so far, or None before the first feedback row.
        """
        self._families.feedback.labels(**self._identity).inc(rows)
        self._families.correct.labels(**self._identity).inc(correct)
        with self._lock:  # the gauge must not go back to an older ratio under concurrent feedback
            self._feedback_rows += rows
            self._correct_rows += correct
            if not self._feedback_rows:
                return None
            accuracy = self._correct_rows / self._feedback_rows
            self._families.accuracy.labels(**self._identity).set(accuracy)
        return accuracy
