"""Labels imported in a batch: a CSV or Parquet file of ``request_id,label[,labelled_at]`` into the log.

Labels often arrive days after the predictions, from a warehouse (chargebacks, support tickets),
keyed by the request ids the servers issued and returned (``X-Request-Id``). This reads such a
file (local or ``gs://``), checks every row, and appends the labels to the prediction log in one
batch through :func:`~kfp_mlops.serving.prediction_log.record_labels`, which checks them against
the log again (unknown request ids, labels recorded twice, labels older than their prediction).

* ``request_id``: a non-empty string (a CSV is read as text, so ``0123`` stays ``0123``);
* ``label``: ``1`` (the positive class) or ``0``; ``true``/``false`` too, and booleans or whole
  numbers in Parquet;
* ``labelled_at`` (optional; another column with ``labelled_at_column``): when the label became
  known, ISO 8601 text or a Parquet timestamp, UTC unless it says otherwise; without the column,
  the time of the import.

The log takes labels up to :data:`~kfp_mlops.serving.prediction_log.LABEL_WINDOW` after their
prediction, and labels already recorded exactly so (same label, same time) are not written again,
so an import can be retried. A file with any bad row is refused whole, with one error naming the bad rows (the first
:data:`LISTED_ROWS` of them, and how many there are), and nothing is written; so is a batch the
log refuses. Other columns are ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfp_mlops.core import storage
from kfp_mlops.core.errors import DataError, StorageError
from kfp_mlops.serving.prediction_log import record_labels

if TYPE_CHECKING:
    import pandas as pd

REQUEST_ID, LABEL, LABELLED_AT = "request_id", "label", "labelled_at"
LISTED_ROWS = 20
_KINDS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_TRUE, _FALSE = {"1", "true"}, {"0", "false"}


@dataclass(frozen=True)
class LabelImport:
    """What an import appended to the log.

    Attributes:
        source: The file the labels came from.
        log_root: The prediction log's root.
        labels: How many labels were appended.
        positives: Of those, how many are 1.
        first_labelled_at: The earliest ``labelled_at`` (None: no labels).
        last_labelled_at: The latest ``labelled_at`` (None: no labels).
        segment: The (last) label segment written; None when nothing new was written (no labels,
            or all of them already recorded exactly so: a retried import).
    """

    source: str
    log_root: str
    labels: int
    positives: int
    first_labelled_at: datetime | None
    last_labelled_at: datetime | None
    segment: str | None

    def to_dict(self) -> dict[str, Any]:
        """The import as JSON values (times in ISO 8601)."""
        return {
            "source": self.source,
            "log_root": self.log_root,
            "labels": self.labels,
            "positives": self.positives,
            "first_labelled_at": None if self.first_labelled_at is None else self.first_labelled_at.isoformat(),
            "last_labelled_at": None if self.last_labelled_at is None else self.last_labelled_at.isoformat(),
            "segment": self.segment,
        }


def import_labels(
    source: str, log_root: str, *, labelled_at_column: str | None = None, now: datetime | None = None
) -> LabelImport:
    """Reads a labels file, checks every row, and appends the labels to the prediction log.

    Args:
        source: A ``.csv`` or ``.parquet`` file, local or ``gs://``.
        log_root: The prediction log's root.
        labelled_at_column: The column holding when each label became known (default:
            ``labelled_at`` when the file has it, else ``now``).
        now: The ``labelled_at`` of every label when the file has no such column (default: the
            current time).

    Returns:
        What was appended.

    Raises:
        DataError: the file cannot be read, lacks a column, has bad rows, or the log refuses
            the batch; nothing is written.
    """
    labels = read_label_file(source, labelled_at_column=labelled_at_column, now=now)
    try:
        segment = record_labels(log_root, labels)
    except DataError as exc:
        raise DataError(f"labels file {source}: {exc}") from None
    times = [at for _, _, at in labels]
    return LabelImport(
        source=source,
        log_root=log_root,
        labels=len(labels),
        positives=sum(label for _, label, _ in labels),
        first_labelled_at=min(times, default=None),
        last_labelled_at=max(times, default=None),
        segment=segment,
    )


def read_label_file(
    source: str, *, labelled_at_column: str | None = None, now: datetime | None = None
) -> list[tuple[str, int, datetime]]:
    """The ``(request_id, label, labelled_at)`` of every row of a labels file (see :func:`import_labels`).

    Raises:
        DataError: unreadable, a missing column, or bad rows (named, one error for all of them).
    """
    kind = _KINDS.get(Path(source.split("?", 1)[0]).suffix.lower())
    if kind is None:
        raise DataError(f"labels file {source}: expected a .csv or .parquet file")
    frame = _read(source, kind)
    time_column = labelled_at_column or (LABELLED_AT if LABELLED_AT in frame.columns else None)
    missing = [c for c in (REQUEST_ID, LABEL, time_column) if c is not None and c not in frame.columns]
    if missing:
        raise DataError(
            f"labels file {source}: no column {', '.join(repr(c) for c in missing)}; "
            f"it has {', '.join(repr(str(c)) for c in frame.columns) or 'none'}"
        )
    default_time = now or datetime.now(timezone.utc)
    times = frame[time_column].tolist() if time_column else [default_time] * len(frame)
    labels: list[tuple[str, int, datetime]] = []
    bad: list[str] = []
    for number, (request_id, label, labelled_at) in enumerate(
        zip(frame[REQUEST_ID].tolist(), frame[LABEL].tolist(), times), start=1
    ):
        problems = [
            problem
            for problem in (
                _request_id_problem(request_id),
                _label_problem(label),
                _time_problem(labelled_at, time_column),
            )
            if problem
        ]
        if problems:
            where = f"row {number} (line {number + 1})" if kind == "csv" else f"row {number}"
            bad.append(f"{where}: {'; '.join(problems)}")
        else:
            labels.append((request_id, _label(label), _utc(labelled_at)))
    if bad:
        shown = ". ".join(bad[:LISTED_ROWS])
        more = f". And {len(bad) - LISTED_ROWS} more bad row(s)" if len(bad) > LISTED_ROWS else ""
        raise DataError(f"labels file {source}: {len(bad)} bad row(s) of {len(frame)}, nothing written. {shown}{more}")
    return labels


def _read(source: str, kind: str) -> pd.DataFrame:
    import pandas as pd

    try:
        with storage.local_copy(source) as path:
            if kind == "csv":
                # As text: ids keep their leading zeros, and every value is checked here, not guessed.
                return pd.read_csv(path, dtype=str, keep_default_na=False)
            return pd.read_parquet(path)
    except StorageError as exc:
        raise DataError(f"labels file {exc}") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"labels file {source}: the file is empty") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"labels file {source}: cannot read as {kind}: {first_line}") from None


def _request_id_problem(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return None
    return f"request_id {_shown(value)} must be a non-empty string"


def _label_problem(value: Any) -> str | None:
    return None if _label(value) is not None else f"label {_shown(value)} must be 0 or 1 (or true/false)"


def _label(value: Any) -> Any:
    """0 or 1 for an accepted label value, else None."""
    if isinstance(value, str):
        text = value.strip().lower()
        return 1 if text in _TRUE else 0 if text in _FALSE else None
    if hasattr(value, "item") and callable(value.item):  # a numpy scalar from Parquet
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    return None


def _time_problem(value: Any, column: str | None) -> str | None:
    if column is None:
        return None
    try:
        _utc(value)
    except (TypeError, ValueError):
        return f"{column} {_shown(value)} must be an ISO 8601 time"
    return None


def _utc(value: Any) -> datetime:
    """A time as an aware UTC datetime; naive times are UTC.

    Raises:
        ValueError, TypeError: not a time.
    """
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if hasattr(value, "to_pydatetime"):  # a pandas Timestamp
        if value != value:  # NaT
            raise ValueError("missing time")
        value = value.to_pydatetime()
    if not isinstance(value, datetime):
        raise TypeError(f"not a time: {value!r}")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _shown(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value):
        return "(empty)"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
