"""The Parquet window: bounded batches in order, columns as pandas sees them, Parquet told by its bytes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from kfp_mlops.demos import ecommerce
from kfp_mlops.drift.window import is_parquet, open_window


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return ecommerce.generate([42], 2_000, seed=5).drop(columns=ecommerce.WEEK).assign(row=range(2_000))


def test_batches_are_bounded_and_in_order(frame: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    frame.set_index(frame["row"].astype(str).rename("row_id")).to_parquet(path, row_group_size=700)
    with open_window(str(path), "window") as window:
        batches = list(window.batches(["row", "device"], 256))
    assert window.rows == 2_000
    assert window.columns == list(frame.columns)  # the index column row_id is pandas', not the window's
    assert max(b.num_rows for b in batches) <= 256
    assert pa.Table.from_batches(batches).column("row").to_pylist() == list(range(2_000))
    assert pa.types.is_dictionary(window.types["device"])  # strings come as dictionaries
    assert batches[0].column("device").dictionary_decode().to_pylist()[:3] == frame["device"].iloc[:3].tolist()


def test_parquet_is_told_by_suffix_or_by_its_bytes(frame: pd.DataFrame, tmp_path: Path) -> None:
    """A KFP Dataset artifact has no suffix: its first bytes say whether it is Parquet."""
    frame.to_parquet(tmp_path / "window.parquet")
    frame.to_csv(tmp_path / "window.csv")
    shutil.copy(tmp_path / "window.parquet", tmp_path / "artifact")
    shutil.copy(tmp_path / "window.csv", tmp_path / "text-artifact")

    assert is_parquet(str(tmp_path / "window.parquet")) and is_parquet("gs://bucket/w.pq")
    assert is_parquet(str(tmp_path / "artifact"))
    assert not is_parquet(str(tmp_path / "window.csv")) and not is_parquet(str(tmp_path / "text-artifact"))
    assert not is_parquet(str(tmp_path / "missing"))
