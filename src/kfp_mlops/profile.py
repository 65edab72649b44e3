"""The reference profile of training features: what a drift check compares new data against.

Numeric features keep quantile edges (deciles by default) plus summary statistics; categorical
features keep category frequencies. The profile also names the model's features and label so a
check can refuse a profile that belongs to another model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

PROFILE_VERSION = 1
_MAX_CATEGORIES = 100  # rarer categories are pooled so a high-cardinality column stays small


def build_profile(
    frame: pd.DataFrame, feature_kinds: Mapping[str, str], label: str, n_bins: int = 10
) -> dict[str, Any]:
    """Profiles ``frame``'s features.

    Args:
        frame: the training data.
        feature_kinds: feature name -> "numeric" or "categorical".
        label: the label column (its class shares are profiled too).
        n_bins: how many quantile bins numeric features get.
    """
    import numpy as np

    features: dict[str, Any] = {}
    for name, kind in feature_kinds.items():
        column = frame[name]
        entry: dict[str, Any] = {"kind": kind, "null_share": float(column.isna().mean())}
        if kind == "numeric":
            values = column.dropna().to_numpy(dtype=float)
            edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, n_bins + 1)))
            entry.update(
                quantile_edges=[float(e) for e in edges],
                min=float(values.min()),
                max=float(values.max()),
                mean=float(values.mean()),
                std=float(values.std()),
            )
        else:
            shares = column.dropna().astype(str).value_counts(normalize=True)
            top = shares.iloc[:_MAX_CATEGORIES]
            entry["frequencies"] = {str(k): float(v) for k, v in top.items()}
            entry["other_share"] = float(shares.iloc[_MAX_CATEGORIES:].sum())
        features[name] = entry
    label_shares = frame[label].dropna().astype(str).value_counts(normalize=True).sort_index()
    return {
        "version": PROFILE_VERSION,
        "rows": len(frame),
        "label": label,
        "feature_names": list(feature_kinds),
        "features": features,
        "label_shares": {str(k): float(v) for k, v in label_shares.items()},
    }
