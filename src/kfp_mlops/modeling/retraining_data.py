"""What a retrain trains on: the current window plus a history of recent windows.

One week of traffic is too little to learn from and too narrow to correct what earlier updates got
wrong, so a retrain reads the window *and* recent windows before it. The history is a list of
window files (``.csv`` / ``.parquet``, local paths or ``gs://``, read through
:func:`~kfp_mlops.modeling.datasets.load_source`), oldest first: given explicitly, or the most
recent ``count`` of an ordered list (:func:`recent_windows`), e.g. every window under a folder
(:func:`list_windows`, sorted by name: name windows so that their names sort by time, like
``week-07.parquet`` or ``2026-11-02.csv``).

:func:`load_retraining_data` checks everything before anything is trained: every history entry
must exist (all missing ones are named in one error), and the window and every history window must
hold the model's features and label (the missing columns are named per window). Each window keeps
only the model's features and label (ids, timestamps and a ``week`` column are left out, so
training sees exactly the model's features), and the windows stay apart in
:class:`RetrainingData` so that a caller can leave some out (the drift package drops history
windows of another regime: :func:`kfp_mlops.drift.policy.same_regime`) before it asks for the rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from kfp_mlops.core import storage
from kfp_mlops.core.errors import ConfigError, DataError
from kfp_mlops.modeling.datasets import load_source

if TYPE_CHECKING:
    import pandas as pd

WINDOW_SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass(frozen=True)
class Window:
    """One window of rows: where it came from and its rows (the model's features and label only)."""

    uri: str
    rows: pd.DataFrame


@dataclass(frozen=True)
class RetrainingData:
    """The current window and the history windows, oldest first, kept apart until they are trained on.

    Attributes:
        window: The current window.
        history: Recent windows before it, oldest first.
        feature_kinds: The model's features (name -> ``numeric`` / ``categorical``), in its order.
        label: The label column.
    """

    window: Window
    history: tuple[Window, ...]
    feature_kinds: Mapping[str, str]
    label: str

    def rows(self) -> pd.DataFrame:
        """The history's rows, then the window's: the training set of a retrain."""
        import pandas as pd

        return pd.concat([w.rows for w in (*self.history, self.window)], ignore_index=True)

    def keeping(self, uris: Iterable[str]) -> RetrainingData:
        """The same data with only the history windows named in ``uris``."""
        kept = set(uris)
        return RetrainingData(
            window=self.window,
            history=tuple(w for w in self.history if w.uri in kept),
            feature_kinds=self.feature_kinds,
            label=self.label,
        )

    def sources(self) -> list[dict[str, Any]]:
        """Every window's URI and row count, history first: what a retrain record lists."""
        return [
            {"uri": w.uri, "rows": len(w.rows), "role": role}
            for role, windows in (("history", self.history), ("window", (self.window,)))
            for w in windows
        ]


def list_windows(prefix: str) -> list[str]:
    """The window files (``.csv`` / ``.parquet``) under a folder or ``gs://`` prefix, sorted by name.

    Raises:
        StorageError: the storage cannot be reached.
    """
    return sorted(
        (uri for uri in storage.list_uris(prefix) if PurePosixPath(uri).suffix.lower() in WINDOW_SUFFIXES),
        key=lambda uri: PurePosixPath(uri).name,
    )


def recent_windows(ordered: Sequence[str], count: int, *, exclude: Iterable[str] = ()) -> list[str]:
    """The last ``count`` entries of an oldest-first list, leaving out ``exclude`` (the current window).

    Raises:
        ConfigError: ``count`` is negative.
    """
    if count < 0:
        raise ConfigError(f"retraining history: count={count}; expected a number of windows >= 0")
    skipped = {storage.canonical_uri(uri) for uri in exclude}
    candidates = [uri for uri in ordered if storage.canonical_uri(uri) not in skipped]
    return candidates[max(0, len(candidates) - count) :] if count else []


def load_retraining_data(
    window: str | pd.DataFrame,
    history: Sequence[str],
    *,
    feature_kinds: Mapping[str, str],
    label: str,
    window_name: str = "window",
) -> RetrainingData:
    """Reads and checks the window and its history; nothing is trained before this succeeds.

    Args:
        window: The current window: its rows, or a ``.csv`` / ``.parquet`` location.
        history: Recent window locations, oldest first (local paths or ``gs://``).
        feature_kinds: The model's features (its metadata's ``feature_kinds``).
        label: The label column.
        window_name: Names the window in errors when it is given as rows.

    Returns:
        The windows, each reduced to the model's features and label.

    Raises:
        DataError: a history entry is missing (every missing one named), a window cannot be read,
            or lacks features of the model or the label (named per window); a history entry is
            listed twice.
        StorageError: the storage of a history entry cannot be reached.
    """
    import pandas as pd

    repeated = sorted({uri for uri in history if list(history).count(uri) > 1})
    if repeated:
        raise DataError(f"retraining history: listed more than once: {', '.join(repeated)}")
    missing = [uri for uri in history if not storage.exists(uri)]
    if missing:
        raise DataError(
            f"retraining history: {len(missing)} of {len(history)} window(s) missing: {', '.join(missing)}; "
            "nothing was trained"
        )
    columns = [*feature_kinds, label]
    if isinstance(window, pd.DataFrame):
        current = Window(window_name, window)
    else:
        current = Window(window, _read(window))
    windows = [current, *(Window(uri, _read(uri)) for uri in history)]
    problems = []
    for part in windows:
        lacking = [c for c in columns if c not in part.rows.columns]
        if lacking:
            what = "the label" if lacking == [label] else f"the model's feature(s) {', '.join(lacking)}"
            problems.append(f"{part.uri} lacks {what}")
        elif part.rows.empty:
            problems.append(f"{part.uri} has no rows")
    if problems:
        raise DataError(f"retraining data: {'; '.join(problems)}; nothing was trained")
    return RetrainingData(
        window=Window(current.uri, current.rows[columns].reset_index(drop=True)),
        history=tuple(Window(w.uri, w.rows[columns].reset_index(drop=True)) for w in windows[1:]),
        feature_kinds=dict(feature_kinds),
        label=label,
    )


def _read(uri: str) -> pd.DataFrame:
    """A window file's rows.

    Raises:
        DataError: not a ``.csv`` / ``.parquet`` file, or unreadable (named).
    """
    if PurePosixPath(uri.split("?", 1)[0]).suffix.lower() not in WINDOW_SUFFIXES:
        raise DataError(f"retraining data: {uri} is not a .csv or .parquet window")
    return load_source(uri)
