"""Labels: checked against the predictions they refer to, reading only the hours their ids can be in."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from kfp_mlops.core import storage
from kfp_mlops.core.errors import DataError
from kfp_mlops.serving import prediction_log as plog
from tests.serving.prediction_log.shared import T0, record, shadow_log


def _corrupt_hour(root: str, at: datetime, predictor: str = "legacy") -> None:
    partition = f"date={at:%Y-%m-%d}/hour={at:%H}/predictor={predictor}"
    storage.write_bytes(storage.join(root, plog.PREDICTIONS, partition, "garbage.parquet"), b"not parquet")


def test_labels_are_stored_under_their_predictions_date(store_root: str) -> None:
    root = storage.join(store_root, "log")
    shadow_log(root)
    uri = plog.record_labels(root, [("r0", 0, T0 + timedelta(hours=1)), ("r1", True, T0 + timedelta(days=2))])
    assert uri is not None and "/labels/date=2026-11-02/" in uri  # r1's label came two days later
    labels = plog.read_labels(root)
    assert list(labels["request_id"]) == ["r0", "r1"] and list(labels["label"]) == [0, 1]
    assert plog.record_labels(root, []) is None


def test_rejected_label_batches_write_nothing(tmp_path: Path) -> None:
    root = str(tmp_path)
    shadow_log(root)
    plog.record_labels(root, [("r0", 0, T0 + timedelta(hours=1))])
    before = storage.list_uris(storage.join(root, plog.LABELS))

    cases = [
        (
            [("nope", 1, T0 + timedelta(hours=1)), ("r1", 0, T0 + timedelta(hours=1))],
            r"unknown request id\(s\) \(no prediction in the 7 days, 0:00:00 before the label\) \[1\]: nope",
        ),
        ([("r1", 0, T0 + timedelta(hours=1)), ("r1", 0, T0 + timedelta(hours=2))], r"duplicate label\(s\).*\[1\]: r1"),
        ([("r1", 0, T0 + timedelta(hours=1)), ("r1", 1, T0 + timedelta(hours=2))], r"\[1\]: r1"),
        ([("r0", 1, T0 + timedelta(hours=2))], r"already recorded\) \[1\]: r0"),
        ([("r2", 1, T0 + timedelta(minutes=5))], r"before their prediction \[1\]: r2 \(labelled 2026-11-02T12:05"),
        ([("r2", 2, T0 + timedelta(hours=1))], "r2: label 2 must be 0 or 1"),
        ([("r2", 1)], "not a \\(request_id, label, labelled_at\\) triple"),
        ([("r2", 1, T0 + timedelta(days=8))], r"unknown request id\(s\) .*\[1\]: r2"),  # beyond the label window
    ]
    for batch, match in cases:
        with pytest.raises(DataError, match=match):
            plog.record_labels(root, batch)
    assert storage.list_uris(storage.join(root, plog.LABELS)) == before

    # Every problem of a batch is named at once.
    with pytest.raises(DataError) as caught:
        plog.record_labels(root, [("x1", 1, T0), ("x2", 1, T0), ("r0", 0, T0 + timedelta(hours=3))])
    assert "[2]: x1, x2" in str(caught.value)
    assert "[1]: r0" in str(caught.value)

    # A longer window finds an older prediction.
    assert plog.record_labels(root, [("r2", 1, T0 + timedelta(days=8))], label_window=timedelta(days=9))


def test_a_retried_batch_writes_nothing_new(tmp_path: Path) -> None:
    root = str(tmp_path)
    shadow_log(root)
    batch = [("r0", 0, T0 + timedelta(hours=1)), ("r1", 1, T0 + timedelta(hours=1))]
    assert plog.record_labels(root, batch) is not None
    assert plog.record_labels(root, batch) is None  # the same labels again: already there, no error
    assert len(plog.read_labels(root)) == 2


def test_the_scan_stops_at_the_hours_its_ids_are_in(tmp_path: Path) -> None:
    root = str(tmp_path)
    with plog.PredictionLogWriter(root) as writer:
        for day in range(4):
            writer.log(record(f"d{day}", at=T0 + timedelta(days=day)))
    # Unreadable segments in hours the batch's ids cannot be in, or need not be looked for in.
    _corrupt_hour(root, T0 - timedelta(days=30))  # outside the label window: never listed
    _corrupt_hour(root, T0)  # older than every prediction of the batch: never read
    labelled = T0 + timedelta(days=3, hours=1)
    plog.record_labels(root, [("d1", 1, labelled), ("d2", 1, labelled), ("d3", 0, labelled)])
    assert sorted(plog.read_labels(root)["request_id"]) == ["d1", "d2", "d3"]
    # An id in the corrupt hour's day: the scan reaches it and says what it cannot read.
    with pytest.raises(DataError, match=r"garbage\.parquet: not a prediction log segment"):
        plog.record_labels(root, [("d0", 1, T0 + timedelta(days=3, hours=2))])


def test_a_shadows_label_is_found_across_midnight(tmp_path: Path) -> None:
    root = str(tmp_path)
    midnight = T0.replace(hour=0) + timedelta(days=1)
    with plog.PredictionLogWriter(root) as writer:
        writer.log(record("m", at=midnight - timedelta(milliseconds=2)))
        writer.log(record("m", "challenger", at=midnight + timedelta(milliseconds=3)))
    uri = plog.record_labels(root, [("m", 1, midnight + timedelta(hours=5))])
    assert uri is not None and "/labels/date=2026-11-02/" in uri  # the first prediction's date
    window = plog.join(root, midnight + timedelta(hours=6), since=midnight)  # the challenger's row only
    assert list(zip(window["predictor"], window["label"])) == [("challenger", 1.0)]


def test_label_times_are_stored_in_utc(tmp_path: Path) -> None:
    root = str(tmp_path)
    shadow_log(root)
    paris = timezone(timedelta(hours=1))
    naive_utc = (T0 + timedelta(hours=1)).replace(tzinfo=None)
    plog.record_labels(root, [("r0", 0, naive_utc), ("r1", 1, (T0 + timedelta(hours=2)).astimezone(paris))])
    labels = plog.read_labels(root)
    assert list(labels["labelled_at"]) == [T0 + timedelta(hours=1), T0 + timedelta(hours=2)]
    assert str(labels["labelled_at"].dt.tz) == "UTC"
