"""Reading and writing tabular data: the built-in Iris set, CSV and Parquet, locally or on ``gs://``.

Datasets travel between components as Parquet files, which keep dtypes (a CSV round trip would
turn categories into strings and ints into floats after a NaN).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from kfp_mlops.core import storage
from kfp_mlops.core.errors import DataError, StorageError

if TYPE_CHECKING:
    import pandas as pd

BUILTIN_SOURCES = ("iris",)
IRIS_LABEL = "species"
_READERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def load_source(source: str) -> pd.DataFrame:
    """Loads a data source into a DataFrame.

    Args:
        source: ``iris`` (scikit-learn's built-in set), or the path or ``gs://`` URI of a
            ``.csv`` or ``.parquet`` file.

    Raises:
        DataError: the source is unknown, missing, unreadable or holds no rows.
    """
    if source in BUILTIN_SOURCES:
        return load_iris_frame()
    suffix = Path(source.split("?", 1)[0]).suffix.lower()
    kind = _READERS.get(suffix)
    if kind is None:
        raise DataError(
            f"data source {source!r}: unknown; use one of {', '.join(BUILTIN_SOURCES)} "
            "or a .csv/.parquet file (local path or gs:// URI)"
        )
    try:
        with storage.local_copy(source) as path:
            frame = _read(path, kind, where=source)  # name the source, not a temp download
    except StorageError as exc:
        raise DataError(f"data source {exc}") from None
    if frame.empty or len(frame.columns) == 0:
        raise DataError(f"data source {source!r}: holds no rows")
    return frame


def load_iris_frame() -> pd.DataFrame:
    """scikit-learn's Iris set with readable column names and the species as a string label."""
    import pandas as pd
    from sklearn.datasets import load_iris

    bunch = load_iris()
    columns = [name.replace(" (cm)", "").replace(" ", "_") for name in bunch.feature_names]
    frame = pd.DataFrame(bunch.data, columns=columns)
    frame[IRIS_LABEL] = pd.Categorical.from_codes(bunch.target, categories=list(bunch.target_names)).astype(str)
    return frame


def read_parquet(path: str | Path) -> pd.DataFrame:
    """Reads a Parquet file written by :func:`write_parquet` (a KFP Dataset artifact's path)."""
    return _read(Path(path), "parquet")


def write_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    """Writes a DataFrame as Parquet, creating the parent folder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)


def _read(path: Path, kind: str, where: str | None = None) -> pd.DataFrame:
    import pandas as pd

    where = where or str(path)

    try:
        if kind == "csv":
            return pd.read_csv(path)
        return pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"data source {where}: the file is empty") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"data source {where}: cannot read as {kind}: {first_line}") from None
