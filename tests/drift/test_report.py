"""Evidently's HTML report, recorded in the verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from kfp_mlops.drift.report import REPORT_FILE
from kfp_mlops.drift.run import run_drift


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # evidently's own (numpy.core, litestar)
def test_evidently_report_from_reference_data(files: dict[str, Path], tmp_path: Path) -> None:
    """Reference rows give Evidently's HTML report; the verdict stays ours and records the report."""
    out = tmp_path / "out"
    verdict = run_drift(
        str(files["reference"]), str(files["december"]), label="purchased", report_path=out / REPORT_FILE
    )

    html = (out / "report.html").read_text()
    assert html.lstrip().startswith("<!DOCTYPE html>") and "item_discount" in html and len(html) > 100_000
    assert verdict["report"] == {
        "path": str(out / "report.html"),
        "reference": str(files["reference"]),
        "reference_rows": 11_000,
        "current_rows": 2_000,
        "evidently": "0.7.23",
        "evidently_drift_share": pytest.approx(0.5, abs=0.3),
    }
    assert verdict["drift"] is True
