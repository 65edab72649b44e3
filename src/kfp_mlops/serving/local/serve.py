"""``kfp-mlops serve``: train if needed, then serve a deployment locally until stopped.

The deployment comes from a spec file (``--spec``), else from the file the deploy component
writes for a local target (``$KFP_MLOPS_HOME/deployments/<name>.json``), else from the model
store's champion as a single predictor; with no champion yet, the training pipeline runs first.
While serving, a change to the spec file is applied in place (a bad spec is reported and the
running deployment keeps serving).
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kfp_mlops.core import storage
from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import MlopsError
from kfp_mlops.modeling.model_bundle import PROFILE_FILE
from kfp_mlops.modeling.model_store import ModelStore
from kfp_mlops.serving.local.stack import LocalStack
from kfp_mlops.serving.spec import DeploymentSpec


def deployment_file(settings: Settings, deployment: str) -> Path:
    """Where the deploy component writes a local deployment's spec."""
    return settings.home / "deployments" / f"{deployment}.json"


def load_spec(path: Path) -> DeploymentSpec:
    """Reads and validates a spec file.

    Raises:
        MlopsError: unreadable or not JSON; InvalidSpec: breaks a deployment rule.
    """
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MlopsError(f"deployment spec {path}: cannot read: {exc}") from None
    return DeploymentSpec.from_dict(doc).validate()


def resolve_spec(
    settings: Settings,
    *,
    spec_path: Path | None,
    deployment: str,
    model_name: str,
    protocol: str,
    train: Callable[[], None],
) -> tuple[DeploymentSpec, Path | None]:
    """The spec to serve and the file to watch for changes (None when built from the store)."""
    if spec_path is not None:
        return load_spec(spec_path), spec_path
    written = deployment_file(settings, deployment)
    if written.exists():
        return load_spec(written), written
    store = ModelStore(settings.store_root)
    if store.champion(model_name) is None:
        train()
    champion = store.champion(model_name)
    if champion is None:
        raise MlopsError(f"no champion of {model_name} in {settings.store_root} after training: its gate failed")
    return DeploymentSpec.single(deployment, champion.uri, protocol=protocol).validate(), None


def typical_row(model_uri: str) -> dict[str, Any]:
    """A plausible input row: each feature's training median, or its most frequent category."""
    profile = storage.read_json(storage.join(model_uri, PROFILE_FILE))
    row: dict[str, Any] = {}
    for name in profile["feature_names"]:
        feature = profile["features"][name]
        if feature["kind"] == "numeric":
            edges = feature["quantile_edges"]
            row[name] = round(edges[len(edges) // 2], 3)
        else:
            row[name] = max(feature["frequencies"], key=feature["frequencies"].get)
    return row


def example_request(spec: DeploymentSpec, row: dict[str, Any], url: str) -> str:
    """A curl command that asks the deployment for one prediction of ``row``."""
    if spec.protocol == "v2":
        body: dict[str, Any] = {
            "inputs": [
                {"name": name, "shape": [1], "datatype": "BYTES" if isinstance(value, str) else "FP64", "data": [value]}
                for name, value in row.items()
            ]
        }
        path = f"/v2/models/{spec.name}/infer"
    else:
        body = {"data": {"names": list(row), "ndarray": [list(row.values())]}}
        path = "/api/v1.0/predictions"
    return f"curl -s {url}{path} -H 'Content-Type: application/json' -d '{json.dumps(body)}'"


def serve_until_stopped(
    spec: DeploymentSpec,
    *,
    workdir: Path,
    port: int,
    watch: Path | None,
    announce: Callable[[str], None],
    stop: threading.Event | None = None,
    poll_seconds: float = 1.0,
    store_root: str | None = None,
) -> None:
    """Serves ``spec`` until SIGINT/SIGTERM (or ``stop`` is set), applying changes to ``watch``.

    The servers load versions of the model store ``store_root`` (None: ``KFP_MLOPS_STORE``).
    """
    stop = stop or threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with LocalStack(workdir, port, store_root=store_root) as stack:
            stack.apply(spec)
            shares = ", ".join(f"{p.name} {'shadow' if p.shadow else f'{p.traffic}%'}" for p in spec.predictors)
            announce(f"Serving deployment {spec.name} ({spec.protocol} protocol) on {stack.url}: {shares}")
            announce("Try:\n  " + example_request(spec, typical_row(spec.live[0].model_uri), stack.url))
            announce("Stop with Ctrl-C.")
            seen = watch.stat().st_mtime_ns if watch and watch.exists() else None
            while not stop.wait(poll_seconds):
                if watch is None or not watch.exists() or watch.stat().st_mtime_ns == seen:
                    continue
                seen = watch.stat().st_mtime_ns
                try:
                    stack.apply(load_spec(watch))
                    announce(f"Applied the changed spec {watch}")
                except MlopsError as exc:
                    announce(f"error: kept the running deployment: {exc}")
            announce("Stopping ...")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
