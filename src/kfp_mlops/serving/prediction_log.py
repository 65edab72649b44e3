"""The prediction log: every prediction a predictor made and every label that arrived later.

Append-only on any storage root (a local folder, the GCS emulator or ``gs://``), through
:mod:`kfp_mlops.core.storage` -- one code path. Object storage cannot append to an object, so the log
is a set of immutable **segments**, JSON Lines objects written once with ``create_only=True``
and never rewritten::

    <root>/predictions/<predictor>/<last timestamp>-<writer id>-<sequence>.jsonl
    <root>/labels/<last labelled_at>-<writer id>-<sequence>.jsonl

A segment's name starts with the latest timestamp of its records (``20261102T101500123456Z``),
so a reader looking for predictions since a time skips older segments without opening them; the
random writer id and the per-writer sequence keep names of concurrent writers apart. A local
folder gets the same layout rather than one file opened for appending: one code path, and a
reader never sees half a segment (``storage.write_bytes`` links a complete file into place).

* :class:`PredictionLogWriter` buffers :class:`PredictionRecord` s in memory (thread-safe) and
  writes one segment per predictor when ``max_records`` are buffered, when the oldest buffered
  record is older than ``max_age_s`` at the next :meth:`~PredictionLogWriter.log`, or on
  :meth:`~PredictionLogWriter.flush` / close. A failed write keeps its segment (same name, same
  bytes) for the next flush, so a retry never duplicates records.
* :func:`record_labels` appends a batch of ``(request_id, label, labelled_at)``. A batch with
  labels for unknown request ids, duplicate labels (twice in the batch or already recorded), or
  labels timestamped before their prediction is refused whole with a :class:`DataError` naming
  the ids; nothing is written. Labels have one writer (the label feed): two concurrent batches
  for the same id could both pass the check, and :func:`join` then refuses the log.
* :func:`join` returns predictions made by a time (and since another), with the labels known by
  that time, matched by request id -- one row per (request id, predictor).

Readers open every segment below ``predictions/`` (those older than ``since`` excepted) and
``labels/``, and :func:`record_labels` reads every prediction to check a batch; a log of millions
of rows wants compaction into Parquet, which is not done here.

The writer, the readers and the label check share the segment layout and the record's JSON form,
so they stay in this one module although it is longer than most.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeGuard

from kfp_mlops.core import storage
from kfp_mlops.core.errors import AlreadyExistsError, DataError

if TYPE_CHECKING:
    import pandas as pd

PREDICTIONS = "predictions"
LABELS = "labels"
SEGMENT_SUFFIX = ".jsonl"
STATUSES = ("ok", "error")
PREDICTION_COLUMNS = (
    "request_id",
    "predictor",
    "model_version",
    "timestamp",
    "features",
    "score",
    "decision",
    "latency_ms",
    "status",
    "error",
)
LABEL_COLUMNS = ("request_id", "label", "labelled_at")
_PREDICTOR_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_STAMP = "%Y%m%dT%H%M%S%fZ"
_LISTED = 10  # ids named per problem in an error message


@dataclass(frozen=True)
class PredictionRecord:
    """One prediction (or failed attempt) by one predictor.

    Attributes:
        request_id: The request's id; the same for every predictor that scored it (shadow).
        predictor: The predictor's name in the deployment (a DNS-1123 label).
        model_version: The version of the model that answered.
        features: The model's inputs, by feature name (JSON values).
        score: The fraud probability in [0, 1]; ``None`` for an error.
        decision: What was done with the score (e.g. ``approve`` / ``decline``); ``None`` for an error.
        latency_ms: Time to answer (or to fail), in milliseconds.
        status: ``ok`` or ``error`` (a failure or a timeout).
        timestamp: When the request arrived; a naive datetime is taken as UTC.
        error: What went wrong, for an error.

    Raises:
        DataError: a field is invalid; the message names the request id and the field.
    """

    request_id: str
    predictor: str
    model_version: str
    features: Mapping[str, Any]
    score: float | None
    decision: str | None
    latency_ms: float
    status: str
    timestamp: datetime
    error: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "timestamp", as_utc(self.timestamp, f"prediction {self.request_id!r}: timestamp"))
        found = []
        if not isinstance(self.request_id, str) or not self.request_id:
            found.append("request_id must be a non-empty string")
        if not isinstance(self.predictor, str) or not _PREDICTOR_NAME.match(self.predictor):
            found.append(f"predictor {self.predictor!r} must be a DNS-1123 label")
        if self.status not in STATUSES:
            found.append(f"status {self.status!r} must be one of {', '.join(STATUSES)}")
        if self.status == "ok":
            if not _is_real(self.score) or not 0.0 <= self.score <= 1.0:
                found.append(f"score {self.score!r} must be a probability in [0, 1]")
            if not isinstance(self.decision, str) or not self.decision:
                found.append(f"decision {self.decision!r} must be a non-empty string")
        if not _is_real(self.latency_ms) or self.latency_ms < 0:
            found.append(f"latency_ms {self.latency_ms!r} must be a non-negative number")
        if not isinstance(self.features, Mapping):
            found.append(f"features must be a mapping of feature name to value, got {type(self.features).__name__}")
        if found:
            raise DataError(f"prediction {self.request_id!r} by {self.predictor!r}: {'; '.join(found)}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of one log line."""
        return {
            "request_id": self.request_id,
            "predictor": self.predictor,
            "model_version": self.model_version,
            "timestamp": self.timestamp.isoformat(),
            "features": dict(self.features),
            "score": None if self.score is None else float(self.score),
            "decision": self.decision,
            "latency_ms": float(self.latency_ms),
            "status": self.status,
            "error": self.error,
        }


