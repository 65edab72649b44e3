"""Compiled pipelines: golden files, determinism, strict protobuf parsing, no secrets, retries, serving parameters."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from kfp_mlops.app.compiling import check_compiled, compile_all, compile_pipeline, pipeline_builders
from kfp_mlops.core.config import (
    DEFAULT_IMAGE,
    DEFAULT_SERVING_IMAGE_SELDON,
    DEFAULT_SERVING_IMAGE_V2,
    WANDB_SECRET_NAME,
)
from kfp_mlops.core.errors import MlopsError
from kfp_mlops.pipelines.parameters import MONITORING, SPECS, TRAINING
from kfp_mlops.pipelines.retries import BACKOFF, BACKOFF_FACTOR, BACKOFF_MAX, MAX_RETRIES

COMPILED_DIR = Path(__file__).resolve().parents[2] / "pipelines" / "compiled"
COMPONENTS = {"ingest", "validate", "train", "evaluate", "register", "deploy", "refuse-unfit-data"}
# refuse-unfit-data only fails the run with validate's report: it logs nothing to W&B.
WITH_WANDB_SECRET = COMPONENTS - {"refuse-unfit-data"}
# Every task that reads or writes storage, W&B or the Kubernetes API, per compiled pipeline.
IO_TASKS = {
    "training": {"ingest", "register", "deploy"},
    "monitoring": {"drift-check", "ingest", "register", "deploy"},
    "rollout": {"labels-import", "rollout-step"},
}
RETRY_POLICY = {
    "maxRetryCount": MAX_RETRIES,
    "backoffDuration": BACKOFF,
    "backoffFactor": BACKOFF_FACTOR,
    "backoffMaxDuration": BACKOFF_MAX,
}
SERVING_PARAMETERS = {
    "platform": "platform",
    "serving_image_v2": "serving_image_v2",
    "serving_image_seldon": "serving_image_seldon",
    "service_account": "serving_service_account",
    "request_logger_url": "request_logger_url",
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("compiled")
    files = {}
    for result in compile_all(out):
        files[result.kfp_path.name] = result.kfp_path
        files[result.vertex_path.name] = result.vertex_path
    return files


def test_golden_files_are_current(compiled: dict[str, Path]) -> None:
    """pipelines/compiled/ must be what the code compiles to; `make compile` refreshes it."""
    assert sorted(compiled) == sorted(p.name for p in COMPILED_DIR.glob("*.yaml"))
    for name, path in compiled.items():
        assert path.read_bytes() == (COMPILED_DIR / name).read_bytes(), f"{name} is stale: run `make compile`"


def test_compilation_is_deterministic(compiled: dict[str, Path], tmp_path: Path) -> None:
    again = {r.kfp_path.name: r.kfp_path for r in compile_all(tmp_path)}
    for name, path in again.items():
        assert path.read_bytes() == compiled[name].read_bytes()


def test_kfp_file_parses_strictly_with_platform_spec(compiled: dict[str, Path]) -> None:
    spec, platform = check_compiled(compiled["training.yaml"])
    assert spec.pipeline_info.name == "training"
    from google.protobuf import json_format

    deployment = json_format.MessageToDict(platform.platforms["kubernetes"].deployment_spec)
    executors = deployment["executors"]
    assert {name.removeprefix("exec-") for name in executors} == WITH_WANDB_SECRET
    for executor in executors.values():
        secret = executor["secretAsEnv"][0]
        assert secret["secretName"] == WANDB_SECRET_NAME
        assert secret["keyToEnv"][0]["envVar"] == "WANDB_API_KEY"


def test_vertex_file_is_a_single_document(compiled: dict[str, Path]) -> None:
    documents = list(yaml.safe_load_all(compiled["training.vertex.yaml"].read_text()))
    assert len(documents) == 1
    spec, platform = check_compiled(compiled["training.vertex.yaml"])
    assert platform is None and spec.pipeline_info.name == "training"


def test_components_are_thin_and_pinned_to_the_image(compiled: dict[str, Path]) -> None:
    spec = yaml.safe_load_all(compiled["training.yaml"].read_text()).__next__()
    executors = spec["deploymentSpec"]["executors"]
    assert {name.removeprefix("exec-") for name in executors} == COMPONENTS
    for executor in executors.values():
        container = executor["container"]
        assert container["image"] == DEFAULT_IMAGE
        script = "\n".join(container["command"])
        assert "pip install" not in script  # install_kfp_package=False, no packages_to_install
        assert "from kfp_mlops.components." in script


def _tasks_under(doc: dict[str, Any], dag: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tasks of ``dag`` and of every DAG nested in it (conditions, sub-pipelines), by name."""
    tasks = dict(dag["tasks"])
    for task in dag["tasks"].values():
        component = doc["components"][task["componentRef"]["name"]]
        if "dag" in component:
            tasks |= _tasks_under(doc, component["dag"])
    return tasks


