"""Reading a window and the as-of join: only the window's partitions; the layout read by DuckDB as it is."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import pytest

from kfp_mlops.core import storage
from kfp_mlops.core.errors import DataError
from kfp_mlops.serving import prediction_log as plog
from kfp_mlops.serving.prediction_log.partitions import write_segment
from kfp_mlops.serving.prediction_log.records import LABEL_SCHEMA
from tests.serving.prediction_log.shared import T0, record, shadow_log


def test_labels_and_join_as_of(store_root: str) -> None:
    root = storage.join(store_root, "log")
    shadow_log(root)
    plog.record_labels(root, [("r0", 0, T0 + timedelta(hours=1)), ("r1", True, T0 + timedelta(hours=5))])
    plog.record_labels(root, [("r3", 1, T0 + timedelta(days=2))])

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


def test_a_window_reads_only_its_partitions(tmp_path: Path) -> None:
    root = str(tmp_path / "log")
    with plog.PredictionLogWriter(root) as writer:
        for i in range(6):
            writer.log(record(f"r{i}", minutes=40 * i))  # hours 12, 12, 13, 14, 14, 15
    window = plog.read_predictions(root, since=T0 + timedelta(minutes=80), until=T0 + timedelta(minutes=160))
    assert list(window["request_id"]) == ["r2", "r3", "r4"]

    # A corrupt segment in an earlier hour and on an earlier day is never opened by a later window.
    for hour in ("date=2026-11-02/hour=12", "date=2026-11-01/hour=23"):
        storage.write_bytes(storage.join(root, plog.PREDICTIONS, hour, "predictor=legacy", "bad.parquet"), b"x")
    storage.write_bytes(storage.join(root, plog.LABELS, "date=2026-10-30", "bad.parquet"), b"x")
    assert list(plog.join(root, T0 + timedelta(hours=4), since=T0 + timedelta(hours=1))["request_id"]) == [
        "r2",
        "r3",
        "r4",
        "r5",
    ]
    with pytest.raises(DataError, match=r"bad\.parquet: not a prediction log segment"):
        plog.read_predictions(root)


def test_join_refuses_duplicates_from_racing_writers(tmp_path: Path) -> None:
    root = str(tmp_path)
    shadow_log(root)
    plog.record_labels(root, [("r0", 0, T0 + timedelta(hours=1))])
    # A second label writer that checked before the first one wrote.
    import pyarrow as pa

    racer = pa.table(
        {"request_id": ["r0"], "label": [1], "labelled_at": [T0 + timedelta(hours=2)], "predicted_at": [T0]},
        schema=LABEL_SCHEMA,
    )
    write_segment(storage.join(root, plog.LABELS, "date=2026-11-02", "racer.parquet"), racer)
    with pytest.raises(DataError, match=r"labelled twice \[1\]: r0"):
        plog.join(root, as_of=T0 + timedelta(days=1))
    assert len(plog.join(root, as_of=T0 + timedelta(hours=1, minutes=30))) == 9  # before the second label

    with plog.PredictionLogWriter(root) as writer:
        writer.log(record("r1", minutes=10, score=0.3))
    with pytest.raises(DataError, match=r"logged twice \[1\]: r1 by legacy"):
        plog.join(root, as_of=T0 + timedelta(hours=1))


def test_refusals_and_client_ids_round_trip(tmp_path: Path) -> None:
    root = str(tmp_path)
    with plog.PredictionLogWriter(root) as writer:
        writer.log(
            plog.PredictionRecord(
                "srv-1",
                "challenger",
                "v1",
                {},
                None,
                None,
                0.7,
                "rejected",
                T0,
                error="400: bad",
                client_request_id="c-1",
            )
        )
        writer.log(record("srv-2", "challenger", status="error"))
    frame = plog.read_predictions(root).set_index("request_id")
    assert frame.loc["srv-1", ["status", "error", "client_request_id"]].tolist() == ["rejected", "400: bad", "c-1"]
    assert frame.loc["srv-2", "status"] == "error" and frame.loc["srv-2", "client_request_id"] is None


def test_duckdb_reads_the_log_as_it_is(store_root: str, tmp_path: Path) -> None:
    """The layout is engine-readable: DuckDB's own Parquet reader, hive partitioning, no code of ours."""
    import duckdb

    root = storage.join(store_root, "log")
    shadow_log(root)
    plog.record_labels(root, [("r0", 0, T0 + timedelta(hours=1)), ("r2", 1, T0 + timedelta(hours=2))])
    if storage.is_gcs(root):  # DuckDB reads gs:// with HMAC keys, not the emulator: read a copy of the objects
        local = tmp_path / "copy"
        for uri in storage.list_uris(root):
            target = local / uri.removeprefix(root + "/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(storage.read_bytes(uri))
        where = str(local)
    else:
        where = root
    con = duckdb.connect()
    rows = con.execute(
        f"""
        SELECT p.predictor, p.date, p.hour, p.request_id, p.score, p.features->>'country', l.label
        FROM read_parquet('{where}/predictions/**/*.parquet', hive_partitioning = true) p
        LEFT JOIN read_parquet('{where}/labels/**/*.parquet', hive_partitioning = true) l USING (request_id)
        WHERE p.date = DATE '2026-11-02' AND p.hour = 12
        ORDER BY p.predictor, p.request_id
        """
    ).fetchall()
    ours = plog.join(root, T0 + timedelta(days=1)).sort_values(["predictor", "request_id"])
    assert [(r[0], r[3], r[4], r[6]) for r in rows] == [
        (p, r, s, None if math.isnan(y) else int(y))
        for p, r, s, y in zip(ours["predictor"], ours["request_id"], ours["score"], ours["label"])
    ]
    assert {(str(r[1]), r[2], r[5]) for r in rows} == {("2026-11-02", 12, "US")}
