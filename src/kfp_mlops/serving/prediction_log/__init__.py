"""The prediction log: every prediction made and every label that came later, as a table any engine reads.

Append-only Parquet on any storage root (a local folder, the GCS emulator or ``gs://``), through
:mod:`kfp_mlops.core.storage` -- one code path, create-only immutable objects. Hive-partitioned::

    <root>/predictions/date=2026-11-02/hour=10/predictor=challenger/<segment>.parquet
    <root>/labels/date=2026-11-02/<segment>.parquet        (date: of the request's first prediction)

so DuckDB (``read_parquet('<root>/predictions/**/*.parquet', hive_partitioning = true)``),
BigQuery (an external table with hive partitioning) and Spark read it as it is (README, "The
prediction log"). The modules:

* :mod:`.records` -- :class:`PredictionRecord` (statuses ``ok``, ``rejected`` for a request the
  server refused, ``error`` for a failure; the client's own request id beside the server's) and
  the Parquet schemas;
* :mod:`.writer` -- :class:`PredictionLogWriter`: a bounded buffer that a background thread writes;
  ``log`` never touches storage, drops (counted) instead of blocking;
* :mod:`.partitions` -- the layout, listing a time window's partitions, reading segments;
* :mod:`.labels` -- :func:`record_labels`: a batch checked against the predictions it refers to,
  reading the hours newest first until every id is found (O(batch), not O(log));
* :mod:`.join` -- :func:`read_predictions` and :func:`join` of a window, reading only its partitions;
* :mod:`.compaction` -- small segments of closed partitions merged (write first, then delete).
"""

from kfp_mlops.serving.prediction_log.compaction import compact, compact_labels
from kfp_mlops.serving.prediction_log.join import join, read_predictions
from kfp_mlops.serving.prediction_log.labels import LABEL_WINDOW, read_labels, record_labels
from kfp_mlops.serving.prediction_log.partitions import LABELS, PREDICTIONS, SEGMENT_SUFFIX
from kfp_mlops.serving.prediction_log.records import (
    ERROR,
    LABEL_COLUMNS,
    OK,
    PREDICTION_COLUMNS,
    REJECTED,
    STATUSES,
    PredictionRecord,
    as_utc,
)
from kfp_mlops.serving.prediction_log.writer import PredictionLogWriter

__all__ = [
    "ERROR",
    "LABELS",
    "LABEL_COLUMNS",
    "LABEL_WINDOW",
    "OK",
    "PREDICTIONS",
    "PREDICTION_COLUMNS",
    "REJECTED",
    "SEGMENT_SUFFIX",
    "STATUSES",
    "PredictionLogWriter",
    "PredictionRecord",
    "as_utc",
    "compact",
    "compact_labels",
    "join",
    "read_labels",
    "read_predictions",
    "record_labels",
]