@dataclass(frozen=True)
class _Segment:
    uri: str
    data: bytes


@dataclass
class _Buffer:
    lines: list[bytes] = field(default_factory=list)
    latest: datetime | None = None
    since: float = 0.0  # time.monotonic() of the first buffered line


class PredictionLogWriter:
    """An in-process buffer that writes prediction records as immutable segments.

    Args:
        root: The log's root (local path or ``gs://bucket/prefix``).
        max_records: Records per predictor that trigger a segment.
        max_age_s: A segment is also cut, at the next :meth:`log`, once its oldest record has
            waited this long (so a quiet predictor's records still land).

    Use it as a context manager, or call :meth:`close`, so the last records are written.
    """

    def __init__(self, root: str, *, max_records: int = 1000, max_age_s: float = 10.0) -> None:
        if max_records < 1:
            raise DataError(f"prediction log {root}: max_records={max_records}; expected at least 1")
        self.root = root
        self.max_records = max_records
        self.max_age_s = max_age_s
        self._writer_id = uuid.uuid4().hex[:8]
        self._sequence = 0
        self._buffers: dict[str, _Buffer] = {}
        self._pending: list[_Segment] = []
        self._lock = threading.Lock()

    def log(self, record: PredictionRecord) -> list[str]:
        """Buffers one record; writes segments when a buffer is full or old enough.

        Returns:
            The URIs of the segments written by this call (usually none).

        Raises:
            DataError: a feature value is not JSON-serialisable (nothing is buffered).
            StorageError: a segment could not be written; it is kept for the next flush.
        """
        try:
            line = (json.dumps(record.to_dict(), default=_json_scalar, allow_nan=False) + "\n").encode()
        except (TypeError, ValueError) as exc:
            raise DataError(f"prediction {record.request_id!r} by {record.predictor!r}: features: {exc}") from None
        now = time.monotonic()
        with self._lock:
            buffer = self._buffers.setdefault(record.predictor, _Buffer())
            if not buffer.lines:
                buffer.since = now
            buffer.lines.append(line)
            buffer.latest = record.timestamp if buffer.latest is None else max(buffer.latest, record.timestamp)
            due = any(
                len(b.lines) >= self.max_records or (b.lines and now - b.since >= self.max_age_s)
                for b in self._buffers.values()
            )
        return self.flush() if due else []

    def flush(self) -> list[str]:
        """Writes every buffered record (and any segment a failed write left behind).

        Returns:
            The URIs of the segments written.

        Raises:
            StorageError: a write failed; that segment and the ones after it stay pending.
        """
        with self._lock:
            for predictor, buffer in self._buffers.items():
                if buffer.lines:
                    self._pending.append(self._cut(predictor, buffer))
            self._buffers.clear()
            batch, self._pending = self._pending, []
        written: list[str] = []
        for i, segment in enumerate(batch):
            try:
                try:
                    storage.write_bytes(segment.uri, segment.data, create_only=True)
                except AlreadyExistsError:
                    # An earlier attempt landed although it reported a failure -- or, never
                    # expected, another writer took the name: only identical bytes mean the former.
                    if storage.read_bytes(segment.uri) != segment.data:
                        raise
            except Exception:
                self._requeue(batch[i:])
                raise
            written.append(segment.uri)
        return written

    def close(self) -> list[str]:
        """Flushes; the writer stays usable."""
        return self.flush()

    def __enter__(self) -> PredictionLogWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.flush()

    def _cut(self, predictor: str, buffer: _Buffer) -> _Segment:
        self._sequence += 1
        name = f"{buffer.latest:{_STAMP}}-{self._writer_id}-{self._sequence:06d}{SEGMENT_SUFFIX}"
        return _Segment(storage.join(self.root, PREDICTIONS, predictor, name), b"".join(buffer.lines))

    def _requeue(self, segments: list[_Segment]) -> None:
        with self._lock:
            self._pending[:0] = segments


