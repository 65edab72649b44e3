"""The current window as Parquet record batches, read a batch at a time in constant memory.

A drift check streams its window instead of loading it (:mod:`kfp_mlops.drift.streaming`) when it
is Parquet: a ``.parquet``/``.pq`` file, local or ``gs://`` (read through
:func:`kfp_mlops.core.storage.open_reader`, ranged downloads), or a suffix-less KFP Dataset artifact
holding Parquet. Memory is bounded by two batches of :data:`BATCH_ROWS` rows of the columns read
plus a read buffer per column (:data:`READ_BUFFER_BYTES`), whatever the file's size or its row
groups' (pages are streamed, nothing is pre-buffered): a second thread decodes the next batch while
the check counts the current one (pyarrow releases the GIL while it decodes, so on two cores the
two overlap).

The window shows its columns as ``pandas.read_parquet`` would (pandas' index columns are not
columns), so a streamed check refuses exactly what a loaded one does; string columns are read as
dictionaries, so a category is converted once per distinct value and batch, not once per row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from kfp_mlops.core import storage
from kfp_mlops.core.errors import DataError, StorageError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

BATCH_ROWS = 1 << 18  # 262,144 rows: 2 MiB per float column, large enough that per-batch overhead vanishes
# Pages are read through a buffer of this size per column; pyarrow's defaults (pre_buffer=True,
# buffer_size=0) read whole column chunks, and for iter_batches over a file every row group at once:
# memory then grows with the file (measured: 540 MB of Arrow memory for a 450 MB file, 146 MB with these).
READ_BUFFER_BYTES = 1 << 20
PARQUET_SUFFIXES = (".parquet", ".pq")
_PARQUET_MAGIC = b"PAR1"


def is_parquet(location: str) -> bool:
    """Whether ``location`` names Parquet: by its suffix, or by its first bytes for a suffix-less local file."""
    suffix = Path(location.split("?", 1)[0]).suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return True
    path = Path(location)
    if suffix or "://" in location or not path.is_file():
        return False
    with path.open("rb") as handle:  # a KFP Dataset artifact: no suffix
        return handle.read(len(_PARQUET_MAGIC)) == _PARQUET_MAGIC


@dataclass
class ParquetWindow:
    """An open Parquet file, read a batch at a time.

    Attributes:
        location: Where it is (a path or ``gs://`` URI).
        where: Names it in errors.
        rows: Its rows (from the file's footer: known before anything is read).
        types: Column name -> Arrow type, in the file's order, pandas' index columns left out.
    """

    location: str
    where: str
    rows: int
    types: dict[str, pa.DataType]
    _file: pq.ParquetFile

    @property
    def columns(self) -> list[str]:
        """The window's columns."""
        return list(self.types)

    def batches(self, columns: Sequence[str], batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        """The rows of ``columns``, in order, a record batch at a time (the next one decoded meanwhile).

        Raises:
            DataError: the file cannot be decoded.
            StorageError: ``gs://`` could not be read, or the object changed while being read.
        """
        reader = self._file.iter_batches(batch_size=batch_rows, columns=list(columns), use_threads=False)
        with ThreadPoolExecutor(1, thread_name_prefix="parquet-window") as decoder:
            pending = decoder.submit(self._next, reader)
            while (batch := pending.result()) is not None:
                pending = decoder.submit(self._next, reader)
                yield batch

    def _next(self, reader: Iterator[pa.RecordBatch]) -> pa.RecordBatch | None:
        import pyarrow as pa

        try:
            return next(reader, None)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{self.where}: cannot read as parquet: {_first_line(exc)}") from None


@contextlib.contextmanager
def open_window(location: str, where: str) -> Iterator[ParquetWindow]:
    """Opens a Parquet window (local or ``gs://``); only its footer is read until batches are asked for.

    Args:
        location: A Parquet file (see :func:`is_parquet`).
        where: Names it in errors (``"current data <location>"``).

    Raises:
        DataError: it is missing, cannot be reached or is not Parquet.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    with contextlib.ExitStack() as stack:
        try:
            # Ranged reads of the buffer's size: pyarrow reads each column's pages at its own offset, and a
            # larger chunk would be downloaded whole for every 1 MiB used.
            handle = stack.enter_context(storage.open_reader(location, chunk_bytes=READ_BUFFER_BYTES))
        except StorageError as exc:
            raise DataError(f"{where}: {exc}") from None
        try:
            footer = pq.read_metadata(handle)
            strings = _string_columns(footer.schema.to_arrow_schema())
            parquet = pq.ParquetFile(
                handle, metadata=footer, read_dictionary=strings, pre_buffer=False, buffer_size=READ_BUFFER_BYTES
            )
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{where}: cannot read as parquet: {_first_line(exc)}") from None
        schema = parquet.schema_arrow
        index = {c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
        types = {field.name: field.type for field in schema if field.name not in index}
        yield ParquetWindow(location, where, parquet.metadata.num_rows, types, parquet)


def _string_columns(schema: pa.Schema) -> list[str]:
    """Columns Parquet can hand over as dictionaries (strings and bytes)."""
    import pyarrow as pa

    return [
        f.name
        for f in schema
        if pa.types.is_string(f.type)
        or pa.types.is_large_string(f.type)
        or pa.types.is_binary(f.type)
        or pa.types.is_large_binary(f.type)
    ]


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
