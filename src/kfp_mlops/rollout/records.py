"""Decision records: every controller action as a JSON document beside the rollout state, a W&B run,
and -- for a rollout of registered models -- its outcome in the model store.

A record (built by :mod:`kfp_mlops.rollout.controller`) holds the time, the action, the stage and
the next one, the status, the reasons, the challenger's traffic share, both models, the spec
applied and the live comparison the decision rests on. :class:`DecisionLog` writes it to
``<state folder>/decisions/<time>-<stage>-<action>.json`` and, given a :class:`Tracking`, logs it
to W&B (:func:`kfp_mlops.core.tracking.tracked_run`, job type ``rollout``; in a KFP task, published
to its ``wandb_page`` and ``wandb_files`` outputs): the decision and the differences as tables, an
alert on a rollback, the action as a code (:data:`ACTION_CODES`), the challenger's share, every
difference's interval and the predictors' counts as metrics, the reasons in the run summary and the
document as a file.

A rollout of registered models (``RolloutState.stored``) owns the champion pointer's next move:
:func:`record_outcome` moves it to the challenger when the rollout is promoted (compare-and-swap:
only while the legacy model is still champion) and marks the challenger ``rejected`` when it is
rolled back; both carry the decision's reasons and who decided (the rollout's state document).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from kfp_mlops.core import storage
from kfp_mlops.core.config import Settings
from kfp_mlops.core.run_outputs import RunOutputs
from kfp_mlops.core.tracking import TrackedRun, registered_artifact, tracked_run
from kfp_mlops.modeling.model_store import CHAMPION, REJECTED, ModelStore, RegisteredVersion
from kfp_mlops.rollout.state import RolloutState, StoredModels

# The action as a W&B metric: a chart of it shows promotions up, rollbacks down.
ACTION_CODES = {"hold": 0, "promote": 1, "rollback": -1, "none": 0, "start": 0}


def challenger_share(stage_name: str) -> int:
    """The challenger's share of live traffic at a stage (by name)."""
    if stage_name.startswith("canary-"):
        return int(stage_name.split("-", 1)[1])
    return 100 if stage_name == "promoted" else 0


def decisions_folder(state_uri: str) -> str:
    """Where a rollout's decision artifacts go: ``decisions/`` beside the state document."""
    parent = state_uri.rstrip("/").rsplit("/", 1)[0] if "/" in state_uri else "."
    return storage.join(parent, "decisions")


def champion_moved(stored: StoredModels) -> str | None:
    """Why the challenger may not become champion (the legacy model no longer is), or None."""
    current = ModelStore(stored.store_root).champion(stored.model_name)
    if current is not None and current.version == stored.legacy_version:
        return None
    now = current.version if current else "nobody"
    return (
        f"the champion of {stored.model_name} is now {now}, not {stored.legacy_version}, the legacy model "
        "this rollout compared the challenger with; the challenger is not promoted"
    )


def record_outcome(state: RolloutState, action: str, reasons: tuple[str, ...], *, by: str) -> dict[str, Any] | None:
    """Records a finished rollout's outcome in the model store (None: nothing to record).

    A promotion to 100 % moves the champion pointer to the challenger, a rollback marks the
    challenger rejected; the legacy model stays champion then.

    Args:
        state: The rollout after the decision.
        action: The decision's action.
        reasons: The decision's reasons (recorded with the move or the rejection).
        by: Who decided (``rollout <state document>``).

    Returns:
        ``champion`` (the version that is champion afterwards) and ``challenger_status``, or None
        for a rollout of model folders, or a decision that finished nothing.

    Raises:
        AlreadyExistsError: the champion moved since the rollout started; the pointer is left as is.
    """
    stored = state.stored
    if stored is None:
        return None
    store = ModelStore(stored.store_root)
    # The state decides, not the action alone: a rollback recorded after another controller
    # finished the rollout (a lost race) must not reject a challenger that rollout promoted.
    if action == "rollback" and state.status == "rolled_back":
        store.record_status(stored.model_name, stored.challenger_version, REJECTED, by=by, reasons=reasons)
        return {"model": stored.model_name, "champion": stored.legacy_version, "challenger_status": REJECTED}
    if action == "promote" and state.status == "promoted":
        challenger = RegisteredVersion(
            stored.model_name,
            stored.challenger_version,
            store.version_uri(stored.model_name, stored.challenger_version),
        )
        store.promote(challenger, expected_champion=stored.legacy_version, by=by, reasons=reasons)
        return {"model": stored.model_name, "champion": stored.challenger_version, "challenger_status": CHAMPION}
    return None


