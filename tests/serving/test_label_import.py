"""Late labels from a CSV or Parquet file into the prediction log: every row checked, all or nothing."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest

from kfp_mlops.core.errors import DataError
from kfp_mlops.serving.label_import import LISTED_ROWS, import_labels, read_label_file
from kfp_mlops.serving.prediction_log import join, read_labels
from tests.support.prediction_logs import log_predictions

# Recent: labels without a time are labelled now, and a label must come within a week of its prediction.
T0 = (datetime.now(timezone.utc) - timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
IDS = ["0123", "abc", "abc-0", "abc-1"]  # "0123" would lose its zero if a CSV's types were guessed


@pytest.fixture
def log(tmp_path: Path) -> str:
    root = str(tmp_path / "log")
    log_predictions(root, IDS, T0)
    return root


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_a_csv_with_times_is_appended_and_joined(tmp_path: Path, log: str) -> None:
    day = (T0 + timedelta(days=1)).date().isoformat()
    source = _write(
        tmp_path / "labels.csv",
        "request_id,label,labelled_at,comment\n"
        f"0123,1,{day}T{T0:%H}:00:00Z,chargeback\n"
        f"abc,0,{(T0 + timedelta(days=1, hours=1)).astimezone(timezone(timedelta(hours=1))).isoformat()},\n"
        f"abc-0,true,{day} {T0:%H}:30:00,naive: UTC\n",
    )
    result = import_labels(source, log)
    assert (result.labels, result.positives, result.segment is not None) == (3, 2, True)
    assert result.first_labelled_at == T0 + timedelta(days=1)
    assert result.last_labelled_at == T0 + timedelta(days=1, hours=1)
    labels = read_labels(log).set_index("request_id")
    assert labels["label"].to_dict() == {"0123": 1, "abc": 0, "abc-0": 1}
    joined = join(log, T0 + timedelta(days=2)).set_index("request_id")
    assert joined.loc["0123", "label"] == 1.0 and pd.isna(joined.loc["abc-1", "label"])


def test_parquet_with_native_types_and_another_time_column(tmp_path: Path, log: str) -> None:
    frame = pd.DataFrame(
        {
            "request_id": ["abc", "abc-1"],
            "label": [True, False],
            "known": [T0 + timedelta(hours=3), (T0 + timedelta(hours=4)).replace(tzinfo=None)],  # naive: UTC
        }
    )
    frame.to_parquet(tmp_path / "labels.parquet")
    labels = read_label_file(str(tmp_path / "labels.parquet"), labelled_at_column="known")
    assert labels == [("abc", 1, T0 + timedelta(hours=3)), ("abc-1", 0, T0 + timedelta(hours=4))]
    assert import_labels(str(tmp_path / "labels.parquet"), log, labelled_at_column="known").labels == 2


def test_without_a_time_column_labels_are_known_now(tmp_path: Path, log: str) -> None:
    source = _write(tmp_path / "labels.csv", "label,request_id\n1,abc\n")
    now = T0 + timedelta(hours=5)
    assert read_label_file(source, now=now) == [("abc", 1, now)]


def test_every_bad_row_is_named_in_one_error_and_nothing_is_written(tmp_path: Path, log: str) -> None:
    at = (T0 + timedelta(hours=1)).isoformat()
    source = _write(
        tmp_path / "labels.csv",
        f"request_id,label,labelled_at\nabc,1,{at}\n,1,{at}\nabc-0,yes,{at}\nabc-1,2,yesterday\n0123,0,\n",
    )
    with pytest.raises(DataError) as caught:
        import_labels(source, log)
    assert str(caught.value) == (
        f"labels file {source}: 4 bad row(s) of 5, nothing written. "
        "row 2 (line 3): request_id (empty) must be a non-empty string. "
        "row 3 (line 4): label 'yes' must be 0 or 1 (or true/false). "
        "row 4 (line 5): label '2' must be 0 or 1 (or true/false); labelled_at 'yesterday' must be an ISO 8601 time. "
        "row 5 (line 6): labelled_at (empty) must be an ISO 8601 time"
    )
    assert read_labels(log).empty


def test_a_long_list_of_bad_rows_is_cut(tmp_path: Path, log: str) -> None:
    source = _write(tmp_path / "labels.csv", "request_id,label\n" + "abc,9\n" * (LISTED_ROWS + 5))
    with pytest.raises(DataError, match=rf"{LISTED_ROWS + 5} bad row\(s\) .* And 5 more bad row\(s\)$"):
        read_label_file(source)


def test_labels_the_log_refuses_are_named_and_nothing_is_written(tmp_path: Path, log: str) -> None:
    unknown = _write(tmp_path / "unknown.csv", "request_id,label\nabc,1\nnobody,0\nabc,0\n")
    with pytest.raises(DataError) as caught:
        import_labels(unknown, log)
    assert str(caught.value).startswith(f"labels file {unknown}: labels for ")
    assert re.search(r"unknown request id\(s\) .*: nobody", str(caught.value))
    assert re.search(r"duplicate label\(s\) .*: abc", str(caught.value))
    early = _write(tmp_path / "early.csv", f"request_id,label,labelled_at\nabc,1,{T0 - timedelta(hours=1)}\n")
    with pytest.raises(DataError, match="abc"):
        import_labels(early, log)
    assert read_labels(log).empty
    good = _write(tmp_path / "good.csv", "request_id,label\nabc,1\n")
    import_labels(good, log)
    with pytest.raises(DataError, match=r"duplicate label\(s\) .*: abc"):
        import_labels(good, log)  # labelled now, again: another time for the same request
    assert len(read_labels(log)) == 1
    timed = _write(tmp_path / "timed.csv", f"request_id,label,labelled_at\nabc-0,0,{T0 + timedelta(hours=2)}\n")
    assert import_labels(timed, log).segment is not None
    assert import_labels(timed, log).segment is None  # the same labels again: a retried import writes nothing
    assert len(read_labels(log)) == 2


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("labels.json", "{}", "expected a .csv or .parquet file"),
        ("labels.csv", "", "the file is empty"),
        ("labels.csv", "id,value\nabc,1\n", "no column 'request_id', 'label'; it has 'id', 'value'"),
        ("labels.parquet", "not parquet", "cannot read as parquet"),
    ],
)
def test_unreadable_files_are_refused(tmp_path: Path, log: str, name: str, content: str, reason: str) -> None:
    source = _write(tmp_path / name, content)
    with pytest.raises(DataError, match=reason):
        import_labels(source, log)
    with pytest.raises(DataError, match="no column 'seen_at'"):
        read_label_file(_write(tmp_path / "ok.csv", "request_id,label\nabc,1\n"), labelled_at_column="seen_at")
    missing = str(tmp_path / "missing.csv")
    with pytest.raises(DataError, match=f"labels file .*{missing}"):
        read_label_file(missing)


def test_labels_and_log_on_gcs(gcs_bucket: str) -> None:
    from kfp_mlops.core import storage

    root = f"{gcs_bucket}/log"
    log_predictions(root, IDS, T0)
    storage.write_bytes(f"{gcs_bucket}/in/labels.csv", b"request_id,label\n0123,1\nabc-1,0\n")
    result = import_labels(f"{gcs_bucket}/in/labels.csv", root)
    assert result.labels == 2 and result.segment is not None and result.segment.startswith(root)
    assert sorted(read_labels(root)["request_id"]) == ["0123", "abc-1"]
