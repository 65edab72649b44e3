"""Every compiled pipeline run from its YAML file, in an environment built like the component image.

What a cluster run depends on and no other test sees: files the wheel must carry (templates,
schemas), code that looks into the checkout, and environment variables nobody sets on a cluster.
So each pipeline is compiled by the package installed in ``.venv-image`` (``make image-env``: the
component image's install, not editable, no dev extras) and its YAML file run there with kfp.local
(:mod:`tests.support.image_env`), in a folder outside the checkout, with only the image's
environment and the stand-ins' addresses. Data, model store, rollout state and prediction log are
``gs://`` URIs on a real GCS emulator (fake-gcs-server); deployments go to the Kubernetes API
stand-in (:mod:`tests.support.kube_api_standin`, with the CRD schemas and admission rules: no
Kubernetes API server, Seldon Core or KServe can run here) through a kubeconfig, as from a laptop;
a pod would use its service account instead. The assertions are what a cluster user would see: the
champion pointer in the store, the applied custom resources with the images, service account and
prediction log given as parameters, and traffic weights moved by the rollout pipeline.

kfp.local does not stage a ``gs://`` importer artifact (KFP's launcher does, on a cluster), so the
monitoring window is a local file; everything it writes goes to ``gs://``. No model server runs
here: the test writes the logged traffic itself, through the prediction log's public API, as the
model servers would.
"""

from __future__ import annotations

import csv
import io
import re
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from kfp_mlops.core import storage
from kfp_mlops.demos import ecommerce
from kfp_mlops.modeling.model_store import CANDIDATE, CHAMPION, RETIRED, ModelStore
from kfp_mlops.rollout import load_rollout
from kfp_mlops.serving.cluster import kinds
from kfp_mlops.serving.prediction_log import PredictionLogWriter, PredictionRecord
from tests.rollout.test_controller import traffic
from tests.support.gcs_emulator import GcsEmulator
from tests.support.image_env import (
    DOCKERFILE,
    MAKEFILE,
    ROOT,
    image_context,
    image_environment,
    image_python,
    pod_environment,
    run_compiled,
)
from tests.support.kube_api_standin import KubeApiStandIn

RUN_HERE = ("training", "monitoring", "rollout")  # the pipelines the slow tests run from YAML
IMAGES = {"serving_image_v2": "registry.example/team/mlserver:7", "serving_image_seldon": "registry.example/seldon:7"}
SERVICE_ACCOUNT = "model-reader"
# Small enough for a few hundred logged requests per stage.
PLAN = {"steps": [5, 100], "min_labelled": 150, "min_positives": 10, "max_p99_latency_ms": 1000.0}


@pytest.fixture()
def cluster() -> Iterator[KubeApiStandIn]:
    """The Kubernetes API stand-in, checking every write against the kinds' admission rules."""
    with KubeApiStandIn(admission=kinds.problems) as server:
        yield server


@pytest.fixture()
def pod(tmp_path: Path, gcs_emulator: GcsEmulator, cluster: KubeApiStandIn) -> dict[str, str]:
    """The environment every run gets, and nothing else (once ``.venv-image`` is found current)."""
    image_python()
    return pod_environment(tmp_path / "pod", storage_emulator=gcs_emulator.url, kubernetes_api=cluster.url)


def _upload_csv(frame: Any, uri: str) -> str:
    storage.write_bytes(uri, frame.to_csv(index=False).encode())
    return uri


def _weeks(weeks: range | list[int], rows: int, seed: int) -> Any:
    return ecommerce.generate(weeks, rows, seed=seed).drop(columns="week")


def _training_arguments(bucket: str, **overrides: Any) -> dict[str, Any]:
    return {
        "store_root": f"{bucket}/store",
        "label": ecommerce.LABEL,
        "model_name": "shop",
        "threshold": 0.65,
        "deployment_name": "shop",
        "deploy_target": "cluster",
        "prediction_log_root": f"{bucket}/prediction-log/shop",
        "rollout_state_uri": f"{bucket}/rollouts/shop.json",
        "serving_service_account": SERVICE_ACCOUNT,
        **IMAGES,
        **overrides,
    }


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def _predictors(cluster: KubeApiStandIn) -> dict[str, tuple[int, bool]]:
    sdep = cluster.object("models", "shop")
    assert sdep is not None
    return {p["name"]: (p.get("traffic", 0), p.get("shadow", False)) for p in sdep["spec"]["predictors"]}


def _check_seldon_predictors(sdep: dict[str, Any], store: ModelStore, log_root: str) -> None:
    """Every predictor runs the image given for its protocol, as the service account given, logging to the log."""
    for predictor in sdep["spec"]["predictors"]:
        [component] = predictor["componentSpecs"]
        [container] = component["spec"]["containers"]
        assert container["image"] == IMAGES["serving_image_v2"], predictor["name"]
        assert component["spec"]["serviceAccountName"] == SERVICE_ACCOUNT
        env = _env(container)
        assert env["PREDICTION_LOG_URI"] == log_root
        assert env["MODEL_URI"].startswith(store.root + "/"), env["MODEL_URI"]


