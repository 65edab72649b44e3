"""The retrain component: its arguments, submitting on a cluster (KFP API stand-in), a nested local run."""

import json
from collections.abc import Iterator
from pathlib import Path

import kfp
import pytest

from kfp_mlops.components.retrain.logic import (
    cluster_host,
    retrain_locally,
    run_retrain,
    training_arguments,
    training_package,
)
from kfp_mlops.core.errors import ConfigError, MlopsError
from tests.support.kfp_api_standin import KfpApiStandIn


@pytest.fixture()
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KfpApiStandIn]:
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    with KfpApiStandIn() as api:
        yield api


def test_training_arguments_pass_the_window_as_source() -> None:
    arguments = training_arguments(
        "gs://b/w.csv", "gs://b/store", label="purchased", model_name="shop", hyperparameters=None, wandb_project=""
    )
    assert arguments == {
        "source": "gs://b/w.csv",
        "store_root": "gs://b/store",
        "label": "purchased",
        "model_name": "shop",
    }


@pytest.mark.parametrize(
    ("source", "store", "extra", "message"),
    [
        ("", "/s", {}, "no source"),
        ("w.csv", "", {}, "no store_root"),
        ("w.csv", "/s", {"window": "x"}, r"unknown training parameter\(s\) window"),
    ],
)
def test_bad_arguments_are_refused(source: str, store: str, extra: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        training_arguments(source, store, **extra)  # messages are regexes: no parentheses in them


def test_the_host_comes_from_the_argument_else_kfp_host(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cluster_host("") is None  # conftest unsets KFP_HOST: local
    monkeypatch.setenv("KFP_HOST", "http://kfp:8888")
    assert cluster_host("") == "http://kfp:8888"
    assert cluster_host("http://other:80") == "http://other:80"


def test_the_compiled_training_pipeline_ships_with_the_package() -> None:
    assert training_package().is_file()
    assert "name: training" in training_package().read_text()


def test_on_a_cluster_the_training_pipeline_is_submitted_with_the_window(
    standin: KfpApiStandIn, tmp_path: Path
) -> None:
    verdict = tmp_path / "verdict"
    verdict.write_text(json.dumps({"drift": True, "reasons": ["7 of 11 features drifted"]}))
    outcome = run_retrain(
        "gs://bucket/windows/w46.csv",
        "gs://bucket/store",
        str(tmp_path / "outcome"),
        kfp_host=standin.url,
        experiment="drift",
        drift_verdict_path=str(verdict),
        pipeline_job_id="job-1",
        label="purchased",
        model_name="shop",
        threshold=0.7,
    )
    assert outcome["mode"] == "cluster" and outcome["passed"] is None and outcome["version"] is None
    assert outcome["drift_reasons"] == ["7 of 11 features drifted"]
    [run] = standin.runs.values()
    assert run["run_id"] == outcome["run_id"]
    assert run["display_name"] == "retrain-job-1"
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "training"
    assert run["runtime_config"]["parameters"] == {
        "source": "gs://bucket/windows/w46.csv",
        "store_root": "gs://bucket/store",
        "label": "purchased",
        "model_name": "shop",
        "threshold": 0.7,
    }
    assert json.loads((tmp_path / "outcome").read_text())["run_id"] == outcome["run_id"]


def test_a_failed_nested_training_run_names_the_task_and_the_reason(tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    with pytest.raises(MlopsError, match=r"retrain: pipeline training failed at task ingest: .*missing\.csv"):
        retrain_locally({"source": str(missing), "store_root": str(tmp_path / "store")}, tmp_path / "nested")
