"""``kfp-mlops drift``'s side of the check: the verdict printed as JSON, the output folder's files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kfp_mlops.app.drift_command import run_drift_command
from kfp_mlops.core.errors import DataError
from kfp_mlops.demos import ecommerce
from kfp_mlops.modeling.profile import build_profile


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    """An autumn profile and a December window."""
    autumn = ecommerce.generate(range(35, 46), rows_per_week=300, seed=0).drop(columns=ecommerce.WEEK)
    folder = tmp_path / "inputs"
    folder.mkdir()
    paths = {"profile": folder / "profile.json", "december": folder / "december.parquet"}
    paths["profile"].write_text(json.dumps(build_profile(autumn, ecommerce.feature_kinds(), ecommerce.LABEL)))
    ecommerce.generate([48], 2_000, seed=5).drop(columns=ecommerce.WEEK).to_parquet(paths["december"])
    return paths


def test_prints_the_verdict_and_writes_the_output_folder(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The printed JSON is the verdict, as in out/verdict.json; out/report.html is there (here: skipped)."""
    out = tmp_path / "out"
    verdict = run_drift_command(str(files["profile"]), str(files["december"]), out)

    assert json.loads(capsys.readouterr().out) == verdict
    assert json.loads((out / "verdict.json").read_text()) == verdict
    assert verdict["drift"] is True
    assert verdict["report"]["path"] == str(out / "report.html")
    assert "No Evidently report" in (out / "report.html").read_text()


def test_without_a_folder_nothing_is_written(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No folder: the verdict is printed only, and no report is built."""
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    verdict = run_drift_command(str(files["profile"]), str(files["december"]), None)

    assert json.loads(capsys.readouterr().out) == verdict
    assert "report" not in verdict
    assert sorted(p.name for p in files["profile"].parent.iterdir()) == ["december.parquet", "profile.json"]
    assert list(Path.cwd().iterdir()) == []


def test_bad_input_prints_and_writes_nothing(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    ecommerce.generate([42], 200, seed=5).drop(columns=[ecommerce.WEEK, "category"]).to_csv(bad, index=False)
    with pytest.raises(DataError, match="lacks the reference's feature"):
        run_drift_command(str(files["profile"]), str(bad), tmp_path / "out")
    assert capsys.readouterr().out == ""
    assert not (tmp_path / "out").exists()


def test_a_window_on_gcs_gets_the_local_verdict(
    files: dict[str, Path], gcs_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The window streamed from the GCS emulator: the verdict of the same file on disk (but where it came from)."""
    from kfp_mlops.core import storage

    uri = f"{gcs_bucket}/windows/december.parquet"
    storage.upload_file(files["december"], uri)

    remote = run_drift_command(str(files["profile"]), uri, None)
    local = run_drift_command(str(files["profile"]), str(files["december"]), None)

    assert remote.pop("inputs")["current"] == uri
    assert remote == {k: v for k, v in local.items() if k != "inputs"}
    assert remote["rows"] == 2_000 and remote["drift"] is True
    capsys.readouterr()
