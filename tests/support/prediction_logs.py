"""A prediction log with a few logged predictions, for the tests of labels that refer to them."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from kfp_mlops.serving.prediction_log import PredictionLogWriter, PredictionRecord


def log_predictions(root: str, request_ids: Iterable[str], at: datetime, *, predictor: str = "main") -> None:
    """Logs an answered prediction (score 0.7, ``approve``) for each request id, at ``at``, and writes them."""
    with PredictionLogWriter(root) as writer:
        for request_id in request_ids:
            writer.log(PredictionRecord(request_id, predictor, "v1", {"amount": 12.5}, 0.7, "approve", 3.0, "ok", at))
