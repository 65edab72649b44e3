"""Retraining data (kfp_mlops.modeling.retraining_data): the window and its history, checked before training."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kfp_mlops.core import storage
from kfp_mlops.core.errors import ConfigError, DataError
from kfp_mlops.demos import ecommerce
from kfp_mlops.modeling.retraining_data import list_windows, load_retraining_data, recent_windows

KINDS = ecommerce.feature_kinds()
LABEL = ecommerce.LABEL


def _write_weeks(folder: Path, weeks: range, suffix: str = ".parquet") -> list[str]:
    """One window file per week (with the generator's ``week`` column, which is no feature)."""
    folder.mkdir(parents=True, exist_ok=True)
    uris = []
    for week in weeks:
        path = folder / f"week-{week:02d}{suffix}"
        frame = ecommerce.generate([week], 50, seed=3)
        frame.to_parquet(path) if suffix == ".parquet" else frame.to_csv(path, index=False)
        uris.append(str(path))
    return uris


def test_window_and_history_keep_the_model_columns_in_time_order(tmp_path: Path) -> None:
    """History first (oldest first), then the window; only the model's features and label; sources recorded."""
    history = _write_weeks(tmp_path, range(40, 43)) + _write_weeks(tmp_path / "csv", range(43, 44), ".csv")
    window = ecommerce.generate([44], 60, seed=4)

    data = load_retraining_data(window, history, feature_kinds=KINDS, label=LABEL, window_name="week 44")

    rows = data.rows()
    assert list(rows.columns) == [*ecommerce.FEATURES, LABEL]  # no week column
    assert len(rows) == 4 * 50 + 60
    pd.testing.assert_frame_equal(rows.tail(60).reset_index(drop=True), window[list(rows.columns)])
    assert data.sources() == [
        *({"uri": uri, "rows": 50, "role": "history"} for uri in history),
        {"uri": "week 44", "rows": 60, "role": "window"},
    ]
    fewer = data.keeping(history[-1:])
    assert [w.uri for w in fewer.history] == history[-1:] and len(fewer.rows()) == 110
    assert len(data.history) == 4  # keeping returns new data


def test_recent_windows_of_an_ordered_list(tmp_path: Path) -> None:
    """The last ``count`` windows, the current one left out; a folder lists its data files by name."""
    uris = _write_weeks(tmp_path, range(30, 36))
    (tmp_path / "notes.txt").write_text("not a window")

    assert list_windows(str(tmp_path)) == uris
    assert recent_windows(uris, 3) == uris[3:]
    assert recent_windows(uris, 3, exclude=[uris[-1]]) == uris[2:5]
    assert recent_windows(uris, 0) == []
    assert recent_windows(uris, 10) == uris
    with pytest.raises(ConfigError, match=r"count=-1; expected a number of windows >= 0"):
        recent_windows(uris, -1)


def test_history_on_gcs(gcs_bucket: str, tmp_path: Path) -> None:
    """gs:// windows are listed and read through the storage layer."""
    local = _write_weeks(tmp_path, range(45, 47))
    uris = [f"{gcs_bucket}/windows/{Path(p).name}" for p in local]
    for path, uri in zip(local, uris):
        storage.write_bytes(uri, Path(path).read_bytes())

    assert list_windows(f"{gcs_bucket}/windows") == uris
    data = load_retraining_data(local[0], uris[1:], feature_kinds=KINDS, label=LABEL)
    assert [s["uri"] for s in data.sources()] == [uris[1], local[0]]


def test_every_missing_history_window_is_named_before_anything_is_read(tmp_path: Path) -> None:
    window, present = _write_weeks(tmp_path, range(39, 41))
    history = [present, str(tmp_path / "week-41.parquet"), "/nowhere/week-42.csv"]
    with pytest.raises(DataError) as exc:
        load_retraining_data(window, history, feature_kinds=KINDS, label=LABEL)
    assert str(exc.value) == (
        f"retraining history: 2 of 3 window(s) missing: {history[1]}, /nowhere/week-42.csv; nothing was trained"
    )


def test_windows_without_the_model_features_or_label_are_named(tmp_path: Path) -> None:
    """Every window lacking columns is named with what it lacks, in one error."""
    history = _write_weeks(tmp_path, range(40, 42))
    pd.read_parquet(history[1]).drop(columns=[LABEL]).to_parquet(history[1])
    window = ecommerce.generate([42], 30, seed=1).drop(columns=["device", "item_price"])

    with pytest.raises(DataError) as exc:
        load_retraining_data(window, history, feature_kinds=KINDS, label=LABEL)
    assert str(exc.value) == (
        "retraining data: window lacks the model's feature(s) item_price, device; "
        f"{history[1]} lacks the label; nothing was trained"
    )


def test_history_listed_twice_or_not_a_window_file(tmp_path: Path) -> None:
    history = _write_weeks(tmp_path, range(40, 41))
    with pytest.raises(DataError, match=r"^retraining history: listed more than once: .*week-40\.parquet$"):
        load_retraining_data(history[0], history * 2, feature_kinds=KINDS, label=LABEL)
    (tmp_path / "week-41.json").write_text("{}")
    with pytest.raises(DataError, match=r"week-41\.json is not a \.csv or \.parquet window$"):
        load_retraining_data(history[0], [str(tmp_path / "week-41.json")], feature_kinds=KINDS, label=LABEL)
