"""The labels import command's side: the import, and the lines that summarise it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from kfp_mlops.app.labels_import import describe_import, run_labels_import
from kfp_mlops.serving.label_import import LabelImport
from tests.support.prediction_logs import log_predictions

T0 = (datetime.now(timezone.utc) - timedelta(days=2)).replace(microsecond=0)


def test_an_import_is_summarised(tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    log_predictions(log, ["a", "b"], T0)
    first, last = T0 + timedelta(hours=1), T0 + timedelta(days=1)
    (tmp_path / "labels.csv").write_text(f"request_id,label,seen\na,1,{first.isoformat()}\nb,0,{last.isoformat()}\n")
    result = run_labels_import(str(tmp_path / "labels.csv"), log, labelled_at_column="seen")
    lines = describe_import(result)
    assert lines[0] == (
        f"Imported 2 label(s) (1 positive) from {tmp_path / 'labels.csv'}, "
        f"labelled {first.isoformat()} to {last.isoformat()}"
    )
    assert lines[1] == f"into {result.segment}" and str(result.segment).startswith(log)
    again = run_labels_import(str(tmp_path / "labels.csv"), log, labelled_at_column="seen")
    assert describe_import(again) == [
        f"{tmp_path / 'labels.csv'}: its 2 label(s) are already recorded; nothing written"
    ]


def test_an_empty_import_says_nothing_was_written(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("request_id,label\n")
    empty = run_labels_import(str(tmp_path / "labels.csv"), str(tmp_path / "log"))
    assert describe_import(empty) == [f"{tmp_path / 'labels.csv'}: no labels; nothing written to {tmp_path / 'log'}"]
    one = LabelImport("labels.csv", "log", 1, 0, T0, T0, "log/labels/x")
    assert describe_import(one)[0].endswith(f"labelled {T0.isoformat()}")
