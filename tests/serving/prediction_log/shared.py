"""Records and small logs shared by the prediction-log tests."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from kfp_mlops.serving import prediction_log as plog

T0 = datetime(2026, 11, 2, 12, 0, tzinfo=timezone.utc)


def record(
    request_id: str,
    predictor: str = "legacy",
    *,
    minutes: float = 0,
    score: float = 0.2,
    status: str = "ok",
    amount: float = 10.0,
    at: datetime = T0,
) -> plog.PredictionRecord:
    """An answered (or, with ``status``, refused or failed) prediction ``minutes`` after ``at``."""
    ok = status == "ok"
    return plog.PredictionRecord(
        request_id=request_id,
        predictor=predictor,
        model_version="v1",
        features={"amount": amount, "country": "US"},
        score=score if ok else None,
        decision=("decline" if score >= 0.5 else "approve") if ok else None,
        latency_ms=4.5,
        status=status,
        timestamp=at + timedelta(minutes=minutes),
        error=None if ok else "timeout",
    )


def shadow_log(root: str) -> None:
    """r0..r3 scored by legacy and (as a shadow) by challenger, 10 minutes apart; r4 by legacy only."""
    with plog.PredictionLogWriter(root) as writer:
        for i in range(5):
            writer.log(record(f"r{i}", minutes=10 * i, score=0.1 * i))
            if i < 4:
                writer.log(record(f"r{i}", "challenger", minutes=10 * i + 0.01, score=0.2 * i))
