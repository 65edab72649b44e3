"""Rollout step: one decision of a safe rollout (promote, hold or roll back) and the traffic change it implies."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from kfp_mlops.core.errors import ConfigError

TARGETS = ("local", "cluster", "none")


def make_target(target: str, *, timeout_seconds: float = 600.0) -> Any:
    """The controller target for a name: the spec file ``kfp-mlops serve`` watches, a cluster, or none.

    Raises:
        ConfigError: unknown target.
    """
    from kfp_mlops.rollout import controller as rc

    if target == "local":
        return rc.SpecFileTarget()
    if target == "cluster":
        return rc.ClusterTarget(timeout_s=timeout_seconds)
    if target == "none":
        return None
    raise ConfigError(f"rollout target {target!r}: unknown; choose one of {', '.join(TARGETS)}")


def run_rollout_step(
    decision_path: str,
    *,
    state_uri: str,
    log_root: str,
    deployment_name: str,
    namespace: str = "models",
    protocol: str = "v2",
    target: str = "local",
    as_of: str = "",
    live_config: dict[str, Any] | None = None,
    timeout_seconds: int = 600,
    pipeline_job_id: str = "local",
    wandb_project: str = "",
) -> dict[str, Any]:
    """Runs one controller step and writes its decision document to ``decision_path``.

    Args:
        decision_path: where the decision JSON goes (the component's output artifact).
        state_uri: the rollout state document (local path or ``gs://``).
        log_root: the prediction log's root.
        deployment_name, namespace, protocol: the deployment every stage keeps.
        target: ``local`` (the spec file of ``kfp-mlops serve``), ``cluster`` (SeldonDeployment)
            or ``none`` (decide and record only).
        as_of: ISO time the step looks from (empty: now).
        live_config: :class:`kfp_mlops.rollout.decisions.LiveConfig` fields (e.g. ``{"bootstrap": 2000}``).
        timeout_seconds: how long a cluster rollout may take to become Available.
        pipeline_job_id, wandb_project: W&B group and project.

    Returns:
        The decision document (action, stage, next stage, reasons, challenger share, spec, comparison).

    Raises:
        ConfigError: a bad parameter; RolloutError, AlreadyExistsError: see ``rollout_controller.step``.
    """
    import dataclasses
    import os

    from kfp_mlops.rollout import controller as rc
    from kfp_mlops.rollout.decisions import LiveConfig

    known = {f.name for f in dataclasses.fields(LiveConfig)}
    unknown = sorted(set(live_config or {}) - known)
    if unknown:
        raise ConfigError(f"live_config: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    config = LiveConfig(**(live_config or {}))
    try:
        moment = datetime.fromisoformat(as_of) if as_of else None
    except ValueError:
        raise ConfigError(f"as_of {as_of!r}: not an ISO date-time (e.g. 2026-11-02T12:00:00+00:00)") from None
    base = rc.base_spec(deployment_name, namespace=namespace, protocol=protocol).validate()
    if wandb_project:
        os.environ.setdefault("WANDB_PROJECT", wandb_project)
    result = rc.step(
        state_uri,
        log_root,
        base=base,
        target=make_target(target, timeout_seconds=timeout_seconds),
        as_of=moment,
        config=config,
        track=True,
        group=pipeline_job_id,
    )
    record = {**dict(result.record), "artifact": result.artifact, "target": target}
    Path(decision_path).parent.mkdir(parents=True, exist_ok=True)
    Path(decision_path).write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return record
