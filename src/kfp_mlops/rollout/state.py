"""A rollout's state, and its storage: this module does I/O.

:class:`RolloutState` is a plain record -- the plan, the models, the current stage and every
decision so far -- that moves by :meth:`RolloutState.apply` without touching anything. A rollout
of registered models also knows where they are registered (:class:`StoredModels`: the store, the
name, the champion's and the candidate's versions), so that its outcome can move the champion
pointer or reject the candidate, and the prediction log it reads; a state document written before
these existed still loads (without them).
:func:`start_rollout`, :func:`load_rollout` and :func:`save_rollout` read and write it as a JSON
document through :mod:`kfp_mlops.core.storage` (a local path or ``gs://``), moved by
compare-and-swap: a save names the version it read, so when two controllers move one rollout
at once, only the first one's decision is recorded -- and a save whose response was lost and that
the storage client retried is not mistaken for another controller's (:mod:`kfp_mlops.core.storage`).

A rollout of registered models records both models' checksums (``checksums``: model URI to the
sha256 register recorded), so whoever loads them for the rollout checks what it loads against the
state it acts on, not against a file beside the model.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kfp_mlops.core import storage
from kfp_mlops.core.errors import AlreadyExistsError, ConfigError, DataError, StorageError
from kfp_mlops.modeling.model_store import ModelStore
from kfp_mlops.rollout.plan import PROMOTED, ROLLED_BACK, Decision, Stage, StagePlan
from kfp_mlops.serving.prediction_log import as_utc

STATUSES = ("running", "promoted", "rolled_back")


def default_state_uri(store_root: str, deployment: str) -> str:
    """Where a deployment's rollout state lives when none is named: ``<store>/rollouts/<deployment>.json``."""
    return storage.join(store_root, "rollouts", f"{deployment}.json")


def default_log_root(store_root: str, deployment: str) -> str:
    """Where a deployment's prediction log lives when none is named: ``<store>/prediction-log/<deployment>``."""
    return storage.join(store_root, "prediction-log", deployment)


@dataclass(frozen=True)
class StoredModels:
    """Where a rollout's models are registered.

    Attributes:
        store_root: The model store (:class:`~kfp_mlops.modeling.model_store.ModelStore`).
        model_name: The registered model's name.
        legacy_version: The champion when the rollout started (promotion moves the pointer only
            if it still is).
        challenger_version: The candidate rolled out.
    """

    store_root: str
    model_name: str
    legacy_version: str
    challenger_version: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> StoredModels:
        """Parses the state document's ``stored`` entry (KeyError: a key is missing)."""
        return cls(
            store_root=str(doc["store_root"]),
            model_name=str(doc["model_name"]),
            legacy_version=str(doc["legacy_version"]),
            challenger_version=str(doc["challenger_version"]),
        )


