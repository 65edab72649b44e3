"""KServe rendering: every mode against the vendored CRD schemas and KServe's admission rules.

Also every SeldonDeployment mode and runtime against its schema, with prediction logging and the
service account rendered for both runtimes.
"""

from __future__ import annotations

from typing import Any

import pytest

from kfp_mlops.core.errors import ConfigError
from kfp_mlops.rollout.plan import PROMOTED, ROLLED_BACK, Stage, spec_for
from kfp_mlops.serving.cluster import kserve
from kfp_mlops.serving.cluster import seldon_deployment as sd
from kfp_mlops.serving.cluster.resources import ServingOptions
from kfp_mlops.serving.spec import DeploymentSpec, InvalidSpec

SERVING = ServingOptions(
    image_v2="registry.example/mlserver:7",
    image_seldon="registry.example/seldon:7",
    service_account="model-reader",
    prediction_log_uri="gs://b/prediction-log/iris",
)
BASE = DeploymentSpec("iris", (), labels={"team": "ml"})
LEGACY, CHALLENGER = "gs://b/m/v1", "gs://b/m/v2"
MODES = {
    "single": DeploymentSpec.single("iris", LEGACY),
    "ab": DeploymentSpec.ab("iris", LEGACY, CHALLENGER, 25),
    "shadow": DeploymentSpec.with_shadow("iris", LEGACY, CHALLENGER),
    "canary": spec_for(
        Stage("canary", 5),
        DeploymentSpec("iris", (DeploymentSpec.single("iris", LEGACY).predictors)),
        LEGACY,
        CHALLENGER,
    ),
}


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


@pytest.mark.parametrize("protocol", ["v2", "seldon"])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_seldon_deployment_mode_and_runtime_passes_the_schema_and_logs_predictions(
    mode: str, protocol: str
) -> None:
    spec = DeploymentSpec(**{**MODES[mode].__dict__, "protocol": protocol})

    doc = sd.render(spec, serving=SERVING)

    assert sd.schema_problems(doc) == [] and sd.problems(doc) == []
    for predictor, expected in zip(doc["spec"]["predictors"], spec.predictors, strict=True):
        [component] = predictor["componentSpecs"]
        assert component["spec"]["serviceAccountName"] == "model-reader"
        [container] = component["spec"]["containers"]
        env = _env(container)
        assert (env["PREDICTION_LOG_URI"], env["PREDICTOR_NAME"], env["MODEL_URI"]) == (
            "gs://b/prediction-log/iris",
            expected.name,
            expected.model_uri,
        )
        assert container["image"] == SERVING.image(protocol)


def test_without_a_prediction_log_or_account_nothing_is_rendered_for_them() -> None:
    doc = sd.render(MODES["single"], serving=ServingOptions())
    [component] = doc["spec"]["predictors"][0]["componentSpecs"]
    assert "serviceAccountName" not in component["spec"]
    assert "PREDICTION_LOG_URI" not in _env(component["spec"]["containers"][0])


def test_a_kserve_logger_is_refused_for_seldon() -> None:
    with pytest.raises(ConfigError, match="KServe's request logger has no Seldon counterpart"):
        sd.render(MODES["single"], serving=ServingOptions(request_logger_url="http://sink"))


@pytest.mark.parametrize(
    ("spec", "canary", "stable"),
    [
        (MODES["single"], None, None),
        (MODES["ab"], 25, ("a", LEGACY)),
        (MODES["canary"], 5, ("legacy", LEGACY)),
        (
            spec_for(Stage("canary", 50), DeploymentSpec("iris", MODES["single"].predictors), LEGACY, CHALLENGER),
            50,
            ("legacy", LEGACY),
        ),
        (spec_for(PROMOTED, DeploymentSpec("iris", MODES["single"].predictors), LEGACY, CHALLENGER), None, None),
        (spec_for(ROLLED_BACK, DeploymentSpec("iris", MODES["single"].predictors), LEGACY, CHALLENGER), None, None),
    ],
    ids=["single", "ab", "canary-5", "canary-50", "promoted", "rolled-back"],
)
@pytest.mark.parametrize("logger", ["", "http://sink.observability/events"])
def test_inference_services_pass_the_schema_and_the_admission_rules(
    spec: DeploymentSpec, canary: int | None, stable: tuple[str, str] | None, logger: str
) -> None:
    serving = ServingOptions(**{**SERVING.__dict__, "request_logger_url": logger})

    doc = kserve.render(spec, serving=serving)
    runtime = kserve.serving_runtime(serving=serving, namespace="models")

    assert kserve.problems(doc) == [] and kserve.runtime_problems(runtime) == []
    assert kserve.pod_problems(doc, runtime) == []
    predictor = doc["spec"]["predictor"]
    latest = spec.live[-1]
    assert predictor.get("canaryTrafficPercent") == canary
    env = _env(predictor["model"])
    assert (env["MODEL_URI"], env["PREDICTOR_NAME"], env["DEPLOYMENT_NAME"], env["PREDICTION_LOG_URI"]) == (
        latest.model_uri,
        latest.name,
        "iris",
        "gs://b/prediction-log/iris",
    )
    assert predictor["serviceAccountName"] == "model-reader" and predictor["automountServiceAccountToken"] is False
    assert predictor["model"]["runtime"] == runtime["metadata"]["name"] == kserve.RUNTIME_NAME
    assert runtime["spec"]["containers"][0]["image"] == "registry.example/mlserver:7"
    assert predictor.get("logger") == ({"mode": "all", "url": logger} if logger else None)
    assert kserve.rolled_out(doc) == (stable or (latest.name, latest.model_uri))
    assert doc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"


