"""One controller step from plain parameters: what ``kfp-mlops rollout step`` and the rollout component run.

The parameters are what a command line or a KFP task has -- a target's name, an ISO time,
:class:`~kfp_mlops.rollout.live.LiveConfig` fields -- checked before the step
(:func:`kfp_mlops.rollout.controller.step`) runs; the decision document goes to a given path (the
component's output artifact).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.rollout.controller import base_spec, step
from kfp_mlops.rollout.live import LiveConfig
from kfp_mlops.rollout.records import Tracking
from kfp_mlops.rollout.targets import make_target


def parse_as_of(as_of: str) -> datetime | None:
    """The time a step looks from, given as an ISO date-time (empty: None, meaning now).

    Raises:
        ConfigError: not an ISO date-time.
    """
    try:
        return datetime.fromisoformat(as_of) if as_of else None
    except ValueError:
        raise ConfigError(f"as_of {as_of!r}: not an ISO date-time (e.g. 2026-11-02T12:00:00+00:00)") from None


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
    pipeline_job_id: str = "local",
    wandb_project: str = "",
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
        target: ``local`` (the spec file of ``kfp-mlops serve``), ``cluster`` (SeldonDeployment)
            or ``none`` (decide and record only).
        as_of: ISO time the step looks from (empty: now).
        live_config: :class:`~kfp_mlops.rollout.live.LiveConfig` fields (e.g. ``{"bootstrap": 2000}``).
        timeout_seconds: How long a cluster deployment may take to become Available.
        pipeline_job_id: The W&B group.
        wandb_project: The W&B project (empty: the settings' one).

    Returns:
        The decision document (action, stage, next stage, reasons, challenger share, spec,
        comparison, the artifact beside the state, the target).

    Raises:
        ConfigError: a bad parameter; RolloutError, AlreadyExistsError: see
            :func:`~kfp_mlops.rollout.controller.step`.
    """
    config = LiveConfig.from_dict(live_config or {})
    moment = parse_as_of(as_of)
    base = base_spec(deployment_name, namespace=namespace, protocol=protocol).validate()
    result = step(
        state_uri,
        log_root,
        base=base,
        target=make_target(target, settings=settings, deployment=deployment_name, timeout_seconds=timeout_seconds),
        as_of=moment,
        config=config,
        tracking=Tracking(settings, group=pipeline_job_id, project=wandb_project or None),
    )
    record = {**dict(result.record), "artifact": result.artifact, "target": target}
    Path(decision_path).parent.mkdir(parents=True, exist_ok=True)
    Path(decision_path).write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return record
