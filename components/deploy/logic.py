"""Deploy: serve a registered candidate, alone, beside the champion, or through a safe rollout.

The deploy step decides how a newly registered model (a *candidate*, see components/register)
reaches traffic, and whether it becomes champion:

* ``single`` serves it alone and moves the champion pointer to it: the user's explicit choice,
  and what the first model of a name always gets (there is no champion to compare it with);
* ``ab`` gives it ``ab_traffic`` percent beside the champion, ``shadow`` mirrors requests to it;
  neither moves the pointer;
* ``rollout`` starts a safe rollout against the current champion
  (:func:`kfp_mlops.rollout.controller.start`): the rollout state is recorded and its first stage
  (shadow) applied; the rollout's own steps promote the candidate -- moving the pointer -- or
  reject it.

On a cluster the deployment runs on Seldon Core (a ``SeldonDeployment``) or KServe (our
``ServingRuntime`` and an ``InferenceService``), chosen by ``platform``
(:mod:`kfp_mlops.serving.cluster.platform`). KServe has no shadow predictor: mode ``shadow`` is
refused there, and a rollout needs a plan without the shadow stage (``{"shadow": false}``). Every
rendered deployment logs its predictions to the prediction log (``prediction_log_root``, default
``<store_root>/prediction-log/<deployment_name>``), which a rollout's steps read; KServe's own
request logger is added with ``request_logger_url``.

Everything is checked before anything is written, applied or moved: the mode, target and platform,
the champion (still the one the candidate was evaluated against, when the pointer is to move or a
rollout to start), no rollout running for the deployment (it owns the deployment until it ends),
the spec and the rendered objects, ``gs://`` model URIs and prediction log for a cluster, a
stored model behind every URI, and the sha256 in register's record (``registered["sha256"]``)
equal to the one the store recorded for the version (the servers check the model file against
it). The champion pointer moves only after the spec was applied.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kfp_mlops.core import storage
from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import ConfigError, MlopsError
from kfp_mlops.core.run_outputs import RunOutputs
from kfp_mlops.core.tracking import ArtifactRef, registered_artifact, tracked_run
from kfp_mlops.modeling.model_bundle import METADATA_FILE
from kfp_mlops.modeling.model_store import CANDIDATE, CHAMPION, ModelStore, RegisteredVersion
from kfp_mlops.rollout import controller
from kfp_mlops.rollout.plan import StagePlan, spec_for
from kfp_mlops.rollout.state import (
    StoredModels,
    default_log_root,
    default_state_uri,
    refuse_running,
    running_rollout,
)
from kfp_mlops.rollout.task import refuse_local_target_in_pod
from kfp_mlops.serving.cluster import kube_apply, platform
from kfp_mlops.serving.cluster.resources import ServingOptions, to_yaml
from kfp_mlops.serving.local.serve import deployment_file
from kfp_mlops.serving.spec import DeploymentSpec

MODES = ("single", "ab", "shadow", "rollout")
TARGETS = ("local", "cluster", "none")


@dataclass(frozen=True)
class RolloutStart:
    """The safe rollout a ``rollout`` deployment starts.

    Attributes:
        plan: Its stage plan.
        state_uri: Where its state is recorded.
        log_root: The prediction log its steps read.
        legacy_uri: The champion's version folder (the legacy model).
    """

    plan: StagePlan
    state_uri: str
    log_root: str
    legacy_uri: str


@dataclass(frozen=True)
class DeploymentPlan:
    """What a deploy will do, decided and checked before anything is written.

    Attributes:
        mode: The mode it deploys with (``single`` for the first model of a name, whatever was asked).
        spec: The deployment (for a rollout: its first stage).
        reasons: Why this mode, and why the champion moves (when it does).
        champion: The champion the new model was evaluated against (None: none yet).
        rollout: The rollout it starts (``rollout`` only).
    """

    mode: str
    spec: DeploymentSpec
    reasons: tuple[str, ...]
    champion: str | None
    rollout: RolloutStart | None = None

    @property
    def crowns(self) -> bool:
        """Whether the champion pointer moves to the new model (mode ``single``)."""
        return self.mode == "single"


def _static_spec(
    registered: dict[str, Any],
    store: ModelStore,
    *,
    mode: str,
    other_model_uri: str,
    ab_traffic: int,
    deployment_name: str,
    namespace: str,
    protocol: str,
) -> DeploymentSpec:
    """The deployment of a registered model in mode ``single``, ``ab`` or ``shadow`` (not yet validated).

    The registered model is the newcomer: ``single`` serves it alone; ``ab`` gives it
    ``ab_traffic`` percent of live traffic as predictor ``b`` beside ``a``, the other model;
    ``shadow`` mirrors every request to it while the other model answers. The other model is
    ``other_model_uri``, else the champion the registered model was evaluated against.
    """
    new_uri = storage.canonical_uri(registered["uri"])
    name, options = deployment_name, {"namespace": namespace, "protocol": protocol}
    if mode == "single":
        return DeploymentSpec.single(name, new_uri, **options)
    other = storage.canonical_uri(other_model_uri or store.version_uri(registered["name"], registered["champion"]))
    if mode == "ab":
        return DeploymentSpec.ab(name, other, new_uri, ab_traffic, **options)
    return DeploymentSpec.with_shadow(name, other, new_uri, **options)


def plan_deployment(
    registered: dict[str, Any],
    *,
    store_root: str,
    deployment_name: str,
    namespace: str,
    protocol: str,
    mode: str,
    other_model_uri: str = "",
    ab_traffic: int = 10,
    rollout_plan: Mapping[str, Any] | None = None,
    rollout_state_uri: str = "",
    prediction_log_root: str = "",
    platform_name: str = "seldon",
) -> DeploymentPlan:
    """Decides the mode, checks the champion and the running rollout, and builds the (validated) spec.

    ``platform_name`` is the cluster's serving platform (``seldon`` or ``kserve``: a rollout on KServe
    must skip the shadow stage).

    Raises:
        ConfigError: unknown mode, ``other_model_uri`` where it means nothing, an invalid rollout
            plan (every problem listed), or a rollout starting in shadow on KServe.
        AlreadyExistsError: the champion moved since the evaluation, or a rollout is running for
            the deployment.
        MlopsError: the store recorded no sha256 for the version, or another one than register's record.
        InvalidSpec: the deployment breaks a rule.
    """
    if mode not in MODES:
        raise ConfigError(f"deploy mode {mode!r}: unknown; choose one of {', '.join(MODES)}")
    if other_model_uri and mode not in ("ab", "shadow"):
        raise ConfigError(f"other_model_uri={other_model_uri!r}: only modes ab and shadow serve a second model")
    stage_plan = StagePlan.from_dict(rollout_plan or {})
    name, champion = registered["name"], registered.get("champion")
    store = ModelStore(store_root)
    recorded = store.checksum(name, registered["version"])
    if registered.get("sha256") != recorded:  # register's record and the store's must name the same model
        raise MlopsError(
            f"model {name} version {registered['version']}: register recorded sha256 {registered.get('sha256')!r}, "
            f"the store {recorded}; not deployed"
        )
    state_uri = rollout_state_uri or default_state_uri(store_root, deployment_name)
    # A running rollout owns the deployment and the champion's next move until it ends.
    refuse_running(state_uri, running_rollout(state_uri))
    first_model = champion is None and not other_model_uri
    if first_model:
        mode = "single"
    if mode in ("single", "rollout"):
        store.check_champion(name, champion)  # the pointer moves, or the rollout starts, against it
    new_uri = storage.canonical_uri(registered["uri"])
    if mode == "rollout":
        if platform_name == "kserve" and stage_plan.shadow:
            raise ConfigError(
                "a rollout on KServe cannot start in shadow (KServe has no shadow predictor): "
                'set rollout_plan {"shadow": false} to start at the first canary step'
            )
        legacy_uri = storage.canonical_uri(store.version_uri(name, str(champion)))
        base = controller.base_spec(deployment_name, namespace=namespace, protocol=protocol)
        rollout = RolloutStart(
            stage_plan, state_uri, prediction_log_root or default_log_root(store_root, deployment_name), legacy_uri
        )
        stages = ", ".join(s.name for s in stage_plan.stages())
        reasons = (f"safe rollout against champion {champion}: {stages}",)
        return DeploymentPlan(
            mode, spec_for(stage_plan.stages()[0], base, legacy_uri, new_uri), reasons, champion, rollout
        )
    spec = _static_spec(
        registered,
        store,
        mode=mode,
        other_model_uri=other_model_uri,
        ab_traffic=ab_traffic,
        deployment_name=deployment_name,
        namespace=namespace,
        protocol=protocol,
    ).validate()
    if first_model:
        reasons = (f"first model of {name}: no champion to compare it with, so it is deployed single",)
    elif mode == "single":
        reasons = (f"deployed single on request, replacing champion {champion}",)
    else:
        reasons = (f"{mode} beside {spec.predictors[0].model_uri}; the champion stays {champion}",)
    return DeploymentPlan(mode, spec, reasons, champion)


def run_deploy(
    registered_path: str,
    manifest_path: str,
    *,
    settings: Settings,
    store_root: str,
    deployment_name: str = "iris",
    namespace: str = "models",
    protocol: str = "v2",
    mode: str = "rollout",
    other_model_uri: str = "",
    ab_traffic: int = 10,
    rollout_plan: Mapping[str, Any] | None = None,
    rollout_state_uri: str = "",
    prediction_log_root: str = "",
    target: str = "local",
    platform_name: str = "seldon",
    serving_image_v2: str = "",
    serving_image_seldon: str = "",
    service_account: str = "",
    request_logger_url: str = "",
    timeout_seconds: int = 600,
    pipeline_job_id: str = "local",
    wandb_project: str = "",
    uses: tuple[ArtifactRef, ...] = (),
    outputs: RunOutputs | None = None,
) -> dict[str, Any]:
    """Plans and checks the deployment (:func:`plan_deployment`), then applies it and moves the champion.

    ``manifest_path`` receives the cluster objects' YAML in every target (for ``kserve`` two
    documents: the ServingRuntime, then the InferenceService). ``local`` writes the spec to
    ``$KFP_MLOPS_HOME/deployments/<name>.json`` (atomically), where ``kfp-mlops serve`` picks it
    up; ``cluster`` applies it with :func:`kfp_mlops.serving.cluster.platform.deploy`; ``none``
    applies nothing (the champion still moves for ``single``, a rollout is still recorded). The
    other arguments are the component's parameters (``component.py``).

    Args:
        registered_path: register's record (name, version, uri, sha256, status, the champion it was compared with).
        manifest_path: where the cluster objects' YAML is written.
        settings: the default model-server images, and the home of the local stack's spec files.
        prediction_log_root: the servers' ``PREDICTION_LOG_URI``, which a rollout reads (empty:
            ``<store_root>/prediction-log/<deployment_name>``).
        platform_name: ``seldon`` or ``kserve``, the cluster's serving platform.
        serving_image_v2, serving_image_seldon: the model-server images (empty: ``settings``').
        service_account: the model-server pods' service account (empty: the namespace's default).
        request_logger_url: KServe only: where its request logger sends every request and response.

    Returns:
        name, namespace, protocol, mode (as deployed), requested mode, target, state, the model's
        name and version, its status and the champion afterwards, the reasons, the predictors with
        their traffic and model URIs, the spec file (local), the cluster apply's result (cluster),
        and for a rollout its state document, prediction log and stage.

    Raises:
        ConfigError: a bad parameter, or target ``local`` in a Kubernetes pod (a task on a cluster);
        InvalidSpec: the deployment breaks a rule (lists them all);
        AlreadyExistsError: the champion moved since the evaluation, or a rollout is running;
        MlopsError: a model URI holds no model; ClusterError / ApplyFailed: see ``apply_and_wait``;
        RolloutError: the rollout's first stage could not be applied (recorded as rolled back).
    """
    if target not in TARGETS:
        raise ConfigError(f"deploy target {target!r}: unknown; choose one of {', '.join(TARGETS)}")
    refuse_local_target_in_pod(target, "deploy_target")
    platform.check_platform(platform_name)
    log_root = prediction_log_root or default_log_root(store_root, deployment_name)
    serving = ServingOptions.from_settings(
        settings,
        image_v2=serving_image_v2,
        image_seldon=serving_image_seldon,
        service_account=service_account,
        prediction_log_uri=log_root,
        request_logger_url=request_logger_url,
        store_root=store_root,
    )
    registered = json.loads(Path(registered_path).read_text())
    plan = plan_deployment(
        registered,
        store_root=store_root,
        deployment_name=deployment_name,
        namespace=namespace,
        protocol=protocol,
        mode=mode,
        other_model_uri=other_model_uri,
        ab_traffic=ab_traffic,
        rollout_plan=rollout_plan,
        rollout_state_uri=rollout_state_uri,
        prediction_log_root=log_root,
        platform_name=platform_name,
    )
    spec = plan.spec
    manifests = platform.render(spec, platform=platform_name, serving=serving)
    if target == "cluster":
        local = [f"{p.name}: {p.model_uri}" for p in spec.predictors if not storage.is_gcs(p.model_uri)]
        if not storage.is_gcs(log_root):
            local.append(f"prediction log (the servers write it): {log_root}")
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
        "platform": platform_name,
    }
    with tracked_run(
        "deploy", group=pipeline_job_id, config=params, settings=settings, project=wandb_project, outputs=outputs
    ) as run:
        Path(manifest_path).write_text("---\n".join(to_yaml(manifest) for manifest in manifests))
        applier = _Applier(settings, target, platform_name, serving, timeout_seconds)
        try:
            if plan.rollout is not None:
                _start_rollout(plan.rollout, plan, registered, store_root, applier)
            else:
                applier.apply(spec)
        except kube_apply.ApplyFailed as failed:
            run.run.summary.update({"state": failed.result.state or "timeout", "restored": failed.result.restored})
            raise
        if plan.crowns:
            new = RegisteredVersion(registered["name"], registered["version"], registered["uri"])
            ModelStore(store_root).promote(
                new, expected_champion=plan.champion, by="deploy single", reasons=plan.reasons
            )
            # The same stored files, so the same W&B version: ``champion`` moves to it.
            run.log_model_version(
                registered_artifact(registered["name"]),
                uri=registered["uri"],
                metadata={"version": registered["version"], "status": CHAMPION, "by": "deploy single"},
                registered_model=registered["name"],
                aliases=[CHAMPION],
            )
        record = _record(
            plan,
            registered,
            requested_mode=mode,
            target=target,
            platform_name=platform_name,
            prediction_log_root=log_root,
            applied=applier.outcome,
        )
        run.run.summary.update({k: record[k] for k in ("name", "namespace", "target", "mode", "state", "version")})
        run.run.summary.update({f"traffic/{name}": share for name, share in record["traffic"].items()})
        run.log_artifact(
            f"{spec.name}-{manifests[-1]['kind'].lower()}",
            "deployment",
            uri=manifest_path,
            metadata=record,
            uses=uses,
        )
    return record


@dataclass
class _Applier:
    """Applies a spec the way this step applies any deployment, and keeps what happened (a rollout's target too)."""

    settings: Settings
    target: str
    platform_name: str
    serving: ServingOptions
    timeout_seconds: int
    outcome: dict[str, Any] = field(
        default_factory=lambda: {"state": "not applied", "spec_path": None, "rollout": None}
    )

    def apply(self, spec: DeploymentSpec) -> None:
        if self.target == "local":
            path = deployment_file(self.settings, spec.name)
            storage.write_json(str(path), spec.to_dict())
            self.outcome = {"state": "written", "spec_path": str(path), "rollout": None}
        elif self.target == "cluster":
            result = platform.deploy(
                spec, platform=self.platform_name, serving=self.serving, timeout_s=self.timeout_seconds
            )
            self.outcome = {"state": result.state, "spec_path": None, "rollout": result.to_dict()}


def _start_rollout(
    rollout: RolloutStart, plan: DeploymentPlan, registered: dict[str, Any], store_root: str, applier: _Applier
) -> None:
    """Records the rollout and applies its first stage through ``applier`` (nothing applied for target none)."""
    controller.start(
        rollout.state_uri,
        rollout.plan,
        rollout.legacy_uri,
        storage.canonical_uri(registered["uri"]),
        base=controller.base_spec(plan.spec.name, namespace=plan.spec.namespace, protocol=plan.spec.protocol),
        target=None if applier.target == "none" else applier,
        stored=StoredModels(store_root, registered["name"], str(plan.champion), registered["version"]),
        log_root=rollout.log_root,
    )


def _record(
    plan: DeploymentPlan,
    registered: dict[str, Any],
    *,
    requested_mode: str,
    target: str,
    platform_name: str,
    prediction_log_root: str,
    applied: dict[str, Any],
) -> dict[str, Any]:
    spec, rollout = plan.spec, plan.rollout
    return {
        "name": spec.name,
        "namespace": spec.namespace,
        "protocol": spec.protocol,
        "mode": plan.mode,
        "requested_mode": requested_mode,
        "target": target,
        "platform": platform_name,
        "model": registered["name"],
        "version": registered["version"],
        "status": CHAMPION if plan.crowns else CANDIDATE,
        "champion": registered["version"] if plan.crowns else plan.champion,
        "reasons": list(plan.reasons),
        "predictors": [
            {"name": p.name, "model_uri": p.model_uri, "traffic": p.traffic, "shadow": p.shadow, "replicas": p.replicas}
            for p in spec.predictors
        ],
        "traffic": {p.name: p.traffic for p in spec.predictors},
        "model_uris": {p.name: p.model_uri for p in spec.predictors},
        **applied,
        "rollout_state_uri": None if rollout is None else rollout.state_uri,
        "prediction_log_root": prediction_log_root,
        "stage": None if rollout is None else rollout.plan.stages()[0].name,
    }


def render_summary(record: Mapping[str, Any]) -> str:
    """The KFP UI's Markdown summary of a deployment: mode, state, champion, why, and the predictors."""
    lines = [
        f"# Deployed `{record['model']}` version `{record['version']}` as `{record['name']}`",
        "",
        f"Mode **{record['mode']}** (asked: {record['requested_mode']}) · target `{record['target']}` "
        f"({record['platform']}) · state `{record['state']}` · champion afterwards `{record['champion']}`",
        "",
        *(f"- {reason}" for reason in record["reasons"]),
        "",
        "| predictor | traffic | shadow | model |",
        "|---|---|---|---|",
        *(
            f"| {p['name']} | {p['traffic']} % | {'yes' if p['shadow'] else 'no'} | `{p['model_uri']}` |"
            for p in record["predictors"]
        ),
    ]
    if record.get("stage"):
        lines += ["", f"Safe rollout started at stage `{record['stage']}`; state: `{record['rollout_state_uri']}`."]
    return "\n".join(lines) + "\n"
