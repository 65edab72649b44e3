"""The deploy component's logic: local spec files, cluster rollouts (against a Kubernetes API stand-in), refusals.

No Kubernetes API server can run on this machine; cluster targets talk to
``tests.support.kube_api_standin`` through the real kubernetes client (see tests/serving/cluster/test_kube_apply.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kfp_mlops.components.deploy.logic import run_deploy
from kfp_mlops.core import storage
from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import ConfigError, MlopsError
from kfp_mlops.modeling.model_bundle import METADATA_FILE
from kfp_mlops.modeling.model_store import ModelStore
from kfp_mlops.serving.cluster import kube_apply
from kfp_mlops.serving.cluster import seldon_deployment as sd
from kfp_mlops.serving.spec import DeploymentSpec, InvalidSpec
from tests.support.kube_api_standin import KubeApiStandIn, Plan
from tests.support.wandb_offline import find_offline_runs, read_offline_run

MODEL = "iris-classifier"


def _store_with_versions(store_root: str, *versions: str) -> ModelStore:
    """A store holding complete (metadata.json present) versions; deploy reads nothing else."""
    store = ModelStore(store_root)
    for version in versions:
        storage.write_json(storage.join(store.version_uri(MODEL, version), METADATA_FILE), {"version": version})
    return store


def _registered(tmp_path: Path, store: ModelStore, version: str, previous: str | None) -> Path:
    path = tmp_path / "registered.json"
    path.write_text(
        json.dumps(
            {"name": MODEL, "version": version, "uri": store.version_uri(MODEL, version), "previous_champion": previous}
        )
    )
    return path


def _deploy(registered: Path, tmp_path: Path, store: ModelStore, **kwargs: Any) -> dict[str, Any]:
    return run_deploy(
        str(registered),
        str(tmp_path / "manifest.yaml"),
        settings=Settings.from_env(),
        store_root=store.root,
        pipeline_job_id="job-1",
        **kwargs,
    )


def _wandb_runs() -> list[Any]:
    return [read_offline_run(p) for p in find_offline_runs(Path(os.environ["WANDB_DIR"]))]


@pytest.fixture()
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeApiStandIn]:
    """A Kubernetes API stand-in checking Seldon's webhook rules; KUBECONFIG points at it."""
    with KubeApiStandIn(admission=sd.problems) as server:
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setenv("KUBECONFIG", str(server.write_kubeconfig(tmp_path / "kubeconfig")))
        yield server


def test_local_target_writes_the_spec_for_the_local_stack(tmp_path: Path) -> None:
    store = _store_with_versions(str(tmp_path / "store"), "v1", "v2")
    spec_file = Settings.from_env().home / "deployments" / "iris.json"
    spec_file.parent.mkdir(parents=True)
    spec_file.write_text("{}")
    inode = spec_file.stat().st_ino

    record = _deploy(_registered(tmp_path, store, "v2", "v1"), tmp_path, store)

    uri = store.version_uri(MODEL, "v2")
    assert DeploymentSpec.from_dict(json.loads(spec_file.read_text())) == DeploymentSpec.single("iris", uri)
    assert spec_file.stat().st_ino != inode  # replaced by a rename, never rewritten in place
    assert [p.name for p in spec_file.parent.iterdir()] == ["iris.json"]  # no temporary file left
    assert record == {
        "name": "iris",
        "namespace": "models",
        "protocol": "v2",
        "mode": "single",
        "target": "local",
        "state": "written",
        "model": MODEL,
        "version": "v2",
        "predictors": [{"name": "main", "model_uri": uri, "traffic": 100, "shadow": False, "replicas": 1}],
        "traffic": {"main": 100},
        "model_uris": {"main": uri},
        "spec_path": str(spec_file),
        "rollout": None,
    }
    manifest = yaml.safe_load((tmp_path / "manifest.yaml").read_text())
    assert manifest == sd.render(DeploymentSpec.single("iris", uri), settings=Settings.from_env())

    [run] = _wandb_runs()
    assert (run.job_type, run.group, run.exit_code) == ("deploy", "job-1", 0)
    assert {k: run.summary[k] for k in ("state", "target", "version", "traffic/main")} == {
        "state": "written",
        "target": "local",
        "version": "v2",
        "traffic/main": 100,
    }
    assert run.artifact("iris-seldondeployment")["type"] == "deployment"


def test_ab_serves_the_previous_champion_beside_the_new_model(tmp_path: Path) -> None:
    store = _store_with_versions(str(tmp_path / "store"), "v1", "v2")

    record = _deploy(
        _registered(tmp_path, store, "v2", "v1"),
        tmp_path,
        store,
        mode="ab",
        ab_traffic=20,
        protocol="seldon",
        deployment_name="iris-ab",
    )

    assert record["traffic"] == {"a": 80, "b": 20}
    assert record["model_uris"] == {"a": store.version_uri(MODEL, "v1"), "b": store.version_uri(MODEL, "v2")}
    written = json.loads((Settings.from_env().home / "deployments" / "iris-ab.json").read_text())
    assert DeploymentSpec.from_dict(written).protocol == "seldon"


