"""What the prediction log holds: one prediction record, one label, and their columns in Parquet.

A :class:`PredictionRecord` is checked when it is made (a bad field is a :class:`DataError` naming
the request id and the field). Its Parquet row (:data:`PREDICTION_SCHEMA`) leaves out the
partition keys -- ``predictor``, ``date`` and ``hour`` live in the path (hive partitioning), where
Spark and BigQuery want them and never in the file as well -- and keeps ``features`` as a JSON
string, because every model has its own inputs and one table must hold them all; engines parse it
(``JSON_VALUE`` in BigQuery, ``from_json`` in Spark, ``->>`` in DuckDB).
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeGuard

import pyarrow as pa

from kfp_mlops.core.errors import DataError

OK, REJECTED, ERROR = "ok", "rejected", "error"
# ``rejected``: the server refused the request (a 4xx, the client's fault); ``error``: it failed.
STATUSES = (OK, REJECTED, ERROR)
PREDICTION_COLUMNS = (
    "request_id",
    "predictor",
    "model_version",
    "timestamp",
    "features",
    "score",
    "decision",
    "latency_ms",
    "status",
    "error",
    "client_request_id",
)
LABEL_COLUMNS = ("request_id", "label", "labelled_at")
_TIMESTAMP = pa.timestamp("us", tz="UTC")
PREDICTION_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("client_request_id", pa.string()),
        ("model_version", pa.string()),
        ("timestamp", _TIMESTAMP),
        ("features", pa.string()),
        ("score", pa.float64()),
        ("decision", pa.string()),
        ("latency_ms", pa.float64()),
        ("status", pa.string()),
        ("error", pa.string()),
    ]
)
# ``predicted_at``: the request's first prediction, which chose the label's ``date`` partition.
LABEL_SCHEMA = pa.schema(
    [("request_id", pa.string()), ("label", pa.int8()), ("labelled_at", _TIMESTAMP), ("predicted_at", _TIMESTAMP)]
)
_PREDICTOR_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LISTED = 10  # ids named per problem in an error message


@dataclass(frozen=True)
class PredictionRecord:
    """One prediction (or refused or failed attempt) by one predictor.

    Attributes:
        request_id: The request's id, issued by the server (or its front); the same for every
            predictor that scored it (shadow).
        predictor: The predictor's name in the deployment (a DNS-1123 label).
        model_version: The version of the model that answered.
        features: The model's inputs, by feature name (JSON values).
        score: The fraud probability in [0, 1]; ``None`` unless ``ok``.
        decision: What was done with the score (e.g. ``approve`` / ``decline``); ``None`` unless ``ok``.
        latency_ms: Time to answer (or to refuse, or to fail), in milliseconds.
        status: ``ok``; ``rejected`` (the server refused the request: a 4xx); or ``error`` (a
            failure or a timeout).
        timestamp: When the request arrived; a naive datetime is taken as UTC.
        error: What went wrong, unless ``ok``.
        client_request_id: The id the client sent, if any (kept apart: clients reuse ids).

    Raises:
        DataError: a field is invalid; the message names the request id and the field.
    """

    request_id: str
    predictor: str
    model_version: str
    features: Mapping[str, Any]
    score: float | None
    decision: str | None
    latency_ms: float
    status: str
    timestamp: datetime
    error: str | None = None
    client_request_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "timestamp", as_utc(self.timestamp, f"prediction {self.request_id!r}: timestamp"))
        found = []
        if not isinstance(self.request_id, str) or not self.request_id:
            found.append("request_id must be a non-empty string")
        if not isinstance(self.predictor, str) or not _PREDICTOR_NAME.match(self.predictor):
            found.append(f"predictor {self.predictor!r} must be a DNS-1123 label")
        if self.status not in STATUSES:
            found.append(f"status {self.status!r} must be one of {', '.join(STATUSES)}")
        if self.status == OK:
            if not _is_real(self.score) or not 0.0 <= self.score <= 1.0:
                found.append(f"score {self.score!r} must be a probability in [0, 1]")
            if not isinstance(self.decision, str) or not self.decision:
                found.append(f"decision {self.decision!r} must be a non-empty string")
        if not _is_real(self.latency_ms) or self.latency_ms < 0:
            found.append(f"latency_ms {self.latency_ms!r} must be a non-negative number")
        if not isinstance(self.features, Mapping):
            found.append(f"features must be a mapping of feature name to value, got {type(self.features).__name__}")
        if self.client_request_id is not None and not isinstance(self.client_request_id, str):
            found.append(f"client_request_id {self.client_request_id!r} must be a string")
        if found:
            raise DataError(f"prediction {self.request_id!r} by {self.predictor!r}: {'; '.join(found)}")

    def row(self) -> dict[str, Any]:
        """The record's Parquet row (:data:`PREDICTION_SCHEMA`; the predictor is in the path).

        Raises:
            DataError: a feature value is not JSON-serialisable.
        """
        try:
            features = json.dumps(dict(self.features), default=_json_scalar, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise DataError(f"prediction {self.request_id!r} by {self.predictor!r}: features: {exc}") from None
        return {
            "request_id": self.request_id,
            "client_request_id": self.client_request_id,
            "model_version": self.model_version,
            "timestamp": self.timestamp,
            "features": features,
            "score": None if self.score is None else float(self.score),
            "decision": self.decision,
            "latency_ms": float(self.latency_ms),
            "status": self.status,
            "error": self.error,
        }


def as_utc(moment: datetime, what: str) -> datetime:
    """``moment`` in UTC; a naive datetime is taken as UTC.

    Raises:
        DataError: ``moment`` is not a datetime (``what`` names it).
    """
    if not isinstance(moment, datetime):
        raise DataError(f"{what}: expected a datetime, got {type(moment).__name__} {moment!r}")
    if hasattr(moment, "to_pydatetime"):  # a pandas Timestamp: its isoformat() may carry nanoseconds
        moment = moment.to_pydatetime()
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def some(items: list[str]) -> str:
    """The first few items, comma-separated, and how many more (for error messages)."""
    shown = ", ".join(items[:_LISTED])
    return shown if len(items) <= _LISTED else f"{shown} and {len(items) - _LISTED} more"


def _is_real(value: Any) -> TypeGuard[float]:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _json_scalar(value: Any) -> Any:
    # numpy scalars (a DataFrame row's values) are not JSON types but have a Python twin.
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON-serialisable")
