"""The writer: segments written by a background thread, never by log(); bounded; drops counted, never blocking."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from kfp_mlops.core import storage
from kfp_mlops.core.errors import AlreadyExistsError, DataError, StorageError
from kfp_mlops.serving import prediction_log as plog
from kfp_mlops.serving.metrics import ServingMetrics
from tests.serving.prediction_log.shared import T0, record


def _eventually(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the background flusher did not get there"
        time.sleep(0.02)


def test_segments_are_hive_partitioned_parquet_written_once(store_root: str) -> None:
    root = storage.join(store_root, "log")
    with plog.PredictionLogWriter(root, max_records=3, max_age_s=3600) as writer:
        for i in range(5):
            writer.log(record(f"r{i}", minutes=20 * i))  # hours 12, 12, 12, 13, 13
        writer.log(record("r0", "challenger", minutes=0.5, score=0.9))
    segments = storage.list_uris(storage.join(root, plog.PREDICTIONS))
    partitions = sorted(uri.split("/predictions/")[1].rsplit("/", 1)[0] for uri in segments)
    assert partitions == [
        "date=2026-11-02/hour=12/predictor=challenger",
        "date=2026-11-02/hour=12/predictor=legacy",
        "date=2026-11-02/hour=13/predictor=legacy",
    ]
    assert all(uri.endswith(".parquet") for uri in segments)

    frame = plog.read_predictions(root)
    assert list(frame.columns) == list(plog.PREDICTION_COLUMNS)
    assert list(frame["request_id"]) == ["r0", "r0", "r1", "r2", "r3", "r4"]
    first = frame.iloc[0].to_dict()
    assert first["features"] == {"amount": 10.0, "country": "US"}
    assert {k: first[k] for k in ("predictor", "score", "decision", "status", "latency_ms")} == pytest.approx(
        {"predictor": "challenger", "score": 0.9, "decision": "decline", "status": "ok", "latency_ms": 4.5}
    )
    assert first["timestamp"] == T0 + timedelta(minutes=0.5)

    # Append-only: a segment is never rewritten.
    with pytest.raises(AlreadyExistsError):
        storage.write_bytes(segments[0], b"PAR1", create_only=True)


def test_log_never_writes_on_the_callers_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writers: list[str] = []
    real_write = storage.write_bytes

    def watched(uri: str, data: bytes, *, create_only: bool = False) -> None:
        writers.append(threading.current_thread().name)
        real_write(uri, data, create_only=create_only)

    monkeypatch.setattr(storage, "write_bytes", watched)
    writer = plog.PredictionLogWriter(str(tmp_path), max_records=2, max_age_s=0.05)
    for i in range(7):  # fills a segment three times over, and leaves one to age out
        writer.log(record(f"r{i}", minutes=i))
    _eventually(lambda: len(plog.read_predictions(str(tmp_path))) == 7)
    assert writers and threading.current_thread().name not in writers
    assert all(name.startswith("prediction-log-") for name in writers)
    writer.close()


def test_storage_down_drops_beyond_the_bound_counts_it_and_recovers(tmp_path: Path) -> None:
    # A root that is a file: every write fails (a real OSError), as with a full or unreachable storage.
    root = tmp_path / "log"
    root.write_text("in the way")
    registry = CollectorRegistry()
    metrics = ServingMetrics(deployment="fraud", predictor="challenger", model_version="v2", registry=registry)
    writer = plog.PredictionLogWriter(
        str(root),
        max_records=5,
        max_age_s=0.01,
        max_buffered=10,
        max_attempts=3,
        retry_delay_s=0.01,
        on_drop=metrics.observe_log_dropped,
    )
    for i in range(25):
        writer.log(record(f"r{i}", minutes=i))  # returns at once: nothing is written on this thread
    assert writer.dropped >= 15  # the buffer holds 10 rows at most

    def dropped_metric() -> float | None:
        labels = {"deployment": "fraud", "predictor": "challenger", "model_version": "v2"}
        return registry.get_sample_value("kfp_mlops_prediction_log_dropped_total", labels)

    # The 10 held rows are dropped once their segments failed 3 times: nothing grows without bound.
    _eventually(lambda: writer.dropped == 25)
    assert dropped_metric() == 25

    root.unlink()  # storage is back
    writer.log(record("late", minutes=30))
    assert len(writer.close()) == 1
    assert plog.read_predictions(str(root))["request_id"].tolist() == ["late"]
    assert writer.dropped == 25


def test_a_failed_write_is_retried_without_duplicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = str(tmp_path)
    real_write = storage.write_bytes
    outcomes = iter(["fail", "landed-but-failed"])

    def flaky(uri: str, data: bytes, *, create_only: bool = False) -> None:
        outcome = next(outcomes, "ok")
        if outcome == "landed-but-failed":
            real_write(uri, data, create_only=create_only)
        if outcome != "ok":
            raise StorageError(f"{uri}: storage unreachable")
        real_write(uri, data, create_only=create_only)

    monkeypatch.setattr(storage, "write_bytes", flaky)
    writer = plog.PredictionLogWriter(root, max_age_s=3600)
    writer.log(record("a"))
    with pytest.raises(StorageError):
        writer.flush()
    with pytest.raises(StorageError):
        writer.flush()  # it landed this time, but the caller was told otherwise
    writer.log(record("b", minutes=1))
    assert len(writer.close()) == 2  # the retried segment ("already there", same bytes) and the new one
    assert list(plog.read_predictions(root)["request_id"]) == ["a", "b"]
    assert writer.dropped == 0


def test_an_unserialisable_feature_is_refused_at_log(tmp_path: Path) -> None:
    writer = plog.PredictionLogWriter(str(tmp_path))
    bad = plog.PredictionRecord("r1", "legacy", "v1", {"when": object()}, 0.1, "approve", 1.0, "ok", T0)
    with pytest.raises(DataError, match="'r1' by 'legacy': features"):
        writer.log(bad)
    assert writer.close() == []


def test_invalid_bounds_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="max_buffered=0"):
        plog.PredictionLogWriter(str(tmp_path), max_buffered=0)
