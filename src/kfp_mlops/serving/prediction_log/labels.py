"""Labels: recorded in batches, each checked against the predictions it refers to -- without reading the log.

A label is stored in the ``date`` partition of its request's **first prediction**
(``labels/date=<prediction date>/``), so a reader of a prediction window reads only the labels of
its own dates (:func:`~kfp_mlops.serving.prediction_log.join.join`).

What recording a batch costs -- O(batch), not O(log):

* **Which predictions are read.** A label comes after its prediction and, by contract, at most
  ``label_window`` (default 7 days) after it. The prediction hours from the batch's latest
  ``labelled_at`` back to its earliest minus ``label_window`` are the only ones its ids can be in;
  they are read **newest first**, in steps of 1, 2, 4... hours (two columns, ``request_id`` and
  ``timestamp``, rows filtered to the batch's ids as each segment is read), and the scan **stops
  as soon as every id is found**.
  Labels usually follow their predictions closely (the feedback endpoint: seconds; a fraud
  team's import: days), so the scan touches the hours between the batch's oldest prediction
  and its labels -- never the log's history, which may be years. Only a batch with an unknown id
  reads the whole window, and is then refused.
* **Which labels are read.** Only the label partitions of the dates its predictions were found
  in, for the duplicate check (request id only).

A batch with labels for unknown request ids (none predicted in the window), duplicates (twice in
the batch, or already recorded with another label or time), labels timestamped before their
prediction (within the scanned hours: a prediction later in the hour of the latest label is
found), or malformed entries is refused whole with a :class:`DataError` naming the ids; nothing is
written. A label already recorded exactly (same label, same time) is not written again, so a
retried import is harmless. Labels have one writer (the label feed, or one server's feedback): two
concurrent batches for the same id could both pass the check, and ``join`` then refuses the log.
"""

from __future__ import annotations

import numbers
import uuid
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import pyarrow as pa

from kfp_mlops.core import storage
from kfp_mlops.core.errors import DataError
from kfp_mlops.serving.prediction_log import compaction
from kfp_mlops.serving.prediction_log.partitions import (
    LABELS,
    SEGMENT_SUFFIX,
    Segment,
    label_partition,
    label_segments,
    prediction_segments,
    read_segments,
    write_segment,
)
from kfp_mlops.serving.prediction_log.records import LABEL_COLUMNS, LABEL_SCHEMA, PREDICTION_SCHEMA, as_utc, some

if TYPE_CHECKING:
    import pandas as pd

LABEL_WINDOW = timedelta(days=7)


def record_labels(
    root: str,
    labels: Iterable[tuple[str, int | bool, datetime]],
    *,
    label_window: timedelta = LABEL_WINDOW,
) -> str | None:
    """Appends a batch of labels, after checking every label against the predictions it refers to.

    Args:
        root: The log's root.
        labels: ``(request_id, label, labelled_at)`` triples; ``label`` is 1 (fraud) or 0, or a
            bool; a naive ``labelled_at`` is taken as UTC.
        label_window: How long after its prediction a label may come (see the module docstring).

    Returns:
        The URI of the batch's segment (the last one, when its requests were first predicted on
        several dates: one segment per date), or ``None`` when there was nothing new to write.

    Raises:
        DataError: see the module docstring; the message names the ids, and nothing is written.
    """
    batch, malformed = _parse(labels)
    if not batch and not malformed:
        return None
    ids = [request_id for request_id, _, _ in batch]
    moments = [at for _, _, at in batch]
    first_seen = _first_predictions(
        root, set(ids), min(moments, default=None), max(moments, default=None), label_window
    )
    recorded = _recorded(root, set(ids), sorted({at.date() for at in first_seen.values()}))

    seen: set[str] = set()
    unknown: list[str] = []
    duplicates: list[str] = []
    early: list[str] = []
    new: list[tuple[str, int, datetime]] = []
    for request_id, label, labelled_at in batch:
        before = recorded.get(request_id)
        if request_id in seen or (before is not None and before != (label, labelled_at)):
            duplicates.append(request_id)
        elif before is None:
            new.append((request_id, label, labelled_at))
        seen.add(request_id)
        if request_id not in first_seen:
            unknown.append(request_id)
        elif labelled_at < first_seen[request_id]:
            predicted = first_seen[request_id].isoformat()
            early.append(f"{request_id} (labelled {labelled_at.isoformat()}, predicted {predicted})")
    problems = [
        f"{what} [{len(found)}]: {some(found)}"
        for what, found in (
            ("malformed label(s)", malformed),
            (f"unknown request id(s) (no prediction in the {label_window} before the label)", unknown),
            ("duplicate label(s) (twice in the batch or already recorded)", sorted(set(duplicates))),
            ("label(s) timestamped before their prediction", early),
        )
        if found
    ]
    if problems:
        raise DataError(f"labels for {storage.join(root, LABELS)} rejected, nothing written: {'; '.join(problems)}")
    return _write(root, new, first_seen)