def read_predictions(root: str, *, since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
    """Every logged prediction with ``since <= timestamp <= until`` (bounds optional).

    Returns:
        Columns :data:`PREDICTION_COLUMNS`, ``timestamp`` as ``datetime64[ns, UTC]``,
        ``features`` as dicts; sorted by predictor, timestamp and request id.
    """
    import pandas as pd

    since = None if since is None else as_utc(since, "since")
    until = None if until is None else as_utc(until, "until")
    rows: list[dict[str, Any]] = []
    for uri in _segments(storage.join(root, PREDICTIONS)):
        if since is not None and _segment_time(uri) < since:
            continue  # its latest record is older than `since`
        rows.extend(_read_segment(uri))
    frame = pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    frame["score"] = frame["score"].astype(float)
    frame["latency_ms"] = frame["latency_ms"].astype(float)
    if since is not None:
        frame = frame[frame["timestamp"] >= since]
    if until is not None:
        frame = frame[frame["timestamp"] <= until]
    return frame.sort_values(["predictor", "timestamp", "request_id"], ignore_index=True)


def read_labels(root: str) -> pd.DataFrame:
    """Every recorded label: columns :data:`LABEL_COLUMNS`, ``labelled_at`` as ``datetime64[ns, UTC]``."""
    import pandas as pd

    rows = [row for uri in _segments(storage.join(root, LABELS)) for row in _read_segment(uri)]
    frame = pd.DataFrame(rows, columns=list(LABEL_COLUMNS))
    frame["label"] = frame["label"].astype("int64")
    frame["labelled_at"] = pd.to_datetime(frame["labelled_at"], utc=True, format="ISO8601")
    return frame.sort_values(["labelled_at", "request_id"], ignore_index=True)


def record_labels(root: str, labels: Iterable[tuple[str, int | bool, datetime]]) -> str | None:
    """Appends a batch of labels as one segment, after checking every label against the log.

    Args:
        root: The log's root.
        labels: ``(request_id, label, labelled_at)`` triples; ``label`` is 1 (fraud) or 0, or a
            bool; a naive ``labelled_at`` is taken as UTC.

    Returns:
        The segment's URI, or ``None`` for an empty batch.

    Raises:
        DataError: the batch has labels for unknown request ids, duplicates (in the batch or
            already recorded), labels timestamped before their request's first prediction, or
            malformed entries; the message names the ids, and nothing is written.
    """
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
        elif isinstance(label, bool) or (isinstance(label, numbers.Integral) and label in (0, 1)):
            if isinstance(labelled_at, datetime):
                batch.append((request_id, int(label), as_utc(labelled_at, "labelled_at")))
            else:
                malformed.append(f"{request_id}: labelled_at {labelled_at!r} must be a datetime")
        else:
            malformed.append(f"{request_id}: label {label!r} must be 0 or 1")
    if not batch and not malformed:
        return None

    predictions = read_predictions(root)
    first_seen = predictions.groupby("request_id")["timestamp"].min().to_dict()
    recorded = set(read_labels(root)["request_id"])
    seen: set[str] = set()
    unknown: list[str] = []
    duplicates: list[str] = []
    early: list[str] = []
    for request_id, _, labelled_at in batch:
        if request_id in seen or request_id in recorded:
            duplicates.append(request_id)
        seen.add(request_id)
        if request_id not in first_seen:
            unknown.append(request_id)
        elif labelled_at < first_seen[request_id]:
            predicted = first_seen[request_id].isoformat()
            early.append(f"{request_id} (labelled {labelled_at.isoformat()}, predicted {predicted})")
    problems = [
        f"{what} [{len(ids)}]: {_some(ids)}"
        for what, ids in (
            ("malformed label(s)", malformed),
            ("unknown request id(s)", unknown),
            ("duplicate label(s) (twice in the batch or already recorded)", sorted(set(duplicates))),
            ("label(s) timestamped before their prediction", early),
        )
        if ids
    ]
    if problems:
        raise DataError(f"labels for {storage.join(root, LABELS)} rejected, nothing written: {'; '.join(problems)}")
    latest = max(at for _, _, at in batch)
    name = f"{latest:{_STAMP}}-{uuid.uuid4().hex[:8]}-000001{SEGMENT_SUFFIX}"
    uri = storage.join(root, LABELS, name)
    lines = [
        json.dumps({"request_id": rid, "label": label, "labelled_at": at.isoformat()}) + "\n"
        for rid, label, at in batch
    ]
    storage.write_bytes(uri, "".join(lines).encode(), create_only=True)
    return uri


def join(root: str, as_of: datetime, *, since: datetime | None = None) -> pd.DataFrame:
    """Predictions made in ``[since, as_of]`` with the labels known at ``as_of``.

    Args:
        root: The log's root.
        as_of: The time the join looks from: later predictions and labels do not exist yet.
        since: Leave out earlier predictions (e.g. the start of a rollout stage).

    Returns:
        One row per (request id, predictor): :data:`PREDICTION_COLUMNS` plus ``label`` (1.0,
        0.0, or NaN while unknown) and ``labelled_at`` (NaT while unknown).

    Raises:
        DataError: a predictor logged a request id twice, or a request id has two labels.
    """
    as_of = as_utc(as_of, "as_of")
    predictions = read_predictions(root, since=since, until=as_of)
    twice = predictions[predictions.duplicated(["request_id", "predictor"], keep=False)]
    if not twice.empty:
        pairs = sorted({f"{r} by {p}" for r, p in zip(twice["request_id"], twice["predictor"])})
        raise DataError(f"prediction log {root}: request id(s) logged twice [{len(pairs)}]: {_some(pairs)}")
    labels = read_labels(root)
    labels = labels[labels["labelled_at"] <= as_of]
    relabelled = labels[labels["request_id"].duplicated(keep=False)]["request_id"]
    if not relabelled.empty:
        ids = sorted(set(relabelled))
        raise DataError(f"prediction log {root}: request id(s) labelled twice [{len(ids)}]: {_some(ids)}")
    joined = predictions.merge(labels, on="request_id", how="left", validate="many_to_one")
    joined["label"] = joined["label"].astype(float)
    return joined


def as_utc(moment: datetime, what: str) -> datetime:
    """``moment`` in UTC; a naive datetime is taken as UTC.

    Raises:
        DataError: ``moment`` is not a datetime (``what`` names it).
    """
    if not isinstance(moment, datetime):
        raise DataError(f"{what}: expected a datetime, got {type(moment).__name__} {moment!r}")
    if hasattr(moment, "to_pydatetime"):  # a pandas Timestamp: its isoformat() may carry nanoseconds
        moment = moment.to_pydatetime()
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _segments(prefix: str) -> list[str]:
    # Locally an in-progress write is a hidden temporary file next to the segment: skip it.
    return [
        uri
        for uri in storage.list_uris(prefix)
        if uri.endswith(SEGMENT_SUFFIX) and not uri.rsplit("/", 1)[-1].startswith(".")
    ]


def _segment_time(uri: str) -> datetime:
    stamp = uri.rsplit("/", 1)[-1].split("-", 1)[0]
    try:
        return datetime.strptime(stamp, _STAMP).replace(tzinfo=timezone.utc)
    except ValueError:
        raise DataError(f"{uri}: not a prediction log segment name (<{_STAMP}>-<writer>-<sequence>.jsonl)") from None


def _read_segment(uri: str) -> list[dict[str, Any]]:
    data = storage.read_bytes(uri)
    try:
        # One parse per segment, not per line: several times faster on large segments.
        return json.loads(b"[" + b",".join(data.splitlines()) + b"]")
    except ValueError:
        pass
    for number, line in enumerate(data.splitlines(), start=1):
        try:
            json.loads(line)
        except ValueError as exc:
            raise DataError(f"{uri}: line {number} is not valid JSON: {exc}") from None
    raise DataError(f"{uri}: not a JSON Lines segment")


def _some(items: list[str]) -> str:
    shown = ", ".join(items[:_LISTED])
    return shown if len(items) <= _LISTED else f"{shown} and {len(items) - _LISTED} more"


def _is_real(value: Any) -> TypeGuard[float]:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _json_scalar(value: Any) -> Any:
    # numpy scalars (a DataFrame row's values) are not JSON types but have a Python twin.
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON-serialisable")
