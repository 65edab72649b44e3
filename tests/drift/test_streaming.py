"""The streamed check: a Parquet window read in batches gets the loaded window's verdict, float for float."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kfp_mlops.core import storage
from kfp_mlops.core.errors import DataError
from kfp_mlops.demos import ecommerce
from kfp_mlops.drift.check import check_drift
from kfp_mlops.drift.config import DriftConfig
from kfp_mlops.drift.streaming import check_window_at
from kfp_mlops.modeling.model_bundle import ModelBundle

BATCH_ROWS = 300  # many batches from a small window: sums over batches are what is tested


@pytest.fixture(scope="module")
def december() -> pd.DataFrame:
    """A drifted window with gaps: missing numbers (in an int column too), missing and unseen categories."""
    frame = ecommerce.generate([48], 2_000, seed=5).drop(columns=ecommerce.WEEK)
    rng = np.random.default_rng(3)
    frame["user_age"] = frame["user_age"].astype("Int64")
    frame.loc[rng.random(len(frame)) < 0.1, "user_age"] = pd.NA
    frame.loc[rng.random(len(frame)) < 0.2, "item_price"] = np.nan
    frame.loc[rng.random(len(frame)) < 0.05, "device"] = None
    frame.loc[rng.random(len(frame)) < 0.05, "category"] = "garden"  # not in the reference
    return frame


@pytest.fixture(scope="module")
def profile(autumn: pd.DataFrame) -> dict[str, Any]:
    from kfp_mlops.modeling.profile import build_profile

    return build_profile(autumn, ecommerce.feature_kinds(), ecommerce.LABEL)


def _write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_parquet(path, row_group_size=700)  # row groups and batches cut the rows differently
    return path


def _streamed(location: str, profile: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return check_window_at(location, profile, batch_rows=BATCH_ROWS, **kwargs).verdict


def test_the_streamed_verdict_is_the_loaded_one(
    december: pd.DataFrame, profile: dict[str, Any], tmp_path: Path
) -> None:
    path = str(_write(december, tmp_path / "december.parquet"))
    config = DriftConfig.from_dict({"per_feature": {"item_price": {"weight": 2.0}}})

    streamed = _streamed(path, profile, config=config)

    assert streamed == check_drift(profile, pd.read_parquet(path), config=config)
    assert streamed["drift"] is True and streamed["rows"] == 2_000
    assert streamed["features"]["item_price"]["missing_share"] == pytest.approx(0.2, abs=0.03)


def test_with_a_model_predictions_and_performance_match(
    december: pd.DataFrame, profile: dict[str, Any], autumn_model: ModelBundle, tmp_path: Path
) -> None:
    """Probabilities, realized metrics and the label-free estimate are those of the loaded window;
    without a label column the realized part is absent, as for the loaded window."""
    labelled = str(_write(december, tmp_path / "labelled.parquet"))
    unlabelled = str(_write(december.drop(columns=ecommerce.LABEL), tmp_path / "unlabelled.parquet"))
    baseline = {"accuracy": 0.8, "roc_auc": 0.85}

    for path in (labelled, unlabelled):
        streamed = _streamed(path, profile, model=autumn_model, reference_performance=baseline)
        loaded = check_drift(profile, pd.read_parquet(path), model=autumn_model, reference_performance=baseline)
        assert streamed == loaded
    assert loaded["performance"] is None and loaded["performance_estimate"]["realized"] is None
    assert streamed["prediction"]["scored_rows"] < 2_000  # rows missing a feature are not scored


def test_the_window_on_gcs_gives_the_same_verdict(
    december: pd.DataFrame, profile: dict[str, Any], gcs_bucket: str, tmp_path: Path
) -> None:
    """Read through the storage layer from the emulator, in ranged reads smaller than the file."""
    local = _write(december, tmp_path / "december.parquet")
    uri = f"{gcs_bucket}/windows/december.parquet"
    storage.upload_file(local, uri)

    checked = check_window_at(uri, profile, report_rows=100)

    assert checked.verdict == check_drift(profile, pd.read_parquet(local))
    assert checked.report_rows is not None and len(checked.report_rows) == 100
    with pytest.raises(DataError, match=f"current data {gcs_bucket}/windows/missing.parquet: .*no such object"):
        check_window_at(f"{gcs_bucket}/windows/missing.parquet", profile)


def test_refusals_are_the_loaded_check_s(december: pd.DataFrame, profile: dict[str, Any], tmp_path: Path) -> None:
    """Missing and unknown columns and non-numeric numbers are refused from the schema; an all-missing
    feature after the read; the messages are check_drift's (types named as Arrow names them)."""
    cases = {
        "lacks": december.drop(columns="device").assign(session_id="s"),
        "empty": december.assign(item_rating=np.nan),
        "text": december.assign(hour_of_day="noon"),
    }
    for name, frame in cases.items():
        path = str(_write(frame, tmp_path / f"{name}.parquet"))
        with pytest.raises(DataError) as loaded:
            check_drift(profile, pd.read_parquet(path), where=f"current data {path}")
        with pytest.raises(DataError) as streamed:
            check_window_at(path, profile)
        expected = str(loaded.value).replace("(object)", "(dictionary<values=string, indices=int32, ordered=0>)")
        assert str(streamed.value) == expected
    assert "hour_of_day (dictionary" in str(streamed.value)


def test_pandas_index_columns_are_not_window_columns(
    december: pd.DataFrame, profile: dict[str, Any], autumn_model: ModelBundle, tmp_path: Path
) -> None:
    indexed = december.set_index(pd.Index([f"row{i}" for i in range(len(december))], name="row_id"))
    path = str(_write(indexed, tmp_path / "indexed.parquet"))
    checked = check_window_at(path, profile, model=autumn_model, report_rows=10)
    assert checked.verdict == check_drift(profile, pd.read_parquet(path), model=autumn_model)
    assert checked.report_rows is not None and list(checked.report_rows.index) == list(range(10))


def test_unreadable_windows_are_named(profile: dict[str, Any], tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=f"^current data {garbage}: cannot read as parquet"):
        check_window_at(str(garbage), profile)
    with pytest.raises(DataError, match=f"^current data {tmp_path / 'none.parquet'}: .*no such file"):
        check_window_at(str(tmp_path / "none.parquet"), profile)


def test_the_report_sample_is_uniform_seeded_and_of_the_window(
    december: pd.DataFrame, profile: dict[str, Any], tmp_path: Path
) -> None:
    path = str(_write(december.assign(row=range(len(december))), tmp_path / "rows.parquet"))
    config = DriftConfig(ignore_columns=("row",), seed=4)

    first = check_window_at(path, profile, config=config, report_rows=500).report_rows
    again = check_window_at(path, profile, config=config, report_rows=500).report_rows
    whole = check_window_at(path, profile, config=config, report_rows=5_000).report_rows

    assert first is not None and again is not None and whole is not None
    assert list(first.columns) == profile["feature_names"]
    assert len(first) == 500 and first.equals(again)
    assert len(whole) == 2_000  # a window smaller than report_rows is reported whole
    expected = np.sort(np.random.default_rng(4).choice(2_000, 500, replace=False))
    pd.testing.assert_frame_equal(
        first, pd.read_parquet(path).iloc[expected][profile["feature_names"]].reset_index(drop=True)
    )


def test_a_csv_window_is_loaded(december: pd.DataFrame, profile: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "december.csv"
    december.to_csv(path, index=False)
    checked = check_window_at(str(path), profile, report_rows=100)
    assert checked.verdict == check_drift(profile, pd.read_csv(path))
    assert checked.report_rows is not None and len(checked.report_rows) == 100
