"""The rollout step from plain parameters (:func:`run_rollout_step`, what the CLI and the component run).

Cluster stages go to ``tests.support.kube_api_standin`` through the real kubernetes client: no
Kubernetes API server, Seldon Core or KServe can run on this machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.rollout import controller as rc
from kfp_mlops.rollout import task
from kfp_mlops.serving.cluster import kinds
from tests.rollout.test_controller import PLAN, T0, traffic
from tests.support.kube_api_standin import KubeApiStandIn
from tests.support.models import iris_model, register


def _published(tmp_path: Path) -> tuple[str, str]:
    """Legacy and challenger as versions of the settings' store (the servers load nothing else)."""
    store = Settings.from_env().store_root
    legacy = register(store, iris_model(tmp_path / "legacy"), name="fraud")
    challenger = register(store, iris_model(tmp_path / "challenger", seed=1), name="fraud")
    return legacy.uri, challenger.uri


@pytest.fixture()
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeApiStandIn]:
    """A Kubernetes API stand-in with every kind's admission rules; KUBECONFIG points at it."""
    with KubeApiStandIn(admission=kinds.problems) as server:
        monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(tmp_path / "kubeconfig")))
        yield server


def test_run_rollout_step_with_no_target_records_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    state = str(tmp_path / "rollout.json")
    legacy, challenger = _published(tmp_path)
    rc.start(state, PLAN, legacy, challenger, base=rc.base_spec("fraud"), target=None, at=T0)
    record = task.run_rollout_step(
        str(tmp_path / "out" / "decision.json"),
        settings=Settings.from_env({"KFP_MLOPS_HOME": str(home)}),
        state_uri=state,
        log_root=str(tmp_path / "log"),
        deployment_name="fraud",
        target="none",
        as_of=(T0 + timedelta(hours=1)).isoformat(),
        live_config={"bootstrap": 200},
    )
    assert record["action"] == "hold" and record["spec"] is None
    assert json.loads((tmp_path / "out" / "decision.json").read_text())["action"] == "hold"
    assert not (home / "deployments").exists()


def test_run_rollout_step_refuses_bad_parameters() -> None:
    settings = Settings.from_env({})
    options: dict[str, Any] = {"settings": settings, "state_uri": "s", "log_root": "l", "deployment_name": "fraud"}
    with pytest.raises(ConfigError, match="live_config: unknown key"):
        task.run_rollout_step("x", **options, live_config={"boot": 1})
    with pytest.raises(ConfigError, match="not an ISO date-time"):
        task.run_rollout_step("x", **options, as_of="yesterday")
    with pytest.raises(ConfigError, match="serving platform 'knative': unknown; choose one of seldon, kserve"):
        task.run_rollout_step("x", **options, platform="knative")
    with pytest.raises(ConfigError, match="rollout target 'k8s': unknown; choose one of local, cluster, none"):
        task.run_rollout_step("x", **options, target="k8s")
    with pytest.raises(ConfigError, match=r"image_v2='registry\.example/a b' contains whitespace"):
        task.run_rollout_step("x", **options, target="none", serving_image_v2="registry.example/a b")
    assert task.parse_as_of("") is None
    assert task.parse_as_of("2026-11-02T12:00:00+00:00") == T0 + timedelta(hours=12)


def test_the_log_root_defaults_to_the_one_the_rollout_recorded(tmp_path: Path) -> None:
    legacy, challenger = _published(tmp_path)
    log, settings = str(tmp_path / "log"), Settings.from_env({"KFP_MLOPS_HOME": str(tmp_path / "home")})
    recorded, unrecorded = str(tmp_path / "recorded.json"), str(tmp_path / "unrecorded.json")
    base = rc.base_spec("fraud")
    rc.start(recorded, PLAN, legacy, challenger, base=base, target=None, at=T0, log_root=log)
    rc.start(unrecorded, PLAN, legacy, challenger, base=base, target=None, at=T0)
    traffic(log, T0 + timedelta(minutes=1), 600, challenger_quality=0.7, seed=13)
    options = {"settings": settings, "deployment_name": "fraud", "target": "none", "log_root": ""}
    as_of = (T0 + timedelta(hours=2)).isoformat()

    assert task.rollout_log_root(recorded) == log and task.rollout_log_root(unrecorded) == ""
    assert task.rollout_log_root(unrecorded, "gs://b/log") == "gs://b/log"
    record = task.run_rollout_step(
        str(tmp_path / "d1.json"), state_uri=recorded, as_of=as_of, live_config={"bootstrap": 200}, **options
    )
    assert (record["action"], record["next_stage"]) == ("promote", "canary-5")
    with pytest.raises(ConfigError, match=r"unrecorded\.json: the rollout recorded no prediction log; name its root"):
        task.run_rollout_step(str(tmp_path / "d2.json"), state_uri=unrecorded, as_of=as_of, **options)


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