def _all_tasks(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every task of a compiled pipeline, by name."""
    return _tasks_under(doc, doc["root"]["dag"])


def _gated_by(doc: dict[str, Any], output: str) -> dict[str, dict[str, Any]]:
    """The tasks of the condition whose trigger reads ``output`` (a task's output parameter)."""
    [condition] = [
        task
        for task in _all_tasks(doc).values()
        if output in task.get("triggerPolicy", {}).get("condition", "")
        and not task["triggerPolicy"]["condition"].startswith("!")
    ]
    return doc["components"][condition["componentRef"]["name"]]["dag"]["tasks"]


def test_register_and_deploy_are_gated_on_the_evaluate_output(compiled: dict[str, Path]) -> None:
    spec = next(yaml.safe_load_all(compiled["training.yaml"].read_text()))
    gated = _gated_by(spec, "evaluate-Output")
    assert {"register", "deploy"} <= set(gated)
    deploy = gated["deploy"]
    assert deploy["dependentTasks"] == ["register"]
    assert deploy["inputs"]["artifacts"]["registered"]["taskOutputArtifact"] == {
        "outputArtifactKey": "registered",
        "producerTask": "register",
    }
    parameters = deploy["inputs"]["parameters"]
    for name, pipeline_input in [
        ("deployment_name", "deployment_name"),
        ("target", "deploy_target"),
        ("namespace", "namespace"),
        ("protocol", "protocol"),
        ("store_root", "store_root"),
    ]:
        assert parameters[name]["componentInputParameter"] == f"pipelinechannel--{pipeline_input}", name
    defaults = {name: p.get("defaultValue") for name, p in spec["root"]["inputDefinitions"]["parameters"].items()}
    assert {k: defaults[k] for k in ("deployment_name", "deploy_target", "namespace", "protocol")} == {
        "deployment_name": "iris",
        "deploy_target": "local",
        "namespace": "models",
        "protocol": "v2",
    }


@pytest.mark.parametrize("pipeline", ["training", "monitoring", "rollout"])
def test_the_serving_images_and_options_are_parameters_the_yaml_passes_on(
    compiled: dict[str, Path], pipeline: str
) -> None:
    """What a model server runs comes from the pipeline's parameters, shown with their defaults; no pod environment."""
    for name in (f"{pipeline}.yaml", f"{pipeline}.vertex.yaml"):
        text = compiled[name].read_text()
        doc = next(yaml.safe_load_all(text))
        parameters = doc["root"]["inputDefinitions"]["parameters"]
        defaults = {key: parameters[key].get("defaultValue") for key in SERVING_PARAMETERS.values()}
        assert defaults == {
            "platform": "seldon",
            "serving_image_v2": DEFAULT_SERVING_IMAGE_V2,
            "serving_image_seldon": DEFAULT_SERVING_IMAGE_SELDON,
            "serving_service_account": "",
            "request_logger_url": "",
        }, name
        assert f"serving_image_v2: str [Default: '{DEFAULT_SERVING_IMAGE_V2}']" in text  # the file's header
        applying = [task for task in _all_tasks(doc).values() if task["taskInfo"]["name"] in ("deploy", "rollout-step")]
        assert len(applying) == 1, name
        inputs = applying[0]["inputs"]["parameters"]
        for argument, parameter in SERVING_PARAMETERS.items():
            assert inputs[argument]["componentInputParameter"].removeprefix("pipelinechannel--") == parameter
        assert "KFP_MLOPS_SERVING_IMAGE" not in text and "KFP_MLOPS_SELDON_IMAGE" not in text, name


@pytest.mark.parametrize("name", sorted(f"{p}{suffix}.yaml" for p in IO_TASKS for suffix in ("", ".vertex")))
def test_every_task_doing_io_is_retried_with_backoff(compiled: dict[str, Path], name: str) -> None:
    """One transient 5xx (GCS, W&B, the Kubernetes API) must not fail a run; computing tasks are not retried."""
    doc = next(yaml.safe_load_all(compiled[name].read_text()))
    retried = {
        task["taskInfo"]["name"]: task["retryPolicy"] for task in _all_tasks(doc).values() if "retryPolicy" in task
    }
    assert set(retried) == IO_TASKS[name.split(".")[0]]
    for task, policy in retried.items():
        assert policy == RETRY_POLICY, task


def test_no_secret_values_in_compiled_files(compiled: dict[str, Path]) -> None:
    for path in compiled.values():
        text = path.read_text()
        assert "WANDB_API_KEY=" not in text
        assert "apiKey" not in text and "api_key:" not in text


def test_check_compiled_rejects_unknown_fields(tmp_path: Path, compiled: dict[str, Path]) -> None:
    doc = yaml.safe_load(compiled["training.vertex.yaml"].read_text())
    doc["notAPipelineField"] = 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(MlopsError, match="does not match the KFP pipeline spec"):
        check_compiled(bad)
    (tmp_path / "three.yaml").write_text("a: 1\n---\nb: 2\n---\nc: 3\n")
    with pytest.raises(MlopsError, match="expected 1 or 2 YAML documents"):
        check_compiled(tmp_path / "three.yaml")


def test_every_pipeline_is_compiled() -> None:
    assert set(pipeline_builders()) == {"training", "monitoring", "rollout"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"deploy_target": "k8s"}, "deploy_target 'k8s': unknown; choose one of local, cluster, none"),
        (
            {"deploy_target": "cluster"},
            "deploy_target cluster: model servers cannot read store_root '/tmp/store'; use a gs:// store",
        ),
        ({"deployment_name": "Iris_1"}, "deployment name 'Iris_1' must be a DNS-1123 label"),
        ({"namespace": "models/prod"}, "namespace 'models/prod' must be a DNS-1123 label"),
        ({"protocol": "grpc"}, "protocol 'grpc': use one of v2, seldon"),
        ({"platform": "knative"}, "serving platform 'knative': unknown; choose one of seldon, kserve"),
        ({"serving_image_v2": ""}, "serving_image_v2: empty; name the model-server image"),
        ({"serving_image_seldon": "a b"}, "image_seldon='a b' contains whitespace"),
        ({"serving_service_account": "Model_Reader"}, "service_account='Model_Reader' must be a DNS-1123 subdomain"),
        (
            {"request_logger_url": "http://sink"},
            "request_logger_url 'http://sink': KServe's request logger needs platform kserve (platform is seldon",
        ),
        ({"platform": "kserve", "request_logger_url": "sink"}, "request_logger_url='sink' must be an http://"),
        ({"platform": "kserve", "protocol": "seldon"}, "protocol 'seldon': platform kserve serves protocol v2 only"),
        ({"platform": "kserve", "deploy_mode": "shadow"}, "deploy_mode shadow: KServe has no shadow predictor"),
        ({"platform": "kserve"}, 'KServe has no shadow predictor; set rollout_plan {"shadow": false}'),
    ],
)
def test_deploy_parameters_are_checked_before_anything_runs(arguments: dict[str, str], message: str) -> None:
    from kfp_mlops.pipelines.training import check_arguments

    with pytest.raises(MlopsError, match=re.escape(message)):
        check_arguments({"store_root": "/tmp/store", **arguments})


