"""The drift check end to end: inputs from files, the verdict and the report written, or nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from kfp_mlops.core.config import OUTSIDE_STORE_ENV, Settings
from kfp_mlops.core.errors import DataError, MlopsError
from kfp_mlops.drift.policy import RetrainPolicy
from kfp_mlops.drift.report import REPORT_FILE
from kfp_mlops.drift.run import VERDICT_FILE, run_drift
from kfp_mlops.modeling.model_bundle import METADATA_FILE, ModelBundle, save_bundle
from tests.support.models import register


def test_a_profile_gives_the_verdict_and_skips_the_report(files: dict[str, Path], tmp_path: Path) -> None:
    """A profile has no rows: verdict.json, and a report.html saying why Evidently's report is missing."""
    out = tmp_path / "out"
    verdict = run_drift(
        str(files["profile"]), str(files["december"]), verdict_path=out / VERDICT_FILE, report_path=out / REPORT_FILE
    )

    assert json.loads((out / "verdict.json").read_text()) == verdict
    assert verdict["drift"] is True
    assert verdict["inputs"] == {"reference": str(files["profile"]), "current": str(files["december"]), "model": None}
    assert verdict["report"]["skipped"].startswith(f"the reference {files['profile']} is a profile without rows")
    assert "No Evidently report" in (out / "report.html").read_text()


def test_model_with_reference_data_uses_reference_predictions_and_performance(files: dict[str, Path]) -> None:
    verdict = run_drift(str(files["reference"]), str(files["quiet"]), model=str(files["model"]))
    assert verdict["prediction"]["reference"] == "mean predicted probabilities on reference rows"
    assert verdict["performance"]["reference"]["accuracy"] == pytest.approx(0.80, abs=0.02)
    assert verdict["drift"] is False


def test_a_model_folder_outside_the_store_needs_the_opt_out_and_its_checksum(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, quiet, folder = str(files["reference"]), str(files["quiet"]), str(files["model_folder"])
    with pytest.raises(
        MlopsError, match=f"model URI {folder} is outside the model store .*; set {OUTSIDE_STORE_ENV}=1"
    ):
        run_drift(reference, quiet, model=folder)

    monkeypatch.setenv(OUTSIDE_STORE_ENV, "1")
    with pytest.raises(MlopsError, match=r"no recorded sha256 to check model\.joblib against"):
        run_drift(reference, quiet, model=folder)
    with pytest.raises(MlopsError, match=r"model\.joblib has sha256 [0-9a-f]{64}, not the recorded 0{64}"):
        run_drift(reference, quiet, model=folder, model_sha256="0" * 64)
    sha256 = json.loads((files["model_folder"] / METADATA_FILE).read_text())["model_sha256"]
    outside = run_drift(reference, quiet, model=folder, model_sha256=sha256)
    assert outside["performance"] == run_drift(reference, quiet, model=str(files["model"]))["performance"]


def test_a_store_version_is_checked_against_the_recorded_checksum(files: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "other-store"
    with pytest.raises(MlopsError, match=r"differs from the one recorded at registration"):
        run_drift(str(files["reference"]), str(files["quiet"]), model=str(files["model"]), model_sha256="0" * 64)
    with pytest.raises(MlopsError, match="is outside the model store"):  # a version of another store
        run_drift(str(files["reference"]), str(files["quiet"]), model=str(files["model"]), store_root=str(other))


def test_bad_input_writes_nothing(files: dict[str, Path], tmp_path: Path) -> None:
    bad, out = tmp_path / "bad.csv", tmp_path / "out"
    pd.read_parquet(files["quiet"]).drop(columns="category").to_csv(bad, index=False)
    with pytest.raises(DataError, match=f"^current data {bad}: lacks the reference's feature\\(s\\) category;"):
        run_drift(str(files["profile"]), str(bad), verdict_path=out / VERDICT_FILE, report_path=out / REPORT_FILE)
    assert not out.exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # evidently's own (numpy.core, litestar)
def test_report_from_the_model_training_data(files: dict[str, Path], tmp_path: Path, autumn_model: ModelBundle) -> None:
    """A profile has no rows; the model's readable training data stands in for Evidently's report."""
    model_dir = tmp_path / "model-with-data"
    save_bundle(model_dir, autumn_model.model, {**autumn_model.metadata, "training_data_uri": str(files["reference"])})
    stored = register(Settings.from_env().store_root, model_dir, name="autumn")

    verdict = run_drift(
        str(files["profile"]), str(files["december"]), model=stored.uri, report_path=tmp_path / "report.html"
    )

    assert verdict["report"]["reference"] == str(files["reference"])
    assert verdict["report"]["reference_rows"] == 11_000
    assert verdict["prediction"]["reference"] == "mean predicted probabilities on reference rows"
    assert verdict["performance"]["reference"] is None  # training rows are no fair baseline


def test_the_verdict_carries_the_retrain_decision(files: dict[str, Path]) -> None:
    """With labelled reference rows as the baseline: the quiet week keeps the model, December is retrained fully;
    a policy of another metric decides on it; without a model only severe drift can warrant a retrain."""
    model, reference = str(files["model"]), str(files["reference"])
    quiet = run_drift(reference, str(files["quiet"]), model=model)
    december = run_drift(reference, str(files["december"]), model=model)
    by_auc = run_drift(reference, str(files["december"]), model=model, policy=RetrainPolicy(metric="roc_auc"))
    no_model = run_drift(str(files["profile"]), str(files["december"]))

    assert (quiet["retrain"]["action"], quiet["retrain"]["rule"]) == ("none", "no_drift")
    assert december["reference_performance"] == december["performance"]["reference"]
    assert december["retrain"]["rule"] == "realized_performance_drop"
    assert (december["retrain"]["kind"], december["retrain"]["kind_rule"]) == ("full", "severe_drift")
    assert by_auc["retrain"]["evidence"]["metric"] == "roc_auc"
    assert (no_model["retrain"]["rule"], no_model["reference_performance"]) == ("severe_feature_drift", None)
    assert json.loads(json.dumps(december["retrain"])) == december["retrain"]
