"""Prediction records: every field checked when made; statuses ok, rejected and error; the client's id kept apart."""

from __future__ import annotations

import json
import math

import pytest

from kfp_mlops.core.errors import DataError
from kfp_mlops.serving import prediction_log as plog
from tests.serving.prediction_log.shared import T0, record


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"status": "maybe"}, "status 'maybe' must be one of ok, rejected, error"),
        ({"score": 1.5}, r"score 1.5 must be a probability"),
        ({"score": math.nan}, "score nan"),
        ({"predictor": "Legacy_1"}, "DNS-1123"),
        ({"latency_ms": -1}, "latency_ms -1"),
        ({"decision": None}, "decision None"),
        ({"timestamp": "2026-11-02"}, "expected a datetime"),
        ({"client_request_id": 7}, "client_request_id 7 must be a string"),
    ],
)
def test_invalid_record_names_request_and_field(changes: dict, match: str) -> None:
    fields = {**record("r9").__dict__, **changes}
    with pytest.raises(DataError, match=match) as caught:
        plog.PredictionRecord(**fields)
    assert "r9" in str(caught.value)


def test_a_refusal_is_rejected_with_its_reason_and_the_clients_id_beside_the_servers() -> None:
    refused = plog.PredictionRecord(
        "srv-1",
        "challenger",
        "v1",
        {},
        None,
        None,
        0.8,
        plog.REJECTED,
        T0,
        error="400: feature 'x'",
        client_request_id="mine",
    )
    row = refused.row()
    assert (row["request_id"], row["client_request_id"], row["status"], row["score"]) == (
        "srv-1",
        "mine",
        "rejected",
        None,
    )
    assert json.loads(row["features"]) == {}


def test_row_keeps_inputs_as_json_and_refuses_what_json_cannot_hold() -> None:
    import numpy as np

    row = record("r1", amount=np.float64(12.5)).row()  # a DataFrame row's numpy scalar
    assert json.loads(row["features"]) == {"amount": 12.5, "country": "US"}
    assert "predictor" not in row  # a partition key: in the path only
    bad = plog.PredictionRecord("r1", "legacy", "v1", {"when": object()}, 0.1, "approve", 1.0, "ok", T0)
    with pytest.raises(DataError, match="'r1' by 'legacy': features"):
        bad.row()
    with pytest.raises(DataError, match="features"):
        plog.PredictionRecord("r2", "legacy", "v1", {"x": math.inf}, 0.1, "approve", 1.0, "ok", T0).row()
