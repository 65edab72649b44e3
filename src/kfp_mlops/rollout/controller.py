"""The rollout controller: one step of a safe rollout, from the prediction log to the traffic split.

:func:`step` is what runs after every batch of traffic (a loop, a KFP component, ``kfp-mlops
rollout step``):

1. load the rollout (:func:`kfp_mlops.rollout.decisions.load_rollout`) -- a finished one has nothing to do;
2. :func:`kfp_mlops.serving.prediction_log.join` the current stage's window ``[stage_started_at, as_of]``;
3. :func:`~kfp_mlops.rollout.decisions.compare_live` and :func:`~kfp_mlops.rollout.decisions.decide`;
4. save the new state by compare-and-swap (a second controller that moved the rollout meanwhile
   wins; this one changes nothing);
5. for a ``promote`` or ``rollback``, :func:`~kfp_mlops.rollout.decisions.spec_for` the new stage and apply
   it to a :class:`Target`: the local stack (:class:`LocalStackTarget`), the spec file ``kfp-mlops
   serve`` watches (:class:`SpecFileTarget`), or a cluster (:class:`ClusterTarget`: the rendered
   SeldonDeployment through :func:`kfp_mlops.serving.kube_apply.apply_and_wait`).

Every decision and its reasons are written as a JSON artifact next to the state
(``<state folder>/decisions/<time>-<stage>-<action>.json``) and, unless ``track=False``, logged
to W&B (:func:`kfp_mlops.core.tracking.tracked_run`, job type ``rollout``).

Errors leave the traffic as it is: an invalid plan, a log that cannot be joined (labels twice, a
request logged twice), a challenger whose model folder does not load (checked in-process before
any spec with it is applied) raise a :class:`RolloutError` naming the problem. When applying a
promotion fails anyway (the challenger's server does not start), the rollout is rolled back:
recorded as a ``rollback`` with the reason, and the legacy-only spec applied.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from kfp_mlops.core import storage
from kfp_mlops.core.errors import MlopsError
from kfp_mlops.rollout.decisions import (
    CHALLENGER,
    LEGACY,
    ROLLED_BACK,
    Decision,
    LiveConfig,
    RolloutState,
    StagePlan,
    compare_live,
    decide,
    load_rollout,
    save_rollout,
    spec_for,
    start_rollout,
)
from kfp_mlops.serving.prediction_log import as_utc, join
from kfp_mlops.serving.spec import DeploymentSpec

ACTION_CODES = {"hold": 0, "promote": 1, "rollback": -1, "none": 0, "start": 0}


class RolloutError(MlopsError):
    """A rollout step that could not be taken; the traffic was left as it was (unless stated)."""


class Target(Protocol):
    """Where a deployment spec is applied.

    A target may also offer ``unhealthy() -> {predictor: reason}``: a step then rolls back at once
    when the challenger is down (its log would stay silent).
    """

    def apply(self, spec: DeploymentSpec) -> None:
        """Moves the deployment to ``spec``; raises (leaving the previous one serving) on failure."""


@dataclass
class LocalStackTarget:
    """A running :class:`~kfp_mlops.serving.local_stack.LocalStack`."""

    stack: Any

    def apply(self, spec: DeploymentSpec) -> None:
        self.stack.apply(spec)

    def unhealthy(self) -> dict[str, str]:
        """Predictor -> why, for every predictor whose server process is no longer running."""
        return {
            name: f"server process exited with code {server.process.poll()}"
            for name, server in self.stack.servers.items()
            if server.process.poll() is not None
        }


@dataclass
class SpecFileTarget:
    """The deployment spec file that ``kfp-mlops serve`` watches and applies.

    Default path: :func:`kfp_mlops.serving.serve.deployment_file` for the spec's name.
    """

    path: Path | None = None

    def apply(self, spec: DeploymentSpec) -> None:
        from kfp_mlops.core.config import Settings
        from kfp_mlops.serving.serve import deployment_file

        path = self.path or deployment_file(Settings.from_env(), spec.name)
        storage.write_json(str(path), spec.to_dict())


@dataclass
class ClusterTarget:
    """A SeldonDeployment on a cluster: rendered, applied, waited for (restored on failure)."""

    client: Any = None
    timeout_s: float = 600.0

    def apply(self, spec: DeploymentSpec) -> None:
        from kfp_mlops.serving import kube_apply, seldon_deployment

        kube_apply.apply_and_wait(seldon_deployment.render(spec), client=self.client, timeout_s=self.timeout_s)


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
    track: bool = False,
    group: str = "local",
) -> StepResult:
    """Starts a rollout: checks the plan and both models, records the state, applies the first stage.

    Raises:
        InvalidPlan: the plan is invalid (nothing recorded or applied).
        RolloutError: a model does not load (nothing recorded or applied).
        AlreadyExistsError: a rollout is running at ``state_uri``.
    """
    plan = StagePlan.from_dict(plan) if isinstance(plan, Mapping) else plan.validate()
    check_model(legacy_uri, LEGACY)
    check_model(challenger_uri, CHALLENGER)
    at = as_utc(at or datetime.now(timezone.utc), "at")
    state = start_rollout(state_uri, plan, legacy_uri, challenger_uri, at=at)
    spec = spec_for(state.stage, base, legacy_uri, challenger_uri)
    if target is not None:
        target.apply(spec)
    reasons = (f"rollout started: {', '.join(s.name for s in plan.stages())}",)
    return _finish(
        state_uri,
        "start",
        state.stage.name,
        state.stage.name,
        reasons,
        state,
        spec,
        at,
        comparison={},
        track=track,
        group=group,
    )


def step(
    state_uri: str,
    log_root: str,
    *,
    base: DeploymentSpec,
    target: Target | None,
    as_of: datetime | None = None,
    config: LiveConfig = LiveConfig(),
    track: bool = True,
    group: str = "local",
) -> StepResult:
    """One controller step (see the module docstring).

    Args:
        state_uri: The rollout state document.
        log_root: The prediction log's root.
        base: The deployment whose name, namespace, protocol, labels and replicas every stage keeps.
        target: Where specs are applied (None: decide and record only).
        as_of: The time the step looks from (default: now): later predictions and labels are ignored.
        config: Live comparison settings.
        track: Log the decision to W&B.
        group: The W&B group (the KFP pipeline job id).

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
    down = getattr(target, "unhealthy", lambda: {})()
    if CHALLENGER in down:
        # A dead challenger logs nothing, so the log alone would only ever say "hold".
        reason = f"guardrail: the challenger is down ({down[CHALLENGER]}); the router sends its traffic to legacy"
        decision = Decision("rollback", state.stage, ROLLED_BACK, (reason,), {})
        new_state = state.apply(decision, at=at)
        save_rollout(state_uri, new_state, version)
        spec = spec_for(ROLLED_BACK, base, state.legacy_uri, state.challenger_uri)
        if target is not None:
            target.apply(spec)
        return _finish(
            state_uri,
            "rollback",
            state.stage.name,
            ROLLED_BACK.name,
            (reason,),
            new_state,
            spec,
            at,
            comparison={},
            track=track,
            group=group,
        )
    try:
        joined = join(log_root, at, since=state.stage_started_at)
        live = compare_live(joined, legacy=LEGACY, challenger=CHALLENGER, config=config)
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
            return _rollback_after_failed_apply(
                state_uri, new_state, base, target, decision, exc, at, track=track, group=group
            )
    return _finish(
        state_uri,
        decision.action,
        decision.stage.name,
        decision.next_stage.name,
        decision.reasons,
        new_state,
        spec,
        at,
        comparison=decision.comparison,
        track=track,
        group=group,
    )


