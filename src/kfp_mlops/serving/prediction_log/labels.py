"""Labels: recorded in batches, each checked against the predictions it refers to -- without reading the log.

A label is stored in the ``date`` partition of its request's **first prediction**
(``labels/date=<prediction date>/``), so a reader of a prediction window reads only the labels of
its own dates (:func:`~kfp_mlops.serving.prediction_log.join.join`).

What recording a batch costs -- the batch and the hours its requests were predicted in, never
the log's history (O(batch), not O(log), for labels that follow their predictions):

* **Which predictions are read.** A label comes after its prediction and, by contract, at most
  ``label_window`` (default 7 days) after it. The prediction hours from the batch's latest
  ``labelled_at`` back to its earliest minus ``label_window`` are the only ones its ids can be in;
  they are read **newest first**, in steps of 1, 2, 4... hours (two columns, ``request_id`` and
  ``timestamp``, kept for the batch's ids only), and the scan **stops as soon as every id is
  found**.
  Labels usually follow their predictions closely (the feedback endpoint: seconds; a fraud
  team's import: days), so the scan touches the hours between the batch's oldest prediction
  and its labels -- never the log's history, which may be years. Only a batch with an unknown id
  reads the whole window, and is then refused.
* **Which labels are read.** Only the label partitions of the dates its predictions were found
  in, for the duplicate check; the checks themselves are column-wise (pandas), not per label.

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
    import pandas as pd

    batch, malformed = _parse(labels)
    if not batch and not malformed:
        return None
    # Columnar from here on: the checks cost a few vectorised passes, not Python per label.
    frame = pd.DataFrame(batch, columns=list(LABEL_COLUMNS))
    frame["labelled_at"] = pd.to_datetime(frame["labelled_at"], utc=True)
    ids = set(frame["request_id"])
    if ids:
        first = _first_predictions(root, ids, frame["labelled_at"].min(), frame["labelled_at"].max(), label_window)
    else:  # every entry malformed
        first = pd.Series(dtype="datetime64[us, UTC]")
    frame["predicted_at"] = frame["request_id"].map(first)
    dates = sorted(day.date() for day in first.dt.floor("D").unique())
    recorded = _recorded(root, ids, dates).set_index("request_id")
    frame = frame.join(recorded, on="request_id", rsuffix="_recorded")

    unknown = frame["predicted_at"].isna()
    early = ~unknown & (frame["labelled_at"] < frame["predicted_at"])
    already = frame["label_recorded"].notna()
    changed = already & (
        (frame["label"] != frame["label_recorded"]) | (frame["labelled_at"] != frame["labelled_at_recorded"])
    )
    duplicated = frame["request_id"].duplicated(keep=False) | changed
    problems = [
        f"{what} [{len(found)}]: {some(found)}"
        for what, found in (
            ("malformed label(s)", malformed),
            (
                f"unknown request id(s) (no prediction in the {label_window} before the label)",
                list(frame.loc[unknown, "request_id"]),
            ),
            (
                "duplicate label(s) (twice in the batch or already recorded)",
                sorted(set(frame.loc[duplicated, "request_id"])),
            ),
            (
                "label(s) timestamped before their prediction",
                [
                    f"{r} (labelled {at.isoformat()}, predicted {p.isoformat()})"
                    for r, at, p in frame.loc[early, ["request_id", "labelled_at", "predicted_at"]].itertuples(
                        index=False
                    )
                ],
            ),
        )
        if found
    ]
    if problems:
        raise DataError(f"labels for {storage.join(root, LABELS)} rejected, nothing written: {'; '.join(problems)}")
    return _write(root, frame.loc[~already, ["request_id", "label", "labelled_at", "predicted_at"]])


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
        elif not (type(label) in (int, bool) or isinstance(label, numbers.Integral)) or label not in (0, 1):
            malformed.append(f"{request_id}: label {label!r} must be 0 or 1")
        elif not isinstance(labelled_at, datetime):
            malformed.append(f"{request_id}: labelled_at {labelled_at!r} must be a datetime")
        else:
            batch.append((request_id, int(label), labelled_at))  # made UTC column-wise (naive: taken as UTC)
    return batch, malformed


def _first_predictions(root: str, ids: set[str], earliest: datetime, latest: datetime, window: timedelta) -> pd.Series:
    """When each of ``ids`` was first predicted (by request id), scanning hours newest first until all are found."""
    by_hour: dict[datetime, list[Segment]] = {}
    for segment in prediction_segments(root, as_utc(earliest, "labelled_at") - window, as_utc(latest, "labelled_at")):
        by_hour.setdefault(segment.start, []).append(segment)
    wanted = pa.array(list(ids), pa.string())
    found: list[pa.Table] = []
    missing = set(ids)
    hours = sorted(by_hour, reverse=True)
    start, size = 0, 1
    while missing and start < len(hours):
        # Steps of 1, 2, 4... hours: at most twice the hours needed, in few rounds of concurrent reads.
        step = hours[start : start + size]
        start, size = start + size, 2 * size
        found.append(_read(step, by_hour, wanted))
        missing -= set(found[-1]["request_id"].to_pylist())
        if not missing:
            # A shadow's predictions of one request, moments apart, may sit in the hour before
            # the oldest one read: read it too, for the first prediction.
            found.append(_read([step[-1] - timedelta(hours=1)], by_hour, wanted))
    table = pa.concat_tables(found) if found else PREDICTION_SCHEMA.empty_table().select(["request_id", "timestamp"])
    first = table.group_by("request_id").aggregate([("timestamp", "min")]).to_pandas()
    return first.set_index("request_id")["timestamp_min"]


def _read(hours: list[datetime], by_hour: dict[datetime, list[Segment]], wanted: pa.Array) -> pa.Table:
    """``hours``' predictions of the ``wanted`` ids: request id and time."""
    segments = [segment for hour in hours for segment in by_hour.get(hour, [])]
    return read_segments(segments, PREDICTION_SCHEMA, columns=["request_id", "timestamp"], only_ids=wanted)


def _recorded(root: str, ids: set[str], dates: list[date]) -> pd.DataFrame:
    """The labels already recorded for ``ids``, from the partitions of ``dates``: request id, label, labelled_at."""
    wanted = pa.array(list(ids), pa.string())
    segments = label_segments(root, dates) if dates else []
    return read_segments(segments, LABEL_SCHEMA, columns=list(LABEL_COLUMNS), only_ids=wanted).to_pandas()


def _write(root: str, new: pd.DataFrame) -> str | None:
    """One segment per prediction date; then the label partitions written to are compacted if crowded."""
    days = new["predicted_at"].dt.date
    uri = None
    for day, entries in new.groupby(days, sort=True):
        name = f"{entries['labelled_at'].max():%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}{SEGMENT_SUFFIX}"
        uri = storage.join(label_partition(root, day), name)
        write_segment(uri, pa.Table.from_pandas(entries, schema=LABEL_SCHEMA, preserve_index=False))
    compaction.compact_labels(root, sorted(set(days)))
    return uri
