"""Deploying on KServe (and Seldon) through the real kubernetes client, against the Kubernetes API stand-in.

No Kubernetes API server, KServe or Knative can run on this machine: ``tests.support.kube_api_standin``
imitates the API (schemas, pruning, 201/200, resourceVersion conflicts) and scripts the controllers'
statuses, Knative revisions and traffic included. What it does not model is listed at its top.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kfp_mlops.rollout.plan import PROMOTED, Stage, spec_for
from kfp_mlops.rollout.targets import ClusterTarget, make_target
from kfp_mlops.serving.cluster import kinds, kserve, kube_apply, platform
from kfp_mlops.serving.cluster import seldon_deployment as sd
from kfp_mlops.serving.cluster.resources import ServingOptions
from kfp_mlops.serving.spec import DeploymentSpec, InvalidSpec
from tests.support.kube_api_standin import KubeApiStandIn, Plan

SERVING = ServingOptions(prediction_log_uri="gs://b/prediction-log/iris")
FAST = {"poll_s": 0.01, "settle_s": 5.0, "timeout_s": 10.0}
LEGACY, CHALLENGER = "gs://b/m/v1", "gs://b/m/v2"
ISVC = "/apis/serving.kserve.io/v1beta1/namespaces/models/inferenceservices/iris"
BASE = DeploymentSpec("iris", DeploymentSpec.single("iris", LEGACY).predictors)


@pytest.fixture()
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeApiStandIn]:
    """A stand-in with every kind's admission rules; KUBECONFIG points at it."""
    with KubeApiStandIn(admission=kinds.problems) as server:
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(tmp_path / "kubeconfig")))
        yield server


def _traffic(obj: dict[str, Any]) -> dict[str, int]:
    return {t["revisionName"]: t["percent"] for t in obj["status"]["components"]["predictor"]["traffic"]}


def _served(obj: dict[str, Any]) -> tuple[str, str]:
    env = {e["name"]: e["value"] for e in obj["spec"]["predictor"]["model"]["env"]}
    return env["PREDICTOR_NAME"], env["MODEL_URI"]


def test_a_kserve_deployment_applies_the_runtime_then_waits_for_ready(cluster: KubeApiStandIn) -> None:
    result = platform.deploy(DeploymentSpec.single("iris", LEGACY), platform="kserve", serving=SERVING, **FAST)

    assert (result.available, result.state, result.created) == (True, "Ready", True)
    runtime, isvc = cluster.requests_with("PATCH")
    assert runtime.path.endswith("/namespaces/models/servingruntimes/kfp-mlops-mlserver") and isvc.path == ISVC
    stored = cluster.object("models", "iris", "InferenceService")
    conditions = {c["type"]: c["status"] for c in stored["status"]["conditions"]}
    assert conditions == {"IngressReady": "True", "PredictorReady": "True", "Ready": "True"}
    assert stored["status"]["observedGeneration"] == 1
    assert _traffic(stored) == {"iris-predictor-00001": 100}


def test_a_rollout_moves_kserve_traffic_between_revisions(cluster: KubeApiStandIn) -> None:
    """single -> canary 5 -> canary 25 -> promoted, as a rollout's ClusterTarget applies them."""
    target = ClusterTarget(SERVING, "kserve", timeout_s=10.0)
    target.apply(DeploymentSpec.single("iris", LEGACY))  # the champion, deployed single as predictor "main"

    target.apply(spec_for(Stage("canary", 5), BASE, LEGACY, CHALLENGER))
    stored = cluster.object("models", "iris", "InferenceService")
    # The legacy revision logged as "main": it was rolled out again as "legacy" before the split.
    assert _traffic(stored) == {"iris-predictor-00003": 5, "iris-predictor-00002": 95}
    assert _served(stored) == ("challenger", CHALLENGER)
    assert stored["metadata"]["annotations"][kserve.STABLE_PREDICTOR] == "legacy"

    writes = len(cluster.requests_with("PATCH"))
    target.apply(spec_for(Stage("canary", 25), BASE, LEGACY, CHALLENGER))
    stored = cluster.object("models", "iris", "InferenceService")
    assert len(cluster.requests_with("PATCH")) == writes + 2  # runtime + split: no second stable roll-out
    assert _traffic(stored) == {"iris-predictor-00003": 25, "iris-predictor-00002": 75}  # no new revision

    target.apply(spec_for(PROMOTED, BASE, LEGACY, CHALLENGER))
    stored = cluster.object("models", "iris", "InferenceService")
    # the canary revision takes everything: promotion only drops canaryTrafficPercent
    assert _traffic(stored) == {"iris-predictor-00003": 100} and _served(stored) == ("challenger", CHALLENGER)


