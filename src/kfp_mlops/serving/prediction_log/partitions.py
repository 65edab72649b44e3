"""Where the log's segments live, and reading a set of them: the hive-partitioned Parquet layout.

::

    <root>/predictions/date=2026-11-02/hour=10/predictor=challenger/<segment>.parquet
    <root>/labels/date=2026-11-02/<segment>.parquet

Time comes first in the path so that a reader of a time window lists only its own dates'
prefixes (one listing per day, through :func:`kfp_mlops.core.storage.list_uris`, which lists
recursively) without first discovering which predictors exist; every engine prunes partitions
whatever the keys' order. Segments are written once (``create_only``) and never changed: a new
segment per flush, per label batch, and per compaction (which then deletes what it replaced).

Readers tolerate the moment between a compacted segment's write and the deletion of the small
ones it replaces: in a partition that holds a compacted segment beside others, rows that are
exact copies are read once (:func:`read_segments` ``distinct``).
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kfp_mlops.core import storage
from kfp_mlops.core.errors import AlreadyExistsError, DataError, StorageError

PREDICTIONS = "predictions"
LABELS = "labels"
SEGMENT_SUFFIX = ".parquet"
COMPACTED_PREFIX = "compacted-"
# Columns with few distinct values: dictionary-encoded (ids and inputs are not).
_DICTIONARY = ["model_version", "decision", "status", "error"]
_READERS = 8  # segments read at once (object storage answers a request in tens of milliseconds)


@dataclass(frozen=True)
class Segment:
    """One segment's URI and the partition it is in (``hour`` and ``predictor`` only for predictions)."""

    uri: str
    date: date
    hour: int | None = None
    predictor: str | None = None

    @property
    def start(self) -> datetime:
        """When the segment's hour (or, for labels, date) starts, in UTC."""
        return datetime(self.date.year, self.date.month, self.date.day, self.hour or 0, tzinfo=timezone.utc)

    @property
    def compacted(self) -> bool:
        """Whether compaction wrote it (it replaces the other segments of its partition it was made of)."""
        return self.uri.rsplit("/", 1)[-1].startswith(COMPACTED_PREFIX)

    @property
    def partition(self) -> str:
        """The partition's folder URI."""
        return self.uri.rsplit("/", 1)[0]


def prediction_partition(root: str, predictor: str, moment: datetime) -> str:
    """The folder of ``predictor``'s predictions made in ``moment``'s hour (UTC)."""
    return storage.join(root, PREDICTIONS, f"date={moment:%Y-%m-%d}", f"hour={moment:%H}", f"predictor={predictor}")


def label_partition(root: str, predicted: date) -> str:
    """The folder of the labels of requests first predicted on ``predicted``."""
    return storage.join(root, LABELS, f"date={predicted:%Y-%m-%d}")


def prediction_segments(root: str, since: datetime | None = None, until: datetime | None = None) -> list[Segment]:
    """The prediction segments of every hour that overlaps ``[since, until]`` (bounds optional, UTC).

    With ``since`` only the dates from ``since`` to ``until`` (or today) are listed.
    """
    prefix = storage.join(root, PREDICTIONS)
    last = (until or datetime.now(timezone.utc)).date()
    found = _listed(prefix, None if since is None else days_between(since.date(), last))
    first = None if since is None else since.replace(minute=0, second=0, microsecond=0)
    return [s for s in found if (first is None or s.start >= first) and (until is None or s.start <= until)]


def label_segments(root: str, dates: Sequence[date] | None = None) -> list[Segment]:
    """The label segments of the given prediction dates (None: all)."""
    return _listed(storage.join(root, LABELS), dates)


def write_segment(uri: str, table: pa.Table) -> None:
    """Writes ``table`` as one Parquet segment, create-only.

    A segment already there with the same bytes is success: an earlier attempt landed although it
    reported a failure, or a concurrent compaction of the same segments wrote the same result.

    Raises:
        AlreadyExistsError: another segment already has the name.
        StorageError: the storage refused the write.
    """
    data = encode(table)
    try:
        storage.write_bytes(uri, data, create_only=True)
    except AlreadyExistsError:
        if storage.read_bytes(uri) != data:
            raise


def encode(table: pa.Table) -> bytes:
    """``table`` as Parquet bytes."""
    sink = io.BytesIO()
    dictionary = [name for name in _DICTIONARY if name in table.column_names]
    pq.write_table(table, sink, compression="snappy", use_dictionary=dictionary)
    return sink.getvalue()


