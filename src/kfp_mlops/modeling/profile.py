"""The reference profile of training features: what a drift check compares new data against.

Numeric features keep quantile edges (deciles by default) plus summary statistics; categorical
features keep category frequencies. The profile also names the model's features and label so a
check can refuse a profile that belongs to another model.

For the drift check (:mod:`kfp_mlops.drift.check`) numeric features also keep:

* ``cdf_grid`` and ``cdf``: the reference's percentiles (np.unique'd) and the share of reference
  values at or below each, so a check can compute the KS statistic on that grid without the rows;
* ``bin_edges`` and ``bin_shares``: the PSI bins, cut at the reference's quantile edges
  (``(-inf, c0], (c0, c1], ..., (c_last, +inf)``) and the reference share of each. Bins holding
  less than :data:`MIN_BIN_SHARE` of the reference are merged into their neighbour: this drops the
  one-value bin at the minimum of a continuous feature and keeps a binary 0/1 feature as two bins
  (quantile edges alone would collapse it to one). The shares are stored because ties make them
  unequal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

PROFILE_VERSION = 1
_MAX_CATEGORIES = 100  # rarer categories are pooled so a high-cardinality column stays small
CDF_GRID_SIZE = 100  # percentiles: the KS statistic on this grid is within ~1/100 of the exact one
MIN_BIN_SHARE = 0.01


def build_profile(
    frame: pd.DataFrame, feature_kinds: Mapping[str, str], label: str | None, n_bins: int = 10
) -> dict[str, Any]:
    """Profiles ``frame``'s features.

    Args:
        frame: the training data.
        feature_kinds: feature name -> "numeric" or "categorical".
        label: the label column (its class shares are profiled too), or None for unlabelled data
            (the profile's ``label`` is then None and its ``label_shares`` empty).
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
                **_drift_fields(values, n_bins),
            )
        else:
            shares = column.dropna().astype(str).value_counts(normalize=True)
            top = shares.iloc[:_MAX_CATEGORIES]
            entry["frequencies"] = {str(k): float(v) for k, v in top.items()}
            entry["other_share"] = float(shares.iloc[_MAX_CATEGORIES:].sum())
        features[name] = entry
    label_shares = (
        frame[label].dropna().astype(str).value_counts(normalize=True).sort_index() if label is not None else {}
    )
    return {
        "version": PROFILE_VERSION,
        "rows": len(frame),
        "label": label,
        "feature_names": list(feature_kinds),
        "features": features,
        "label_shares": {str(k): float(v) for k, v in label_shares.items()},
    }


def _drift_fields(values: np.ndarray, n_bins: int) -> dict[str, list[float]]:
    """The KS grid (``cdf_grid``, ``cdf``) and PSI bins (``bin_edges``, ``bin_shares``) of one feature."""
    import numpy as np

    ordered = np.sort(values)
    # Rounded so 0.3 from one linspace and 0.30000000000000004 from the other are one level.
    bin_levels = np.round(np.linspace(0.0, 1.0, n_bins + 1), 12)
    levels = np.unique(np.concatenate([np.round(np.linspace(0.0, 1.0, CDF_GRID_SIZE + 1), 12), bin_levels]))
    # inverted_cdf: grid points are reference values (no interpolated 0.3 between 0 and 1).
    quantiles = np.quantile(ordered, levels, method="inverted_cdf")
    grid = np.unique(quantiles)

    def share_at_or_below(points: np.ndarray) -> np.ndarray:
        return np.searchsorted(ordered, points, side="right") / len(ordered)

    # Candidate cuts: the quantiles at 0, 1/n, ..., (n-1)/n (never the maximum: nothing lies above it).
    candidates = np.unique(quantiles[np.isin(levels, bin_levels[:-1])])
    edges: list[float] = []
    below = 0.0
    for cut, share in zip(candidates, share_at_or_below(candidates)):
        if share - below >= MIN_BIN_SHARE:
            edges.append(float(cut))
            below = float(share)
    if edges and 1.0 - below < MIN_BIN_SHARE:
        edges.pop()  # the last bin would be too small: merge it into the one before
    cumulative = np.concatenate([[0.0], share_at_or_below(np.array(edges)), [1.0]])
    return {
        "cdf_grid": [float(g) for g in grid],
        "cdf": [float(f) for f in share_at_or_below(grid)],
        "bin_edges": edges,
        "bin_shares": [float(s) for s in np.diff(cumulative)],
    }
