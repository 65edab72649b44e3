"""Rolling SeldonDeployments out with the real kubernetes client against a Kubernetes API stand-in.

No Kubernetes API server (nor Seldon's controller) can run on this machine, so the client talks to
``tests.support.kube_api_standin``: a real HTTP server imitating server-side apply, generations and
a scripted controller's status. The client, its kubeconfig loading and its HTTP are the real ones.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kfp_mlops.core.errors import ConfigError
from kfp_mlops.serving.cluster import kube_apply
from kfp_mlops.serving.cluster import seldon_deployment as sd
from kfp_mlops.serving.cluster.resources import ServingOptions
from kfp_mlops.serving.spec import DeploymentSpec, InvalidSpec, PredictorSpec
from tests.support.kube_api_standin import KubeApiStandIn, Plan, write_kubeconfig

SDEP_PATH = "/apis/machinelearning.seldon.io/v1/namespaces/models/seldondeployments/iris"
FAST = {"poll_s": 0.01, "settle_s": 5.0, "timeout_s": 10.0}
SERVING = ServingOptions()


@pytest.fixture()
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeApiStandIn]:
    """A stand-in with Seldon's webhook rules as its admission check; KUBECONFIG points at it."""
    with KubeApiStandIn(admission=sd.problems) as server:
        _use(server, tmp_path, monkeypatch)
        yield server


def _use(server: KubeApiStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(tmp_path / "kubeconfig")))


def _manifest(model_uri: str = "gs://bucket/models/iris/versions/v2") -> dict[str, Any]:
    return sd.render(DeploymentSpec.single("iris", model_uri), serving=SERVING)


