"""The drift trend across checks, built from the Evidently snapshots two real reports saved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kfp_mlops.drift.config import DriftConfig
from kfp_mlops.drift.report import build_report
from kfp_mlops.drift.trend import add_to_workspace, drift_trend, snapshot_scores

PROFILE = {"feature_names": ["a", "b"], "features": {"a": {"kind": "numeric"}, "b": {"kind": "numeric"}}}


def _window(rng: np.random.Generator, shift: float) -> pd.DataFrame:
    return pd.DataFrame({"a": rng.normal(shift, 1, 400), "b": rng.normal(0, 1, 400)})


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("snapshots")
    rng = np.random.default_rng(0)
    reference = _window(rng, 0.0)
    paths = []
    for week, shift in enumerate([0.0, 1.5]):  # a calm week, then feature a moves
        snapshot = root / f"week-{week}.json"
        facts = build_report(
            reference,
            _window(rng, shift),
            PROFILE,
            root / f"week-{week}.html",
            config=DriftConfig(),
            snapshot_path=snapshot,
        )
        assert facts["snapshot"] == str(snapshot)
        paths.append(snapshot)
    return paths


def test_the_trend_shows_the_feature_that_moved(snapshots: list[Path]) -> None:
    trend = drift_trend(reversed(snapshots))  # any order: oldest first afterwards
    assert list(trend["snapshot"]) == [str(p) for p in snapshots]
    assert {"timestamp", "drifted_columns", "drift_share", "drift_a", "drift_b"} <= set(trend.columns)
    calm, moved = trend.to_dict("records")
    assert moved["drift_a"] > 5 * calm["drift_a"]  # Evidently's PSI of a jumps when a shifts
    assert moved["drift_b"] < 0.2 and calm["drift_b"] < 0.2
    assert (calm["drifted_columns"], moved["drifted_columns"]) == (0.0, 1.0)


def test_snapshots_go_into_an_evidently_workspace(tmp_path: Path, snapshots: list[Path]) -> None:
    ids = add_to_workspace(tmp_path / "workspace", "iris drift", snapshots)
    again = add_to_workspace(tmp_path / "workspace", "iris drift", snapshots[:1])  # the same project is reused

    from evidently.ui.workspace import Workspace

    space = Workspace(str(tmp_path / "workspace"))
    [project] = space.search_project("iris drift")
    assert {str(s) for s in space.list_runs(project.id)} == set(ids + again)


def test_a_file_that_is_not_a_snapshot_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "verdict.json"
    bad.write_text('{"drift": true}')
    with pytest.raises(ValueError, match=r"verdict\.json: not an Evidently snapshot"):
        snapshot_scores(bad)
