"""What a decided retrain reads (kfp_mlops.drift.retrain_inputs): the history before the window, checked first."""

from __future__ import annotations

from pathlib import Path

import pytest

from kfp_mlops.core.errors import DataError
from kfp_mlops.demos import ecommerce
from kfp_mlops.drift import RetrainPolicy, gather_retraining_data, history_before
from kfp_mlops.modeling.model_bundle import ModelBundle


def _weeks(folder: Path, weeks: list[int], rows: int = 400) -> list[str]:
    folder.mkdir(exist_ok=True)
    paths = []
    for week in weeks:
        paths.append(str(folder / f"week-{week:02d}.parquet"))
        ecommerce.generate([week], rows, seed=week).to_parquet(paths[-1])
    return paths


def test_history_is_the_most_recent_windows_before_the_current_one(tmp_path: Path) -> None:
    """A folder that also holds later weeks never teaches the past the future; the window itself is left out."""
    paths = _weeks(tmp_path / "windows", [44, 45, 46, 47, 48])
    assert history_before(paths[3], str(tmp_path / "windows"), 2) == paths[1:3]
    assert history_before(paths[3], str(tmp_path / "windows"), 10) == paths[:3]
    assert history_before(paths[3], str(tmp_path / "windows"), 0) == []
    # A window from elsewhere: the most recent windows of the folder.
    elsewhere = _weeks(tmp_path / "incoming", [49])[0]
    assert history_before(elsewhere, str(tmp_path / "windows"), 2) == paths[3:]


def test_a_missing_history_is_named_before_anything_is_read(tmp_path: Path, autumn_model: ModelBundle) -> None:
    window = _weeks(tmp_path / "incoming", [48])[0]
    with pytest.raises(DataError, match=r"history_root '.*/nowhere': no \.csv or \.parquet window there"):
        gather_retraining_data(window, kind="full", champion=autumn_model, history_root=str(tmp_path / "nowhere"))


def test_each_kind_reads_its_share_of_history_of_the_same_regime(tmp_path: Path, autumn_model: ModelBundle) -> None:
    """Full reads history_windows, incremental incremental_history_windows; autumn weeks drop out."""
    paths = _weeks(tmp_path / "windows", [40, 46, 47, 48])
    policy = RetrainPolicy(history_windows=3, incremental_history_windows=1)

    full, left_out = gather_retraining_data(
        paths[3], kind="full", champion=autumn_model, history_root=str(tmp_path / "windows"), policy=policy
    )
    assert [w.uri for w in full.history] == paths[1:3]
    assert [d["uri"] for d in left_out] == paths[:1]
    assert "another regime" in left_out[0]["reason"]
    assert list(full.window.rows.columns) == [*autumn_model.metadata["feature_kinds"], ecommerce.LABEL]

    incremental, _ = gather_retraining_data(
        paths[3], kind="incremental", champion=autumn_model, history_root=str(tmp_path / "windows"), policy=policy
    )
    assert [w.uri for w in incremental.history] == paths[2:3]
