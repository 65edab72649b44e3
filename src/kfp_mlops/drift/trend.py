"""Drift over time: the trend across drift checks, read back from their Evidently snapshots.

Each drift check with reference rows saves its Evidently report's snapshot
(:func:`kfp_mlops.drift.report.build_report`'s ``snapshot_path``; the drift_check component's
``snapshot`` output). :func:`drift_trend` reads any number of them into one table, one row per
check, for a notebook's chart; :func:`add_to_workspace` adds them to a local Evidently workspace
(``evidently ui --workspace <folder>``), whose dashboards show the same trend.

The numbers are Evidently's (equal-width bins over both samples), not the verdict's PSI
(reference-quantile bins): compare checks with each other, not with the verdict's thresholds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

_VALUE_DRIFT = re.compile(r"^ValueDrift\(column=(?P<column>[^,]+),")


def snapshot_scores(path: str | Path) -> dict[str, Any]:
    """One snapshot's time, drifted share and per-column drift score (``drift_<column>``).

    Raises:
        ValueError: the file is not an Evidently snapshot (as ``Snapshot.dumps`` writes it).
    """
    from evidently.core.report import Snapshot

    try:
        snapshot = Snapshot.load(str(path))
    except Exception as exc:  # pydantic's ValidationError, json's JSONDecodeError...
        raise ValueError(f"{path}: not an Evidently snapshot ({type(exc).__name__})") from None
    row: dict[str, Any] = {"timestamp": snapshot._timestamp, "snapshot": str(path)}
    for metric in snapshot.dict()["metrics"]:
        name, value = metric["metric_name"], metric["value"]
        if name.startswith("DriftedColumnsCount"):
            row["drifted_columns"], row["drift_share"] = float(value["count"]), float(value["share"])
        elif match := _VALUE_DRIFT.match(name):
            row[f"drift_{match['column']}"] = float(value)
    return row


def drift_trend(paths: Iterable[str | Path]) -> pd.DataFrame:
    """The drift trend across checks: one row per snapshot, oldest first.

    Columns: ``timestamp``, ``snapshot``, ``drifted_columns``, ``drift_share`` and ``drift_<column>``
    for every column checked (empty where a check did not score it).
    """
    import pandas as pd

    rows = [snapshot_scores(path) for path in paths]
    return pd.DataFrame(rows).sort_values("timestamp", ignore_index=True) if rows else pd.DataFrame()


def add_to_workspace(workspace: str | Path, project: str, paths: Iterable[str | Path]) -> list[str]:
    """Adds snapshots to a local Evidently workspace's project (created when missing).

    Returns:
        The snapshot ids the workspace gave them.
    """
    from evidently.core.report import Snapshot
    from evidently.ui.workspace import Workspace

    space = Workspace.create(str(workspace))
    found = space.search_project(project)
    target = found[0] if found else space.create_project(project)
    return [str(space.add_run(target.id, Snapshot.load(str(path))).id) for path in paths]