@dataclass(frozen=True)
class RolloutState:
    """A rollout's progress: the plan, the models, the current stage and every decision so far.

    Attributes:
        plan: The plan it follows (fixed for the rollout).
        legacy_uri: The legacy model's folder.
        challenger_uri: The challenger's folder.
        stage_index: Index into ``plan.stages()`` of the current (or last running) stage.
        status: ``running``, ``promoted`` or ``rolled_back``.
        stage_started_at: When the current stage began (its live window starts there).
        history: Every decision: time, stage, action, next stage, reasons, comparison.
        stored: Where both models are registered (None: model folders outside a store; the
            rollout's outcome then moves no champion pointer).
        log_root: The prediction log it reads ("": named by every step).
        checksums: The sha256 of each model's file by model URI, as registered (empty: model
            folders outside a store).
    """

    plan: StagePlan
    legacy_uri: str
    challenger_uri: str
    stage_index: int
    status: str
    stage_started_at: datetime
    history: tuple[Mapping[str, Any], ...] = ()
    stored: StoredModels | None = None
    log_root: str = ""
    checksums: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def start(
        cls,
        plan: StagePlan,
        legacy_uri: str,
        challenger_uri: str,
        *,
        at: datetime,
        stored: StoredModels | None = None,
        log_root: str = "",
    ) -> RolloutState:
        """A new rollout at the plan's first stage; a rollout of registered models records their checksums.

        Raises:
            MlopsError: a registered model has no recorded checksum (it could not be loaded).
        """
        checksums: dict[str, str] = {}
        if stored is not None:
            store = ModelStore(stored.store_root)
            checksums = {
                legacy_uri: store.checksum(stored.model_name, stored.legacy_version),
                challenger_uri: store.checksum(stored.model_name, stored.challenger_version),
            }
        return cls(
            plan.validate(), legacy_uri, challenger_uri, 0, "running", as_utc(at, "at"), (), stored, log_root, checksums
        )

    @property
    def stage(self) -> Stage:
        """The current stage (:data:`PROMOTED` or :data:`ROLLED_BACK` once over)."""
        return ROLLED_BACK if self.status == "rolled_back" else self.plan.stages()[self.stage_index]

    def apply(self, decision: Decision, *, at: datetime) -> RolloutState:
        """The state after ``decision``, made at ``at`` (a new stage starts then).

        Raises:
            ConfigError: the rollout is over, or the decision was made for another stage.
        """
        if self.status != "running":
            raise ConfigError(f"rollout is {self.status}: no further decisions apply")
        if decision.stage != self.stage:
            raise ConfigError(f"decision made at stage {decision.stage.name}, but the rollout is at {self.stage.name}")
        at = as_utc(at, "at")
        entry = {
            "at": at.isoformat(),
            "stage": decision.stage.name,
            "action": decision.action,
            "next_stage": decision.next_stage.name,
            "reasons": list(decision.reasons),
            "comparison": dict(decision.comparison),
        }
        changes: dict[str, Any] = {"history": (*self.history, entry)}
        if decision.action == "rollback":
            changes.update(status="rolled_back")
        elif decision.action == "promote":
            changes.update(stage_index=self.stage_index + 1, stage_started_at=at)
            if decision.next_stage == PROMOTED:
                changes.update(status="promoted")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the inverse of :meth:`from_dict`; ``stage`` is there for readers only)."""
        return {
            "plan": self.plan.to_dict(),
            "legacy_uri": self.legacy_uri,
            "challenger_uri": self.challenger_uri,
            "stage_index": self.stage_index,
            "stage": self.stage.name,
            "status": self.status,
            "stage_started_at": self.stage_started_at.isoformat(),
            "history": [dict(h) for h in self.history],
            "stored": None if self.stored is None else self.stored.to_dict(),
            "log_root": self.log_root,
            "checksums": dict(self.checksums),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> RolloutState:
        """Parses a state document (one written before ``stored`` and ``log_root`` existed too).

        Raises:
            DataError: a key is missing or a value is invalid.
        """
        try:
            state = cls(
                plan=StagePlan.from_dict(doc["plan"]),
                legacy_uri=doc["legacy_uri"],
                challenger_uri=doc["challenger_uri"],
                stage_index=int(doc["stage_index"]),
                status=doc["status"],
                stage_started_at=datetime.fromisoformat(doc["stage_started_at"]),
                history=tuple(doc.get("history", ())),
                stored=StoredModels.from_dict(doc["stored"]) if doc.get("stored") else None,
                log_root=str(doc.get("log_root") or ""),
                checksums={str(k): str(v) for k, v in (doc.get("checksums") or {}).items()},
            )
        except KeyError as exc:
            raise DataError(f"rollout state: missing key {exc}") from None
        except (TypeError, ValueError, ConfigError) as exc:
            raise DataError(f"rollout state: {exc}") from None
        stages = state.plan.stages()
        consistent = (
            state.status in STATUSES
            and 0 <= state.stage_index < len(stages)
            and (state.status == "promoted") == (stages[state.stage_index] == PROMOTED)
        )
        if not consistent:
            raise DataError(
                f"rollout state: status {state.status!r} at stage index {state.stage_index} is inconsistent"
            )
        return state


def start_rollout(
    uri: str,
    plan: StagePlan,
    legacy_uri: str,
    challenger_uri: str,
    *,
    at: datetime,
    stored: StoredModels | None = None,
    log_root: str = "",
) -> RolloutState:
    """Records a new rollout at ``uri``; a finished one there is replaced, a running one is not.

    Raises:
        AlreadyExistsError: a rollout is running at ``uri``, or another controller wrote it meanwhile.
    """
    data, version = storage.read_versioned(uri)
    if data is not None:
        refuse_running(uri, _parse(uri, data))
    state = RolloutState.start(plan, legacy_uri, challenger_uri, at=at, stored=stored, log_root=log_root)
    save_rollout(uri, state, version)
    return state


def running_rollout(uri: str) -> RolloutState | None:
    """The rollout running at ``uri``, or None when there is none (no document, or a finished one).

    Raises:
        DataError: the document there is not a rollout state.
    """
    data, _ = storage.read_versioned(uri)
    if data is None:
        return None
    state = _parse(uri, data)
    return state if state.status == "running" else None


def refuse_running(uri: str, state: RolloutState | None) -> None:
    """Refuses to go on while ``state`` (the one at ``uri``) is running.

    Raises:
        AlreadyExistsError: it is running; the message names its challenger and stage.
    """
    if state is not None and state.status == "running":
        raise AlreadyExistsError(
            f"{uri}: a rollout of {state.challenger_uri} is running at {state.stage.name}; finish or roll it back first"
        )


def load_rollout(uri: str) -> tuple[RolloutState, str]:
    """The rollout recorded at ``uri`` and its version token for :func:`save_rollout`.

    Raises:
        StorageError: nothing is recorded there.
        DataError: the document is not a rollout state.
    """
    data, version = storage.read_versioned(uri)
    if data is None or version is None:
        raise StorageError(f"{uri}: no rollout recorded (start one with start_rollout)")
    return _parse(uri, data), version


def save_rollout(uri: str, state: RolloutState, expected_version: str | None) -> None:
    """Writes ``state`` if the stored one still has ``expected_version`` (compare-and-swap).

    Raises:
        AlreadyExistsError: another controller moved the rollout since it was read; not written.
    """
    data = (json.dumps(state.to_dict(), indent=2, sort_keys=True) + "\n").encode()
    try:
        storage.compare_and_swap(uri, data, expected_version)
    except AlreadyExistsError:
        raise AlreadyExistsError(
            f"{uri}: another controller moved the rollout since it was read; this decision was not recorded"
        ) from None


def _parse(uri: str, data: bytes) -> RolloutState:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise DataError(f"{uri}: not valid JSON: {exc}") from None
    try:
        return RolloutState.from_dict(doc)
    except DataError as exc:
        raise DataError(f"{uri}: {exc}") from None
