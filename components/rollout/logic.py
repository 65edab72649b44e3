"""Rollout, the component's side: a decision record as the KFP UI shows it (Markdown and Metrics).

The step itself is :func:`kfp_mlops.rollout.task.run_rollout_step`, shared with the CLI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def rollout_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """A decision's scalars for the KFP Metrics artifact: the action's code, the share, the outcome, the differences."""
    metrics = {
        "action": {"promote": 1.0, "rollback": -1.0}.get(str(record["action"]), 0.0),
        "challenger_share": float(record.get("challenger_share") or 0),
        "promoted": float(record.get("status") == "promoted"),
        "rolled_back": float(record.get("status") == "rolled_back"),
    }
    for metric, interval in ((record.get("comparison") or {}).get("difference") or {}).items():
        if interval.get("value") is not None:
            metrics[f"difference_{metric}"] = float(interval["value"])
    return metrics


def rollout_summary(record: Mapping[str, Any]) -> str:
    """The KFP UI's Markdown of a rollout step: the action, the stages, why, and the live differences."""
    lines = [
        f"# Rollout step: {record['action']}",
        "",
        f"Stage `{record.get('stage')}` → `{record.get('next_stage')}` · status **{record.get('status')}** · "
        f"challenger share {record.get('challenger_share', 0)} %",
        "",
        *(f"- {reason}" for reason in record.get("reasons", [])),
    ]
    differences = (record.get("comparison") or {}).get("difference") or {}
    if differences:
        lines += ["", "| difference (challenger - legacy) | value | low | high |", "|---|---|---|---|"]
        for metric, interval in differences.items():
            cells = ["-" if interval.get(k) is None else f"{interval[k]:.4f}" for k in ("value", "low", "high")]
            lines.append(f"| {metric} | {' | '.join(cells)} |")
    outcome = record.get("store") or {}
    if outcome.get("champion"):
        lines += ["", f"Champion afterwards: `{outcome['champion']}` (challenger {outcome.get('challenger_status')})."]
    return "\n".join(lines) + "\n"
