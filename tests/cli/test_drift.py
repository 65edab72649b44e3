"""``kfp-mlops drift``: a verdict as JSON, exit 3 on drift when asked, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kfp_mlops.cli import main
from tests.cli.support import error_line


def _autumn_and_holidays(tmp_path: Path, drop: tuple[str, ...] = ()) -> list[str]:
    """Writes a reference (weeks 0-3) and a holiday window (week 46); the drift command's arguments for them."""
    from kfp_mlops.demos.ecommerce import generate

    generate(range(0, 4), 1500, seed=1).drop(columns=list(drop)).to_parquet(tmp_path / "reference.parquet")
    generate(range(46, 47), 1500, seed=2).drop(columns=list(drop)).to_parquet(tmp_path / "holidays.parquet")
    return [
        "drift",
        "--reference",
        str(tmp_path / "reference.parquet"),
        "--current",
        str(tmp_path / "holidays.parquet"),
    ]


def test_drift_command_prints_a_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [*_autumn_and_holidays(tmp_path), "--label", "purchased", "--ignore-columns", "week"]
    assert main([*argv, "--fail-on-drift"]) == 3
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["drift"] is True and "week" not in verdict["features"]
    assert main([*argv, "--config", "{oops"]) == 1
    assert "--config: not valid JSON" in error_line(capsys)


def test_drift_of_unlabelled_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Reference and window without a label column: every column is a feature, no performance part."""
    argv = _autumn_and_holidays(tmp_path, drop=("purchased",))

    assert main([*argv, "--ignore-columns", "week"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["drift"] is True and verdict["reference"]["label"] is None
    assert (verdict["performance"], verdict["performance_estimate"], verdict["prediction"]) == (None, None, None)
    assert "purchased" not in verdict["features"] and "week" not in verdict["features"]
    assert main([*argv, "--label", "purchased"]) == 1
    assert "no label column 'purchased' (leave the label out for unlabelled data)" in error_line(capsys)