def test_the_runtime_renders_cluster_scoped_too() -> None:
    runtime = kserve.serving_runtime(serving=SERVING, namespace=None)
    assert runtime["kind"] == "ClusterServingRuntime" and "namespace" not in runtime["metadata"]
    assert kserve.runtime_problems(runtime) == []
    runtime["metadata"]["namespace"] = "models"
    assert kserve.runtime_problems(runtime) == ["metadata.namespace: a ClusterServingRuntime is cluster-scoped"]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (MODES["shadow"], "KServe has no shadow predictor; deploy ab instead, or roll out with a plan without"),
        (DeploymentSpec.single("iris", LEGACY, protocol="seldon"), "KServe serves the Open Inference Protocol (v2)"),
    ],
    ids=["shadow", "seldon-protocol"],
)
def test_what_kserve_cannot_serve_is_refused_saying_what_to_do(spec: DeploymentSpec, expected: str) -> None:
    with pytest.raises(InvalidSpec, match=r"^deployment 'iris' cannot run on KServe: .*") as refused:
        kserve.render(spec, serving=SERVING)
    assert expected in str(refused.value)


def _tampered(change: Any) -> list[str]:
    doc = kserve.render(MODES["ab"], serving=SERVING)
    change(doc)
    return kserve.problems(doc)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["metadata"].update(name="9iris"), "metadata.name: '9iris' must be a DNS-1035 label"),
        (lambda d: d["metadata"].update(name="Iris"), "must be a DNS-1035 label"),
        (lambda d: d["metadata"].update(name="i" * 48), "Knative's revision name"),
        (lambda d: d["spec"]["predictor"].update(canaryTrafficPercent=101), "must be an integer from 0 to 100"),
        (lambda d: d["spec"]["predictor"].update(canaryTrafficPercent=-1), "must be an integer from 0 to 100"),
        (
            lambda d: d["metadata"]["annotations"].update({"serving.kserve.io/deploymentMode": "RawDeployment"}),
            "canaryTrafficPercent: needs Serverless mode",
        ),
        (
            lambda d: d["spec"]["predictor"].update(sklearn={"storageUri": "gs://b/m"}),
            "exactly one implementation is needed",
        ),
        (
            lambda d: d["spec"]["predictor"].update(model={**d["spec"]["predictor"]["model"], "storageUri": "ftp://x"}),
            "has a scheme KServe cannot fetch",
        ),
        (lambda d: d["spec"]["predictor"].update(minReplicas=3, maxReplicas=2), "minReplicas 3 is above maxReplicas 2"),
        (lambda d: d["spec"]["predictor"].update(logger={"mode": "all", "url": "sink"}), "logger.url: 'sink'"),
        (
            lambda d: d["metadata"]["annotations"].pop(kserve.STABLE_MODEL_URI),
            "a canary needs kfp-mlops/stable-predictor",
        ),
        (lambda d: d["spec"]["predictor"]["model"]["env"].pop(0), "MODEL_URI is missing or empty"),
        (
            lambda d: d["spec"].update(
                canary=[
                    {
                        "trafficPercent": 60,
                        "predictor": {"name": "c", "model": {"name": "m", "modelFormat": {"name": "sklearn"}}},
                    }
                ]
                * 2
            ),
            "spec.canary: trafficPercent sums to 120, must be at most 100",
        ),
    ],
    ids=[
        "name-digit",
        "name-upper",
        "name-long",
        "canary-101",
        "canary-negative",
        "canary-raw",
        "two-implementations",
        "storage-scheme",
        "replicas",
        "logger-url",
        "stable-missing",
        "model-uri",
        "canary-list-sum",
    ],
)
def test_admission_rules_name_what_kserve_would_refuse(change: Any, expected: str) -> None:
    found = _tampered(change)
    assert any(expected in problem for problem in found), found


def test_schema_errors_come_first_and_undeclared_fields_are_reported_not_pruned() -> None:
    found = _tampered(lambda d: d["spec"]["predictor"].update(traffic=10))
    assert found == [
        "spec.predictor: unknown field(s) traffic: not in the InferenceService schema (the API server would drop them)"
    ]
    assert _tampered(lambda d: d["spec"]["predictor"].update(canaryTrafficPercent="5")) == [
        "spec.predictor.canaryTrafficPercent: '5' is not of type 'integer'"
    ]


def test_a_pod_the_restricted_namespace_would_refuse_is_found() -> None:
    doc = kserve.render(MODES["single"], serving=SERVING)
    runtime = kserve.serving_runtime(serving=SERVING, namespace="models")
    doc["spec"]["predictor"]["automountServiceAccountToken"] = True
    runtime["spec"]["containers"][0]["securityContext"]["runAsUser"] = 0
    found = kserve.pod_problems(doc, runtime)
    assert "spec.predictor: automountServiceAccountToken must be false: a model server calls no Kubernetes API" in found
    assert any("must run as non-root" in problem for problem in found)


def test_stable_spec_is_the_first_predictor_alone() -> None:
    stable = kserve.stable_spec(MODES["canary"])
    assert stable is not None and [(p.name, p.model_uri, p.traffic) for p in stable.predictors] == [
        ("legacy", LEGACY, 100)
    ]
    assert kserve.stable_spec(MODES["single"]) is None
