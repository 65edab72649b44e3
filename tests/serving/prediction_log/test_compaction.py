"""Compaction: closed hours merged into one segment, written before the small ones go; readers miss no row."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from kfp_mlops.core import storage
from kfp_mlops.serving import prediction_log as plog
from kfp_mlops.serving.prediction_log.partitions import PREDICTIONS, prediction_segments, read_segments
from kfp_mlops.serving.prediction_log.records import PREDICTION_SCHEMA
from tests.serving.prediction_log.shared import T0, record


def _small_segments(root: str, hours: int = 2, per_hour: int = 6) -> None:
    with plog.PredictionLogWriter(root) as writer:
        for i in range(hours * per_hour):
            writer.log(record(f"r{i:02d}", minutes=i * 60 / per_hour, score=i / 100))
            writer.flush()  # one segment per record


def _rows(root: str) -> list[tuple]:
    frame = plog.read_predictions(root)
    return sorted(zip(frame["request_id"], frame["timestamp"], frame["score"]))


def test_closed_hours_are_merged_and_open_ones_left(store_root: str) -> None:
    root = storage.join(store_root, "log")
    _small_segments(root)
    before = _rows(root)
    # 13:15: hour 12 closed more than GRACE ago, hour 13 still open.
    written = plog.compact(root, before=T0 + timedelta(hours=1, minutes=15))
    assert [uri.split("/predictions/")[1].rsplit("/", 1)[0] for uri in written] == [
        "date=2026-11-02/hour=12/predictor=legacy"
    ]
    by_hour = [s.hour for s in prediction_segments(root)]
    assert by_hour.count(12) == 1 and by_hour.count(13) == 6
    assert _rows(root) == before
    assert plog.compact(root, before=T0 + timedelta(hours=1, minutes=15)) == []  # nothing left to merge


def test_readers_during_a_compaction_read_every_row_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = str(tmp_path)
    _small_segments(root, hours=1)
    before = _rows(root)
    listed = prediction_segments(root)  # a reader lists ...

    real_delete = storage.delete
    monkeypatch.setattr(storage, "delete", lambda uri: None)  # ... a compaction stops between write and delete
    plog.compact(root, before=T0 + timedelta(days=1))
    assert len(prediction_segments(root)) == 7 and _rows(root) == before  # copies read once

    monkeypatch.setattr(storage, "delete", real_delete)
    plog.compact(root, before=T0 + timedelta(days=1))  # the next one merges the merged one and the rest
    assert len(prediction_segments(root)) == 1
    # ... and reads what it listed after the small segments are gone: the merged one instead.
    table = read_segments(listed, PREDICTION_SCHEMA)
    assert sorted(table["request_id"].to_pylist()) == [r for r, _, _ in before]


def test_label_partitions_are_merged_once_crowded(tmp_path: Path) -> None:
    root = str(tmp_path)
    _small_segments(root, hours=1, per_hour=10)
    for i in range(10):
        plog.record_labels(root, [(f"r{i:02d}", i % 2, T0 + timedelta(hours=2))])
    segments = storage.list_uris(storage.join(root, plog.LABELS))
    assert len(segments) == 3  # 8 merged into one, then 2 more
    assert sorted(plog.read_labels(root)["request_id"]) == [f"r{i:02d}" for i in range(10)]


def test_the_writer_compacts_its_closed_hours(tmp_path: Path) -> None:
    root = str(tmp_path)
    two_hours_ago = datetime.now(timezone.utc) - timedelta(hours=2)
    writer = plog.PredictionLogWriter(root, compact_every_s=0.0)
    for i in range(4):
        writer.log(record(f"w{i}", at=two_hours_ago.replace(minute=0), minutes=i))
        writer.flush()
    deadline = time.monotonic() + 20
    while len(storage.list_uris(storage.join(root, PREDICTIONS))) != 1:
        assert time.monotonic() < deadline, "the writer did not compact"
        time.sleep(0.05)
    writer.close()
    assert sorted(plog.read_predictions(root)["request_id"]) == ["w0", "w1", "w2", "w3"]
