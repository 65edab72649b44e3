"""``kfp-mlops compile | run | submit | schedule``: the main job, bad input, and submit/schedule.

submit and schedule talk to ``tests.support.kfp_api_standin``, an in-memory stand-in of the KFP
REST API, because no KFP backend can run on this machine; kfp.Client and HTTP are real.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import kfp
import pytest

from kfp_mlops.cli import main
from kfp_mlops.core import storage
from kfp_mlops.core.config import Settings
from kfp_mlops.modeling.datasets import load_iris_frame
from tests.cli.support import error_line
from tests.support.kfp_api_standin import KfpApiStandIn

CLI = str(Path(sys.executable).parent / "kfp-mlops")


@pytest.fixture()
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KfpApiStandIn]:
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    with KfpApiStandIn() as api:
        yield api


@pytest.mark.slow
def test_run_training_is_the_main_job(tmp_path: Path) -> None:
    """What `make run` does: the console script runs the pipeline and prints the summary."""
    workdir = tmp_path / "checkout"
    workdir.mkdir()
    done = subprocess.run([CLI, "run", "training"], cwd=workdir, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    accuracy = float(out.split("Test      accuracy ")[1].split(",")[0])
    assert accuracy >= 0.9
    assert "Gate      PASSED" in out and "as a candidate" in out
    assert "Champion  iris-classifier v" in out and "first model of iris-classifier" in out
    assert "Deployed  iris (v2, single, local): written" in out
    # The compiled pipeline goes into the run's folder, never into the working directory's golden files.
    [run_dir] = (Settings.from_env().home / "runs").iterdir()
    assert str(run_dir / "compiled" / "training.yaml") in out
    assert str(run_dir / "compiled" / "training.vertex.yaml") in out
    assert list(workdir.iterdir()) == []
    assert "offline runs in" in out


@pytest.mark.parametrize("command", ["run", "submit", "schedule"])
def test_help_lists_every_pipeline_parameter_with_its_default(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    from kfp_mlops.cli.pipelines import option_name
    from kfp_mlops.pipelines.parameters import SPECS

    assert option_name("namespace") == "--deployment-namespace"  # --namespace is the KFP namespace
    for pipeline, spec in SPECS.items():
        if command == "run" and pipeline == "rollout":
            continue  # a local rollout step is `kfp-mlops rollout step`
        with pytest.raises(SystemExit):
            main([command, pipeline, "--help"])
        text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
        for parameter in spec.parameters:
            option = option_name(parameter.name)
            assert f"{option} " in text, (pipeline, option)
            if not parameter.required and parameter.name not in ("wandb_project",):
                shown = json.dumps(parameter.default) if parameter.type is dict else repr(parameter.default)
                plain_help = parameter.help.replace("`", "'")  # inline code in plain quotes
                # argparse wraps lines at spaces and hyphens: compared without any whitespace.
                expected = "".join(f"{plain_help} (default: {shown})".split())
                assert expected in "".join(text.split()), (pipeline, parameter.name)
        assert "--image IMAGE" in text


def test_compile_writes_both_variants(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "compiled"
    assert main(["compile", "--out", str(out)]) == 0
    from kfp_mlops.app.compiling import pipeline_builders

    expected = sorted(f"{name}{suffix}" for name in pipeline_builders() for suffix in (".yaml", ".vertex.yaml"))
    assert sorted(p.name for p in out.iterdir()) == expected
    assert "training.vertex.yaml" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--estimator", "xgboost"], "estimator 'xgboost': unknown; choose one of"),
        (["--hyperparameters", "{C: 1}"], "--hyperparameters: not valid JSON"),
        (["--hyperparameters", '{"C": -1}'], "'C' parameter of LogisticRegression"),
        (["--gate-metric", "precision"], "gate_metric 'precision': unknown"),
        (["--param", "test_size=1.5"], "test_size=1.5: must be a fraction"),
        (["--test-size", "0"], "test_size=0.0: must be a fraction"),
        (["--test-size", "a fifth"], "--test-size: 'a fifth' is not a number"),
        (["--param", "seed=1.5"], "--param seed: '1.5' is not an integer"),
        (["--param", "nonsense=1"], "pipeline training: unknown key(s) nonsense"),
        (["--model-name", "Iris Model"], "model name 'Iris Model'"),
    ],
)
def test_bad_parameters_fail_before_anything_runs(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "training", *argv]) == 1
    assert expected in error_line(capsys)
    assert not (Settings.from_env().home / "runs").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("make_source", "expected"),
    [
        (lambda d: "warehouse://iris", "data source 'warehouse://iris': unknown"),
        (lambda d: str(d / "missing.csv"), "missing.csv: no such file"),
        (lambda d: _write(d / "empty.csv", ""), "the file is empty"),
        (lambda d: _write(d / "junk.parquet", "not parquet"), "cannot read as parquet"),
        (lambda d: _csv(d / "nolabel.csv", drop="species"), "no label column 'species'"),
        (lambda d: _csv(d / "text.csv", text_column="petal_width"), "petal_width: dtype object, expected numeric"),
    ],
)
def test_bad_data_ends_with_one_line_and_an_empty_store(
    tmp_path: Path, make_source, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = make_source(tmp_path)
    schema = tmp_path / "schema.json"
    from kfp_mlops.modeling.schema import IRIS_SCHEMA

    schema.write_text(IRIS_SCHEMA.to_json())
    assert main(["run", "training", "--source", source, "--schema", str(schema)]) == 1
    assert expected in error_line(capsys)
    assert storage.list_uris(Settings.from_env().store_root) == []


@pytest.mark.slow
def test_unreachable_storage_is_named(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    assert main(["run", "training", "--store", "gs://models/store"]) == 1
    line = error_line(capsys)
    assert "failed at task evaluate" in line and f"127.0.0.1:{port} does not answer" in line


def test_submit_sends_the_compiled_pipeline(
    standin: KfpApiStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "submit",
            "training",
            "--host",
            standin.url,
            "--store",
            "gs://bucket/store",
            "--deploy-target",
            "cluster",
            "--estimator",
            "random_forest",
            "--param",
            "threshold=1",
            "--experiment",
            "iris",
            "--image",
            "registry.example/component:2",
        ]
    )
    assert code == 0, capsys.readouterr().err
    [run] = standin.runs.values()
    parameters = run["runtime_config"]["parameters"]
    assert parameters == {
        "store_root": "gs://bucket/store",
        "deploy_target": "cluster",
        "estimator": "random_forest",
        "threshold": 1.0,
    }
    assert isinstance(parameters["threshold"], float)  # the declared type: KFP refuses an int for a float
    assert run["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "training"
    assert "kubernetes" in run["pipeline_spec"]["platform_spec"]["platforms"]
    executors = run["pipeline_spec"]["pipeline_spec"]["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {"registry.example/component:2"}
    assert "submitted run" in capsys.readouterr().out
    assert not (tmp_path / "pipelines").exists()  # compiled in a temporary folder, not ./pipelines/compiled


def test_schedule_replaces_rather_than_duplicates(
    standin: KfpApiStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["schedule", "training", "--host", standin.url, "--store", "gs://bucket/store", "--name", "nightly"]
    argv += ["--deploy-target", "cluster"]
    assert main([*argv, "--cron", "0 0 2 * * *"]) == 0
    assert main([*argv, "--cron", "0 30 3 * * *"]) == 0
    [recurring] = standin.recurring_runs.values()
    assert recurring["trigger"]["cron_schedule"]["cron"] == "0 30 3 * * *"
    assert "replacing" in capsys.readouterr().out.splitlines()[-1]


def test_bad_cron_creates_nothing(standin: KfpApiStandIn, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["schedule", "training", "--host", standin.url, "--store", "gs://b/s", "--deploy-target", "cluster"]
    assert main([*argv, "--cron", "0 2 * * *"]) == 1
    assert "use '0 0 2 * * *'" in error_line(capsys)
    assert standin.requests == []


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def _csv(path: Path, *, drop: str | None = None, text_column: str | None = None) -> str:
    frame = load_iris_frame()
    if drop:
        frame = frame.drop(columns=[drop])
    if text_column:
        frame[text_column] = frame[text_column].map(lambda v: f"{v} cm")
    frame.to_csv(path, index=False)
    return str(path)


def test_schedule_monitoring_replaces_rather_than_duplicates(
    standin: KfpApiStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = [
        "schedule",
        "monitoring",
        "--host",
        standin.url,
        "--store",
        "gs://bucket/store",
        "--name",
        "weekly-drift",
        "--deploy-target",
        "cluster",
        "--source",
        "gs://bucket/windows/current.parquet",
        "--label",
        "purchased",
        "--model-name",
        "shop",
        "--param",
        'drift_config={"psi_threshold": 0.25}',
        "--deployment-name",
        "shop",
    ]
    assert main([*argv, "--cron", "0 0 6 * * 1"]) == 0
    assert main([*argv, "--cron", "0 30 6 * * 1"]) == 0
    [recurring] = standin.recurring_runs.values()
    assert recurring["trigger"]["cron_schedule"]["cron"] == "0 30 6 * * 1"
    assert recurring["runtime_config"]["parameters"] == {
        "store_root": "gs://bucket/store",
        "source": "gs://bucket/windows/current.parquet",
        "label": "purchased",
        "model_name": "shop",
        "drift_config": {"psi_threshold": 0.25},
        "deploy_target": "cluster",
        "deployment_name": "shop",
    }
    assert recurring["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "monitoring"
    out = capsys.readouterr().out.splitlines()
    assert "scheduled weekly-drift" in out[-1] and "replacing" in out[-1]


@pytest.mark.parametrize(
    ("argv", "refused"),
    [
        (["submit", "training", "--store", "gs://b/s"], "deploy_target=local (the default)"),
        (
            ["schedule", "monitoring", "--store", "gs://b/s", "--source", "gs://b/w.csv", "--deploy-target", "local"],
            "deploy_target=local deploys",
        ),
        (["submit", "rollout", "--state-uri", "gs://b/r.json", "--target", "local"], "target=local deploys"),
    ],
)
def test_a_local_deploy_target_is_refused_before_anything_is_sent(
    standin: KfpApiStandIn, capsys: pytest.CaptureFixture[str], argv: list[str], refused: str
) -> None:
    extra = ["--cron", "0 0 2 * * *"] if argv[0] == "schedule" else []
    assert main([*argv, "--host", standin.url, *extra]) == 1
    error = error_line(capsys)
    assert refused in error and "which a cluster's pods refuse" in error
    assert not standin.runs and not standin.recurring_runs


def test_monitoring_without_a_window_fails_before_anything_is_sent(
    standin: KfpApiStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["submit", "monitoring", "--host", standin.url, "--store", "gs://b/s", "--deploy-target", "cluster"])
    assert code == 1
    assert "give the data window as a .csv or .parquet file" in error_line(capsys)
    assert not standin.runs


def test_rollout_pipeline_can_be_scheduled_without_a_store(
    standin: KfpApiStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = [
        "schedule",
        "rollout",
        "--host",
        standin.url,
        "--name",
        "fraud-rollout",
        "--cron",
        "0 */10 * * * *",
        "--param",
        "state_uri=gs://bucket/rollouts/challenger.json",
        "--param",
        "log_root=gs://bucket/log",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    [recurring] = standin.recurring_runs.values()
    assert recurring["runtime_config"]["parameters"] == {
        "state_uri": "gs://bucket/rollouts/challenger.json",
        "log_root": "gs://bucket/log",
    }
    assert main(["submit", "rollout", "--host", standin.url]) == 1
    assert "state_uri is required" in error_line(capsys)