def test_a_shadow_stage_is_refused_on_kserve_before_anything_is_sent(cluster: KubeApiStandIn) -> None:
    target = make_target("cluster", settings=None, deployment="iris", platform="kserve", serving=SERVING)  # type: ignore[arg-type]
    with pytest.raises(InvalidSpec, match="KServe has no shadow predictor"):
        target.apply(spec_for(Stage("shadow"), BASE, LEGACY, CHALLENGER))  # type: ignore[union-attr]
    assert cluster.requests == []


def test_a_failed_revision_is_reported_and_the_previous_spec_restored(cluster: KubeApiStandIn) -> None:
    platform.deploy(DeploymentSpec.single("iris", LEGACY), platform="kserve", serving=SERVING, **FAST)
    cluster.plan("models", "iris", Plan("Failed", description="container kserve-container: CrashLoopBackOff"))

    with pytest.raises(kube_apply.ApplyFailed) as failed:
        platform.deploy(DeploymentSpec.single("iris", CHALLENGER), platform="kserve", serving=SERVING, **FAST)

    assert str(failed.value) == (
        "InferenceService models/iris (generation 2) failed: container kserve-container: CrashLoopBackOff; "
        "restored the previous spec (generation 1)"
    )
    assert _served(cluster.object("models", "iris", "InferenceService")) == ("main", LEGACY)


def test_seldon_through_the_same_entry_point(cluster: KubeApiStandIn) -> None:
    result = platform.deploy(
        DeploymentSpec.with_shadow("iris", LEGACY, CHALLENGER), platform="seldon", serving=SERVING, **FAST
    )
    assert (result.state, result.available) == ("Available", True)
    status = cluster.object("models", "iris")["status"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "DeploymentsReady": "True",
        "ServicesReady": "True",
        "Ready": "True",
    }


# -- what the stand-in imitates, because the code above depends on it -----------------------------


def _request(server: KubeApiStandIn, method: str, path: str, body: Any, content_type: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        server.url + path, method=method, data=json.dumps(body).encode(), headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_create_is_201_update_200_and_a_stale_resource_version_409(cluster: KubeApiStandIn) -> None:
    manifest = sd.render(DeploymentSpec.single("iris", LEGACY), serving=SERVING)
    path = "/apis/machinelearning.seldon.io/v1/namespaces/models/seldondeployments"
    apply = "application/apply-patch+yaml"

    created, first = _request(cluster, "PATCH", f"{path}/iris?fieldManager=t", manifest, apply)
    updated, second = _request(cluster, "PATCH", f"{path}/iris?fieldManager=t", manifest, apply)
    assert (created, updated) == (201, 200)
    assert second["metadata"]["generation"] == 1 < int(second["metadata"]["resourceVersion"])

    stale = {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": first["metadata"]["resourceVersion"]}}
    code, status = _request(cluster, "PUT", f"{path}/iris", stale, "application/json")
    assert code == 409 and "the object has been modified" in status["message"]
    code, status = _request(cluster, "POST", path, manifest, "application/json")
    assert code == 409 and "already exists" in status["message"]


def test_unknown_fields_are_pruned_and_wrong_types_refused(cluster: KubeApiStandIn) -> None:
    """What the API server does with a structural schema (our renderer reports such fields instead)."""
    manifest = kserve.render(DeploymentSpec.single("iris", LEGACY), serving=SERVING)
    path = f"{ISVC}?fieldManager=t"
    manifest["spec"]["predictor"]["traffic"] = 10  # not an InferenceService field
    manifest["spec"]["predictor"]["model"]["typo"] = True

    code, stored = _request(cluster, "PATCH", path, manifest, "application/apply-patch+yaml")

    assert code == 201
    assert "traffic" not in stored["spec"]["predictor"] and "typo" not in stored["spec"]["predictor"]["model"]
    manifest["spec"]["predictor"]["canaryTrafficPercent"] = "five"
    code, status = _request(cluster, "PATCH", path, manifest, "application/apply-patch+yaml")
    assert code == 422 and "spec.predictor.canaryTrafficPercent: 'five' is not of type 'integer'" in status["message"]
