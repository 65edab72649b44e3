"""Compaction: the small segments of a closed partition merged into one.

A writer cuts a segment every few seconds, so an hour of one predictor is hundreds of small
objects; a reader pays one request per object. :func:`compact` merges each closed hour
partition's segments into one ``compacted-<digest>.parquet`` (rows sorted by time and request
id) and :func:`compact_labels` does the same for label partitions.

Safe against concurrent readers and compactions, with create-only writes only:

1. the merged segment is **written first**, under a name derived from the names it replaces
   (two compactions of the same segments write the same bytes under the same name: the second
   write is a no-op), then
2. the segments it replaces are **deleted**.

A reader that lists the partition between 1 and 2 sees the rows twice and reads them once (exact
copies in a partition with a compacted segment are dropped:
:func:`~kfp_mlops.serving.prediction_log.partitions.read_segments`); one that listed before 1
and finds a segment gone after 2 lists the partition again and reads the merged one. A segment
that lands in an hour after its compaction (a retried write) is merged at the next one.

Triggered by every :class:`~kfp_mlops.serving.prediction_log.writer.PredictionLogWriter` (its
flusher compacts the last day's closed hours of its predictors every ``compact_every_s``) and by
:func:`~kfp_mlops.serving.prediction_log.labels.record_labels` (the prediction dates it wrote to,
once they hold several segments); callable directly, e.g. from a scheduled job.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa

from kfp_mlops.core import storage
from kfp_mlops.core.errors import StorageError
from kfp_mlops.serving.prediction_log.partitions import (
    COMPACTED_PREFIX,
    SEGMENT_SUFFIX,
    Segment,
    label_segments,
    prediction_segments,
    read_segments,
    write_segment,
)
from kfp_mlops.serving.prediction_log.records import LABEL_SCHEMA, PREDICTION_SCHEMA, as_utc

logger = logging.getLogger(__name__)

# An hour is compacted once it ended this long ago: writers flush within seconds, retries within a minute.
GRACE = timedelta(minutes=10)
LABEL_SEGMENTS = 8  # a label partition is compacted once it holds this many segments


def compact(
    root: str,
    *,
    predictor: str | None = None,
    since: datetime | None = None,
    before: datetime | None = None,
) -> list[str]:
    """Merges the segments of every closed prediction hour in ``[since, before - GRACE]``.

    Args:
        root: The log's root.
        predictor: Only this predictor's partitions (None: all).
        since: Leave out earlier hours (None: from the first).
        before: Now (None: the clock); hours that ended less than :data:`GRACE` before it are left open.

    Returns:
        The URIs of the merged segments written.
    """
    cutoff = as_utc(before or datetime.now(timezone.utc), "before") - GRACE
    since = None if since is None else as_utc(since, "since")
    partitions: dict[str, list[Segment]] = {}
    for segment in prediction_segments(root, since, cutoff):
        if (predictor is None or segment.predictor == predictor) and segment.start + timedelta(hours=1) <= cutoff:
            partitions.setdefault(segment.partition, []).append(segment)
    return _merge_all(partitions, PREDICTION_SCHEMA, ["timestamp", "request_id"])


def compact_labels(root: str, dates: Sequence[date], *, min_segments: int = LABEL_SEGMENTS) -> list[str]:
    """Merges the label partitions of ``dates`` that hold at least ``min_segments`` segments.

    Returns:
        The URIs of the merged segments written.
    """
    partitions: dict[str, list[Segment]] = {}
    for segment in label_segments(root, sorted(set(dates))):
        partitions.setdefault(segment.partition, []).append(segment)
    crowded = {p: segments for p, segments in partitions.items() if len(segments) >= min_segments}
    return _merge_all(crowded, LABEL_SCHEMA, ["labelled_at", "request_id"])


def _merge_all(partitions: dict[str, list[Segment]], schema: pa.Schema, order: list[str]) -> list[str]:
    written = []
    for partition, segments in sorted(partitions.items()):
        if len(segments) < 2:
            continue
        try:
            written.append(_merge(partition, segments, schema, order))
        except StorageError as exc:  # e.g. a concurrent compaction deleted an input: the next run retries
            logger.warning("prediction log: %s not compacted: %s", partition, exc)
    return written


def _merge(partition: str, segments: list[Segment], schema: pa.Schema, order: list[str]) -> str:
    names = sorted(s.uri.rsplit("/", 1)[-1] for s in segments)
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:20]
    uri = storage.join(partition, f"{COMPACTED_PREFIX}{digest}{SEGMENT_SUFFIX}")
    table = read_segments(segments, schema, distinct=False)
    table = table.group_by(table.column_names, use_threads=False).aggregate([])  # copies: once
    write_segment(uri, table.sort_by([(name, "ascending") for name in order]))
    for segment in segments:
        storage.delete(segment.uri)
    return uri
