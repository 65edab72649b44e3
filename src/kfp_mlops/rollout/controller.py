"""The rollout controller: one step of a safe rollout, from the prediction log to the traffic split.

:func:`step` is what runs after every batch of traffic (a loop, a KFP component, ``kfp-mlops
rollout step``):

1. load the rollout (:func:`kfp_mlops.rollout.state.load_rollout`) -- a finished one has nothing to do;
2. :func:`kfp_mlops.serving.prediction_log.join` the current stage's window ``[stage_started_at, as_of]``;
3. :func:`~kfp_mlops.rollout.live.compare_live` and :func:`~kfp_mlops.rollout.plan.decide`;
4. save the new state by compare-and-swap (a second controller that moved the rollout meanwhile
   wins; this one changes nothing);
5. for a ``promote`` or ``rollback``, :func:`~kfp_mlops.rollout.plan.spec_for` the new stage and
   apply it to a :class:`~kfp_mlops.rollout.targets.Target`: the local stack, the spec file
   ``kfp-mlops serve`` watches, or a cluster (the rendered SeldonDeployment through
   :func:`kfp_mlops.serving.cluster.kube_apply.apply_and_wait`).

:func:`run_rollout_step` is the same step from plain parameters (a target's name, an ISO time,
``LiveConfig`` fields), writing its decision document to a given path: what ``kfp-mlops rollout
step`` and the rollout component run.

Every decision and its reasons are written as a JSON artifact next to the state
(``<state folder>/decisions/<time>-<stage>-<action>.json``) and, given a
:class:`~kfp_mlops.rollout.records.Tracking`, logged to W&B (:mod:`kfp_mlops.rollout.records`).

Errors leave the traffic as it is: an invalid plan raises
:class:`~kfp_mlops.rollout.plan.InvalidPlan`; a log that cannot be joined (labels twice, a
request logged twice), a challenger whose model folder does not load (checked in-process before
any spec with it is applied) raise a :class:`RolloutError` naming the problem. When applying a
promotion fails anyway (the challenger's server does not start), the rollout is rolled back:
recorded as a ``rollback`` with the reason, and the legacy-only spec applied.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import ConfigError, MlopsError
from kfp_mlops.rollout.live import CHALLENGER, LEGACY, LiveConfig, compare_live
from kfp_mlops.rollout.plan import ROLLED_BACK, Decision, InvalidPlan, StagePlan, decide, spec_for
from kfp_mlops.rollout.records import DecisionLog, Tracking, challenger_share
from kfp_mlops.rollout.state import RolloutState, load_rollout, save_rollout, start_rollout
from kfp_mlops.rollout.targets import Target, make_target
from kfp_mlops.serving.prediction_log import as_utc, join
from kfp_mlops.serving.spec import DeploymentSpec


class RolloutError(MlopsError):
    """A rollout step that could not be taken; the traffic was left as it was (unless stated)."""


@dataclass(frozen=True)
class StepResult:
    """What one controller step did.

    Attributes:
        action: ``promote``, ``hold``, ``rollback``, ``start`` or ``none`` (the rollout was over).
        stage: The stage the decision was made at.
        next_stage: The stage after it.
        reasons: Why.
        state: The rollout after the step.
        spec: The spec applied (None: traffic unchanged).
        artifact: URI of the decision's JSON artifact (None for ``none``).
        record: The decision document written there.
    """

    action: str
    stage: str
    next_stage: str
    reasons: tuple[str, ...]
    state: RolloutState
    spec: DeploymentSpec | None
    artifact: str | None
    record: Mapping[str, Any]


def check_model(uri: str, role: str = CHALLENGER) -> None:
    """Loads the model folder in-process, as a server would.

    Raises:
        RolloutError: it does not load (the message says why).
    """
    from kfp_mlops.serving.model import ServedModel

    try:
        ServedModel.load(uri)
    except Exception as exc:
        raise RolloutError(
            f"the {role} model at {uri} does not load ({type(exc).__name__}: {exc}); traffic left as it is"
        ) from None


def start(
    state_uri: str,
    plan: StagePlan | Mapping[str, Any],
    legacy_uri: str,
    challenger_uri: str,
    *,
    base: DeploymentSpec,
    target: Target | None,
    at: datetime | None = None,
    tracking: Tracking | None = None,
) -> StepResult:
    """Starts a rollout: checks the plan and both models, records the state, applies the first stage.

    ``tracking``: log the start to W&B there (None: not logged).

    Raises:
        InvalidPlan: the plan is invalid (nothing recorded or applied).
        RolloutError: a model does not load (nothing recorded or applied).
        AlreadyExistsError: a rollout is running at ``state_uri``.
    """
    try:
        plan = StagePlan.from_dict(plan) if isinstance(plan, Mapping) else plan.validate()
    except InvalidPlan as exc:
        raise InvalidPlan(f"{exc}; nothing started, traffic left as it is") from None
    check_model(legacy_uri, LEGACY)
    check_model(challenger_uri, CHALLENGER)
    at = as_utc(at or datetime.now(timezone.utc), "at")
    state = start_rollout(state_uri, plan, legacy_uri, challenger_uri, at=at)
    spec = spec_for(state.stage, base, legacy_uri, challenger_uri)
    if target is not None:
        target.apply(spec)
    reasons = (f"rollout started: {', '.join(s.name for s in plan.stages())}",)
    log = DecisionLog(state_uri, tracking)
    return _finish(log, "start", state.stage.name, state.stage.name, reasons, state, spec, at, comparison={})


def step(
    state_uri: str,
    log_root: str,
    *,
    base: DeploymentSpec,
    target: Target | None,
    as_of: datetime | None = None,
    config: LiveConfig | None = None,
    tracking: Tracking | None = None,
) -> StepResult:
    """One controller step (see the module docstring).

    Args:
        state_uri: The rollout state document.
        log_root: The prediction log's root.
        base: The deployment whose name, namespace, protocol, labels and replicas every stage keeps.
        target: Where specs are applied (None: decide and record only).
        as_of: The time the step looks from (default: now): later predictions and labels are ignored.
        config: Live comparison settings (default: ``LiveConfig()``).
        tracking: Log the decision to W&B there (None: not logged).

    Raises:
        RolloutError: the log cannot be joined or compared, or the challenger does not load;
            nothing recorded, traffic unchanged. Also after a failed apply, once rolled back.
        AlreadyExistsError: another controller moved the rollout meanwhile; nothing applied.
    """
    state, version = load_rollout(state_uri)
    at = as_utc(as_of or datetime.now(timezone.utc), "as_of")
    if state.status != "running":
        stage = state.stage.name
        return StepResult(
            "none",
            stage,
            stage,
            (f"rollout is {state.status}: nothing to decide",),
            state,
            None,
            None,
            {"action": "none", "status": state.status},
        )
    log = DecisionLog(state_uri, tracking)
    down: dict[str, str] = getattr(target, "unhealthy", dict)()
    if CHALLENGER in down:
        return _roll_back_a_dead_challenger(log, state, version, base, target, down[CHALLENGER], at)
    try:
        joined = join(log_root, at, since=state.stage_started_at)
        live = compare_live(joined, legacy=LEGACY, challenger=CHALLENGER, config=config or LiveConfig())
    except MlopsError as exc:
        raise RolloutError(
            f"rollout step at {state.stage.name}: {exc}; nothing decided, traffic left as it is"
        ) from None
    decision = decide(state.plan, state.stage, live)
    new_state = state.apply(decision, at=at)
    spec = None
    if decision.action != "hold":
        spec = spec_for(new_state.stage, base, state.legacy_uri, state.challenger_uri)
        if any(p.name == CHALLENGER for p in spec.predictors):
            check_model(state.challenger_uri)
    save_rollout(state_uri, new_state, version)
    if spec is not None and target is not None:
        try:
            target.apply(spec)
        except Exception as exc:
            if decision.action == "rollback":
                raise RolloutError(f"rollback recorded but applying the legacy-only spec failed: {exc}") from exc
            return _rollback_after_failed_apply(log, new_state, base, target, decision, exc, at)
    return _finish(
        log,
        decision.action,
        decision.stage.name,
        decision.next_stage.name,
        decision.reasons,
        new_state,
        spec,
        at,
        comparison=decision.comparison,
    )


def _roll_back_a_dead_challenger(
    log: DecisionLog,
    state: RolloutState,
    version: str,
    base: DeploymentSpec,
    target: Target | None,
    why: str,
    at: datetime,
) -> StepResult:
    # A dead challenger logs nothing, so the log alone would only ever say "hold".
    reason = f"guardrail: the challenger is down ({why}); the router sends its traffic to legacy"
    decision = Decision("rollback", state.stage, ROLLED_BACK, (reason,), {})
    new_state = state.apply(decision, at=at)
    save_rollout(log.state_uri, new_state, version)
    spec = spec_for(ROLLED_BACK, base, state.legacy_uri, state.challenger_uri)
    if target is not None:
        target.apply(spec)
    return _finish(log, "rollback", state.stage.name, ROLLED_BACK.name, (reason,), new_state, spec, at, comparison={})


def _rollback_after_failed_apply(
    log: DecisionLog,
    promoted: RolloutState,
    base: DeploymentSpec,
    target: Target,
    decision: Decision,
    exc: Exception,
    at: datetime,
) -> StepResult:
    current, version = load_rollout(log.state_uri)
    reason = f"applying {promoted.stage.name} failed ({type(exc).__name__}: {exc}); rolled back"
    rollback = Decision("rollback", current.stage, ROLLED_BACK, (reason,), decision.comparison)
    rolled = current.apply(rollback, at=at) if current.status == "running" else current
    save_rollout(log.state_uri, rolled, version)
    spec = spec_for(ROLLED_BACK, base, rolled.legacy_uri, rolled.challenger_uri)
    try:
        target.apply(spec)
    except Exception as again:
        raise RolloutError(f"{reason}, but applying the legacy-only spec failed too: {again}") from exc
    result = _finish(
        log,
        "rollback",
        promoted.stage.name,
        ROLLED_BACK.name,
        (reason,),
        rolled,
        spec,
        at,
        comparison=decision.comparison,
    )
    raise RolloutError(f"{reason}; decision recorded at {result.artifact}") from exc


def _finish(
    log: DecisionLog,
    action: str,
    stage: str,
    next_stage: str,
    reasons: tuple[str, ...],
    state: RolloutState,
    spec: DeploymentSpec | None,
    at: datetime,
    *,
    comparison: Mapping[str, Any],
) -> StepResult:
    record = {
        "at": at.isoformat(),
        "action": action,
        "stage": stage,
        "next_stage": next_stage,
        "status": state.status,
        "reasons": list(reasons),
        "challenger_share": challenger_share(next_stage),
        "legacy_uri": state.legacy_uri,
        "challenger_uri": state.challenger_uri,
        "spec": None if spec is None else spec.to_dict(),
        "comparison": dict(comparison),
    }
    artifact = log.write(record, at)
    return StepResult(action, stage, next_stage, tuple(reasons), state, spec, artifact, record)


def status(state_uri: str) -> dict[str, Any]:
    """The rollout's status, stage, models and its decisions (without the comparisons)."""
    state, _ = load_rollout(state_uri)
    return {
        "status": state.status,
        "stage": state.stage.name,
        "stage_started_at": state.stage_started_at.isoformat(),
        "legacy_uri": state.legacy_uri,
        "challenger_uri": state.challenger_uri,
        "plan": state.plan.to_dict(),
        "decisions": [{k: h[k] for k in ("at", "stage", "action", "next_stage", "reasons")} for h in state.history],
    }


def base_spec(name: str, *, namespace: str = "models", protocol: str = "v2") -> DeploymentSpec:
    """A minimal base: only the name, namespace and protocol matter (predictors are replaced)."""
    return dataclasses.replace(DeploymentSpec.single(name, "unused"), namespace=namespace, protocol=protocol)


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
        log_root: The prediction log's root.
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
        ConfigError: a bad parameter; RolloutError, AlreadyExistsError: see :func:`step`.
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
