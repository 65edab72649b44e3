"""Prediction logging as both runtimes do it: answered, refused and failed requests as log records.

With ``PREDICTION_LOG_URI`` set (a :mod:`kfp_mlops.serving.prediction_log` root), the v2 and the
Seldon runtime log every answered, refused or failed prediction row through a
:class:`~kfp_mlops.serving.prediction_log.PredictionLogWriter`: the request id the server (or its
front) issued (row ``i`` of a multi-row request gets ``<id>-<i>``, :func:`row_ids`), the client's
own id beside it, the predictor, the model version, the inputs, the score (the probability of class
``PREDICTION_LOG_POSITIVE_CLASS``, default ``"1"``; a model without that class logs its top
probability), the decision (``decline`` when the score reaches ``PREDICTION_LOG_THRESHOLD``,
default: when the model predicts the positive class; else ``approve``; a model without the class
logs its predicted label), the latency and the status.

A request the server refused (a 4xx: the client's fault) has the status ``rejected`` and an error
that starts with the HTTP status (``"400: feature 'x' row 0: ..."``); a server failure has the
status ``error``. An error-rate guardrail counts only the failures, so garbage sent to one
predictor cannot make it look broken.

Logging never delays an answer: the writer only buffers (bounded), and its background thread
writes the records every ``PREDICTION_LOG_FLUSH_SECONDS`` (default 1) and at
:meth:`PredictionLogger.stop`; records it has to drop are counted (``on_drop``: the runtime's
``kfp_mlops_prediction_log_dropped_total``). A record that cannot be made is reported in the
server log and never fails a prediction. The writer's thread starts with the first record, in the
process that serves (after a pre-forking server such as gunicorn forked its worker: a thread
does not survive a fork).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from kfp_mlops.serving.model import InvalidRequest, Prediction
from kfp_mlops.serving.prediction_log import PredictionLogWriter, PredictionRecord
from kfp_mlops.serving.runtimes.environment import PREDICTION_LOG_ENV

POSITIVE_CLASS_ENV = "PREDICTION_LOG_POSITIVE_CLASS"
THRESHOLD_ENV = "PREDICTION_LOG_THRESHOLD"
FLUSH_SECONDS_ENV = "PREDICTION_LOG_FLUSH_SECONDS"
DECLINE, APPROVE = "decline", "approve"
_MAX_ERROR = 500  # characters of an error message kept in a record


def row_ids(request_id: str, rows: int) -> list[str]:
    """The logged ids of a request's rows: the request id itself for one row, ``<id>-<i>`` for several."""
    return [request_id] if rows <= 1 else [f"{request_id}-{i}" for i in range(rows)]


class PredictionLogger:
    """Turns answered, refused or failed requests into prediction-log records; flushes in the background.

    Args:
        root: The prediction log's root.
        predictor: The predictor's name, in every record.
        version: The served model's version, in every record.
        classes: The model's classes, to find the positive class's probability.
        positive: The positive class (the score is its probability).
        threshold: Score from which the decision is ``decline`` (None: when the model predicts
            the positive class).
        flush_seconds: Seconds a record waits at most before the background thread writes it.
        logger: Where logging failures are reported (a runtime passes its server's logger).
        on_drop: Called with the number of records the writer dropped (a metric).
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
        logger: logging.Logger | None = None,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self.writer = PredictionLogWriter(root, max_age_s=flush_seconds, on_drop=on_drop)
        self.predictor = predictor
        self.version = version
        self.positive = positive
        self.positive_index = classes.index(positive) if positive in classes else None
        self.threshold = threshold
        self.logger = logger or logging.getLogger(__name__)

    @classmethod
    def from_env(
        cls,
        predictor: str,
        version: str,
        classes: list[str],
        *,
        logger: logging.Logger | None = None,
        on_drop: Callable[[int], None] | None = None,
    ) -> PredictionLogger | None:
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
            logger=logger,
            on_drop=on_drop,
        )

    @property
    def root(self) -> str:
        """The prediction log's root."""
        return self.writer.root

    def flush(self) -> bool:
        """Writes every buffered record now; a failure is logged (the records stay for a retry).

        Returns:
            True when everything buffered was written.
        """
        try:
            self.writer.flush()
        except Exception as exc:
            self.logger.warning("prediction log %s: flush failed, will retry: %s", self.root, exc)
            return False
        return True

    def stop(self) -> None:
        """Stops the background writes and writes what is buffered (at shutdown)."""
        try:
            self.writer.close()
        except Exception as exc:
            self.logger.warning("prediction log %s: last records not written: %s", self.root, exc)

    def label(self, truth: Any) -> int:
        """A true label as the log records it: 1 for the positive class, else 0."""
        return int(str(truth) == self.positive)

    def log(
        self,
        request_id: str,
        features: list[dict[str, Any]],
        outcome: Prediction | InvalidRequest | str,
        *,
        latency_ms: float,
        client_request_id: str | None = None,
    ) -> None:
        """Logs one record per row.

        Args:
            request_id: The request's id; rows of a multi-row request get ``<id>-<i>``.
            features: Each row's inputs by feature name (empty when the request was unreadable).
            outcome: The prediction; the refusal of a request the client got wrong; or what went
                wrong on the server (every row failed).
            latency_ms: Time to answer, in milliseconds.
            client_request_id: The id the client sent (``X-Request-Id`` to the router), if any.
        """
        now = datetime.now(timezone.utc) - timedelta(milliseconds=latency_ms)  # when the request arrived
        for i, row_id in enumerate(row_ids(request_id, len(features))):
            inputs = features[i] if i < len(features) else {}
            try:
                if isinstance(outcome, InvalidRequest):
                    score, decision, status, error = None, None, "rejected", f"{outcome.status}: {outcome}"
                elif isinstance(outcome, str):
                    score, decision, status, error = None, None, "error", outcome
                else:
                    score, decision = self._score(outcome.labels[i], outcome.probabilities[i])
                    status, error = "ok", None
                record = PredictionRecord(
                    row_id,
                    self.predictor,
                    self.version,
                    inputs,
                    score,
                    decision,
                    latency_ms,
                    status,
                    now,
                    error=None if error is None else error[:_MAX_ERROR],
                    client_request_id=client_request_id,
                )
                self.writer.log(record)
            except Exception as exc:
                self.logger.warning("prediction log: request %s not logged: %s", row_id, exc)

    def _score(self, label: str, probabilities: Any) -> tuple[float, str]:
        if self.positive_index is None:
            return float(max(probabilities)), str(label)
        score = float(probabilities[self.positive_index])
        if self.threshold is None:
            declined = str(label) == self.positive
        else:
            declined = score >= self.threshold
        return score, DECLINE if declined else APPROVE