def test_kserve_arguments_that_work_pass() -> None:
    from kfp_mlops.app.compiling import check_pipeline_arguments

    kserve = {"platform": "kserve", "request_logger_url": "http://sink.logging", "serving_service_account": "reader"}
    check_pipeline_arguments("training", {"store_root": "/s", **kserve, "rollout_plan": {"shadow": False}})
    check_pipeline_arguments("training", {"store_root": "/s", **kserve, "deploy_mode": "ab"})
    check_pipeline_arguments("rollout", {"state_uri": "/s/r.json", **kserve, "labels_uri": "gs://b/labels.parquet"})


def test_rollout_pipeline_is_one_uncached_step_with_the_wandb_secret(compiled: dict[str, Path]) -> None:
    spec, platform = check_compiled(compiled["rollout.yaml"])
    assert spec.pipeline_info.name == "rollout"
    doc = next(yaml.safe_load_all(compiled["rollout.yaml"].read_text()))
    task = doc["root"]["dag"]["tasks"]["rollout-step"]
    assert task["cachingOptions"] == {} and task["taskInfo"]["name"] == "rollout-step"
    assert {"state_uri", "log_root", "target", "live_config"} <= set(doc["root"]["inputDefinitions"]["parameters"])
    from google.protobuf import json_format

    executors = json_format.MessageToDict(platform.platforms["kubernetes"].deployment_spec)["executors"]
    assert executors["exec-rollout-step"]["secretAsEnv"][0]["secretName"] == WANDB_SECRET_NAME
    vertex, none = check_compiled(compiled["rollout.vertex.yaml"])
    assert none is None and vertex.pipeline_info.name == "rollout"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"state_uri": ""}, "state_uri is required"),
        ({"target": "k8s"}, "target 'k8s': unknown; choose one of local, cluster, none"),
        ({"live_config": {"boot": 1}}, "live_config: unknown key(s) boot"),
        ({"live_config": {"bootstrap": 5}}, "bootstrap=5 must be at least 100"),
        ({"deployment_name": "Fraud_1"}, "must be a DNS-1123 label"),
        ({"labels_uri": "labels.json"}, "labels_uri 'labels.json': give a .csv or .parquet file"),
        ({"platform": "kserve", "protocol": "seldon"}, "protocol 'seldon': platform kserve serves protocol v2 only"),
        ({"request_logger_url": "http://sink"}, "KServe's request logger needs platform kserve"),
        ({"serving_image_v2": ""}, "serving_image_v2: empty"),
    ],
)
def test_rollout_parameters_are_checked_before_anything_runs(arguments: dict, message: str) -> None:
    from kfp_mlops.app.compiling import check_pipeline_arguments

    with pytest.raises(MlopsError, match=re.escape(message)):
        check_pipeline_arguments("rollout", {"state_uri": "/tmp/rollout.json", "log_root": "/tmp/log", **arguments})


