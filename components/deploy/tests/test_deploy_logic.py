"""The deploy component's logic: modes and the champion pointer, safe rollouts, local spec files, cluster
deployments (against a Kubernetes API stand-in), refusals.

No Kubernetes API server can run on this machine; cluster targets talk to
``tests.support.kube_api_standin`` through the real kubernetes client (see tests/serving/cluster/test_kube_apply.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from kfp_mlops.components.deploy.logic import run_deploy
from kfp_mlops.core import storage
from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import AlreadyExistsError, ConfigError, MlopsError
from kfp_mlops.modeling.model_store import CANDIDATE, CHAMPION, ModelStore, RegisteredVersion
from kfp_mlops.rollout import load_rollout
from kfp_mlops.serving.cluster import kube_apply
from kfp_mlops.serving.cluster import seldon_deployment as sd
from kfp_mlops.serving.cluster.resources import ServingOptions
from kfp_mlops.serving.spec import DeploymentSpec, InvalidSpec
from tests.support.kube_api_standin import KubeApiStandIn, Plan
from tests.support.models import iris_model, register
from tests.support.wandb_offline import find_offline_runs, read_offline_run

MODEL = "iris-classifier"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Iris model folder, as train writes it."""
    return iris_model(tmp_path_factory.mktemp("iris") / "model")


def _publish(store: ModelStore, model_dir: Path) -> str:
    """Publishes ``model_dir`` as register does (with train's checksum); returns the new version id."""
    return register(store.root, model_dir, name=MODEL).version


def _store_with_versions(store_root: str, model_dir: Path, *labels: str) -> tuple[ModelStore, dict[str, str]]:
    """A store holding one published version per label; returns it and each label's version id."""
    store = ModelStore(store_root)
    return store, {label: _publish(store, model_dir) for label in labels}


def _crown(store: ModelStore, version: str) -> None:
    """Points the champion at ``version`` (from no champion)."""
    registered = RegisteredVersion(MODEL, version, store.version_uri(MODEL, version))
    store.promote(registered, expected_champion=None, by="test", reasons=["the champion"])


def _registered(tmp_path: Path, store: ModelStore, version: str, champion: str | None) -> Path:
    """register's record of ``version``, a candidate evaluated against ``champion``."""
    path = tmp_path / f"registered-{version}.json"
    uri = store.version_uri(MODEL, version)
    record = {"name": MODEL, "version": version, "uri": uri, "sha256": store.checksum(MODEL, version)}
    path.write_text(json.dumps({**record, "status": CANDIDATE, "champion": champion}))
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


def test_single_writes_the_spec_for_the_local_stack_and_moves_the_champion(tmp_path: Path, model_dir: Path) -> None:
    store, v = _store_with_versions(str(tmp_path / "store"), model_dir, "v1", "v2")
    _crown(store, v["v1"])
    spec_file = Settings.from_env().home / "deployments" / "iris.json"
    spec_file.parent.mkdir(parents=True)
    spec_file.write_text("{}")
    inode = spec_file.stat().st_ino

    record = _deploy(_registered(tmp_path, store, v["v2"], v["v1"]), tmp_path, store, mode="single")

    uri = store.version_uri(MODEL, v["v2"])
    assert DeploymentSpec.from_dict(json.loads(spec_file.read_text())) == DeploymentSpec.single("iris", uri)
    assert spec_file.stat().st_ino != inode  # replaced by a rename, never rewritten in place
    assert [p.name for p in spec_file.parent.iterdir()] == ["iris.json"]  # no temporary file left
    why = f"deployed single on request, replacing champion {v['v1']}"
    assert record == {
        "name": "iris",
        "namespace": "models",
        "protocol": "v2",
        "mode": "single",
        "requested_mode": "single",
        "target": "local",
        "platform": "seldon",
        "state": "written",
        "model": MODEL,
        "version": v["v2"],
        "status": CHAMPION,
        "champion": v["v2"],
        "reasons": [why],
        "predictors": [{"name": "main", "model_uri": uri, "traffic": 100, "shadow": False, "replicas": 1}],
        "traffic": {"main": 100},
        "model_uris": {"main": uri},
        "spec_path": str(spec_file),
        "rollout": None,
        "rollout_state_uri": None,
        "prediction_log_root": storage.join(store.root, "prediction-log", "iris"),
        "stage": None,
    }
    # The user chose single explicitly: the pointer moves, saying who moved it and why.
    pointer = store.champion_pointer(MODEL)
    assert (pointer["version"], pointer["previous"], pointer["by"], pointer["reasons"]) == (
        v["v2"],
        v["v1"],
        "deploy single",
        [why],
    )
    assert pointer["sha256"] == store.checksum(MODEL, v["v2"])
    assert store.status(MODEL, v["v1"]).status == "retired"
    manifest = yaml.safe_load((tmp_path / "manifest.yaml").read_text())
    serving = ServingOptions.from_settings(
        Settings.from_env(), prediction_log_uri=record["prediction_log_root"], store_root=store.root
    )
    assert manifest == sd.render(DeploymentSpec.single("iris", uri), serving=serving)

    [run] = _wandb_runs()
    assert (run.job_type, run.group, run.exit_code) == ("deploy", "job-1", 0)
    assert {k: run.summary[k] for k in ("state", "target", "version", "traffic/main")} == {
        "state": "written",
        "target": "local",
        "version": v["v2"],
        "traffic/main": 100,
    }
    assert run.artifact("iris-seldondeployment")["type"] == "deployment"


