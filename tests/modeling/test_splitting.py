"""Splitting a source (kfp_mlops.modeling.splitting) on real data: Iris, CSV/Parquet files, gs:// on the emulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from kfp_mlops.core import storage
from kfp_mlops.core.errors import ConfigError, DataError
from kfp_mlops.modeling.datasets import load_iris_frame
from kfp_mlops.modeling.splitting import split_source

IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]
CLASSES = ["setosa", "versicolor", "virginica"]


@pytest.fixture(scope="module")
def iris() -> pd.DataFrame:
    """scikit-learn's Iris as the split sees it."""
    return load_iris_frame()


@pytest.fixture()
def iris_csv(tmp_path: Path, iris: pd.DataFrame) -> Path:
    """Iris written as a local CSV file."""
    path = tmp_path / "iris.csv"
    iris.to_csv(path, index=False)
    return path


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert "\n" not in message, f"error message spans lines: {message!r}"
    return message


def test_iris_split_is_stratified_with_class_counts_in_metadata() -> None:
    """120/30 rows, each class in proportion, and the class counts recorded per split."""
    split = split_source("iris", "species", test_size=0.2, seed=42)

    assert (len(split.train), len(split.test)) == (120, 30)
    assert list(split.train.columns) == IRIS_COLUMNS
    train_meta, test_meta = split.metadata("train"), split.metadata("test")
    assert train_meta["class_counts"] == {"setosa": 40, "versicolor": 40, "virginica": 40}
    assert test_meta["class_counts"] == {"setosa": 10, "versicolor": 10, "virginica": 10}
    assert {k: v for k, v in test_meta.items() if k not in ("class_counts", "schema")} == {
        "source": "iris",
        "split": "test",
        "rows": 30,
        "columns": IRIS_COLUMNS,
        "label": "species",
    }
    assert test_meta["schema"] == {**dict.fromkeys(IRIS_COLUMNS[:4], "float64"), "species": "object"}
    assert json.loads(json.dumps(train_meta)) == train_meta  # plain JSON values: KFP stores them as metadata


def test_same_seed_gives_the_same_rows_and_another_seed_other_rows() -> None:
    """The split is reproducible from its seed, and the seed matters."""
    first = split_source("iris", "species", seed=7)
    again = split_source("iris", "species", seed=7)
    other = split_source("iris", "species", seed=8)

    pd.testing.assert_frame_equal(first.train, again.train)
    pd.testing.assert_frame_equal(first.test, again.test)
    assert not first.test.equals(other.test)
    # train and test partition the source: no row lost, none duplicated
    both = pd.concat([first.train, first.test]).sort_values(IRIS_COLUMNS).reset_index(drop=True)
    expected = load_iris_frame().sort_values(IRIS_COLUMNS).reset_index(drop=True)
    pd.testing.assert_frame_equal(both, expected)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_local_csv_and_parquet_sources(tmp_path: Path, iris: pd.DataFrame, suffix: str) -> None:
    """A local CSV or Parquet file splits exactly like the built-in set."""
    path = tmp_path / f"flowers{suffix}"
    if suffix == ".csv":
        iris.to_csv(path, index=False)
    else:
        iris.to_parquet(path, index=False)

    split = split_source(str(path), "species", test_size=0.3, seed=1)
    builtin = split_source("iris", "species", test_size=0.3, seed=1)

    assert split.metadata("train")["class_counts"] == dict.fromkeys(CLASSES, 35)
    assert split.metadata("test")["rows"] == 45
    pd.testing.assert_frame_equal(split.test, builtin.test, check_exact=False)


def test_csv_on_gcs_emulator(gcs_bucket: str, iris: pd.DataFrame) -> None:
    """A gs:// CSV is read through the storage layer, from the emulator."""
    uri = f"{gcs_bucket}/raw/iris.csv"
    storage.write_bytes(uri, iris.to_csv(index=False).encode())

    split = split_source(uri, "species", test_size=0.2, seed=42)

    builtin = split_source("iris", "species", test_size=0.2, seed=42)
    assert split.metadata("train") == {**builtin.metadata("train"), "source": uri}
    pd.testing.assert_frame_equal(split.test, builtin.test, check_exact=False)