MONITORING_COMPONENTS = {"importer", "drift-check", *COMPONENTS}


def test_monitoring_pipeline_parses_strictly_with_platform_spec(compiled: dict[str, Path]) -> None:
    spec, platform = check_compiled(compiled["monitoring.yaml"])
    assert spec.pipeline_info.name == "monitoring"
    from google.protobuf import json_format

    executors = json_format.MessageToDict(platform.platforms["kubernetes"].deployment_spec)["executors"]
    # The importer runs no container; the training sub-pipeline's tasks keep their W&B Secret.
    assert set(executors) == {f"exec-{name}" for name in {"drift-check", *WITH_WANDB_SECRET}}
    for executor in executors.values():
        assert executor["secretAsEnv"][0]["secretName"] == WANDB_SECRET_NAME
    vertex, none = check_compiled(compiled["monitoring.vertex.yaml"])
    assert none is None and vertex.pipeline_info.name == "monitoring"


def test_monitoring_imports_checks_and_retrains_only_on_drift_without_cache(compiled: dict[str, Path]) -> None:
    doc = next(yaml.safe_load_all(compiled["monitoring.yaml"].read_text()))
    executors = doc["deploymentSpec"]["executors"]
    assert {name.removeprefix("exec-") for name in executors} == MONITORING_COMPONENTS
    importer = executors["exec-importer"]["importer"]
    assert importer["artifactUri"] == {"runtimeParameter": "uri"} and importer["reimport"] is True
    for name in MONITORING_COMPONENTS - {"importer"}:
        container = executors[f"exec-{name}"]["container"]
        assert container["image"] == DEFAULT_IMAGE
        assert "pip install" not in "\n".join(container["command"])
    tasks = doc["root"]["dag"]["tasks"]
    assert tasks["importer"]["inputs"]["parameters"]["uri"]["componentInputParameter"] == "source"
    drift = tasks["drift-check"]
    assert drift["inputs"]["artifacts"]["current_data"]["taskOutputArtifact"]["producerTask"] == "importer"
    assert drift["inputs"]["parameters"]["model_name"]["componentInputParameter"] == "model_name"
    for task in ("importer", "drift-check"):
        assert tasks[task]["cachingOptions"] == {}, task  # never cached: the window and the champion change
    condition = tasks["condition-1"]["triggerPolicy"]["condition"]
    assert condition == "inputs.parameter_values['pipelinechannel--drift-check-Output'] != 'none'"
    assert drift["inputs"]["parameters"]["retrain_policy"]["componentInputParameter"] == "retrain_policy"
    # The retrain is the training pipeline itself, a sub-DAG of this one, on the window, of the kind decided.
    retrain = doc["components"]["comp-condition-1"]["dag"]["tasks"]["training"]
    assert retrain["taskInfo"]["name"] == "retrain" and retrain["componentRef"]["name"] == "comp-training"
    parameters = retrain["inputs"]["parameters"]
    assert parameters["source"]["componentInputParameter"] == "pipelinechannel--source"
    assert set(parameters) == set(TRAINING.names())
    # Inside the condition the drift check's output is an input of the condition's DAG.
    assert parameters["retrain_kind"] == {"componentInputParameter": "pipelinechannel--drift-check-Output"}
    training_dag = _tasks_under(doc, doc["components"]["comp-training"]["dag"])
    assert {"ingest", "validate", "train", "evaluate"} <= set(training_dag)
    for task in ("ingest", "evaluate"):
        assert training_dag[task]["cachingOptions"] == {}, task
    root_parameters = doc["root"]["inputDefinitions"]["parameters"]
    assert set(root_parameters) == set(MONITORING.names())
    assert not {"kfp_host", "kfp_namespace", "experiment"} & set(root_parameters)  # nothing submits a run


