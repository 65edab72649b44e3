"""One controller step from plain parameters: what ``kfp-mlops rollout step`` and the rollout component run.

The parameters are what a command line or a KFP task has -- a target's name, an ISO time,
:class:`~kfp_mlops.rollout.live.LiveConfig` fields, the cluster's serving platform and images --
checked before the step (:func:`kfp_mlops.rollout.controller.step`) runs; the decision document
goes to a given path (the component's output artifact).

A cluster stage is rendered with the same serving options the deploy step used: the platform, the
images, the model servers' service account, KServe's request logger and, as every server's
``PREDICTION_LOG_URI``, the prediction log the step reads (given, or the one the rollout
recorded); a stage rendered without it would leave the next step nothing to compare. Target
``local`` is refused in a Kubernetes pod: the spec file would stay in the pod and nothing would serve.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.core.run_outputs import RunOutputs
from kfp_mlops.rollout.controller import base_spec, step
from kfp_mlops.rollout.live import LiveConfig
from kfp_mlops.rollout.records import Tracking
from kfp_mlops.rollout.state import load_rollout
from kfp_mlops.rollout.targets import TARGETS, make_target
from kfp_mlops.serving.cluster import kube_apply
from kfp_mlops.serving.cluster.platform import check_platform
from kfp_mlops.serving.cluster.resources import ServingOptions


def parse_as_of(as_of: str) -> datetime | None:
    """The time a step looks from, given as an ISO date-time (empty: None, meaning now).

    Raises:
        ConfigError: not an ISO date-time.
    """
    try:
        return datetime.fromisoformat(as_of) if as_of else None
    except ValueError:
        raise ConfigError(f"as_of {as_of!r}: not an ISO date-time (e.g. 2026-11-02T12:00:00+00:00)") from None


def rollout_log_root(state_uri: str, log_root: str = "") -> str:
    """``log_root`` if given, else the prediction log the rollout at ``state_uri`` recorded ("" if none).

    Raises:
        StorageError: no rollout is recorded at ``state_uri``; DataError: not a rollout state.
    """
    return log_root or load_rollout(state_uri)[0].log_root


def refuse_local_target_in_pod(target: str, parameter: str) -> None:
    """Refuses target ``local`` when this process runs in a Kubernetes pod (a pipeline task on a cluster).

    Raises:
        ConfigError: naming ``parameter`` and the values that work there.
    """
    if target == "local" and kube_apply.in_pod():
        raise ConfigError(
            f"{parameter} local: this task runs in a Kubernetes pod, where the local spec file would stay in the "
            f"pod and nothing would serve it; set {parameter} to cluster (or none: apply nothing)"
        )


def run_rollout_step(
    decision_path: str,
    *,
    settings: Settings,
    state_uri: str,
    log_root: str,
    deployment_name: str,
    namespace: str = "models",
    protocol: str = "v2",
    target: str = "local",
    as_of: str = "",
    live_config: Mapping[str, Any] | None = None,
    timeout_seconds: int = 600,
    platform: str = "seldon",
    serving_image_v2: str = "",
    serving_image_seldon: str = "",
    service_account: str = "",
    request_logger_url: str = "",
    pipeline_job_id: str = "local",
    wandb_project: str = "",
    outputs: RunOutputs | None = None,
) -> dict[str, Any]:
    """Runs one controller step from plain parameters and writes its decision document to ``decision_path``.

    Every parameter is checked before the step runs.

    Args:
        decision_path: Where the decision JSON goes (e.g. the component's output artifact).
        settings: Where the local spec files live, the model-server images, the W&B project and
            entity (read once by the caller, where its command or task started).
        state_uri: The rollout state document (local path or ``gs://``).
        log_root: The prediction log's root ("": the one the rollout was started with).
        deployment_name: The deployment every stage keeps.
        namespace: Its Kubernetes namespace.
        protocol: ``v2`` or ``seldon``.
        target: ``local`` (the spec file of ``kfp-mlops serve``; refused in a Kubernetes pod),
            ``cluster`` (the platform's resources) or ``none`` (decide and record only).
        as_of: ISO time the step looks from (empty: now).
        live_config: :class:`~kfp_mlops.rollout.live.LiveConfig` fields (e.g. ``{"bootstrap": 2000}``).
        timeout_seconds: How long a cluster deployment may take to become Available.
        platform: The cluster's serving platform, ``seldon`` or ``kserve``.
        serving_image_v2, serving_image_seldon: The model-server images (empty: ``settings``').
        service_account: The model-server pods' service account (empty: the namespace's default).
        request_logger_url: KServe only: where its request logger sends every request and response.
        pipeline_job_id: The W&B group.
        wandb_project: The W&B project (empty: the settings' one).
        outputs: A KFP task's outputs the decision's W&B run is published to (None: none).

    Returns:
        The decision document (action, stage, next stage, reasons, challenger share, spec,
        comparison, the artifact beside the state, the target and platform).

    Raises:
        ConfigError: a bad parameter, or target ``local`` in a Kubernetes pod; RolloutError,
            AlreadyExistsError: see :func:`~kfp_mlops.rollout.controller.step`.
    """
    config = LiveConfig.from_dict(live_config or {})
    moment = parse_as_of(as_of)
    base = base_spec(deployment_name, namespace=namespace, protocol=protocol).validate()
    check_platform(platform)
    if target not in TARGETS:
        raise ConfigError(f"rollout target {target!r}: unknown; choose one of {', '.join(TARGETS)}")
    refuse_local_target_in_pod(target, "target")
    log_root = rollout_log_root(state_uri, log_root)
    # Registered models: the cluster's servers load versions of their store only.
    stored = load_rollout(state_uri)[0].stored if target == "cluster" else None
    serving = ServingOptions.from_settings(
        settings,
        image_v2=serving_image_v2,
        image_seldon=serving_image_seldon,
        service_account=service_account,
        prediction_log_uri=log_root,
        request_logger_url=request_logger_url,
        store_root=stored.store_root if stored else settings.store_root,
    )
    result = step(
        state_uri,
        log_root,
        base=base,
        target=make_target(
            target,
            settings=settings,
            deployment=deployment_name,
            timeout_seconds=timeout_seconds,
            platform=platform,
            serving=serving,
        ),
        as_of=moment,
        config=config,
        tracking=Tracking(settings, group=pipeline_job_id, project=wandb_project or None, outputs=outputs),
    )
    record = {**dict(result.record), "artifact": result.artifact, "target": target, "platform": platform}
    Path(decision_path).parent.mkdir(parents=True, exist_ok=True)
    Path(decision_path).write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return record