@dataclass(frozen=True)
class Tracking:
    """Where decisions are logged in W&B.

    Attributes:
        settings: The W&B project and entity, read where the command or task started.
        group: The W&B group (the KFP pipeline job id).
        project: A W&B project instead of the settings' one (a pipeline's ``wandb_project``).
        outputs: The KFP task's outputs each finished run is published to, and the KFP UI its config
            links to (None: a run outside KFP, e.g. ``kfp-mlops rollout step``).
    """

    settings: Settings
    group: str = "local"
    project: str | None = None
    outputs: RunOutputs | None = None


@dataclass(frozen=True)
class DecisionLog:
    """Where one rollout's decisions are recorded.

    Attributes:
        state_uri: The rollout state document (the records go beside it).
        tracking: Also log each record to W&B there (None: not logged).
    """

    state_uri: str
    tracking: Tracking | None = None

    def write(self, record: Mapping[str, Any], at: datetime) -> str:
        """Writes ``record`` (made at ``at``) as a JSON artifact, logs it if tracked; returns its URI."""
        name = f"{at:%Y%m%dT%H%M%S%fZ}-{record['stage']}-{record['action']}.json"
        artifact = storage.join(decisions_folder(self.state_uri), name)
        storage.write_bytes(artifact, (json.dumps(record, indent=2, sort_keys=True, default=str) + "\n").encode())
        if self.tracking is not None:
            _track(self.tracking, record, artifact)
        return artifact


def _track(tracking: Tracking, record: Mapping[str, Any], artifact: str) -> None:
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
        "rollout",
        group=tracking.group,
        config=config,
        settings=tracking.settings,
        project=tracking.project,
        name=f"rollout-{record['stage']}-{record['action']}",
        outputs=tracking.outputs,
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
        _track_outcome(run, record)


def _track_outcome(run: TrackedRun, record: Mapping[str, Any]) -> None:
    """The decision as tables, an alert on a rollback, and the Registry aliases following the store."""
    fields = ("at", "action", "stage", "next_stage", "status", "challenger_share", "legacy_uri", "challenger_uri")
    run.log_record("decision", {**{k: record[k] for k in fields}, "reasons": "; ".join(record["reasons"])})
    differences = (record.get("comparison") or {}).get("difference") or {}
    if differences:
        rows = [
            {"metric": metric, **{k: interval.get(k) for k in ("value", "low", "high")}}
            for metric, interval in differences.items()
        ]
        run.log_table("differences", pd.DataFrame(rows, columns=["metric", "value", "low", "high"]))
    if record["action"] == "rollback":
        run.alert(f"Rollout rolled back at {record['stage']}", "; ".join(record["reasons"]), level="ERROR")
    outcome = record.get("store") or {}
    if outcome.get("challenger_status") in (CHAMPION, REJECTED):
        promoted = outcome["challenger_status"] == CHAMPION
        run.log_model_version(
            registered_artifact(outcome["model"]),
            uri=record["challenger_uri"],
            metadata={"status": outcome["challenger_status"], "by": "rollout", "reasons": list(record["reasons"])},
            registered_model=outcome["model"],
            aliases=[CHAMPION] if promoted else [],
            tags=[] if promoted else [REJECTED],
        )