def test_parameters_come_from_the_spec_with_their_descriptions(compiled: dict[str, Path]) -> None:
    types = {str: "STRING", int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE", dict: "STRUCT"}
    for name, spec in SPECS.items():
        doc = next(yaml.safe_load_all(compiled[f"{name}.yaml"].read_text()))
        compiled_parameters = doc["root"]["inputDefinitions"]["parameters"]
        assert set(compiled_parameters) == set(spec.names()), name
        for parameter in spec.parameters:
            entry = compiled_parameters[parameter.name]
            assert entry["parameterType"] == types[parameter.type], parameter.name
            assert entry["description"] == parameter.help, parameter.name
            if parameter.required:
                assert "defaultValue" not in entry, parameter.name
            else:
                assert entry["defaultValue"] == parameter.default, parameter.name


def test_the_image_is_chosen_at_compile_time_not_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KFP_MLOPS_IMAGE", "registry.example/by-accident:1")
    default = compile_pipeline("monitoring", tmp_path / "default")
    chosen = compile_pipeline("monitoring", tmp_path / "chosen", image="registry.example/component:2")
    for result, image in ((default, DEFAULT_IMAGE), (chosen, "registry.example/component:2")):
        for path in (result.kfp_path, result.vertex_path):
            executors = next(yaml.safe_load_all(path.read_text()))["deploymentSpec"]["executors"]
            images = {e["container"]["image"] for e in executors.values() if "container" in e}
            assert images == {image}, path


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"source": "iris"}, "source 'iris': give the data window as a .csv or .parquet file"),
        ({"source": "w.csv", "drift_config": {"psi": 1}}, "drift config: unknown key(s) psi"),
        ({"source": "w.csv", "kfp_host": "http://kfp:8888"}, "pipeline monitoring: unknown key(s) kfp_host"),
        ({"source": "w.csv", "estimator": "svm"}, "estimator 'svm'"),
        ({"source": "w.csv", "window": "w.csv"}, "pipeline monitoring: unknown key(s) window"),
        ({"source": "w.csv", "deploy_target": "k8s"}, "deploy_target 'k8s': unknown"),
    ],
)
def test_monitoring_parameters_are_checked_before_anything_runs(arguments: dict, message: str) -> None:
    from kfp_mlops.app.compiling import check_pipeline_arguments

    with pytest.raises(MlopsError, match=re.escape(message)):
        check_pipeline_arguments("monitoring", {"store_root": "/tmp/store", **arguments})


@pytest.mark.parametrize("name", ["training", "monitoring", "rollout"])
def test_local_runs_build_their_pipelines_without_retries(tmp_path: Path, name: str) -> None:
    """kfp.local waits out a retry policy (30 + 60 + 120 s): a local run's bad input must fail at once."""
    from kfp import compiler

    from kfp_mlops.app.compiling import pipeline_builders

    path = tmp_path / f"{name}.yaml"
    compiler.Compiler().compile(pipeline_builders()[name](kubernetes=False, retries=False), str(path))
    assert "retryPolicy" not in path.read_text()