def _rollback_after_failed_apply(
    state_uri: str,
    promoted: RolloutState,
    base: DeploymentSpec,
    target: Target,
    decision: Decision,
    exc: Exception,
    at: datetime,
    *,
    track: bool,
    group: str,
) -> StepResult:
    current, version = load_rollout(state_uri)
    reason = f"applying {promoted.stage.name} failed ({type(exc).__name__}: {exc}); rolled back"
    rollback = Decision("rollback", current.stage, ROLLED_BACK, (reason,), decision.comparison)
    rolled = current.apply(rollback, at=at) if current.status == "running" else current
    save_rollout(state_uri, rolled, version)
    spec = spec_for(ROLLED_BACK, base, rolled.legacy_uri, rolled.challenger_uri)
    try:
        target.apply(spec)
    except Exception as again:
        raise RolloutError(f"{reason}, but applying the legacy-only spec failed too: {again}") from exc
    result = _finish(
        state_uri,
        "rollback",
        promoted.stage.name,
        ROLLED_BACK.name,
        (reason,),
        rolled,
        spec,
        at,
        comparison=decision.comparison,
        track=track,
        group=group,
    )
    raise RolloutError(f"{reason}; decision recorded at {result.artifact}") from exc


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


def challenger_share(stage_name: str) -> int:
    """The challenger's share of live traffic at a stage (by name)."""
    if stage_name.startswith("canary-"):
        return int(stage_name.split("-", 1)[1])
    return 100 if stage_name == "promoted" else 0