def test_ab_serves_the_candidate_beside_the_champion(tmp_path: Path, model_dir: Path) -> None:
    store, v = _store_with_versions(str(tmp_path / "store"), model_dir, "v1", "v2")

    record = _deploy(
        _registered(tmp_path, store, v["v2"], v["v1"]),
        tmp_path,
        store,
        mode="ab",
        ab_traffic=20,
        protocol="seldon",
        deployment_name="iris-ab",
    )

    assert record["traffic"] == {"a": 80, "b": 20}
    assert record["model_uris"] == {"a": store.version_uri(MODEL, v["v1"]), "b": store.version_uri(MODEL, v["v2"])}
    written = json.loads((Settings.from_env().home / "deployments" / "iris-ab.json").read_text())
    assert DeploymentSpec.from_dict(written).protocol == "seldon"
    assert (record["status"], record["champion"]) == (CANDIDATE, v["v1"])
    assert store.champion(MODEL) is None  # ab serves the candidate beside the champion; it moves no pointer


def test_shadow_mirrors_to_the_new_model_with_an_explicit_other_model(tmp_path: Path, model_dir: Path) -> None:
    store, v = _store_with_versions(str(tmp_path / "store"), model_dir, "v0", "v2")

    record = _deploy(
        _registered(tmp_path, store, v["v2"], None),
        tmp_path,
        store,
        mode="shadow",
        other_model_uri=store.version_uri(MODEL, v["v0"]),
    )

    assert [(p["name"], p["traffic"], p["shadow"]) for p in record["predictors"]] == [
        ("main", 100, False),
        ("shadow", 0, True),
    ]
    assert record["model_uris"] == {
        "main": store.version_uri(MODEL, v["v0"]),
        "shadow": store.version_uri(MODEL, v["v2"]),
    }


@pytest.mark.parametrize("mode", ["ab", "shadow", "rollout", "single"])
def test_the_first_model_of_a_name_is_deployed_single_and_becomes_champion(
    tmp_path: Path, model_dir: Path, mode: str
) -> None:
    store, v = _store_with_versions(str(tmp_path / "store"), model_dir, "v1")

    record = _deploy(_registered(tmp_path, store, v["v1"], None), tmp_path, store, mode=mode)

    assert (record["mode"], record["requested_mode"], record["status"], record["champion"]) == (
        "single",
        mode,
        CHAMPION,
        v["v1"],
    )
    assert record["reasons"][0] == (f"first model of {MODEL}: no champion to compare it with, so it is deployed single")
    pointer = store.champion_pointer(MODEL)
    assert (pointer["version"], pointer["by"], pointer["reasons"]) == (v["v1"], "deploy single", record["reasons"])
    assert record["traffic"] == {"main": 100}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "canary"}, "deploy mode 'canary': unknown; choose one of single, ab, shadow, rollout"),
        ({"target": "k8s"}, "deploy target 'k8s': unknown; choose one of local, cluster, none"),
        ({"other_model_uri": "gs://b/m"}, "other_model_uri='gs://b/m': only modes ab and shadow serve a second model"),
        ({"rollout_plan": {"stepz": [5]}}, r"stage plan: unknown key\(s\) stepz"),
    ],
)
def test_bad_parameters_are_config_errors(
    tmp_path: Path, model_dir: Path, kwargs: dict[str, Any], message: str
) -> None:
    store, v = _store_with_versions(str(tmp_path / "store"), model_dir, "v1")
    with pytest.raises(ConfigError, match=f"^{message}"):
        _deploy(_registered(tmp_path, store, v["v1"], None), tmp_path, store, **kwargs)