def test_shadow_mirrors_to_the_new_model_with_an_explicit_other_model(tmp_path: Path) -> None:
    store = _store_with_versions(str(tmp_path / "store"), "v0", "v2")

    record = _deploy(
        _registered(tmp_path, store, "v2", None),
        tmp_path,
        store,
        mode="shadow",
        other_model_uri=store.version_uri(MODEL, "v0"),
    )

    assert [(p["name"], p["traffic"], p["shadow"]) for p in record["predictors"]] == [
        ("main", 100, False),
        ("shadow", 0, True),
    ]
    assert record["model_uris"] == {"main": store.version_uri(MODEL, "v0"), "shadow": store.version_uri(MODEL, "v2")}


def test_ab_without_a_second_model_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    store = _store_with_versions(str(tmp_path / "store"), "v1")
    with pytest.raises(
        ConfigError,
        match=rf"^deploy mode 'ab' needs a second model, and {MODEL} v1 replaced no "
        "champion .*: pass other_model_uri, or deploy with mode single$",
    ):
        _deploy(_registered(tmp_path, store, "v1", None), tmp_path, store, mode="ab")
    assert not (tmp_path / "manifest.yaml").exists()
    assert not (Settings.from_env().home / "deployments").exists()
    assert _wandb_runs() == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "canary"}, "deploy mode 'canary': unknown; choose one of single, ab, shadow"),
        ({"target": "k8s"}, "deploy target 'k8s': unknown; choose one of local, cluster"),
        ({"other_model_uri": "gs://b/m"}, "other_model_uri='gs://b/m': only modes ab and shadow serve a second model"),
    ],
)
def test_bad_parameters_are_config_errors(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    store = _store_with_versions(str(tmp_path / "store"), "v1")
    with pytest.raises(ConfigError, match=f"^{message}"):
        _deploy(_registered(tmp_path, store, "v1", None), tmp_path, store, **kwargs)


def test_a_missing_model_is_refused(tmp_path: Path) -> None:
    store = _store_with_versions(str(tmp_path / "store"), "v2")
    ghost = store.version_uri(MODEL, "v-gone")
    with pytest.raises(MlopsError, match=f"^deployment 'iris': no stored model at main: {ghost}$"):
        _deploy(_registered(tmp_path, store, "v2", "v1"), tmp_path, store, mode="shadow", other_model_uri=ghost)
    assert not (tmp_path / "manifest.yaml").exists()


def test_cluster_target_rolls_out_and_records_the_result(
    tmp_path: Path, gcs_bucket: str, cluster: KubeApiStandIn
) -> None:
    store = _store_with_versions(f"{gcs_bucket}/store", "v1", "v2")
    cluster.plan("models", "iris", Plan("Available", react_after=1, settle_after=2))

    record = _deploy(_registered(tmp_path, store, "v2", "v1"), tmp_path, store, target="cluster")

    assert record["state"] == "Available" and record["spec_path"] is None
    assert record["rollout"]["available"] and record["rollout"]["created"]
    [patch] = cluster.requests_with("PATCH")
    assert patch.body == yaml.safe_load((tmp_path / "manifest.yaml").read_text())
    env = patch.body["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]["env"]
    assert {"name": "MODEL_URI", "value": store.version_uri(MODEL, "v2")} in env
    assert not (Settings.from_env().home / "deployments").exists()  # the local stack's file is not touched


def test_a_failed_cluster_rollout_fails_the_task_and_is_logged(
    tmp_path: Path, gcs_bucket: str, cluster: KubeApiStandIn
) -> None:
    store = _store_with_versions(f"{gcs_bucket}/store", "v2")
    cluster.plan("models", "iris", Plan("Failed", description="CrashLoopBackOff"))

    with pytest.raises(kube_apply.ApplyFailed, match="failed: CrashLoopBackOff; deleted it"):
        _deploy(_registered(tmp_path, store, "v2", None), tmp_path, store, target="cluster", timeout_seconds=30)

    assert cluster.object("models", "iris") is None
    [run] = _wandb_runs()
    assert run.exit_code == 1 and run.summary["state"] == "Failed" and run.summary["restored"] == "deleted"


def test_an_invalid_deployment_is_refused_before_anything_is_applied_or_written(
    tmp_path: Path, gcs_bucket: str, cluster: KubeApiStandIn
) -> None:
    store = _store_with_versions(f"{gcs_bucket}/store", "v1", "v2")
    with pytest.raises(InvalidSpec) as refused:
        _deploy(
            _registered(tmp_path, store, "v2", "v1"),
            tmp_path,
            store,
            target="cluster",
            mode="ab",
            ab_traffic=150,
            deployment_name="Iris",
        )
    message = str(refused.value)
    for problem in (
        "deployment name 'Iris' must be a DNS-1123 label",
        "predictor 'a': traffic -50 must be an integer from 0 to 100",
        "predictor 'b': traffic 150 must be an integer from 0 to 100",
    ):
        assert problem in message
    assert cluster.requests == []
    assert not (tmp_path / "manifest.yaml").exists()
    assert _wandb_runs() == []


def test_a_cluster_cannot_serve_local_model_paths(tmp_path: Path, cluster: KubeApiStandIn) -> None:
    store = _store_with_versions(str(tmp_path / "store"), "v2")
    with pytest.raises(ConfigError, match=r"pods cannot read local model paths; use a gs:// store for target cluster"):
        _deploy(_registered(tmp_path, store, "v2", None), tmp_path, store, target="cluster")
    assert cluster.requests == []
