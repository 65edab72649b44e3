"""The v2 runtime's prediction logging: answered, refused and failed requests as prediction-log records.

With ``PREDICTION_LOG_URI`` set (a :mod:`kfp_mlops.serving.prediction_log` root), every answered,
refused or failed ``infer`` row is logged through a
:class:`~kfp_mlops.serving.prediction_log.PredictionLogWriter`: the request id (row ``i`` of a
multi-row request gets ``<id>-<i>``), the predictor, the model version, the inputs, the score (the
probability of class ``PREDICTION_LOG_POSITIVE_CLASS``, default ``"1"``; a model without that
class logs its top probability), the decision (``decline`` when the score reaches
``PREDICTION_LOG_THRESHOLD``, default: when the model predicts the positive class; else
``approve``; a model without the class logs its predicted label), the latency and the status.

A request the server refused (a 4xx: the client's fault) is told apart from a server failure:
the log's statuses are ``ok`` and ``error`` only, so a refusal is an ``error`` whose decision is
:data:`REJECTED` and whose error starts with the HTTP status (``"400: feature 'x' row 0: ..."``);
a failure has no decision. An error-rate guardrail should count only the failures.

Records are written every ``PREDICTION_LOG_FLUSH_SECONDS`` (default 1), from a task on the server's
event loop, and at shutdown; a logging failure is reported in the server log and never fails a
prediction.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime, timedelta, timezone
from typing import Any

from kfp_mlops.serving.model import InvalidRequest, Prediction
from kfp_mlops.serving.prediction_log import PredictionLogWriter, PredictionRecord
from kfp_mlops.serving.runtimes.environment import PREDICTION_LOG_ENV

# A child of MLServer's logger, so it goes through MLServer's handler and format.
logger = logging.getLogger("mlserver.kfp_mlops")

POSITIVE_CLASS_ENV = "PREDICTION_LOG_POSITIVE_CLASS"
THRESHOLD_ENV = "PREDICTION_LOG_THRESHOLD"
FLUSH_SECONDS_ENV = "PREDICTION_LOG_FLUSH_SECONDS"
DECLINE, APPROVE = "decline", "approve"
REJECTED = "rejected"  # the decision of a refused request (see the module docstring)
_MAX_ERROR = 500  # characters of an error message kept in a record


class PredictionLogger:
    """Turns answered (or failed) requests into prediction-log records; flushes in the background.

    Args:
        root: The prediction log's root.
        predictor: The predictor's name, in every record.
        version: The served model's version, in every record.
        classes: The model's classes, to find the positive class's probability.
        positive: The positive class (the score is its probability).
        threshold: Score from which the decision is ``decline`` (None: when the model predicts
            the positive class).
        flush_seconds: Seconds between background writes.
    """

    def __init__(
        self,
        root: str,
        *,
        predictor: str,
        version: str,
        classes: list[str],
        positive: str = "1",
        threshold: float | None = None,
        flush_seconds: float = 1.0,
    ) -> None:
        self.writer = PredictionLogWriter(root, max_records=10_000, max_age_s=float("inf"))
        self.predictor = predictor
        self.version = version
        self.positive = positive
        self.positive_index = classes.index(positive) if positive in classes else None
        self.threshold = threshold
        self.flush_seconds = flush_seconds
        self._task: asyncio.Task | None = None

    @classmethod
    def from_env(cls, predictor: str, version: str, classes: list[str]) -> PredictionLogger | None:
        """A logger when :data:`~kfp_mlops.serving.runtimes.environment.PREDICTION_LOG_ENV` is set, else None."""
        root = os.environ.get(PREDICTION_LOG_ENV)
        if not root:
            return None
        threshold = os.environ.get(THRESHOLD_ENV)
        return cls(
            root,
            predictor=predictor,
            version=version,
            classes=classes,
            positive=os.environ.get(POSITIVE_CLASS_ENV, "1"),
            threshold=float(threshold) if threshold else None,
            flush_seconds=float(os.environ.get(FLUSH_SECONDS_ENV, "1")),
        )

    def start(self) -> None:
        """Starts the periodic flush on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._flush_periodically())

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            await asyncio.to_thread(self.flush)

    def flush(self) -> None:
        """Writes every buffered record; a failure is logged (the records stay for the next flush)."""
        try:
            self.writer.flush()
        except Exception as exc:
            logger.warning("prediction log %s: flush failed, will retry: %s", self.writer.root, exc)

    def stop(self) -> None:
        """Stops the periodic flush and writes what is buffered."""
        if self._task is not None:
            try:
                self._task.cancel()
            except RuntimeError:  # its event loop is already closed (shutdown)
                pass
            self._task = None
        self.flush()

    def log(
        self,
        request_id: str,
        features: list[dict[str, Any]],
        outcome: Prediction | InvalidRequest | str,
        *,
        latency_ms: float,
    ) -> None:
        """Logs one record per row.

        Args:
            request_id: The request's id; rows of a multi-row request get ``<id>-<i>``.
            features: Each row's inputs by feature name (empty when the request was unreadable).
            outcome: The prediction; the refusal of a request the client got wrong; or what went
                wrong on the server (every row failed).
            latency_ms: Time to answer, in milliseconds.
        """
        now = datetime.now(timezone.utc) - timedelta(milliseconds=latency_ms)  # when the request arrived
        rows = max(len(features), 1)
        for i in range(rows):
            row_id = request_id if rows == 1 else f"{request_id}-{i}"
            inputs = features[i] if i < len(features) else {}
            try:
                if isinstance(outcome, (InvalidRequest, str)):
                    refused = isinstance(outcome, InvalidRequest)
                    error = f"{outcome.status}: {outcome}" if isinstance(outcome, InvalidRequest) else outcome
                    record = PredictionRecord(
                        row_id,
                        self.predictor,
                        self.version,
                        inputs,
                        None,
                        REJECTED if refused else None,
                        latency_ms,
                        "error",
                        now,
                        error=error[:_MAX_ERROR],
                    )
                else:
                    score, decision = self._score(outcome.labels[i], outcome.probabilities[i])
                    record = PredictionRecord(
                        row_id, self.predictor, self.version, inputs, score, decision, latency_ms, "ok", now
                    )
                self.writer.log(record)
            except Exception as exc:
                logger.warning("prediction log: request %s not logged: %s", row_id, exc)

    def _score(self, label: str, probabilities: Any) -> tuple[float, str]:
        if self.positive_index is None:
            return float(max(probabilities)), str(label)
        score = float(probabilities[self.positive_index])
        if self.threshold is None:
            declined = str(label) == self.positive
        else:
            declined = score >= self.threshold
        return score, DECLINE if declined else APPROVE