def test_target_local_is_refused_in_a_pod_naming_the_parameter(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cluster run with the default deploy_target would write a spec file inside its pod and report success."""
    store, v = _store_with_versions(str(tmp_path / "store"), model_dir, "v1")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")  # what the kubelet sets in every pod
    with pytest.raises(ConfigError, match=r"^deploy_target local: this task runs in a Kubernetes pod, .*; set "):
        _deploy(_registered(tmp_path, store, v["v1"], None), tmp_path, store, target="local")
    assert store.champion(MODEL) is None and not (tmp_path / "manifest.yaml").exists() and _wandb_runs() == []
    assert not (Settings.from_env().home / "deployments").exists()


@pytest.mark.parametrize(("platform", "kind"), [("seldon", "SeldonDeployment"), ("kserve", "InferenceService")])
def test_the_component_names_the_kind_it_rendered(tmp_path: Path, model_dir: Path, platform: str, kind: str) -> None:
    """The manifest artifact's metadata follows the platform; the images given as parameters are the ones rendered."""
    from kfp_mlops.components.deploy.component import deploy

    store, v = _store_with_versions(str(tmp_path / "store"), model_dir, "v1")
    outputs = {
        name: SimpleNamespace(path=str(tmp_path / "out" / name), metadata={})
        for name in ("deployment", "manifest", "summary", "wandb_page", "wandb_files")
    }
    (tmp_path / "out").mkdir()
    deploy.python_func(
        registered=SimpleNamespace(path=str(_registered(tmp_path, store, v["v1"], None)), metadata={}),
        **outputs,
        store_root=store.root,
        target="none",
        platform=platform,
        serving_image_v2="registry.example/mlserver:7",
        service_account="model-reader",
    )

    assert outputs["manifest"].metadata == {"kind": kind, "platform": platform, "name": "iris", "namespace": "models"}
    *_, rendered = yaml.safe_load_all(Path(outputs["manifest"].path).read_text())
    assert rendered["kind"] == kind and "serviceAccountName: model-reader" in yaml.safe_dump(rendered)
    assert "image: registry.example/mlserver:7" in Path(outputs["manifest"].path).read_text()


def test_a_missing_model_is_refused(tmp_path: Path, model_dir: Path) -> None:
    store, v = _store_with_versions(str(tmp_path / "store"), model_dir, "v2")
    ghost = store.version_uri(MODEL, "v-gone")
    with pytest.raises(MlopsError, match=f"^deployment 'iris': no stored model at main: {ghost}$"):
        _deploy(_registered(tmp_path, store, v["v2"], "v1"), tmp_path, store, mode="shadow", other_model_uri=ghost)
    assert not (tmp_path / "manifest.yaml").exists()


@pytest.mark.parametrize("mode", ["single", "rollout"])
def test_a_record_whose_checksum_differs_from_the_store_is_refused(tmp_path: Path, model_dir: Path, mode: str) -> None:
    store, v = _store_with_versions(str(tmp_path / "store"), model_dir, "v1")
    registered = _registered(tmp_path, store, v["v1"], None)
    record = json.loads(registered.read_text())
    registered.write_text(json.dumps({**record, "sha256": "0" * 64}))

    recorded = store.checksum(MODEL, v["v1"])
    with pytest.raises(MlopsError, match=f"register recorded sha256 '0{{64}}', the store {recorded}; not deployed$"):
        _deploy(registered, tmp_path, store, mode=mode)

    assert store.champion(MODEL) is None
    assert not (tmp_path / "manifest.yaml").exists() and _wandb_runs() == []
    assert not (Settings.from_env().home / "deployments").exists()


def test_cluster_target_rolls_out_and_records_the_result(
    tmp_path: Path, model_dir: Path, gcs_bucket: str, cluster: KubeApiStandIn
) -> None:
    store, v = _store_with_versions(f"{gcs_bucket}/store", model_dir, "v1", "v2")
    _crown(store, v["v1"])
    cluster.plan("models", "iris", Plan("Available", react_after=1, settle_after=2))

    record = _deploy(_registered(tmp_path, store, v["v2"], v["v1"]), tmp_path, store, target="cluster", mode="single")

    assert record["state"] == "Available" and record["spec_path"] is None
    assert record["rollout"]["available"] and record["rollout"]["created"]
    [patch] = cluster.requests_with("PATCH")
    assert patch.body == yaml.safe_load((tmp_path / "manifest.yaml").read_text())
    env = patch.body["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]["env"]
    assert {"name": "MODEL_URI", "value": store.version_uri(MODEL, v["v2"])} in env
    assert {"name": "KFP_MLOPS_STORE", "value": store.root} in env  # the servers load versions of this store only
    assert not (Settings.from_env().home / "deployments").exists()  # the local stack's file is not touched


def test_a_failed_cluster_rollout_fails_the_task_and_is_logged(
    tmp_path: Path, model_dir: Path, gcs_bucket: str, cluster: KubeApiStandIn
) -> None:
    store, v = _store_with_versions(f"{gcs_bucket}/store", model_dir, "v2")
    cluster.plan("models", "iris", Plan("Failed", description="CrashLoopBackOff"))

    with pytest.raises(kube_apply.ApplyFailed, match="failed: CrashLoopBackOff; deleted it"):
        _deploy(_registered(tmp_path, store, v["v2"], None), tmp_path, store, target="cluster", timeout_seconds=30)

    assert cluster.object("models", "iris") is None
    assert store.champion(MODEL) is None  # a failed run moves no pointer, not even for the first model
    [run] = _wandb_runs()
    assert run.exit_code == 1 and run.summary["state"] == "Failed" and run.summary["restored"] == "deleted"


def test_an_invalid_deployment_is_refused_before_anything_is_applied_or_written(
    tmp_path: Path, model_dir: Path, gcs_bucket: str, cluster: KubeApiStandIn
) -> None:
    store, v = _store_with_versions(f"{gcs_bucket}/store", model_dir, "v1", "v2")
    with pytest.raises(InvalidSpec) as refused:
        _deploy(
            _registered(tmp_path, store, v["v2"], v["v1"]),
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


def test_a_cluster_cannot_serve_local_model_paths(tmp_path: Path, model_dir: Path, cluster: KubeApiStandIn) -> None:
    store, v = _store_with_versions(str(tmp_path / "store"), model_dir, "v2")
    with pytest.raises(ConfigError, match=r"pods cannot read local model paths; use a gs:// store for target cluster"):
        _deploy(_registered(tmp_path, store, v["v2"], None), tmp_path, store, target="cluster")
    assert cluster.requests == []


@pytest.fixture()
def served(tmp_path: Path) -> tuple[ModelStore, dict[str, str]]:
    """A store whose champion v1 and candidate v2 are other real models (a rollout loads both before it starts)."""
    store = ModelStore(str(tmp_path / "store"))
    v = {
        label: _publish(store, iris_model(tmp_path / "models" / label, seed=seed))
        for label, seed in (("v1", 0), ("v2", 1))
    }
    _crown(store, v["v1"])
    store.record_status(MODEL, v["v2"], CANDIDATE, by="register", reasons=["gate passed"])
    return store, v


def test_rollout_starts_in_shadow_beside_the_champion(
    tmp_path: Path, served: tuple[ModelStore, dict[str, str]]
) -> None:
    store, v = served
    plan = {"steps": [5, 100], "min_labelled": 150, "min_positives": 10}
    record = _deploy(_registered(tmp_path, store, v["v2"], v["v1"]), tmp_path, store, rollout_plan=plan)  # the default

    legacy, challenger = store.version_uri(MODEL, v["v1"]), store.version_uri(MODEL, v["v2"])
    state_uri = storage.join(store.root, "rollouts", "iris.json")
    assert (record["mode"], record["stage"], record["status"], record["champion"]) == (
        "rollout",
        "shadow",
        CANDIDATE,
        v["v1"],
    )
    assert record["rollout_state_uri"] == state_uri
    assert record["prediction_log_root"] == storage.join(store.root, "prediction-log", "iris")
    assert record["reasons"] == [f"safe rollout against champion {v['v1']}: shadow, canary-5, promoted"]
    # The shadow stage is applied: legacy answers everything, the challenger sees a copy.
    spec = DeploymentSpec.from_dict(json.loads(Path(record["spec_path"]).read_text()))
    assert [(p.name, p.model_uri, p.traffic, p.shadow) for p in spec.predictors] == [
        ("legacy", legacy, 100, False),
        ("challenger", challenger, 0, True),
    ]
    serving = ServingOptions.from_settings(
        Settings.from_env(), prediction_log_uri=record["prediction_log_root"], store_root=store.root
    )
    assert yaml.safe_load((tmp_path / "manifest.yaml").read_text()) == sd.render(spec, serving=serving)
    # The rollout knows the store and both versions; the champion is untouched until it promotes.
    state, _ = load_rollout(state_uri)
    assert (state.status, state.stage.name, state.plan.steps) == ("running", "shadow", (5, 100))
    assert state.stored.to_dict() == {
        "store_root": store.root,
        "model_name": MODEL,
        "legacy_version": v["v1"],
        "challenger_version": v["v2"],
    }
    # Both checksums as registered: whoever loads the models for the rollout checks them against these.
    assert state.checksums == {legacy: store.checksum(MODEL, v["v1"]), challenger: store.checksum(MODEL, v["v2"])}
    assert state.log_root == record["prediction_log_root"]
    assert store.champion(MODEL).version == v["v1"] and store.status(MODEL, v["v2"]).status == CANDIDATE


def test_nothing_moves_while_a_rollout_runs_for_the_deployment(
    tmp_path: Path, served: tuple[ModelStore, dict[str, str]]
) -> None:
    store, v = served
    _deploy(_registered(tmp_path, store, v["v2"], v["v1"]), tmp_path, store, mode="rollout")
    state_uri = storage.join(store.root, "rollouts", "iris.json")
    spec_file = Settings.from_env().home / "deployments" / "iris.json"
    before = (storage.read_bytes(state_uri), spec_file.read_text(), store.champion_pointer(MODEL))
    (tmp_path / "manifest.yaml").unlink()

    for mode in ("rollout", "single", "ab"):
        with pytest.raises(
            AlreadyExistsError, match=rf"rollouts/iris\.json: a rollout of .*{v['v2']} is running at shadow; "
        ):
            _deploy(_registered(tmp_path, store, v["v2"], v["v1"]), tmp_path, store, mode=mode)

    assert (storage.read_bytes(state_uri), spec_file.read_text(), store.champion_pointer(MODEL)) == before
    assert not (tmp_path / "manifest.yaml").exists()


def test_a_champion_that_moved_since_the_evaluation_is_left_alone(
    tmp_path: Path, served: tuple[ModelStore, dict[str, str]]
) -> None:
    store, v = served
    for mode in ("single", "rollout"):
        with pytest.raises(AlreadyExistsError, match=f"champion is now '{v['v1']}', not 'v0' as evaluated"):
            _deploy(_registered(tmp_path, store, v["v2"], "v0"), tmp_path, store, mode=mode)
    assert store.champion(MODEL).version == v["v1"]
    assert not storage.exists(storage.join(store.root, "rollouts", "iris.json"))
    assert not (Settings.from_env().home / "deployments").exists() and _wandb_runs() == []


def test_target_none_records_the_rollout_and_applies_nothing(
    tmp_path: Path, served: tuple[ModelStore, dict[str, str]]
) -> None:
    store, v = served
    state_uri = str(tmp_path / "elsewhere" / "shop.json")
    record = _deploy(
        _registered(tmp_path, store, v["v2"], v["v1"]), tmp_path, store, target="none", rollout_state_uri=state_uri
    )
    assert (record["state"], record["spec_path"], record["rollout_state_uri"]) == ("not applied", None, state_uri)
    assert load_rollout(state_uri)[0].stage.name == "shadow"
    assert not (Settings.from_env().home / "deployments").exists()
