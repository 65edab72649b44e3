"""The parameter specs: one list per pipeline feeds its signature, its descriptions and the argument check."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from kfp_mlops import __version__
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.pipelines.parameters import (
    DEPLOY_MODES,
    MONITORING,
    REQUIRED,
    ROLLOUT,
    TRAINING,
    Parameter,
    ParameterSpec,
)


def test_the_monitoring_pipeline_takes_every_training_parameter_but_the_retrain_kind() -> None:
    """Its drift check's retrain policy decides the retrain kind; every other training parameter is the user's."""
    assert set(TRAINING.names()) - set(MONITORING.names()) == {"retrain_kind"}
    assert set(MONITORING.names()) - set(TRAINING.names()) == {"drift_config", "pushgateway_url"}
    for name in set(TRAINING.names()) - {"source", "retrain_kind"}:  # the window replaces the training data
        assert next(p for p in MONITORING.parameters if p.name == name) == next(
            p for p in TRAINING.parameters if p.name == name
        )
    assert MONITORING.defaults()["source"] is None  # required: there is no default window


def test_with_defaults_fills_the_rest_and_refuses_unknown_names() -> None:
    values = TRAINING.with_defaults({"store_root": "/s", "threshold": 0.8})
    assert values["threshold"] == 0.8 and values["seed"] == 42 and values["source"] == "iris"
    assert list(values)[: len(TRAINING.names())] == TRAINING.names()
    values["hyperparameters"]["C"] = 1.0  # a caller's change never leaks into the spec's defaults
    assert TRAINING.defaults()["hyperparameters"] == {}
    with pytest.raises(ConfigError, match=r"pipeline rollout: unknown key\(s\) store_root; known: as_of, "):
        ROLLOUT.with_defaults({"store_root": "/s"})


def test_the_signature_and_docstring_are_what_kfp_reads() -> None:
    steps: list[dict] = []
    function = TRAINING.pipeline_function("training", "Train.", steps.append)
    signature = inspect.signature(function)
    assert list(signature.parameters) == TRAINING.names()
    assert signature.parameters["store_root"].default is REQUIRED
    assert signature.parameters["test_size"].annotation is float and signature.parameters["test_size"].default == 0.2
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in signature.parameters.values())
    assert function.__doc__.startswith("Train.\n\nArgs:\n    store_root: model store root")
    function("/store", "w.csv")  # KFP calls it positionally, one value per parameter
    assert steps[0]["store_root"] == "/store" and steps[0]["source"] == "w.csv" and steps[0]["seed"] == 42


def test_a_parameter_listed_twice_is_a_mistake() -> None:
    twice = Parameter("seed", int, "seed", 0)
    with pytest.raises(ValueError, match="listed twice"):
        ParameterSpec("broken", (twice, twice))


def test_a_retrain_reaches_traffic_through_a_rollout_unless_single_is_asked_for() -> None:
    from kfp_mlops.components.deploy.component import deploy
    from kfp_mlops.components.deploy.logic import MODES

    assert set(DEPLOY_MODES) == set(MODES)
    assert TRAINING.defaults()["deploy_mode"] == MONITORING.defaults()["deploy_mode"] == "rollout"
    assert inspect.signature(deploy.python_func).parameters["mode"].default == "rollout"
    # Where the rollout keeps its state and reads its log: derived from the store unless named.
    assert TRAINING.defaults()["rollout_state_uri"] == TRAINING.defaults()["prediction_log_root"] == ""
    assert ROLLOUT.defaults()["log_root"] == ""  # the one the rollout was started with


def test_the_serving_parameters_are_one_list_shared_by_every_pipeline_that_deploys(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Images, service account, platform and KServe's logger: the same parameters, defaults this version's images."""
    from kfp_mlops.cli import main
    from kfp_mlops.core.config import DEFAULT_SERVING_IMAGE_SELDON, DEFAULT_SERVING_IMAGE_V2
    from kfp_mlops.pipelines.parameters import SERVING

    for spec in (TRAINING, MONITORING, ROLLOUT):
        assert [p for p in spec.parameters if p in SERVING] == list(SERVING), spec.pipeline
    defaults = {p.name: p.default for p in SERVING}
    assert defaults == {
        "platform": "seldon",
        "serving_image_v2": DEFAULT_SERVING_IMAGE_V2,
        "serving_image_seldon": DEFAULT_SERVING_IMAGE_SELDON,
        "serving_service_account": "",
        "request_logger_url": "",
    }
    assert DEFAULT_SERVING_IMAGE_V2.endswith(f":{__version__}") and DEFAULT_SERVING_IMAGE_SELDON.endswith(
        f":{__version__}"
    )
    monkeypatch.setenv("COLUMNS", "1000")  # argparse would break the images' names at their hyphens
    with pytest.raises(SystemExit):
        main(["submit", "training", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "--serving-image-v2 TEXT model-server image for protocol v2" in shown
    for image in (DEFAULT_SERVING_IMAGE_V2, DEFAULT_SERVING_IMAGE_SELDON):
        assert f"(default: '{image}')" in shown
    assert ROLLOUT.defaults()["labels_uri"] == ""  # no labels import unless a file is named


def test_the_kfp_ui_and_the_pushgateway_are_parameters_checked_before_a_run() -> None:
    """Every pipeline links its W&B runs to the KFP UI; those whose tasks push metrics name the Pushgateway."""
    from kfp_mlops.pipelines import monitoring, rollout, training
    from kfp_mlops.pipelines.parameters import check_addresses

    for spec in (TRAINING, MONITORING, ROLLOUT):
        assert spec.defaults()["kfp_ui_host"] == "", spec.pipeline
    assert "pushgateway_url" not in TRAINING.names()  # no training task pushes a metric
    assert MONITORING.defaults()["pushgateway_url"] == ROLLOUT.defaults()["pushgateway_url"] == ""
    check_addresses({"kfp_ui_host": "https://kubeflow.example.com/pipeline", "pushgateway_url": ""})
    for check, arguments in [
        (training.check_arguments, {"store_root": "/s", "kfp_ui_host": "kubeflow.example.com"}),
        (monitoring.check_arguments, {"store_root": "/s", "source": "w.csv", "pushgateway_url": "gateway:9091"}),
        (rollout.check_arguments, {"state_uri": "/s.json", "pushgateway_url": "gateway:9091"}),
    ]:
        name, value = next((k, v) for k, v in arguments.items() if k in ("kfp_ui_host", "pushgateway_url"))
        with pytest.raises(
            ConfigError, match=f"^{name} '{value}': give an http:// or https:// URL, or leave it empty$"
        ):
            check(arguments)


@pytest.mark.parametrize("pipeline", ["training", "monitoring", "rollout"])
def test_every_task_with_a_wandb_run_gets_the_addresses_from_the_pipeline(pipeline: str, tmp_path: Path) -> None:
    """Compiled, every task that opens a W&B run takes kfp_ui_host, and every pushing task pushgateway_url, from
    the pipeline's parameters (passed down through the sub-DAGs), never a constant or the pod's environment."""
    import yaml
    from kfp import compiler

    from kfp_mlops.pipelines import monitoring, rollout, training

    built = {"training": training.training, "monitoring": monitoring.monitoring, "rollout": rollout.rollout}
    compiler.Compiler().compile(built[pipeline], str(tmp_path / "p.yaml"))
    spec = next(yaml.safe_load_all((tmp_path / "p.yaml").read_text()))
    dags = [spec["root"]["dag"], *(c["dag"] for c in spec["components"].values() if "dag" in c)]
    wired: dict[str, set[str]] = {}
    for dag in dags:
        for task in dag["tasks"].values():
            component = spec["components"][task["componentRef"]["name"]]
            declared = component.get("inputDefinitions", {}).get("parameters", {})
            if "executorLabel" not in component or "pipeline_job_id" not in declared:
                continue  # a sub-DAG, the importer, or a task without a W&B run
            given = task["inputs"]["parameters"]
            wired[task["taskInfo"]["name"]] = {
                name for name in ("kfp_ui_host", "pushgateway_url") if "componentInputParameter" in given.get(name, {})
            }
    pushing = {"drift-check", "rollout-step"}
    assert wired and all(
        names == ({"kfp_ui_host", "pushgateway_url"} if task in pushing else {"kfp_ui_host"})
        for task, names in wired.items()
    ), wired