def read_labels(root: str, *, dates: Iterable[date] | None = None) -> pd.DataFrame:
    """Recorded labels: columns :data:`LABEL_COLUMNS`, ``labelled_at`` as ``datetime64[ns, UTC]``.

    Args:
        root: The log's root.
        dates: Only the labels of requests first predicted on these dates (None: all).
    """
    segments = label_segments(root, None if dates is None else sorted(set(dates)))
    frame = read_segments(segments, LABEL_SCHEMA, columns=list(LABEL_COLUMNS)).to_pandas()
    frame["label"] = frame["label"].astype("int64")
    return frame.sort_values(["labelled_at", "request_id"], ignore_index=True)


def _parse(labels: Iterable[tuple[str, int | bool, datetime]]) -> tuple[list[tuple[str, int, datetime]], list[str]]:
    batch: list[tuple[str, int, datetime]] = []
    malformed: list[str] = []
    for entry in labels:
        try:
            request_id, label, labelled_at = entry
        except (TypeError, ValueError):
            malformed.append(f"{entry!r} is not a (request_id, label, labelled_at) triple")
            continue
        if not isinstance(request_id, str) or not request_id:
            malformed.append(f"request id {request_id!r} must be a non-empty string")
        elif not (isinstance(label, bool) or (isinstance(label, numbers.Integral) and label in (0, 1))):
            malformed.append(f"{request_id}: label {label!r} must be 0 or 1")
        elif not isinstance(labelled_at, datetime):
            malformed.append(f"{request_id}: labelled_at {labelled_at!r} must be a datetime")
        else:
            batch.append((request_id, int(label), as_utc(labelled_at, "labelled_at")))
    return batch, malformed


def _first_predictions(
    root: str, ids: set[str], earliest: datetime | None, latest: datetime | None, window: timedelta
) -> dict[str, datetime]:
    """When each of ``ids`` was first predicted, scanning hours newest first until all are found."""
    if not ids or earliest is None or latest is None:
        return {}
    by_hour: dict[datetime, list[Segment]] = {}
    for segment in prediction_segments(root, earliest - window, latest):
        by_hour.setdefault(segment.start, []).append(segment)
    wanted = pa.array(sorted(ids), pa.string())
    first: dict[str, datetime] = {}
    missing = set(ids)
    hours = sorted(by_hour, reverse=True)
    start, size = 0, 1
    while missing and start < len(hours):
        # Steps of 1, 2, 4... hours: at most twice the hours needed, in few rounds of concurrent reads.
        step = hours[start : start + size]
        start, size = start + size, 2 * size
        missing -= _found(step, by_hour, wanted, first)
        if not missing:
            # A shadow's predictions of one request, moments apart, may sit in the hour before
            # the oldest one read: read it too, for the first prediction.
            _found([step[-1] - timedelta(hours=1)], by_hour, wanted, first)
    return first


def _found(
    hours: list[datetime], by_hour: dict[datetime, list[Segment]], wanted: pa.Array, first: dict[str, datetime]
) -> set[str]:
    """Reads ``hours``' predictions of the ``wanted`` ids into ``first``; returns the ids found."""
    segments = [segment for hour in hours for segment in by_hour.get(hour, [])]
    table = read_segments(segments, PREDICTION_SCHEMA, columns=["request_id", "timestamp"], only_ids=wanted)
    table = table.group_by("request_id").aggregate([("timestamp", "min")])
    for request_id, moment in zip(table["request_id"].to_pylist(), table["timestamp_min"].to_pylist()):
        first[request_id] = min(moment, first.get(request_id, moment))
    return set(table["request_id"].to_pylist())


def _recorded(root: str, ids: set[str], dates: list[date]) -> dict[str, tuple[int, datetime]]:
    """The labels already recorded for ``ids`` (label, labelled_at), from the partitions of ``dates``."""
    if not ids or not dates:
        return {}
    wanted = pa.array(sorted(ids), pa.string())
    table = read_segments(label_segments(root, dates), LABEL_SCHEMA, columns=list(LABEL_COLUMNS), only_ids=wanted)
    return {
        request_id: (label, at)
        for request_id, label, at in zip(
            table["request_id"].to_pylist(), table["label"].to_pylist(), table["labelled_at"].to_pylist()
        )
    }


def _write(root: str, new: list[tuple[str, int, datetime]], first_seen: dict[str, datetime]) -> str | None:
    by_date: dict[date, list[tuple[str, int, datetime]]] = {}
    for entry in new:
        by_date.setdefault(first_seen[entry[0]].date(), []).append(entry)
    uri = None
    for day, entries in sorted(by_date.items()):
        latest = max(at for _, _, at in entries)
        name = f"{latest:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}{SEGMENT_SUFFIX}"
        uri = storage.join(label_partition(root, day), name)
        table = pa.table(
            {
                "request_id": [r for r, _, _ in entries],
                "label": [y for _, y, _ in entries],
                "labelled_at": [at for _, _, at in entries],
                "predicted_at": [first_seen[r] for r, _, _ in entries],
            },
            schema=LABEL_SCHEMA,
        )
        write_segment(uri, table)
    compaction.compact_labels(root, list(by_date))
    return uri