@pytest.mark.parametrize("platform", ["seldon", "kserve"])
def test_a_cluster_stage_is_rendered_with_the_log_the_step_reads_and_the_serving_options(
    platform: str, tmp_path: Path, cluster: KubeApiStandIn
) -> None:
    """The stage a promotion applies makes every server log where the next step reads, on the platform asked for."""
    legacy, challenger = _published(tmp_path)
    state, log = str(tmp_path / "rollout.json"), str(tmp_path / "log")
    rc.start(state, PLAN, legacy, challenger, base=rc.base_spec("fraud"), target=None, at=T0, log_root=log)
    traffic(log, T0 + timedelta(minutes=1), 600, challenger_quality=0.7, seed=13)

    record = task.run_rollout_step(
        str(tmp_path / "decision.json"),
        settings=Settings.from_env(),
        state_uri=state,
        log_root="",  # the one the rollout recorded
        deployment_name="fraud",
        target="cluster",
        as_of=(T0 + timedelta(hours=2)).isoformat(),
        live_config={"bootstrap": 200},
        timeout_seconds=30,
        platform=platform,
        serving_image_v2="registry.example/mlserver:7",
        serving_image_seldon="registry.example/seldon:7",
        service_account="model-reader",
        request_logger_url="http://sink.logging/events" if platform == "kserve" else "",
    )

    assert (record["action"], record["next_stage"], record["platform"]) == ("promote", "canary-5", platform)
    if platform == "seldon":
        sdep = cluster.object("models", "fraud")
        assert {p["name"]: p["traffic"] for p in sdep["spec"]["predictors"]} == {"legacy": 95, "challenger": 5}
        for predictor in sdep["spec"]["predictors"]:
            [component] = predictor["componentSpecs"]
            [container] = component["spec"]["containers"]
            assert _env(container)["PREDICTION_LOG_URI"] == log, predictor["name"]
            assert container["image"] == "registry.example/mlserver:7"
            assert component["spec"]["serviceAccountName"] == "model-reader"
    else:
        isvc = cluster.object("models", "fraud", "InferenceService")
        predictor = isvc["spec"]["predictor"]
        assert predictor["canaryTrafficPercent"] == 5 and _env(predictor["model"])["PREDICTOR_NAME"] == "challenger"
        assert _env(predictor["model"])["PREDICTION_LOG_URI"] == log
        assert predictor["serviceAccountName"] == "model-reader"
        assert predictor["logger"] == {"mode": "all", "url": "http://sink.logging/events"}
        runtime = cluster.object("models", "kfp-mlops-mlserver", "ServingRuntime")
        assert runtime["spec"]["containers"][0]["image"] == "registry.example/mlserver:7"


def test_target_local_is_refused_in_a_pod_before_anything_is_decided(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    legacy, challenger = _published(tmp_path)
    state = str(tmp_path / "rollout.json")
    rc.start(state, PLAN, legacy, challenger, base=rc.base_spec("fraud"), target=None, at=T0, log_root="l")
    before = Path(state).read_bytes()
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")  # what the kubelet sets in every pod

    with pytest.raises(ConfigError) as refused:
        task.run_rollout_step(
            str(tmp_path / "decision.json"),
            settings=Settings.from_env(),
            state_uri=state,
            log_root="",
            deployment_name="fraud",
            target="local",
        )

    assert str(refused.value) == (
        "target local: this task runs in a Kubernetes pod, where the local spec file would stay in the pod and "
        "nothing would serve it; set target to cluster (or none: apply nothing)"
    )
    assert Path(state).read_bytes() == before and not (tmp_path / "decision.json").exists()
