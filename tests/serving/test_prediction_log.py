"""The prediction log on a local folder and on the GCS emulator: segments, labels, the as-of join."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from kfp_mlops.core import storage
from kfp_mlops.core.errors import AlreadyExistsError, DataError, StorageError
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
) -> plog.PredictionRecord:
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
        timestamp=T0 + timedelta(minutes=minutes),
        error=None if ok else "timeout",
    )


def test_append_and_read_segments(store_root: str) -> None:
    root = storage.join(store_root, "log")
    with plog.PredictionLogWriter(root, max_records=3, max_age_s=3600) as writer:
        written = [uri for i in range(5) for uri in writer.log(record(f"r{i}", minutes=i))]
        written += writer.log(record("r0", "challenger", minutes=0.5, score=0.9))
        assert len(written) == 1  # the third legacy record filled a segment
    segments = storage.list_uris(storage.join(root, plog.PREDICTIONS))
    assert len(segments) == 3  # legacy: 3 + 2, challenger: 1
    assert all(uri.endswith(".jsonl") for uri in segments)
    assert sum("/challenger/" in uri for uri in segments) == 1

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
        storage.write_bytes(segments[0], b"{}\n", create_only=True)


def test_since_until_and_old_segments_skipped(tmp_path: Path) -> None:
    root = str(tmp_path / "log")
    with plog.PredictionLogWriter(root, max_records=2) as writer:
        for i in range(6):
            writer.log(record(f"r{i}", minutes=10 * i))
    window = plog.read_predictions(root, since=T0 + timedelta(minutes=20), until=T0 + timedelta(minutes=40))
    assert list(window["request_id"]) == ["r2", "r3", "r4"]

    # Segments are named after their latest record: a corrupt old one is never opened.
    oldest = sorted(storage.list_uris(root))[0]
    Path(oldest).write_text("not json\n")
    assert list(plog.read_predictions(root, since=T0 + timedelta(minutes=20))["request_id"]) == ["r2", "r3", "r4", "r5"]
    with pytest.raises(DataError, match="line 1 is not valid JSON"):
        plog.read_predictions(root)


def test_old_buffer_is_flushed_on_next_log(tmp_path: Path) -> None:
    writer = plog.PredictionLogWriter(str(tmp_path), max_records=1000, max_age_s=0)
    assert len(writer.log(record("a"))) == 1
    assert len(writer.log(record("b"))) == 1
    assert writer.close() == []


def test_failed_write_is_retried_without_duplicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
    writer = plog.PredictionLogWriter(root)
    writer.log(record("a"))
    with pytest.raises(StorageError):
        writer.flush()
    with pytest.raises(StorageError):
        writer.flush()  # it landed this time, but the caller was told otherwise
    writer.log(record("b", minutes=1))
    assert len(writer.flush()) == 2  # the retried segment ("already there") and the new one
    assert list(plog.read_predictions(root)["request_id"]) == ["a", "b"]


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"status": "maybe"}, "status 'maybe'"),
        ({"score": 1.5}, r"score 1.5 must be a probability"),
        ({"score": math.nan}, "score nan"),
        ({"predictor": "Legacy_1"}, "DNS-1123"),
        ({"latency_ms": -1}, "latency_ms -1"),
        ({"decision": None}, "decision None"),
        ({"timestamp": "2026-11-02"}, "expected a datetime"),
    ],
)
def test_invalid_record_names_request_and_field(changes: dict, match: str) -> None:
    fields = {**record("r9").__dict__, **changes}
    with pytest.raises(DataError, match=match) as caught:
        plog.PredictionRecord(**fields)
    assert "r9" in str(caught.value)


def test_unserialisable_feature_is_refused(tmp_path: Path) -> None:
    writer = plog.PredictionLogWriter(str(tmp_path))
    bad = plog.PredictionRecord("r1", "legacy", "v1", {"when": object()}, 0.1, "approve", 1.0, "ok", T0)
    with pytest.raises(DataError, match="'r1' by 'legacy': features"):
        writer.log(bad)
    assert writer.flush() == []


def _shadow_log(root: str) -> None:
    """r0..r3 scored by legacy and (as a shadow) by challenger; r4 by legacy only."""
    with plog.PredictionLogWriter(root) as writer:
        for i in range(5):
            writer.log(record(f"r{i}", minutes=10 * i, score=0.1 * i))
            if i < 4:
                writer.log(record(f"r{i}", "challenger", minutes=10 * i + 0.01, score=0.2 * i))


def test_labels_and_join_as_of(store_root: str) -> None:
    root = storage.join(store_root, "log")
    _shadow_log(root)
    plog.record_labels(root, [("r0", 0, T0 + timedelta(hours=1)), ("r1", True, T0 + timedelta(hours=5))])
    plog.record_labels(root, [("r3", 1, T0 + timedelta(days=2))])
    assert plog.record_labels(root, []) is None

    labels = plog.read_labels(root)
    assert list(labels["request_id"]) == ["r0", "r1", "r3"]
    assert list(labels["label"]) == [0, 1, 1]

    joined = plog.join(root, as_of=T0 + timedelta(hours=6))
    assert len(joined) == 9  # one row per (request, predictor)
    by_key = {(r, p): label for r, p, label in zip(joined["request_id"], joined["predictor"], joined["label"])}
    assert by_key[("r0", "legacy")] == 0 and by_key[("r0", "challenger")] == 0
    assert by_key[("r1", "legacy")] == 1 and by_key[("r1", "challenger")] == 1
    assert math.isnan(by_key[("r3", "legacy")])  # labelled later than as_of

    early = plog.join(root, as_of=T0 + timedelta(minutes=15))
    assert sorted(early["request_id"]) == ["r0", "r0", "r1", "r1"]  # later predictions do not exist yet
    assert early["label"].isna().all()

    window = plog.join(root, as_of=T0 + timedelta(days=3), since=T0 + timedelta(minutes=25))
    assert sorted(zip(window["request_id"], window["label"].fillna(-1))) == [("r3", 1.0), ("r3", 1.0), ("r4", -1.0)]


def test_rejected_label_batches_write_nothing(tmp_path: Path) -> None:
    root = str(tmp_path)
    _shadow_log(root)
    plog.record_labels(root, [("r0", 0, T0 + timedelta(hours=1))])
    before = storage.list_uris(storage.join(root, plog.LABELS))

    cases = [
        (
            [("nope", 1, T0 + timedelta(hours=1)), ("r1", 0, T0 + timedelta(hours=1))],
            r"unknown request id\(s\) \[1\]: nope",
        ),
        ([("r1", 0, T0 + timedelta(hours=1)), ("r1", 0, T0 + timedelta(hours=2))], r"duplicate label\(s\).*\[1\]: r1"),
        ([("r1", 0, T0 + timedelta(hours=1)), ("r1", 1, T0 + timedelta(hours=2))], r"\[1\]: r1"),
        ([("r0", 1, T0 + timedelta(hours=2))], r"already recorded\) \[1\]: r0"),
        ([("r2", 1, T0 + timedelta(minutes=5))], r"before their prediction \[1\]: r2 \(labelled 2026-11-02T12:05"),
        ([("r2", 2, T0 + timedelta(hours=1))], "r2: label 2 must be 0 or 1"),
        ([("r2", 1)], "not a \\(request_id, label, labelled_at\\) triple"),
    ]
    for batch, match in cases:
        with pytest.raises(DataError, match=match):
            plog.record_labels(root, batch)
    assert storage.list_uris(storage.join(root, plog.LABELS)) == before

    # Every problem of a batch is named at once.
    with pytest.raises(DataError) as caught:
        plog.record_labels(root, [("x1", 1, T0), ("x2", 1, T0), ("r0", 0, T0 + timedelta(hours=3))])
    assert "unknown request id(s) [2]: x1, x2" in str(caught.value)
    assert "[1]: r0" in str(caught.value)


def test_join_refuses_duplicates_from_racing_writers(tmp_path: Path) -> None:
    root = str(tmp_path)
    _shadow_log(root)
    plog.record_labels(root, [("r0", 0, T0 + timedelta(hours=1))])
    # A second label writer that checked before the first one wrote.
    line = json.dumps({"request_id": "r0", "label": 1, "labelled_at": (T0 + timedelta(hours=2)).isoformat()})
    storage.write_bytes(
        storage.join(root, plog.LABELS, "20261102T140000000000Z-racer000-000001.jsonl"),
        (line + "\n").encode(),
        create_only=True,
    )
    with pytest.raises(DataError, match=r"labelled twice \[1\]: r0"):
        plog.join(root, as_of=T0 + timedelta(days=1))
    assert len(plog.join(root, as_of=T0 + timedelta(hours=1, minutes=30))) == 9  # before the second label

    with plog.PredictionLogWriter(root) as writer:
        writer.log(record("r1", minutes=10))
    with pytest.raises(DataError, match=r"logged twice \[1\]: r1 by legacy"):
        plog.join(root, as_of=T0 + timedelta(hours=1))