def _model_uri(obj: dict[str, Any]) -> str:
    container = obj["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]
    return next(e["value"] for e in container["env"] if e["name"] == "MODEL_URI")


def test_a_new_deployment_is_applied_server_side_and_waited_for(standin: KubeApiStandIn) -> None:
    standin.plan("models", "iris", Plan("Available", react_after=1, settle_after=3))
    manifest = _manifest()

    result = kube_apply.apply_and_wait(manifest, **FAST)

    assert (result.available, result.state, result.created, result.restored) == (True, "Available", True, None)
    assert (result.generation, result.previous_generation) == (1, None)
    [patch] = standin.requests_with("PATCH")
    assert patch.path == SDEP_PATH
    assert patch.content_type == "application/apply-patch+yaml"
    assert patch.query == {"fieldManager": "kfp-mlops", "force": "true"}
    assert patch.body == manifest
    assert [r.method for r in standin.requests] == ["GET", "PATCH", "GET", "GET", "GET"]
    stored = standin.object("models", "iris")
    assert stored["metadata"]["managedFields"][0]["manager"] == "kfp-mlops"
    assert stored["status"]["state"] == "Available"


def test_an_update_takes_over_the_spec_and_waits_past_the_stale_status(standin: KubeApiStandIn) -> None:
    """The previous generation's Available is not taken for the new one's: it waits for the controller."""
    previous = standin.seed(_manifest("gs://bucket/models/iris/versions/v1"), manager="kubectl")
    standin.plan("models", "iris", Plan("Available", react_after=3, settle_after=5))

    result = kube_apply.apply_and_wait(_manifest(), **FAST)

    assert (result.available, result.created, result.generation, result.previous_generation) == (True, False, 2, 1)
    assert len(standin.requests_with("GET")) == 1 + 5  # the read before the apply, then until Available
    stored = standin.object("models", "iris")
    assert _model_uri(stored) == "gs://bucket/models/iris/versions/v2" != _model_uri(previous)
    assert stored["metadata"]["managedFields"][0]["manager"] == "kfp-mlops"  # forced past kubectl's ownership


def test_an_unchanged_status_is_trusted_after_the_settle_time(standin: KubeApiStandIn) -> None:
    """Seldon v1 reports no observedGeneration: a controller that never visibly reacts is believed after settle_s."""
    standin.seed(_manifest("gs://bucket/models/iris/versions/v1"))
    standin.plan("models", "iris", Plan("Available", react_after=10_000, settle_after=10_000))

    started = time.monotonic()
    result = kube_apply.apply_and_wait(_manifest(), poll_s=0.02, settle_s=0.3, timeout_s=10.0)

    assert result.available and 0.3 <= time.monotonic() - started < 5


def test_observed_generation_decides_when_the_controller_reports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with KubeApiStandIn(observed_generation=True) as server:
        _use(server, tmp_path, monkeypatch)
        server.seed(_manifest("gs://bucket/models/iris/versions/v1"))
        server.plan("models", "iris", Plan("Available", react_after=4, settle_after=4))

        result = kube_apply.apply_and_wait(_manifest(), poll_s=0.01, settle_s=0.0, timeout_s=10.0)

        assert result.available and result.generation == 2
        assert len(server.requests_with("GET")) == 1 + 4  # settle_s=0 did not make the stale status count


def test_a_failed_rollout_stops_early_and_restores_the_previous_spec(standin: KubeApiStandIn) -> None:
    previous = standin.seed(_manifest("gs://bucket/models/iris/versions/v1"), manager="kubectl")
    reason = "0/1 pods ready in iris-main-0-model: ImagePullBackOff"
    standin.plan("models", "iris", Plan("Failed", react_after=1, settle_after=2, description=reason))

    started = time.monotonic()
    with pytest.raises(kube_apply.ApplyFailed) as failed:
        kube_apply.apply_and_wait(_manifest(), poll_s=0.01, settle_s=5.0, timeout_s=30.0)

    assert time.monotonic() - started < 5  # reported at once, not after the timeout
    assert str(failed.value) == (
        f"SeldonDeployment models/iris (generation 2) failed: {reason}; restored the previous spec (generation 1)"
    )
    result = failed.value.result
    assert (result.available, result.state, result.description, result.restored) == (
        False,
        "Failed",
        reason,
        "reapplied",
    )
    restore = standin.requests_with("PATCH")[-1]
    assert restore.query == {"fieldManager": "kfp-mlops", "force": "true"}
    assert restore.body["spec"] == previous["spec"]
    assert not {"managedFields", "resourceVersion", "generation", "uid"} & set(restore.body["metadata"])
    stored = standin.object("models", "iris")
    assert stored["spec"] == previous["spec"] and stored["metadata"]["generation"] == 3


def test_a_new_deployment_that_never_becomes_available_is_deleted(standin: KubeApiStandIn) -> None:
    standin.plan("models", "iris", Plan("never"))

    with pytest.raises(kube_apply.ApplyFailed) as failed:
        kube_apply.apply_and_wait(_manifest(), poll_s=0.02, settle_s=5.0, timeout_s=0.3)

    assert str(failed.value) == (
        "SeldonDeployment models/iris (generation 1) did not become Available within "
        "0.3 s (state Creating); deleted it (there was none before)"
    )
    assert failed.value.result.restored == "deleted" and failed.value.result.created
    assert standin.requests[-1].method == "DELETE"
    assert standin.object("models", "iris") is None


@pytest.mark.parametrize(
    "spec",
    [
        DeploymentSpec("iris", (PredictorSpec("a", "gs://b/1", 60), PredictorSpec("b", "gs://b/2", 30))),
        DeploymentSpec(
            "iris",
            (
                PredictorSpec("main", "gs://b/1"),
                PredictorSpec("s1", "gs://b/2", 0, shadow=True),
                PredictorSpec("s2", "gs://b/3", 0, shadow=True),
            ),
        ),
        DeploymentSpec.single("iris", ""),
    ],
    ids=["traffic-90", "two-shadows", "no-model-uri"],
)
def test_invalid_specs_are_refused_before_anything_is_sent(standin: KubeApiStandIn, spec: DeploymentSpec) -> None:
    with pytest.raises(InvalidSpec):
        kube_apply.apply_and_wait(sd.render(spec, serving=SERVING), **FAST)
    assert standin.requests == []


def test_a_tampered_manifest_is_refused_before_anything_is_sent(standin: KubeApiStandIn) -> None:
    manifest = sd.render(DeploymentSpec.ab("iris", "gs://b/1", "gs://b/2", 10), serving=SERVING)
    manifest["spec"]["predictors"][1]["traffic"] = 50
    with pytest.raises(InvalidSpec, match="traffic sums to 140"):
        kube_apply.apply_and_wait(manifest, **FAST)
    assert standin.requests == []


def test_a_refused_apply_changes_nothing(standin: KubeApiStandIn) -> None:
    standin.seed(_manifest("gs://bucket/models/iris/versions/v1"))
    before = standin.object("models", "iris")
    standin.refuse_next(
        "PATCH", 422, 'admission webhook "v1.vseldondeployment.kb.io" denied the request: Invalid protocol'
    )

    with pytest.raises(
        kube_apply.ClusterError,
        match=r"^SeldonDeployment models/iris: apply refused "
        r"\(422 Unprocessable Entity\): admission webhook .* denied the "
        r"request: Invalid protocol$",
    ):
        kube_apply.apply_and_wait(_manifest(), **FAST)

    assert standin.object("models", "iris") == before
    assert [r.method for r in standin.requests] == ["GET", "PATCH"]


def test_missing_rights_name_the_rbac_that_grants_them(standin: KubeApiStandIn) -> None:
    standin.refuse_next("GET", 403, 'seldondeployments.machinelearning.seldon.io "iris" is forbidden')
    with pytest.raises(
        kube_apply.ClusterError,
        match=r"read refused \(403 Forbidden\): .* is forbidden \(the service "
        r"account needs get, create, patch and delete on seldondeployments"
        r"\.machinelearning\.seldon\.io in namespace models: "
        r"manifests/base/rbac\.yaml\)$",
    ):
        kube_apply.apply_and_wait(_manifest(), **FAST)
    assert standin.requests_with("PATCH") == []


def test_a_status_read_failing_once_is_retried(standin: KubeApiStandIn) -> None:
    standin.plan("models", "iris", Plan("Available", react_after=1, settle_after=2))
    standin.refuse_next("GET", 500, "etcdserver: request timed out", after=1)  # the first poll, not the read

    assert kube_apply.apply_and_wait(_manifest(), **FAST).available
    assert [r.method for r in standin.requests] == ["GET", "PATCH", "GET", "GET", "GET"]


def test_an_unreachable_cluster_is_a_cluster_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}")))

    with pytest.raises(
        kube_apply.ClusterError,
        match=rf"read: the Kubernetes API at http://127.0.0.1:{port} "
        "does not answer",
    ):
        kube_apply.apply_and_wait(_manifest(), **FAST)


def test_no_configured_cluster_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"^no Kubernetes cluster configured .*set KUBECONFIG"):
        kube_apply.api_client()