def decisions_folder(state_uri: str) -> str:
    """Where a rollout's decision artifacts go: ``decisions/`` beside the state document."""
    parent = state_uri.rstrip("/").rsplit("/", 1)[0] if "/" in state_uri else "."
    return storage.join(parent, "decisions")


def _finish(
    state_uri: str,
    action: str,
    stage: str,
    next_stage: str,
    reasons: tuple[str, ...],
    state: RolloutState,
    spec: DeploymentSpec | None,
    at: datetime,
    *,
    comparison: Mapping[str, Any],
    track: bool,
    group: str,
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
    name = f"{at:%Y%m%dT%H%M%S%fZ}-{stage}-{action}.json"
    artifact = storage.join(decisions_folder(state_uri), name)
    storage.write_bytes(artifact, (json.dumps(record, indent=2, sort_keys=True, default=str) + "\n").encode())
    if track:
        _track(record, artifact, group)
    return StepResult(action, stage, next_stage, tuple(reasons), state, spec, artifact, record)


def _track(record: Mapping[str, Any], artifact: str, group: str) -> None:
    from kfp_mlops.core.tracking import tracked_run

    metrics: dict[str, float] = {
        "rollout/action": ACTION_CODES.get(record["action"], 0),
        "rollout/challenger_share": record["challenger_share"],
    }
    comparison = record.get("comparison") or {}
    for metric, interval in (comparison.get("difference") or {}).items():
        for key in ("value", "low", "high"):
            if interval.get(key) is not None:
                metrics[f"difference/{metric}/{key}"] = interval[key]
    for predictor, counts in (comparison.get("counts") or {}).items():
        for key in ("requests", "labelled", "positives", "errors"):
            if key in counts:
                metrics[f"counts/{predictor}/{key}"] = counts[key]
    config = {k: record[k] for k in ("stage", "legacy_uri", "challenger_uri")}
    with tracked_run(
        "rollout", group=group, config=config, name=f"rollout-{record['stage']}-{record['action']}"
    ) as run:
        run.log_metrics(metrics)
        run.run.summary.update(
            {
                "action": record["action"],
                "next_stage": record["next_stage"],
                "status": record["status"],
                "reasons": "\n".join(record["reasons"]),
                "artifact": artifact,
            }
        )
        if not storage.is_gcs(artifact):
            path = Path(artifact)
            if path.exists():
                run.run.save(str(path), base_path=str(path.parent), policy="now")


def load_base(doc: Mapping[str, Any] | str | os.PathLike) -> DeploymentSpec:
    """A base deployment spec from a dict, a JSON string or a JSON file path."""
    if isinstance(doc, Mapping):
        return DeploymentSpec.from_dict(doc)
    text = str(doc)
    if text.lstrip().startswith("{"):
        return DeploymentSpec.from_dict(json.loads(text))
    return DeploymentSpec.from_dict(storage.read_json(text))


def base_spec(name: str, *, namespace: str = "models", protocol: str = "v2") -> DeploymentSpec:
    """A minimal base: only the name, namespace and protocol matter (predictors are replaced)."""
    return dataclasses.replace(DeploymentSpec.single(name, "unused"), namespace=namespace, protocol=protocol)
