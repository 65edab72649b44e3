"""The drift_check component: where the reference and model come from, its outputs, W&B, and kfp.local."""

# No `from __future__ import annotations`: kfp reads the test components' annotations as types.
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kfp_mlops.components.drift_check.logic import (
    TABLE_COLUMNS,
    features_table,
    kfp_metrics,
    resolve_sources,
    run_drift_check,
)
from kfp_mlops.core.errors import ConfigError, DataError
from kfp_mlops.demos import ecommerce
from kfp_mlops.modeling.datasets import write_parquet
from kfp_mlops.modeling.model_bundle import METADATA_FILE, save_bundle
from kfp_mlops.modeling.model_store import ModelStore
from kfp_mlops.modeling.profile import build_profile
from kfp_mlops.modeling.training import fit_model
from tests.support.wandb_offline import find_offline_runs, read_offline_run


class Inputs:
    """An autumn model folder with its profile, and a quiet and a December window as KFP would pass them."""

    def __init__(self, root: Path) -> None:
        reference = ecommerce.generate(range(35, 46), 1_000, seed=0).drop(columns="week")
        model, metadata = fit_model(reference, ecommerce.LABEL, "logistic_regression", {}, seed=0)
        self.model_dir = root / "model"
        save_bundle(self.model_dir, model, {**metadata, "training_data_uri": "memory"})
        self.profile = root / "profile"  # KFP artifact paths have no suffix
        self.profile.write_text(json.dumps(build_profile(reference, metadata["feature_kinds"], ecommerce.LABEL)))
        self.quiet, self.december = root / "quiet", root / "december"
        write_parquet(ecommerce.generate([40], 2_000, seed=1), self.quiet)
        write_parquet(ecommerce.generate([47], 2_000, seed=1), self.december)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    return Inputs(tmp_path_factory.mktemp("drift-inputs"))


