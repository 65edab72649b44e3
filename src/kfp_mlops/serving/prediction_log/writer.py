"""The writer: a bounded in-memory buffer that a background thread turns into Parquet segments.

:meth:`PredictionLogWriter.log` never touches storage: it checks the record, turns it into its
row (JSON inputs, so a bad value is refused at once) and appends it to its partition's buffer
under a lock -- microseconds, on the serving thread. A daemon thread (started by the first
``log``) cuts a segment of a partition (predictor, date, hour) when it holds ``max_records`` rows
or its oldest row has waited ``max_age_s``, writes it create-only, and, every
``compact_every_s``, compacts the closed hours of the predictors it wrote
(:mod:`.compaction`).

Nothing a failing storage does can delay an answer or grow memory without bound:

* at most ``max_buffered`` rows are held (buffered and waiting to be written); a record logged
  beyond that is **dropped**;
* a segment whose write fails is retried with backoff (same name, same bytes: a retry never
  duplicates rows) up to ``max_attempts`` times, then dropped with its rows.

Drops are counted (:attr:`PredictionLogWriter.dropped`), reported to ``on_drop`` (the serving
runtime feeds a Prometheus counter: :meth:`kfp_mlops.serving.metrics.ServingMetrics.observe_log_dropped`)
and logged as a warning. :meth:`~PredictionLogWriter.flush` writes everything on the caller's
thread (tests, shutdown) and raises when storage fails, keeping the segment for a retry.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow as pa

from kfp_mlops.core import storage
from kfp_mlops.core.errors import DataError
from kfp_mlops.serving.prediction_log import compaction
from kfp_mlops.serving.prediction_log.partitions import SEGMENT_SUFFIX, prediction_partition, write_segment
from kfp_mlops.serving.prediction_log.records import PREDICTION_SCHEMA, PredictionRecord

logger = logging.getLogger(__name__)

_Key = tuple[str, datetime]  # (predictor, hour): one partition
_TICK_S = 1.0  # the flusher's longest sleep: age limits and retry times are checked this often
_WARN_EVERY_S = 10.0


@dataclass
class _Buffer:
    rows: list[dict[str, Any]] = field(default_factory=list)
    since: float = 0.0  # time.monotonic() of the first buffered row


@dataclass
class _Pending:
    uri: str
    table: pa.Table
    attempts: int = 0
    next_try: float = 0.0


class PredictionLogWriter:
    """Buffers prediction records and writes them as immutable Parquet segments in the background.

    Args:
        root: The log's root (local path or ``gs://bucket/prefix``).
        max_records: Rows of one partition that make a segment.
        max_age_s: A partition's rows are also written once the oldest has waited this long.
        max_buffered: Rows held at most (buffered or waiting for a retry); more are dropped.
        max_attempts: Writes of one segment before its rows are dropped.
        retry_delay_s: Wait before the first retry; doubled for each further one.
        compact_every_s: How often the flusher compacts the closed hours of the predictors this
            writer logged for (None: never).
        on_drop: Called with the number of rows dropped, whenever rows are dropped.

    Use it as a context manager, or call :meth:`close`, so the last records are written.
    """

    def __init__(
        self,
        root: str,
        *,
        max_records: int = 1000,
        max_age_s: float = 10.0,
        max_buffered: int = 100_000,
        max_attempts: int = 5,
        retry_delay_s: float = 1.0,
        compact_every_s: float | None = 3600.0,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        if max_records < 1 or max_buffered < 1 or max_attempts < 1:
            raise DataError(
                f"prediction log {root}: max_records={max_records}, max_buffered={max_buffered}, "
                f"max_attempts={max_attempts}; each must be at least 1"
            )
        self.root = root
        self.max_records = max_records
        self.max_age_s = max_age_s
        self.max_buffered = max_buffered
        self.max_attempts = max_attempts
        self.retry_delay_s = retry_delay_s
        self.compact_every_s = compact_every_s
        self.on_drop = on_drop
        self.dropped = 0
        self._writer_id = uuid.uuid4().hex[:8]
        self._sequence = 0
        self._held = 0  # rows buffered or pending
        self._buffers: dict[_Key, _Buffer] = {}
        self._pending: list[_Pending] = []
        self._predictors: set[str] = set()
        self._lock = threading.Lock()  # buffers, pending, counters
        self._write_lock = threading.Lock()  # one thread writes at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._compacted_at = time.monotonic()
        self._warned_at = -_WARN_EVERY_S

    def log(self, record: PredictionRecord) -> None:
        """Buffers one record (never writes: see the module docstring); drops it when the buffer is full.

        Raises:
            DataError: a feature value is not JSON-serialisable (nothing is buffered).
        """
        row = record.row()
        hour = record.timestamp.replace(minute=0, second=0, microsecond=0)
        now = time.monotonic()
        with self._lock:
            if self._held >= self.max_buffered:
                full = True
            else:
                full = False
                self._held += 1
                buffer = self._buffers.setdefault((record.predictor, hour), _Buffer(since=now))
                buffer.rows.append(row)
                if len(buffer.rows) >= self.max_records:
                    self._wake.set()
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._run, name=f"prediction-log-{self._writer_id}", daemon=True)
                self._thread.start()
        if full:
            self._drop(1, f"{self.max_buffered} rows already held")

    def flush(self) -> list[str]:
        """Writes every buffered record and every pending segment now, on the caller's thread.

        Returns:
            The URIs of the segments written.

        Raises:
            StorageError: a write failed; that segment and the ones after it stay pending (the
                failure counts as one of the segment's attempts).
        """
        self._cut(everything=True)
        return self._write(retry_all=True, raise_errors=True)

    def close(self) -> list[str]:
        """Stops the background thread and flushes; a later :meth:`log` starts it again."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        return self.flush()

    def __enter__(self) -> PredictionLogWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(max(0.01, min(_TICK_S, self.max_age_s)))
            self._wake.clear()
            try:
                self._cut(everything=False)
                self._write(retry_all=False, raise_errors=False)
                self._compact_if_due()
            except Exception:  # the thread must outlive any failure; the next tick tries again
                logger.exception("prediction log %s: background flush failed", self.root)

    def _cut(self, *, everything: bool) -> None:
        """Turns full, old (or, with ``everything``, all) buffers into pending segments."""
        now = time.monotonic()
        with self._lock:
            due = [
                key
                for key, buffer in self._buffers.items()
                if everything or len(buffer.rows) >= self.max_records or now - buffer.since >= self.max_age_s
            ]
            cut = [(key, self._buffers.pop(key).rows) for key in due]
            for (predictor, _), _rows in cut:
                self._predictors.add(predictor)
                self._sequence += 1
            first_sequence = self._sequence - len(cut) + 1
        for offset, ((predictor, hour), rows) in enumerate(cut):
            name = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{self._writer_id}-{first_sequence + offset:06d}"
            uri = storage.join(prediction_partition(self.root, predictor, hour), name + SEGMENT_SUFFIX)
            pending = _Pending(uri, pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA))
            with self._lock:
                self._pending.append(pending)

    def _write(self, *, retry_all: bool, raise_errors: bool) -> list[str]:
        written: list[str] = []
        with self._write_lock:
            with self._lock:
                now = time.monotonic()
                batch = [p for p in self._pending if retry_all or p.next_try <= now]
            for segment in batch:
                try:
                    write_segment(segment.uri, segment.table)
                except Exception as exc:
                    self._failed(segment, exc)
                    if raise_errors:
                        raise
                    continue
                with self._lock:
                    self._pending.remove(segment)
                    self._held -= len(segment.table)
                written.append(segment.uri)
        return written

    def _failed(self, segment: _Pending, exc: Exception) -> None:
        with self._lock:
            segment.attempts += 1
            segment.next_try = time.monotonic() + self.retry_delay_s * 2 ** (segment.attempts - 1)
            given_up = segment.attempts >= self.max_attempts
            if given_up:
                self._pending.remove(segment)
                self._held -= len(segment.table)
        if given_up:
            self._drop(len(segment.table), f"{segment.uri} not written after {segment.attempts} attempts: {exc}")
        else:
            logger.warning(
                "prediction log: %s not written (attempt %d), will retry: %s", segment.uri, segment.attempts, exc
            )

    def _drop(self, rows: int, why: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.dropped += rows
            warn = now - self._warned_at >= _WARN_EVERY_S
            if warn:
                self._warned_at = now
        if warn:  # not once per record while a buffer stays full
            logger.warning("prediction log %s: %d record(s) dropped so far, last: %s", self.root, self.dropped, why)
        if self.on_drop is not None:
            self.on_drop(rows)

    def _compact_if_due(self) -> None:
        if self.compact_every_s is None or time.monotonic() - self._compacted_at < self.compact_every_s:
            return
        self._compacted_at = time.monotonic()
        now = datetime.now(timezone.utc)
        for predictor in sorted(self._predictors):
            compaction.compact(self.root, predictor=predictor, since=now - timedelta(days=1), before=now)