def read_segments(
    segments: Sequence[Segment],
    schema: pa.Schema,
    *,
    columns: Sequence[str] | None = None,
    with_predictor: bool = False,
    distinct: bool = True,
    only_ids: pa.Array | None = None,
) -> pa.Table:
    """The rows of ``segments`` (read concurrently) as one table.

    Args:
        segments: What to read.
        schema: The segments' schema (the empty table's, and the column order).
        columns: Only these columns (None: all of ``schema``).
        with_predictor: Add the path's ``predictor`` as a column.
        distinct: Drop rows that are exact copies of another row of their partition (a compaction
            caught between its write and its deletions).
        only_ids: Keep only the rows whose ``request_id`` is one of these.

    Raises:
        DataError: a segment is not readable Parquet of this log.
    """
    names = list(columns or schema.names)
    target = pa.schema([schema.field(name) for name in names])
    if with_predictor:
        target = target.append(pa.field("predictor", pa.string()))

    def one(segment: Segment) -> pa.Table | StorageError:
        try:
            # Only the columns asked for are read (locally; on gs:// a segment is one ranged read).
            with storage.open_reader(segment.uri) as reader:
                table = pq.read_table(reader, columns=names)
        except StorageError as exc:
            return exc
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{segment.uri}: not a prediction log segment (Parquet): {exc}") from None
        if with_predictor:
            table = table.append_column("predictor", pa.array([segment.predictor] * len(table), pa.string()))
        return table.cast(target)

    if not segments:
        return target.empty_table()
    with ThreadPoolExecutor(_READERS) as pool:
        read = dict(zip(segments, pool.map(one, segments)))
        gone = [s for s, table in read.items() if isinstance(table, StorageError)]
        for segment in gone:
            if storage.exists(segment.uri):
                raise read[segment]  # a failing storage, not a compaction
            del read[segment]
        # A compaction deleted segments listed here: it wrote their replacement first, so read it.
        relisted = {s for p in {s.partition for s in gone} for s in _listed(p)} - set(segments)
        for segment, table in zip(relisted, pool.map(one, relisted)):
            if isinstance(table, StorageError):
                raise table
            read[segment] = table
    tables = list(read.values())
    if distinct:
        tables = _without_copies(list(read), tables)
    table = pa.concat_tables(tables)
    # Once for all segments: the lookup set of ``only_ids`` is built once, not once per segment.
    return table if only_ids is None else table.filter(pc.is_in(table["request_id"], value_set=only_ids))


def _without_copies(segments: Sequence[Segment], tables: list[pa.Table]) -> list[pa.Table]:
    # Only a partition holding a compacted segment beside others can hold copies of a row.
    by_partition: dict[str, list[int]] = {}
    for index, segment in enumerate(segments):
        by_partition.setdefault(segment.partition, []).append(index)
    kept = []
    for indexes in by_partition.values():
        part = [tables[i] for i in indexes]
        if len(indexes) > 1 and any(segments[i].compacted for i in indexes):
            merged = pa.concat_tables(part)
            part = [merged.group_by(merged.column_names, use_threads=False).aggregate([])]
        kept.extend(part)
    return kept


def _listed(prefix: str, dates: Sequence[date] | None = None) -> list[Segment]:
    uris: Iterator[str]
    if dates is None:
        uris = iter(storage.list_uris(prefix))
    else:
        uris = (uri for day in dates for uri in storage.list_uris(storage.join(prefix, f"date={day:%Y-%m-%d}")))
    return [segment for uri in uris if (segment := _parse(uri)) is not None]


def _parse(uri: str) -> Segment | None:
    *folders, name = uri.split("/")
    if not name.endswith(SEGMENT_SUFFIX) or name.startswith("."):
        return None  # locally, an in-progress write is a hidden temporary file next to the segment
    keys = {}
    for folder in reversed(folders):  # the partition keys: the innermost key=value folders
        if "=" not in folder:
            break
        key, value = folder.split("=", 1)
        keys[key] = value
    try:
        day = date.fromisoformat(keys["date"])
        hour = int(keys["hour"]) if "hour" in keys else None
    except (KeyError, ValueError):
        raise DataError(f"{uri}: not in a date=YYYY-MM-DD[/hour=HH] partition of the prediction log") from None
    return Segment(uri, day, hour, keys.get("predictor"))


def days_between(first: date, last: date) -> list[date]:
    """Every date from ``first`` to ``last``, both included."""
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]