def test_unreadable_file_on_gcs_names_the_uri(gcs_bucket: str) -> None:
    """A broken gs:// object is named by its URI, not by a temporary download path."""
    uri = f"{gcs_bucket}/raw/broken.parquet"
    storage.write_bytes(uri, b"\x00not parquet\xff" * 8)
    with pytest.raises(DataError) as exc:
        split_source(uri, "species")
    assert _one_line(exc).startswith(f"data source {uri}: cannot read as parquet")


def _write_garbage_parquet(path: Path) -> None:
    path.write_bytes(b"\x00\xffgarbage" * 16)


def _write_header_only_csv(path: Path) -> None:
    path.write_text(",".join(IRIS_COLUMNS) + "\n")


def _write_zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


@pytest.mark.parametrize(
    ("file_name", "write", "expected"),
    [
        ("missing.csv", None, r"missing\.csv: no such file"),
        ("broken.parquet", _write_garbage_parquet, r"broken\.parquet: cannot read as parquet: .*magic bytes"),
        ("header.csv", _write_header_only_csv, r"header\.csv': holds no rows"),
        ("zero.csv", _write_zero_bytes, r"zero\.csv: the file is empty"),
    ],
    ids=["missing-file", "garbage-parquet", "header-only-csv", "zero-byte-csv"],
)
def test_bad_files_fail_with_one_line_naming_the_file(
    tmp_path: Path, file_name: str, write: Callable[[Path], None] | None, expected: str
) -> None:
    """Each unusable file is a DataError naming the file and what is wrong with it."""
    path = tmp_path / file_name
    if write is not None:
        write(path)
    with pytest.raises(DataError, match=expected) as exc:
        split_source(str(path), "species")
    assert str(tmp_path) in _one_line(exc)


def test_unknown_source_lists_what_is_supported() -> None:
    """A source that is neither built in nor a CSV/Parquet file is refused by name."""
    with pytest.raises(DataError) as exc:
        split_source("foo", "species")
    assert _one_line(exc) == (
        "data source 'foo': unknown; use one of iris or a .csv/.parquet file (local path or gs:// URI)"
    )


def test_missing_label_column_lists_the_columns(iris_csv: Path) -> None:
    """A wrong label name is reported with the columns the file does have."""
    with pytest.raises(DataError) as exc:
        split_source(str(iris_csv), "target")
    assert _one_line(exc) == (
        f"data source '{iris_csv}': no label column 'target'; columns are "
        "sepal_length, sepal_width, petal_length, petal_width, species"
    )


def test_a_class_with_a_single_row_cannot_be_split(tmp_path: Path, iris: pd.DataFrame) -> None:
    """A class too small to stratify is named instead of surfacing sklearn's error."""
    frame = iris.copy()
    frame.loc[0, "species"] = "daisy"
    path = tmp_path / "rare.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"classes with fewer than 2 rows, which cannot be split: daisy$") as exc:
        split_source(str(path), "species")
    _one_line(exc)


@pytest.mark.parametrize("test_size", [0.0, 1.0, -0.2, 1.5])
def test_test_size_out_of_range(test_size: float) -> None:
    """test_size must be a fraction strictly between 0 and 1."""
    with pytest.raises(ConfigError, match=rf"^test_size={test_size}: must be a fraction between 0 and 1$"):
        split_source("iris", "species", test_size=test_size)


def test_test_size_leaving_no_training_rows_is_a_data_error() -> None:
    """A fraction in range that still cannot be split is reported with the row count."""
    with pytest.raises(DataError, match=r"^data source 'iris': cannot split 150 rows: ") as exc:
        split_source("iris", "species", test_size=0.999)
    _one_line(exc)
