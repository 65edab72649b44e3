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

:func:`kfp_mlops.rollout.task.run_rollout_step` is the same step from plain parameters: what
``kfp-mlops rollout step`` and the rollout component run.

Every decision and its reasons are written as a JSON artifact next to the state
(``<state folder>/decisions/<time>-<stage>-<action>.json``) and, given a
:class:`~kfp_mlops.rollout.records.Tracking`, logged to W&B (:mod:`kfp_mlops.rollout.records`).

The rollout owns promotion. For registered models (:class:`~kfp_mlops.rollout.state.StoredModels`)
the promotion to 100 % moves the model store's champion pointer to the challenger -- after the
state is saved and the spec applied, by compare-and-swap against the legacy version, checked
again before the decision is saved (a champion that moved meanwhile turns the promotion into a
rollback) -- and every rollback marks the challenger rejected; both record the decision's reasons
(:func:`~kfp_mlops.rollout.records.record_outcome`).

Errors leave the traffic as it is: an invalid plan raises
:class:`~kfp_mlops.rollout.plan.InvalidPlan`; a log that cannot be joined (labels twice, a
request logged twice), a challenger whose model folder does not load (checked in-process before
any spec with it is applied, against the sha256 the rollout state recorded for a registered model)
raise a :class:`RolloutError` naming the problem; starting one while
another runs at the same state document raises ``AlreadyExistsError``. When applying the first
stage or a promotion fails anyway (the challenger's server does not start), the rollout is rolled
back: recorded as a ``rollback`` with the reason, and the legacy-only spec applied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import AlreadyExistsError, ConfigError, MlopsError
from kfp_mlops.rollout.live import CHALLENGER, LEGACY, LiveConfig, compare_live
from kfp_mlops.rollout.plan import PROMOTED, ROLLED_BACK, Decision, InvalidPlan, StagePlan, decide, spec_for
from kfp_mlops.rollout.records import DecisionLog, Tracking, challenger_share, champion_moved, record_outcome
from kfp_mlops.rollout.state import RolloutState, StoredModels, load_rollout, save_rollout, start_rollout
from kfp_mlops.rollout.targets import Target
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


def check_model(uri: str, role: str, state: RolloutState) -> None:
    """Loads one of the rollout's models in-process, as a server would, checked against the state's checksum.

    A registered model (``state.stored``) must be a version of that store whose file matches both
    the sha256 the state recorded (``state.checksums``) and the store's record; any other URI is
    loaded as the servers load it (:meth:`~kfp_mlops.serving.model.ServedModel.load`): a version of
    the ``KFP_MLOPS_STORE`` store, or, with the opt-out, a folder matching ``MODEL_SHA256``.

    Raises:
        RolloutError: it does not load (the message says why).
    """
    from kfp_mlops.serving.model import ServedModel

    settings = Settings.from_env()
    if state.stored is not None:
        settings = dataclasses.replace(settings, store_root=state.stored.store_root)
    try:
        ServedModel.load(uri, settings=settings, sha256=state.checksums.get(uri))
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
    stored: StoredModels | None = None,
    log_root: str = "",
) -> StepResult:
    """Starts a rollout: checks the plan and both models, records the state, applies the first stage.

    Args:
        state_uri: Where the rollout state is recorded.
        plan: The stage plan (a :class:`StagePlan` or its fields).
        legacy_uri: The legacy model's folder (for registered models: the champion's version folder).
        challenger_uri: The challenger's folder.
        base: The deployment whose name, namespace, protocol, labels and replicas every stage keeps.
        target: Where the first stage is applied (None: record only).
        at: When it starts (default: now).
        tracking: Log the start to W&B there (None: not logged).
        stored: Where both models are registered: the rollout's promotion then moves the champion
            pointer, and its rollback rejects the challenger.
        log_root: The prediction log the steps read (recorded; a step may name another).

    Raises:
        InvalidPlan: the plan is invalid (nothing recorded or applied).
        RolloutError: a model does not load (nothing recorded or applied), or applying the first
            stage failed (the rollout is recorded as rolled back, the legacy-only spec applied).
        AlreadyExistsError: a rollout is running at ``state_uri``, or the legacy version is no
            longer champion (nothing recorded or applied).
    """
    try:
        plan = StagePlan.from_dict(plan) if isinstance(plan, Mapping) else plan.validate()
    except InvalidPlan as exc:
        raise InvalidPlan(f"{exc}; nothing started, traffic left as it is") from None
    if stored is not None:
        moved = champion_moved(stored)
        if moved:
            raise AlreadyExistsError(f"{moved}; nothing started, traffic left as it is")
    at = as_utc(at or datetime.now(timezone.utc), "at")
    try:  # the state as it will be recorded, with the checksums both models are loaded against
        planned = RolloutState.start(plan, legacy_uri, challenger_uri, at=at, stored=stored, log_root=log_root)
    except MlopsError as exc:
        raise RolloutError(f"{exc}; nothing started, traffic left as it is") from None
    check_model(legacy_uri, LEGACY, planned)
    check_model(challenger_uri, CHALLENGER, planned)
    state = start_rollout(state_uri, plan, legacy_uri, challenger_uri, at=at, stored=stored, log_root=log_root)
    log = DecisionLog(state_uri, tracking)
    spec = spec_for(state.stage, base, legacy_uri, challenger_uri)
    if target is not None:
        try:
            target.apply(spec)
        except Exception as exc:
            return _rollback_after_failed_apply(log, state, base, target, None, exc, at)
    reasons = (f"rollout started: {', '.join(s.name for s in plan.stages())}",)
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
        log_root: The prediction log's root ("": the one the rollout was started with).
        base: The deployment whose name, namespace, protocol, labels and replicas every stage keeps.
        target: Where specs are applied (None: decide and record only).
        as_of: The time the step looks from (default: now): later predictions and labels are ignored.
        config: Live comparison settings (default: ``LiveConfig()``).
        tracking: Log the decision to W&B there (None: not logged).

    Raises:
        RolloutError: the log cannot be joined or compared, or the challenger does not load;
            nothing recorded, traffic unchanged. Also after a failed apply, once rolled back.
        AlreadyExistsError: another controller moved the rollout meanwhile; nothing applied.
        ConfigError: no ``log_root``, and the rollout recorded none.
    """
    state, version = load_rollout(state_uri)
    log_root = log_root or state.log_root
    at = as_utc(as_of or datetime.now(timezone.utc), "as_of")
    if state.status != "running":
        stage, reasons = state.stage.name, (f"rollout is {state.status}: nothing to decide",)
        # The fields every decision record has, so a scheduled step after the end reports like any other.
        record = {
            "action": "none",
            "stage": stage,
            "next_stage": stage,
            "status": state.status,
            "reasons": list(reasons),
            "challenger_share": challenger_share(stage),
        }
        return StepResult("none", stage, stage, reasons, state, None, None, record)
    if not log_root:
        raise ConfigError(f"{state_uri}: the rollout recorded no prediction log; name its root (log_root)")
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
    moved = champion_moved(state.stored) if state.stored and decision.next_stage == PROMOTED else None
    if moved:
        decision = Decision("rollback", state.stage, ROLLED_BACK, (moved,), decision.comparison)
    new_state = state.apply(decision, at=at)
    spec = None
    if decision.action != "hold":
        spec = spec_for(new_state.stage, base, state.legacy_uri, state.challenger_uri)
        if any(p.name == CHALLENGER for p in spec.predictors):
            check_model(state.challenger_uri, CHALLENGER, state)
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
    decision: Decision | None,
    exc: Exception,
    at: datetime,
) -> StepResult:
    # ``promoted``: the state whose stage could not be applied (the first one, when ``decision`` is None).
    current, version = load_rollout(log.state_uri)
    reason = f"applying {promoted.stage.name} failed ({type(exc).__name__}: {exc}); rolled back"
    comparison = {} if decision is None else decision.comparison
    rollback = Decision("rollback", current.stage, ROLLED_BACK, (reason,), comparison)
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
        comparison=comparison,
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
    try:
        record["store"] = record_outcome(state, action, reasons, by=f"rollout {log.state_uri}")
    except AlreadyExistsError as exc:  # the champion moved between the check and the promotion
        record["store"] = {"error": str(exc)}
        artifact = log.write(record, at)
        raise RolloutError(
            f"the rollout is {state.status}, but the champion pointer was not moved: {exc}; decision recorded at "
            f"{artifact}"
        ) from None
    artifact = log.write(record, at)
    return StepResult(action, stage, next_stage, tuple(reasons), state, spec, artifact, record)


def status(state_uri: str) -> dict[str, Any]:
    """The rollout's status, stage, models (and where they are registered), log and decisions (without comparisons)."""
    state, _ = load_rollout(state_uri)
    return {
        "status": state.status,
        "stage": state.stage.name,
        "stage_started_at": state.stage_started_at.isoformat(),
        "legacy_uri": state.legacy_uri,
        "challenger_uri": state.challenger_uri,
        "stored": None if state.stored is None else state.stored.to_dict(),
        "log_root": state.log_root,
        "plan": state.plan.to_dict(),
        "decisions": [{k: h[k] for k in ("at", "stage", "action", "next_stage", "reasons")} for h in state.history],
    }


def base_spec(name: str, *, namespace: str = "models", protocol: str = "v2") -> DeploymentSpec:
    """A minimal base: only the name, namespace and protocol matter (predictors are replaced)."""
    return dataclasses.replace(DeploymentSpec.single(name, "unused"), namespace=namespace, protocol=protocol)
