"""The parameter specs: one list per pipeline feeds its signature, its descriptions and the argument check."""

from __future__ import annotations

import inspect

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
    assert set(MONITORING.names()) - set(TRAINING.names()) == {"drift_config"}
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
