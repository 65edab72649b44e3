"""What a retrain the policy asked for trains on: the window and recent windows of the same regime.

The monitoring pipeline retrains on the window it checked *and* on the windows before it, found
under a history root (a folder or ``gs://`` prefix whose window files sort by time, see
:func:`~kfp_mlops.modeling.retraining_data.list_windows`). :func:`gather_retraining_data` puts the
pieces of :mod:`~kfp_mlops.modeling.retraining_data` and :mod:`~kfp_mlops.drift.policy` together
in the order a retrain needs them, and fails before anything is trained:

1. the history: the windows under the root that sort *before* the current one (when the current
   window is listed there; a folder that also holds later weeks must not teach the past the
   future), the most recent :meth:`~kfp_mlops.drift.policy.RetrainPolicy.history_for` ``kind``;
2. every window read and checked for the champion's features and label
   (:func:`~kfp_mlops.modeling.retraining_data.load_retraining_data`);
3. history windows of another regime left out (:func:`~kfp_mlops.drift.policy.same_regime_history`).
"""

from __future__ import annotations

from typing import Any

from kfp_mlops.core.errors import DataError
from kfp_mlops.core.storage import canonical_uri
from kfp_mlops.drift.config import DriftConfig
from kfp_mlops.drift.policy import RetrainPolicy, same_regime_history
from kfp_mlops.modeling.model_bundle import ModelBundle
from kfp_mlops.modeling.retraining_data import RetrainingData, list_windows, load_retraining_data, recent_windows


def history_before(window: str, history_root: str, count: int) -> list[str]:
    """The ``count`` most recent windows under ``history_root`` before ``window``, oldest first.

    Raises:
        DataError: ``history_root`` holds no window file at all (a wrong or missing history).
        StorageError: the storage cannot be reached.
    """
    listed = list_windows(history_root)
    if not listed:
        raise DataError(
            f"history_root {history_root!r}: no .csv or .parquet window there; give the folder or gs:// prefix "
            "the earlier windows are written to (or leave history_root empty to retrain on the window alone)"
        )
    names = [canonical_uri(uri) for uri in listed]
    current = canonical_uri(window)
    earlier = listed[: names.index(current)] if current in names else listed
    return recent_windows(earlier, count, exclude=[window])


def gather_retraining_data(
    window: str,
    *,
    kind: str,
    champion: ModelBundle,
    history_root: str = "",
    policy: RetrainPolicy | None = None,
    config: DriftConfig | None = None,
) -> tuple[RetrainingData, list[dict[str, Any]]]:
    """The window and its same-regime history, checked against the champion; nothing is trained.

    Args:
        window: The current window (``.csv`` / ``.parquet``, local or ``gs://``).
        kind: ``full`` or ``incremental``: how many history windows the policy gives it.
        champion: The model being retrained (its ``feature_kinds`` and ``label``).
        history_root: Where earlier windows are (empty: the window alone).
        policy: The retrain policy (default :class:`~kfp_mlops.drift.policy.RetrainPolicy`).
        config: The drift thresholds used to tell regimes apart.

    Returns:
        The retraining data and the history windows left out as another regime (``uri``, ``reason``).

    Raises:
        DataError: a missing history, a window without the champion's features or label.
        StorageError: the storage cannot be reached.
    """
    policy = policy or RetrainPolicy()
    history = history_before(window, history_root, policy.history_for(kind)) if history_root else []
    kinds = champion.metadata["feature_kinds"]
    data = load_retraining_data(
        window,
        history,
        feature_kinds={name: kinds[name] for name in champion.feature_names},  # the champion's column order
        label=champion.metadata["label"],
    )
    return same_regime_history(data, policy, config=config)