def _crown(store_root: str, inputs: Inputs) -> str:
    """Registers the autumn model (with profile and held-out metrics) as champion; returns its uri."""
    store = ModelStore(store_root)
    registered = store.publish(
        "shop",
        inputs.model_dir,
        profile_path=inputs.profile,
        evaluation={"passed": True, "metrics": {"accuracy": 0.8, "roc_auc": 0.73}},
        sha256=json.loads((inputs.model_dir / METADATA_FILE).read_text())["model_sha256"],  # train's record
    )
    store.promote(registered, expected_champion=None, by="test", reasons=["the autumn model"])
    return registered.uri


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"reference_profile_path": "p", "reference_uri": "q"}, "reference_profile artifact or as reference_uri"),
        ({"reference_uri": "q", "model_path": "m", "model_uri": "n"}, "model artifact or as model_uri, not both"),
        ({"reference_uri": "q", "store_root": "s"}, "store_root and model_name name the champion together"),
        ({}, "no reference: give reference_profile, reference_uri, or store_root and model_name"),
    ],
)
def test_sources_must_be_unambiguous(arguments: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_sources(**arguments)


def test_champion_provides_reference_and_model(store_root: str, inputs: Inputs) -> None:
    """store_root + model_name: the champion's version folder, unless a source is given explicitly."""
    with pytest.raises(ConfigError, match=f"model 'shop' has no champion in {store_root}"):
        resolve_sources(store_root=store_root, model_name="shop")
    uri = _crown(store_root, inputs)
    assert resolve_sources(store_root=store_root, model_name="shop") == (uri, uri)
    assert resolve_sources(reference_uri="r.parquet", store_root=store_root, model_name="shop") == ("r.parquet", uri)
    assert resolve_sources(reference_profile_path="p") == ("p", None)


def test_drift_check_with_the_profile_artifact(tmp_path: Path, inputs: Inputs) -> None:
    """Verdict JSON, a report page saying why Evidently's is missing, and the scores in W&B."""
    verdict_path, report_path = tmp_path / "verdict", tmp_path / "report"

    verdict = run_drift_check(
        str(inputs.december),
        str(verdict_path),
        str(report_path),
        reference_profile_path=str(inputs.profile),
        config={"ignore_columns": ["week"]},
        pipeline_job_id="job-7",
    )

    assert json.loads(verdict_path.read_text()) == verdict
    assert verdict["drift"] is True and verdict["prediction"] is None
    assert "No Evidently report" in report_path.read_text()
    metrics = kfp_metrics(verdict)
    assert metrics["drift"] == 1.0 and metrics["drift_share"] == pytest.approx(verdict["drift_share"])
    assert {f"psi_{name}" for name in ecommerce.FEATURES} <= set(metrics)

    [run_dir] = find_offline_runs(Path(os.environ["WANDB_DIR"]))
    logged = read_offline_run(run_dir)
    assert (logged.job_type, logged.group, logged.exit_code) == ("drift_check", "job-7", 0)
    assert logged.summary["drift_share"] == pytest.approx(verdict["drift_share"])
    assert logged.summary["drift_reasons"] == verdict["reasons"][0]
    table = logged.table("drift_features")
    assert table["columns"] == list(TABLE_COLUMNS)
    rows = {row[0]: dict(zip(table["columns"], row)) for row in table["data"]}
    assert rows["item_discount"]["psi"] == pytest.approx(verdict["features"]["item_discount"]["psi"])
    assert rows["item_discount"]["drifted"] is True and rows["user_age"]["drifted"] is False


def test_the_verdict_is_pushed_to_the_pushgateway_the_pipeline_names(
    tmp_path: Path, inputs: Inputs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway is the task's parameter: a pod's environment (which the pipelines never set) is not read."""
    from tests.support.pushgateway import running_pushgateway, scrape

    monkeypatch.setenv("KFP_MLOPS_PUSHGATEWAY", "http://127.0.0.1:9")  # the retired setting: ignored
    try:
        with running_pushgateway(tmp_path) as gateway:
            verdict = run_drift_check(
                str(inputs.december),
                str(tmp_path / "verdict"),
                str(tmp_path / "report"),
                reference_profile_path=str(inputs.profile),
                config={"ignore_columns": ["week"]},
                pipeline_job_id="job-8",
                pushgateway_url=gateway,
            )
            samples = scrape(gateway)
    except FileNotFoundError as missing:
        pytest.skip(str(missing))
    group = {"job": "kfp-mlops-drift", "model": "unnamed", "pipeline_job_id": "job-8"}  # no registered model named
    assert samples[("kfp_mlops_drift_detected", frozenset(group.items()))] == 1.0
    assert samples[("kfp_mlops_drift_share", frozenset(group.items()))] == pytest.approx(verdict["drift_share"])


def test_drift_check_against_the_champion(store_root: str, tmp_path: Path, inputs: Inputs) -> None:
    """The champion's profile, model and held-out metrics: prediction drift and performance too."""
    _crown(store_root, inputs)

    quiet = run_drift_check(
        str(inputs.quiet),
        str(tmp_path / "q-verdict"),
        str(tmp_path / "q-report"),
        store_root=store_root,
        model_name="shop",
        config={"ignore_columns": ["week"]},
    )
    december = run_drift_check(
        str(inputs.december),
        str(tmp_path / "d-verdict"),
        str(tmp_path / "d-report"),
        store_root=store_root,
        model_name="shop",
        config={"ignore_columns": ["week"]},
    )

    assert quiet["drift"] is False
    assert quiet["performance"]["reference"] == {"accuracy": 0.8, "roc_auc": 0.73}
    assert december["drift"] is True and december["performance"]["degraded"] is True
    assert kfp_metrics(december)["accuracy"] == pytest.approx(december["performance"]["accuracy"])
    estimate = december["performance_estimate"]["accuracy"]["estimate"]
    assert kfp_metrics(december)["estimated_accuracy"] == pytest.approx(estimate)


def test_bad_window_fails_the_run_and_writes_no_verdict(tmp_path: Path, inputs: Inputs) -> None:
    bad = tmp_path / "bad"
    write_parquet(pd.read_parquet(inputs.quiet).drop(columns=["device"]), bad)
    with pytest.raises(
        DataError,
        match=f"^current data {bad}: lacks the reference's feature\\(s\\) device; has "
        "column\\(s\\) the reference does not know: week",
    ):
        run_drift_check(
            str(bad), str(tmp_path / "verdict"), str(tmp_path / "report"), reference_profile_path=str(inputs.profile)
        )
    assert not (tmp_path / "verdict").exists() and not (tmp_path / "report").exists()
    [run_dir] = find_offline_runs(Path(os.environ["WANDB_DIR"]))
    assert read_offline_run(run_dir).exit_code == 1


def test_unknown_config_key_fails_before_the_run(tmp_path: Path, inputs: Inputs) -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) psi_treshold"):
        run_drift_check(
            str(inputs.quiet),
            str(tmp_path / "v"),
            str(tmp_path / "r"),
            reference_profile_path=str(inputs.profile),
            config={"psi_treshold": 0.3},
        )
    assert find_offline_runs(Path(os.environ["WANDB_DIR"])) == []


def test_features_table_has_one_row_per_feature() -> None:
    verdict: dict[str, Any] = {
        "features": {
            "x": {
                "kind": "numeric",
                "psi": 0.3,
                "ks": 0.2,
                "missing_share": 0.0,
                "out_of_range_share": 0.1,
                "drifted": True,
                "reasons": ["psi"],
            },
            "c": {
                "kind": "categorical",
                "psi": 0.0,
                "js": 0.01,
                "missing_share": 0.5,
                "out_of_range_share": 0.0,
                "drifted": False,
                "reasons": [],
            },
        }
    }
    expected = pd.DataFrame(
        [  # the score a kind does not have is NaN
            {
                "feature": "x",
                "kind": "numeric",
                "psi": 0.3,
                "ks": 0.2,
                "js": None,
                "missing_share": 0.0,
                "out_of_range_share": 0.1,
                "drifted": True,
            },
            {
                "feature": "c",
                "kind": "categorical",
                "psi": 0.0,
                "ks": None,
                "js": 0.01,
                "missing_share": 0.5,
                "out_of_range_share": 0.0,
                "drifted": False,
            },
        ]
    )
    pd.testing.assert_frame_equal(features_table(verdict), expected)


@pytest.mark.slow
def test_component_gates_a_branch_in_kfp_local(tmp_path: Path, inputs: Inputs) -> None:
    """The retrain kind output drives dsl.If; reference data gives Evidently's report as the HTML output."""
    from kfp import dsl, local
    from kfp.dsl import Dataset, Output

    from kfp_mlops.components.drift_check.component import drift_check

    reference = tmp_path / "reference.parquet"
    write_parquet(ecommerce.generate(range(35, 46), 500, seed=0), reference)

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def window(path: str, data: Output[Dataset]):
        import shutil

        shutil.copy(path, data.path)

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def alarm(kind: str) -> str:
        return kind

    @dsl.pipeline
    def monitoring(path: str, reference_uri: str):
        current = window(path=path)
        check = drift_check(
            current_data=current.outputs["data"],
            reference_uri=reference_uri,
            label="purchased",
            config={"ignore_columns": ["week"]},
            retrain_policy={"severe_psi": 0.05},  # without a model, only severe drift can warrant a retrain
        )
        with dsl.If(check.outputs["Output"] != "none"):
            alarm(kind=check.outputs["Output"])

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "runs"))
    monitoring(path=str(inputs.december), reference_uri=str(reference))

    [run_dir] = list((tmp_path / "runs").iterdir())
    assert (run_dir / "alarm").is_dir()
    verdict = json.loads((run_dir / "drift-check" / "verdict").read_text())
    assert verdict["drift"] is True and verdict["report"]["reference_rows"] == 5_500
    assert (verdict["retrain"]["rule"], verdict["retrain"]["kind"]) == ("severe_feature_drift", "full")
    assert json.loads((run_dir / "alarm" / "executor_output.json").read_text())["parameterValues"]["Output"] == "full"
    assert (run_dir / "drift-check" / "report").read_text().lstrip().startswith("<!DOCTYPE html>")