@pytest.mark.slow
def test_training_monitoring_and_rollout_from_yaml_move_a_model_to_champion_on_seldon(
    tmp_path: Path, gcs_bucket: str, cluster: KubeApiStandIn, pod: dict[str, str]
) -> None:
    """training deploys the first champion; monitoring retrains on a drifted window and starts a rollout in
    shadow; two scheduled rollout runs, on logged traffic and labels, take it through canary to champion."""
    store = ModelStore(f"{gcs_bucket}/store")
    arguments = _training_arguments(gcs_bucket)
    source = _upload_csv(_weeks(range(35, 46), 1_000, seed=0), f"{gcs_bucket}/data/autumn.csv")
    log_root = arguments["prediction_log_root"]

    run_compiled("training", {**arguments, "source": source, "deploy_mode": "single"}, tmp_path / "training", pod)

    first = store.champion("shop")
    assert first is not None and store.champion_pointer("shop")["by"].startswith("deploy")
    sdep = cluster.object("models", "shop")
    assert sdep is not None and [p["name"] for p in sdep["spec"]["predictors"]] == ["main"]
    _check_seldon_predictors(sdep, store, log_root)
    assert _env(sdep["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0])["MODEL_URI"] == (first.uri)

    december = tmp_path / "week-46.csv"  # a local file: see the module docstring
    _weeks([46], 2_000, seed=46).to_csv(december, index=False)
    monitoring = {k: v for k, v in arguments.items() if k != "deploy_mode"}
    run_compiled(
        "monitoring", {**monitoring, "source": str(december), "rollout_plan": PLAN}, tmp_path / "monitoring", pod
    )

    state_uri = arguments["rollout_state_uri"]
    state, _ = load_rollout(state_uri)
    assert (state.status, state.stage.name, state.log_root) == ("running", "shadow", log_root)
    challenger = state.stored.challenger_version
    assert (state.stored.legacy_version, store.status("shop", challenger).status) == (first.version, CANDIDATE)
    assert store.champion("shop").version == first.version
    assert _predictors(cluster) == {"legacy": (100, False), "challenger": (0, True)}
    _check_seldon_predictors(cluster.object("models", "shop"), store, log_root)

    # The model servers' part: shadow traffic scored by both, labelled an hour later.
    started = state.stage_started_at
    traffic(log_root, started + timedelta(seconds=1), 600, challenger_quality=0.7, seed=31)
    step = {
        "state_uri": state_uri,
        "deployment_name": "shop",
        "live_config": {"bootstrap": 200},
        "serving_service_account": SERVICE_ACCOUNT,
        **IMAGES,
    }
    run_compiled("rollout", {**step, "as_of": _iso(started, hours=2)}, tmp_path / "rollout-1", pod)

    assert load_rollout(state_uri)[0].stage.name == "canary-5"
    assert _predictors(cluster) == {"legacy": (95, False), "challenger": (5, False)}
    _check_seldon_predictors(cluster.object("models", "shop"), store, log_root)
    assert store.champion("shop").version == first.version

    # Canary: each request answered by one predictor; the challenger's labels come late, as a warehouse
    # export on gs:// that the rollout pipeline imports before it decides.
    canary_start = started + timedelta(hours=2, seconds=1)
    traffic(log_root, canary_start, 700, challenger_quality=0.7, seed=32, predictors=("legacy",))
    labels_uri = _late_labels(log_root, canary_start, 700, seed=33, at=f"{gcs_bucket}/labels/canary.csv")
    run_compiled(
        "rollout", {**step, "as_of": _iso(started, hours=4), "labels_uri": labels_uri}, tmp_path / "rollout-2", pod
    )

    assert load_rollout(state_uri)[0].status == "promoted"
    assert _predictors(cluster) == {"challenger": (100, False)}
    _check_seldon_predictors(cluster.object("models", "shop"), store, log_root)
    pointer = store.champion_pointer("shop")
    assert (pointer["version"], pointer["previous"], pointer["by"]) == (
        challenger,
        first.version,
        f"rollout {state_uri}",
    )
    assert (store.status("shop", challenger).status, store.status("shop", first.version).status) == (CHAMPION, RETIRED)


def _late_labels(log_root: str, start: datetime, n: int, *, seed: int, at: str) -> str:
    """``n`` requests answered by the challenger, logged without labels; their labels a CSV file at ``at``.

    Returns:
        ``at``, which holds ``request_id,label,labelled_at`` rows (labelled an hour after each prediction).
    """
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(int)
    rows = io.StringIO()
    labels = csv.writer(rows)
    labels.writerow(["request_id", "label", "labelled_at"])
    with PredictionLogWriter(log_root) as writer:
        for i in range(n):
            request_id, moment = f"r{seed}-{i}", start + timedelta(seconds=i)
            score = float(np.clip(0.7 * y[i] + rng.random() * 0.3, 0, 1))
            decision = "decline" if score > 0.9 else "approve"
            writer.log(
                PredictionRecord(request_id, "challenger", "v", {"amount": 10.0}, score, decision, 5.0, "ok", moment)
            )
            labels.writerow([request_id, int(y[i]), (moment + timedelta(hours=1)).isoformat()])
    storage.write_bytes(at, rows.getvalue().encode())
    return at


def _iso(start: datetime, *, hours: int) -> str:
    return (start + timedelta(hours=hours)).astimezone(timezone.utc).isoformat()


@pytest.mark.slow
def test_training_from_yaml_serves_the_champion_on_kserve(
    tmp_path: Path, gcs_bucket: str, cluster: KubeApiStandIn, pod: dict[str, str]
) -> None:
    """platform kserve: our ServingRuntime and an InferenceService, with the images, account and loggers given."""
    store = ModelStore(f"{gcs_bucket}/store")
    source = _upload_csv(_weeks(range(35, 46), 1_000, seed=0), f"{gcs_bucket}/data/autumn.csv")
    arguments = _training_arguments(
        gcs_bucket,
        source=source,
        deploy_mode="single",
        platform="kserve",
        request_logger_url="http://sink.logging.svc/events",
    )

    run_compiled("training", arguments, tmp_path / "training", pod)

    champion = store.champion("shop")
    assert champion is not None
    isvc = cluster.object("models", "shop", "InferenceService")
    assert isvc is not None
    predictor = isvc["spec"]["predictor"]
    assert predictor["serviceAccountName"] == SERVICE_ACCOUNT
    assert predictor["logger"] == {"mode": "all", "url": "http://sink.logging.svc/events"}
    env = _env(predictor["model"])
    assert (env["MODEL_URI"], env["PREDICTION_LOG_URI"]) == (champion.uri, arguments["prediction_log_root"])
    runtime = cluster.object("models", "kfp-mlops-mlserver", "ServingRuntime")
    assert runtime is not None and runtime["spec"]["containers"][0]["image"] == IMAGES["serving_image_v2"]
    assert cluster.object("models", "shop") is None  # no SeldonDeployment


def test_the_image_environment_is_installed_like_the_component_image(tmp_path: Path) -> None:
    """make image-env copies what the Dockerfile copies and installs with the Dockerfile's command, read from it."""
    dockerfile = DOCKERFILE.read_text()
    [install] = re.findall(r"^RUN (pip install .*)$", dockerfile, re.M)
    venv = tmp_path / "venv"
    planned = subprocess.run(
        ["make", "--no-print-directory", "-n", "image-env", f"IMAGE_VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"cp -R {' '.join(image_context())} {venv}/context/\n" in planned
    assert f"cd {venv}/context && " in planned and planned.count(install) == 1, planned
    assert ".[dev" not in install and " -e " not in install
    python = re.search(r"^FROM python:(\d+\.\d+)", dockerfile, re.M)
    assert python and re.search(
        rf"^IMAGE_PYTHON \?= .*python{re.escape(python.group(1))}\b", MAKEFILE.read_text(), re.M
    )
    assert re.search(r"^test: .*\bimage-env\b", MAKEFILE.read_text(), re.M)


def test_a_task_gets_no_environment_from_the_compiled_yaml_but_the_optional_wandb_secret() -> None:
    """The runs get the image's ENV alone: the compiled pipelines add only W&B's key, optional (offline without)."""
    assert {"HOME", "WANDB_DIR"} <= set(image_environment())
    golden = {path.name.split(".")[0] for path in (ROOT / "pipelines" / "compiled").glob("*.yaml")}
    assert golden == set(RUN_HERE), "a new compiled pipeline: run it from its YAML here too"
    for path in sorted((ROOT / "pipelines" / "compiled").glob("*.yaml")):
        documents = list(yaml.safe_load_all(path.read_text()))
        for name, executor in documents[0]["deploymentSpec"]["executors"].items():
            assert "env" not in executor.get("container", {}), (path.name, name)
        for name, settings in (
            (documents[1:] or [{}])[0]
            .get("platforms", {})
            .get("kubernetes", {})
            .get("deploymentSpec", {})
            .get("executors", {})
            .items()
        ):
            assert set(settings) <= {"secretAsEnv"}, (path.name, name)
            [secret] = settings["secretAsEnv"]
            assert secret["optional"] is True and [k["envVar"] for k in secret["keyToEnv"]] == ["WANDB_API_KEY"]
