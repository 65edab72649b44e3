"""A rollout's state, and its storage: this module does I/O.

:class:`RolloutState` is a plain record -- the plan, the models, the current stage and every
decision so far -- that moves by :meth:`RolloutState.apply` without touching anything.
:func:`start_rollout`, :func:`load_rollout` and :func:`save_rollout` read and write it as a JSON
document through :mod:`kfp_mlops.core.storage` (a local path or ``gs://``), moved by
compare-and-swap: a save names the version it read, so when two controllers move one rollout
at once, only the first one's decision is recorded.
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
from kfp_mlops.rollout.plan import PROMOTED, ROLLED_BACK, Decision, Stage, StagePlan
from kfp_mlops.serving.prediction_log import as_utc

STATUSES = ("running", "promoted", "rolled_back")


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
    """

    plan: StagePlan
    legacy_uri: str
    challenger_uri: str
    stage_index: int
    status: str
    stage_started_at: datetime
    history: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def start(cls, plan: StagePlan, legacy_uri: str, challenger_uri: str, *, at: datetime) -> RolloutState:
        """A new rollout at the plan's first stage."""
        return cls(plan.validate(), legacy_uri, challenger_uri, 0, "running", as_utc(at, "at"))

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
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> RolloutState:
        """Parses a state document.

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


def start_rollout(uri: str, plan: StagePlan, legacy_uri: str, challenger_uri: str, *, at: datetime) -> RolloutState:
    """Records a new rollout at ``uri``; a finished one there is replaced, a running one is not.

    Raises:
        AlreadyExistsError: a rollout is running at ``uri``, or another controller wrote it meanwhile.
    """
    data, version = storage.read_versioned(uri)
    if data is not None:
        current = _parse(uri, data)
        if current.status == "running":
            raise AlreadyExistsError(
                f"{uri}: a rollout of {current.challenger_uri} is running at {current.stage.name}; "
                "finish or roll it back first"
            )
    state = RolloutState.start(plan, legacy_uri, challenger_uri, at=at)
    save_rollout(uri, state, version)
    return state


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
