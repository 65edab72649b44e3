"""``kfp-mlops labels import``: a file of late labels into the prediction log, one-line errors."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from kfp_mlops.cli import main
from kfp_mlops.serving.prediction_log import read_labels
from tests.cli.support import error_line
from tests.support.prediction_logs import log_predictions

T0 = datetime.now(timezone.utc) - timedelta(hours=5)  # labels without a time are labelled now


def test_labels_import_appends_to_the_default_log(
    isolated_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = isolated_env / "prediction-log"  # $KFP_MLOPS_HOME/prediction-log, as for `rollout step`
    log_predictions(str(log), ["r1", "r2"], T0)
    (tmp_path / "labels.csv").write_text("request_id,label\nr1,1\nr2,0\n")
    assert main(["labels", "import", str(tmp_path / "labels.csv")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"Imported 2 label(s) (1 positive) from {tmp_path / 'labels.csv'}, labelled ")
    assert out[1].startswith(f"into {log}")
    assert sorted(read_labels(str(log))["request_id"]) == ["r1", "r2"]


def test_a_bad_file_is_one_error_line_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = str(tmp_path / "log")
    log_predictions(log, ["r1"], T0)
    (tmp_path / "labels.csv").write_text(f"request_id,label,at\nr1,maybe,{T0.isoformat()}\n")
    argv = ["labels", "import", str(tmp_path / "labels.csv"), "--log-root", log, "--labelled-at-column", "at"]
    assert main(argv) == 1
    assert error_line(capsys) == (
        f"error: labels file {tmp_path / 'labels.csv'}: 1 bad row(s) of 1, nothing written. "
        "row 1 (line 2): label 'maybe' must be 0 or 1 (or true/false)"
    )
    assert read_labels(log).empty
    assert main(["labels", "import", str(tmp_path / "labels.csv"), "--log-root", log]) == 1
    assert "nothing written" in error_line(capsys)  # without the column: the same bad label
