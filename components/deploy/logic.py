"""Deploy: serve the registered model, on this machine's local stack or as a SeldonDeployment on a cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kfp_mlops.core import storage
from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import ConfigError, MlopsError
from kfp_mlops.core.tracking import tracked_run
from kfp_mlops.modeling.model_bundle import METADATA_FILE
from kfp_mlops.modeling.model_store import ModelStore
from kfp_mlops.serving.cluster import kube_apply, seldon_deployment
from kfp_mlops.serving.local.serve import deployment_file
from kfp_mlops.serving.spec import DeploymentSpec

MODES = ("single", "ab", "shadow")
TARGETS = ("local", "cluster")


def build_spec(
    registered: dict[str, Any],
    *,
    store_root: str,
    deployment_name: str,
    namespace: str,
    protocol: str,
    mode: str,
    other_model_uri: str = "",
    ab_traffic: int = 10,
) -> DeploymentSpec:
    """The deployment for a registered model (not yet validated).

    The registered model is the newcomer: ``single`` serves it alone; ``ab`` gives it
    ``ab_traffic`` percent of live traffic as predictor ``b`` beside ``a``, the other model;
    ``shadow`` mirrors every request to it while the other model answers. The other model is
    ``other_model_uri``, else the champion the registration replaced.

    Raises:
        ConfigError: unknown mode, or no other model for ``ab`` / ``shadow``.
    """
    if mode not in MODES:
        raise ConfigError(f"deploy mode {mode!r}: unknown; choose one of {', '.join(MODES)}")
    new_uri = storage.canonical_uri(registered["uri"])
    options = {"namespace": namespace, "protocol": protocol}
    if mode == "single":
        if other_model_uri:
            raise ConfigError(f"other_model_uri={other_model_uri!r}: only modes ab and shadow serve a second model")
        return DeploymentSpec.single(deployment_name, new_uri, **options)
    if other_model_uri:
        other = storage.canonical_uri(other_model_uri)
    else:
        other = _previous_champion_uri(registered, store_root, mode)
    if mode == "ab":
        return DeploymentSpec.ab(deployment_name, other, new_uri, ab_traffic, **options)
    return DeploymentSpec.with_shadow(deployment_name, other, new_uri, **options)


def run_deploy(
    registered_path: str,
    manifest_path: str,
    *,
    settings: Settings,
    store_root: str,
    deployment_name: str = "iris",
    namespace: str = "models",
    protocol: str = "v2",
    mode: str = "single",
    other_model_uri: str = "",
    ab_traffic: int = 10,
    target: str = "local",
    timeout_seconds: int = 600,
    pipeline_job_id: str = "local",
    wandb_project: str = "",
) -> dict[str, Any]:
    """Builds, renders and checks the deployment, then writes it for the local stack or rolls it out.

    Everything is checked before anything is written or applied: the spec and the rendered
    SeldonDeployment (every problem listed at once), ``gs://`` model URIs for a cluster, and a
    stored model behind every URI. ``manifest_path`` receives the SeldonDeployment YAML in both
    targets. ``local`` writes the spec to ``$KFP_MLOPS_HOME/deployments/<name>.json`` (atomically),
    where ``kfp-mlops serve`` picks it up; ``cluster`` applies it with
    :func:`kfp_mlops.serving.cluster.kube_apply.apply_and_wait`. The other arguments are the
    component's parameters (``component.py``).

    Args:
        registered_path: register's record (name, version, uri, previous champion).
        manifest_path: where the SeldonDeployment YAML is written.
        settings: the model-server images, and the home of the local stack's spec files.

    Returns:
        name, namespace, protocol, mode, target, state, the model's name and version, the
        predictors with their traffic and model URIs, the spec file (local) or the rollout (cluster).

    Raises:
        ConfigError: a bad parameter; InvalidSpec: the deployment breaks a rule (lists them all);
        MlopsError: a model URI holds no model; ClusterError / ApplyFailed: see ``apply_and_wait``.
    """
    if target not in TARGETS:
        raise ConfigError(f"deploy target {target!r}: unknown; choose one of {', '.join(TARGETS)}")
    registered = json.loads(Path(registered_path).read_text())
    spec = build_spec(
        registered,
        store_root=store_root,
        deployment_name=deployment_name,
        namespace=namespace,
        protocol=protocol,
        mode=mode,
        other_model_uri=other_model_uri,
        ab_traffic=ab_traffic,
    )
    manifest = seldon_deployment.render(spec, settings=settings)
    if target == "cluster":
        local = [f"{p.name}: {p.model_uri}" for p in spec.predictors if not storage.is_gcs(p.model_uri)]
        if local:
            raise ConfigError(
                f"deployment {spec.name!r}: pods cannot read local model paths; use a gs:// "
                f"store for target cluster ({'; '.join(local)})"
            )
    missing = [
        f"{p.name}: {p.model_uri}"
        for p in spec.predictors
        if not storage.exists(storage.join(p.model_uri, METADATA_FILE))
    ]
    if missing:
        raise MlopsError(f"deployment {spec.name!r}: no stored model at {'; '.join(missing)}")

    params = {
        "deployment_name": deployment_name,
        "namespace": namespace,
        "protocol": protocol,
        "mode": mode,
        "other_model_uri": other_model_uri,
        "ab_traffic": ab_traffic,
        "target": target,
    }
    with tracked_run("deploy", group=pipeline_job_id, config=params, settings=settings, project=wandb_project) as run:
        Path(manifest_path).write_text(seldon_deployment.to_yaml(manifest))
        record = {
            "name": spec.name,
            "namespace": spec.namespace,
            "protocol": spec.protocol,
            "mode": mode,
            "target": target,
            "model": registered["name"],
            "version": registered["version"],
            "predictors": [
                {
                    "name": p.name,
                    "model_uri": p.model_uri,
                    "traffic": p.traffic,
                    "shadow": p.shadow,
                    "replicas": p.replicas,
                }
                for p in spec.predictors
            ],
            "traffic": {p.name: p.traffic for p in spec.predictors},
            "model_uris": {p.name: p.model_uri for p in spec.predictors},
            "spec_path": None,
            "rollout": None,
        }
        if target == "local":
            path = deployment_file(settings, spec.name)
            storage.write_json(str(path), spec.to_dict())
            record.update(state="written", spec_path=str(path))
        else:
            try:
                result = kube_apply.apply_and_wait(manifest, timeout_s=timeout_seconds)
            except kube_apply.ApplyFailed as failed:
                run.run.summary.update({"state": failed.result.state or "timeout", "restored": failed.result.restored})
                raise
            record.update(state=result.state, rollout=result.to_dict())
        run.run.summary.update({k: record[k] for k in ("name", "namespace", "target", "mode", "state", "version")})
        run.run.summary.update({f"traffic/{name}": share for name, share in record["traffic"].items()})
        run.log_artifact(
            f"{spec.name}-seldondeployment",
            "deployment",
            uri=manifest_path,
            metadata=record,
            uses=[f"{registered['name']}:latest"],
        )
    return record


def _previous_champion_uri(registered: dict[str, Any], store_root: str, mode: str) -> str:
    previous = registered.get("previous_champion")
    if not previous:
        raise ConfigError(
            f"deploy mode {mode!r} needs a second model, and {registered['name']} {registered['version']} replaced "
            "no champion (its first registration): pass other_model_uri, or deploy with mode single"
        )
    return ModelStore(store_root).version_uri(registered["name"], previous)
