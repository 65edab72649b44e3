"""The drift check: does a window of current data still look like the model's reference?

The verdict compares the current window with the reference *profile* (:mod:`kfp_mlops.modeling.profile`),
never with reference rows, so it needs no training data and takes about a quarter of a second
on a million rows of 22 features (numpy only; ``bench/bench_drift.py``). Per feature:

* numeric: **PSI on the reference's quantile bins** -- the profile's ``bin_edges`` (reference
  deciles, open outer bins ``(-inf, c0], ..., (c_last, +inf)``, ties merged) with the reference
  share of each bin; shares below :data:`PSI_EPSILON` (1e-4) are raised to it so an empty bin
  costs a finite amount. And the **KS statistic on the reference's percentile grid**:
  ``max |F_current(g) - F_reference(g)|`` over the profile's ``cdf_grid`` (and just below its
  minimum). The profile has no rows, so this is a lower bound of the exact two-sample D; it misses
  at most the reference mass between two grid points (~0.01 for a continuous feature) and is exact
  for a feature with few distinct values. p-values are not used: at large n they flag trivial shifts.
* categorical: PSI and the **Jensen-Shannon distance** (base 2, in [0, 1]) over the reference's
  categories plus one ``other`` bucket (the reference's pooled rare categories; categories never
  seen land there too).
* data quality: the share of missing values (vs the reference's ``null_share``) and of values
  outside the reference's [min, max] (categorical: outside its listed categories).

A feature drifts when any score reaches its threshold (:class:`DriftConfig`); the dataset drifts
when the (weighted) share of drifting features reaches ``drift_share``. With a model, the verdict
also checks its predictions: the PSI of the mean predicted class probabilities (the model's
expected class shares) against the same on reference rows, or against the reference's label shares
when there are no reference rows (equal for a calibrated model). With labels in the current window
it compares accuracy and ROC AUC with the reference's. ``verdict["drift"]`` is true when the
dataset, the predictions or the performance drifted; ``verdict["reasons"]`` says which.

The HTML report is Evidently 0.7's ``DataDriftPreset`` on a sample of at most 100k rows per side.
Evidently needs reference *rows*, which a profile does not have: the report uses the reference
data when the reference is given as data, else the model's training data (``training_data_uri``
in its metadata) when it can be read, else it is skipped and the HTML says why (rows are never
invented from the profile). Evidently's PSI bins both samples into equal-width (Sturges) bins, so
its numbers differ from the verdict's reference-quantile PSI and its thresholds do not carry over:
the verdict is ours; the report is for looking at distributions.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfp_mlops.core.errors import ConfigError, DataError, MlopsError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from numpy.typing import ArrayLike

    from kfp_mlops.modeling.model_bundle import ModelBundle

PSI_EPSILON = 1e-4
SUPPORTED_PROFILE_VERSIONS = (1,)
OTHER = "__other__"
METHOD = (
    "reference-quantile PSI (the profile's decile bins, open outer bins, shares raised to at least 1e-4); "
    "KS statistic on the reference's percentile grid (a lower bound of the exact D, within ~0.01); "
    "Jensen-Shannon distance (base 2) over the reference categories plus an 'other' bucket"
)
VERDICT_FILE = "verdict.json"
REPORT_FILE = "report.html"
_NUMERIC_FIELDS = ("cdf_grid", "cdf", "bin_edges", "bin_shares", "min", "max", "null_share")
_CATEGORICAL_FIELDS = ("frequencies", "other_share", "null_share")
_LOOKUP_CELLS = 1 << 16  # 512 KiB of int64: stays in cache, fine enough for percentile grids


@dataclass(frozen=True)
class FeatureThresholds:
    """Per-feature overrides of :class:`DriftConfig` (``None`` keeps the config's value).

    Attributes:
        psi: PSI threshold.
        ks: KS statistic threshold (numeric features).
        js: Jensen-Shannon distance threshold (categorical features).
        weight: The feature's weight in the dataset's drift share (default 1).
    """

    psi: float | None = None
    ks: float | None = None
    js: float | None = None
    weight: float | None = None


@dataclass(frozen=True)
class DriftConfig:
    """Thresholds of the drift check.

    Attributes:
        psi_threshold: A feature drifts at PSI >= this (0.1-0.2 "moderate", > 0.2 "significant").
        ks_threshold: A numeric feature drifts at KS statistic >= this.
        js_threshold: A categorical feature drifts at Jensen-Shannon distance >= this.
        drift_share: The dataset drifts when the weighted share of drifting features >= this.
        missing_share_increase: A feature drifts when its missing share exceeds the reference's by more.
        out_of_range_increase: A feature drifts when its share outside the reference's range (or
            categories) exceeds the reference's by more.
        prediction_psi_threshold: Predictions drift at PSI of the mean class probabilities >= this.
        max_accuracy_drop: Performance degrades when accuracy falls by more than this.
        max_roc_auc_drop: Performance degrades when ROC AUC falls by more than this.
        per_feature: Overrides by feature name.
        ignore_columns: Current-data columns that are neither features nor the label (ids, timestamps).
        report_rows: Rows per side sampled for the Evidently report.
        seed: Seed of that sample.
    """

    psi_threshold: float = 0.2
    ks_threshold: float = 0.1
    js_threshold: float = 0.1
    drift_share: float = 0.3
    missing_share_increase: float = 0.05
    out_of_range_increase: float = 0.05
    prediction_psi_threshold: float = 0.2
    max_accuracy_drop: float = 0.05
    max_roc_auc_drop: float = 0.05
    per_feature: Mapping[str, FeatureThresholds] = field(default_factory=dict)
    ignore_columns: tuple[str, ...] = ()
    report_rows: int = 100_000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("psi_threshold", "ks_threshold", "js_threshold", "prediction_psi_threshold"):
            _check_positive(f"DriftConfig.{name}", getattr(self, name))
        if not 0 < self.drift_share <= 1:
            raise ConfigError(f"DriftConfig.drift_share={self.drift_share}: expected a share in (0, 1]")
        for name in ("missing_share_increase", "out_of_range_increase", "max_accuracy_drop", "max_roc_auc_drop"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"DriftConfig.{name}={getattr(self, name)}: expected a share in [0, 1]")
        if self.report_rows < 1:
            raise ConfigError(f"DriftConfig.report_rows={self.report_rows}: expected at least 1")
        for feature, overrides in self.per_feature.items():
            for key in ("psi", "ks", "js", "weight"):
                value = getattr(overrides, key)
                if value is not None:
                    _check_positive(f"DriftConfig.per_feature[{feature!r}].{key}", value)
        object.__setattr__(self, "ignore_columns", tuple(self.ignore_columns))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DriftConfig:
        """Builds a config from JSON-like values, e.g. ``{"psi_threshold": 0.25, "per_feature":
        {"item_price": {"psi": 0.3}}}``.

        Raises:
            ConfigError: an unknown key or a value out of range (named).
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"drift config: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        per_feature = {}
        for feature, overrides in dict(values.get("per_feature") or {}).items():
            extra = sorted(set(overrides) - {"psi", "ks", "js", "weight"})
            if extra:
                raise ConfigError(
                    f"drift config: per_feature[{feature!r}] has unknown key(s) {', '.join(extra)}; "
                    "known: psi, ks, js, weight"
                )
            per_feature[feature] = FeatureThresholds(**overrides)
        return cls(**{**values, "per_feature": per_feature, "ignore_columns": tuple(values.get("ignore_columns", ()))})

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-able values (the inverse of :meth:`from_dict`)."""
        values = dataclasses.asdict(self)
        values["per_feature"] = {
            name: {k: v for k, v in dataclasses.asdict(o).items() if v is not None}
            for name, o in self.per_feature.items()
        }
        values["ignore_columns"] = list(self.ignore_columns)
        return values

    def for_feature(self, name: str) -> dict[str, float]:
        """The thresholds and weight that apply to feature ``name``."""
        overrides = self.per_feature.get(name, FeatureThresholds())
        return {
            "psi": self.psi_threshold if overrides.psi is None else overrides.psi,
            "ks": self.ks_threshold if overrides.ks is None else overrides.ks,
            "js": self.js_threshold if overrides.js is None else overrides.js,
            "weight": 1.0 if overrides.weight is None else overrides.weight,
        }


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name}={value}: expected a number > 0")


# --- scores ---------------------------------------------------------------------------------


def psi(reference: ArrayLike, current: ArrayLike, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index ``sum((c - r) * ln(c / r))`` of two share vectors over the same bins.

    Shares below ``epsilon`` are raised to it first, so an empty bin on either side adds a large
    but finite term.
    """
    import numpy as np

    ref = np.maximum(np.asarray(reference, dtype=float), epsilon)
    cur = np.maximum(np.asarray(current, dtype=float), epsilon)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def js_distance(reference: ArrayLike, current: ArrayLike) -> float:
    """Jensen-Shannon distance (base 2: 0 identical, 1 disjoint) of two share vectors over the same buckets."""
    import numpy as np

    p = np.asarray(reference, dtype=float)
    q = np.asarray(current, dtype=float)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        present = a > 0  # 0 * log(0) = 0
        return float(np.sum(a[present] * np.log2(a[present] / m[present])))

    return float(np.sqrt(max((kl(p) + kl(q)) / 2, 0.0)))


def bucket_counts(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """How many values fall in each interval of a sorted grid (no NaN in ``values``).

    ``counts[j]`` counts the values in ``(grid[j-1], grid[j]]``; ``counts[0]`` those at or below
    ``grid[0]``, ``counts[-1]`` those above ``grid[-1]``: ``np.bincount(np.searchsorted(grid,
    values), minlength=len(grid) + 1)``, about 5x faster. A uniform table of
    :data:`_LOOKUP_CELLS` cells over the grid's range gives each value its grid index up to one
    step, which two comparisons fix, provided grid points are at least two cells apart (a table
    cell then holds at most one, even after rounding); otherwise binary search does it.
    """
    import numpy as np

    size = len(grid)
    span = float(grid[-1] - grid[0])
    if size > 1 and 0 < span < np.inf:
        scale = _LOOKUP_CELLS / span
        if np.all(np.diff(np.floor((grid - grid[0]) * scale)) >= 2):
            table = np.searchsorted(grid, grid[0] + np.arange(_LOOKUP_CELLS) / scale)  # first point >= cell start
            cells = np.clip((values - grid[0]) * scale, 0, _LOOKUP_CELLS - 1).astype(np.int64)
            index = table[cells]
            index += values > np.append(grid, np.inf)[index]
            index -= (index > 0) & (values <= np.insert(grid, 0, -np.inf)[index])  # -inf stays at 0
            return np.bincount(index, minlength=size + 1)
    return np.bincount(np.searchsorted(grid, values, side="left"), minlength=size + 1)


def _numeric_scores(values: np.ndarray, entry: Mapping[str, Any]) -> dict[str, float]:
    """PSI, KS on the grid, and quality shares of one numeric column (float64, NaN = missing)."""
    import numpy as np

    grid = np.asarray(entry["cdf_grid"], dtype=float)
    rows = len(values)
    missing = np.isnan(values)
    if missing.any():
        values = values[~missing]
    present = len(values)
    # One pass for both scores: counts per grid interval, then cumulative shares.
    counts = bucket_counts(values, grid)
    below = int(np.count_nonzero(values < entry["min"]))
    at_or_below = np.cumsum(counts[:-1]) / present
    ks = max(float(np.max(np.abs(at_or_below - np.asarray(entry["cdf"])))), below / present)
    at_edges = at_or_below[np.searchsorted(grid, entry["bin_edges"])]  # edges are grid points
    shares = np.diff(np.concatenate([[0.0], at_edges, [1.0]]))
    return {
        "psi": psi(entry["bin_shares"], shares),
        "ks": ks,
        "missing_share": (rows - present) / rows,
        "out_of_range_share": (below + int(counts[-1])) / present,
    }


def _categorical_scores(column: pd.Series, entry: Mapping[str, Any]) -> dict[str, float]:
    """PSI, JS distance and quality shares of one categorical column."""
    import numpy as np

    counts = column.value_counts(dropna=True)
    counts = counts.groupby(counts.index.astype(str)).sum()  # 1 and "1" are the same category
    present = int(counts.sum())
    known = list(entry["frequencies"])
    seen = np.array([counts.get(c, 0) for c in known], dtype=float)
    current = np.append(seen, present - seen.sum()) / present
    reference = np.append([entry["frequencies"][c] for c in known], entry["other_share"])
    return {
        "psi": psi(reference, current),
        "js": js_distance(reference, current),
        "missing_share": (len(column) - present) / len(column),
        "out_of_range_share": float(current[-1]),
    }


# --- the check --------------------------------------------------------------------------------


def check_drift(
    profile: Mapping[str, Any],
    current: pd.DataFrame,
    *,
    config: DriftConfig | None = None,
    model: ModelBundle | None = None,
    reference_prediction_shares: Mapping[str, float] | None = None,
    reference_performance: Mapping[str, float] | None = None,
    where: str = "current data",
    profile_where: str = "reference profile",
) -> dict[str, Any]:
    """Compares a window of data with a reference profile; returns the JSON-able verdict.

    Args:
        profile: A reference profile (:func:`kfp_mlops.modeling.profile.build_profile`).
        current: The window to check: the profile's features, optionally its label (for
            performance) and ``config.ignore_columns``; nothing else.
        config: Thresholds (default :class:`DriftConfig`).
        model: The model the profile belongs to; enables prediction drift and, with labels in
            ``current``, performance.
        reference_prediction_shares: The model's mean predicted class probabilities on reference
            rows (default: the profile's label shares, equal for a calibrated model).
        reference_performance: ``accuracy`` / ``roc_auc`` on reference data, to compare with.
        where: Names the current data in errors.
        profile_where: Names the profile in errors.

    Returns:
        ``drift``, ``dataset_drift``, ``drift_share``, ``drifted_features``, ``features`` (per
        feature: ``kind``, ``psi``, ``ks`` or ``js``, ``missing_share``, ``out_of_range_share``,
        ``drifted``, ``reasons``), ``prediction``, ``performance`` (``None`` without a model /
        labels), ``rows``, ``reasons``, ``method``, ``config``, ``reference``.

    Raises:
        ConfigError: the profile is malformed, of an unknown version, or belongs to another model
            (features or label differ from ``model``'s); per_feature names an unknown feature.
        DataError: the window is empty, lacks or adds columns, has non-numeric values in a numeric
            feature, or a feature with every value missing (all named).
    """
    config = config or DriftConfig()
    _check_profile(profile, profile_where, model)
    features: dict[str, Mapping[str, Any]] = profile["features"]
    unknown = sorted(set(config.per_feature) - set(features))
    if unknown:
        raise ConfigError(
            f"drift config: per_feature names features {profile_where} does not have: {', '.join(unknown)}"
        )
    _check_current(current, profile, config, where)

    scores = {
        name: _numeric_scores(current[name].to_numpy(dtype="float64", na_value=float("nan")), features[name])
        if features[name]["kind"] == "numeric"
        else _categorical_scores(current[name], features[name])
        for name in profile["feature_names"]
    }

    verdict_features = {}
    weights = drifted_weight = 0.0
    for name in profile["feature_names"]:
        entry, score, limits = features[name], scores[name], config.for_feature(name)
        reasons = _feature_reasons(entry, score, limits, config)
        verdict_features[name] = {"kind": entry["kind"], **score, "drifted": bool(reasons), "reasons": reasons}
        weights += limits["weight"]
        drifted_weight += limits["weight"] if reasons else 0.0
    drifted = [name for name, result in verdict_features.items() if result["drifted"]]
    drift_share = drifted_weight / weights
    dataset_drift = drift_share >= config.drift_share

    reasons = []
    if dataset_drift:
        reasons.append(
            f"{len(drifted)} of {len(features)} features drifted (share {drift_share:.3f} >= "
            f"{config.drift_share}): {', '.join(drifted)}"
        )
    prediction = performance = None
    if model is not None:
        prediction, performance = _model_scores(
            model, current, profile, config, reference_prediction_shares, reference_performance, where
        )
        if prediction["drifted"]:
            reasons.append(
                f"predicted class probabilities drifted: PSI {prediction['psi']:.3f} >= "
                f"{config.prediction_psi_threshold}"
            )
        if performance is not None and performance["degraded"]:
            reasons.extend(performance["reasons"])
    return {
        "drift": bool(reasons),
        "dataset_drift": dataset_drift,
        "drift_share": drift_share,
        "drifted_features": drifted,
        "features": verdict_features,
        "prediction": prediction,
        "performance": performance,
        "rows": len(current),
        "reasons": reasons,
        "method": METHOD,
        "config": config.to_dict(),
        "reference": {
            "rows": profile.get("rows"),
            "label": profile["label"],
            "profile_version": profile["version"],
            "where": profile_where,
        },
    }


def _feature_reasons(
    entry: Mapping[str, Any], score: Mapping[str, float], limits: Mapping[str, float], config: DriftConfig
) -> list[str]:
    """Why a feature counts as drifted (empty: it does not)."""
    reasons = []
    if score["psi"] >= limits["psi"]:
        reasons.append(f"psi {score['psi']:.3f} >= {limits['psi']}")
    distance = "ks" if entry["kind"] == "numeric" else "js"
    if score[distance] >= limits[distance]:
        reasons.append(f"{distance} {score[distance]:.3f} >= {limits[distance]}")
    if score["missing_share"] - entry["null_share"] > config.missing_share_increase:
        reasons.append(f"missing share {score['missing_share']:.3f} vs {entry['null_share']:.3f} in the reference")
    expected_outside = entry.get("other_share", 0.0)  # numeric: nothing lies outside [min, max]
    if score["out_of_range_share"] - expected_outside > config.out_of_range_increase:
        outside = "outside [min, max]" if entry["kind"] == "numeric" else "outside the reference categories"
        reasons.append(f"{score['out_of_range_share']:.3f} of values {outside} (reference {expected_outside:.3f})")
    return reasons


def _check_profile(profile: Mapping[str, Any], where: str, model: ModelBundle | None) -> None:
    """Refuses a malformed profile, an unknown version, or one that belongs to another model."""
    missing = [k for k in ("version", "label", "feature_names", "features", "label_shares") if k not in profile]
    if missing:
        raise ConfigError(f"{where}: not a reference profile (no {', '.join(missing)})")
    if profile["version"] not in SUPPORTED_PROFILE_VERSIONS:
        raise ConfigError(
            f"{where}: profile version {profile['version']!r}; this check reads versions "
            f"{', '.join(map(str, SUPPORTED_PROFILE_VERSIONS))}"
        )
    names = list(profile["feature_names"])
    if not names or set(names) != set(profile["features"]):
        raise ConfigError(f"{where}: feature_names and features disagree")
    problems = []
    for name in names:
        entry = profile["features"][name]
        needed = {"numeric": _NUMERIC_FIELDS, "categorical": _CATEGORICAL_FIELDS}.get(entry.get("kind"))
        if needed is None:
            problems.append(f"{name}: kind {entry.get('kind')!r} is neither numeric nor categorical")
        elif [k for k in needed if k not in entry]:
            problems.append(f"{name}: no {', '.join(k for k in needed if k not in entry)}")
        elif entry["kind"] == "numeric" and not set(entry["bin_edges"]) <= set(entry["cdf_grid"]):
            problems.append(f"{name}: bin_edges are not points of cdf_grid")
    if problems:
        raise ConfigError(
            f"{where}: unusable for a drift check (rebuild it with this version's build_profile): {'; '.join(problems)}"
        )
    if model is not None:
        expected = model.feature_names
        only_model = [f for f in expected if f not in names]
        only_profile = [f for f in names if f not in expected]
        if only_model or only_profile:
            detail = "; ".join(
                part
                for part in (
                    f"model only: {', '.join(only_model)}" if only_model else "",
                    f"profile only: {', '.join(only_profile)}" if only_profile else "",
                )
                if part
            )
            raise ConfigError(f"{where}: belongs to another model: its features differ from the model's ({detail})")
        if profile["label"] != model.metadata.get("label"):
            raise ConfigError(
                f"{where}: belongs to another model: label {profile['label']!r}, "
                f"the model's is {model.metadata.get('label')!r}"
            )


def _check_current(current: pd.DataFrame, profile: Mapping[str, Any], config: DriftConfig, where: str) -> None:
    """Refuses an empty window, missing or unknown columns, wrong dtypes and all-missing features."""
    import pandas as pd

    names = list(profile["feature_names"])
    problems = []
    missing = [n for n in names if n not in current.columns]
    if missing:
        problems.append(f"lacks the reference's feature(s) {', '.join(missing)}")
    allowed = {*names, profile["label"], *config.ignore_columns}
    extra = [str(c) for c in current.columns if c not in allowed]
    if extra:
        problems.append(
            f"has column(s) the reference does not know: {', '.join(extra)} "
            "(drop them, or list them in DriftConfig.ignore_columns)"
        )
    if len(current) == 0:
        problems.append("has no rows")
    present = [n for n in names if n in current.columns]
    wrong = [
        f"{n} ({current[n].dtype})"
        for n in present
        if profile["features"][n]["kind"] == "numeric"
        and (not pd.api.types.is_numeric_dtype(current[n]) or pd.api.types.is_bool_dtype(current[n]))
    ]
    if wrong:
        problems.append(f"has non-numeric values in numeric feature(s) {', '.join(wrong)}")
    if len(current):
        empty = [n for n in present if current[n].isna().all()]
        if empty:
            problems.append(f"has every value missing in {', '.join(empty)}")
    if problems:
        raise DataError(f"{where}: {'; '.join(problems)}; no verdict written")


def _model_scores(
    model: ModelBundle,
    current: pd.DataFrame,
    profile: Mapping[str, Any],
    config: DriftConfig,
    reference_shares: Mapping[str, float] | None,
    reference_performance: Mapping[str, float] | None,
    where: str,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Prediction drift and, with labels, performance of ``model`` on the current window."""
    import numpy as np

    classes = model.classes
    scored, proba = predict(model, current, where)
    # Mean class probabilities (the expected class shares), not argmax shares: they are on the scale
    # of the reference's label shares (equal for a calibrated model), and a model that rarely predicts
    # a minority class would otherwise look drifted against them.
    shares = dict(zip(classes, proba.mean(axis=0).tolist()))
    if reference_shares is None:
        reference_shares, basis = profile["label_shares"], "label shares of the reference (no reference rows)"
    else:
        basis = "mean predicted probabilities on reference rows"
    prediction_psi = psi([reference_shares.get(c, 0.0) for c in classes], [shares[c] for c in classes])
    predicted = proba.argmax(axis=1)
    prediction = {
        "psi": prediction_psi,
        "drifted": prediction_psi >= config.prediction_psi_threshold,
        "shares": shares,
        "reference_shares": {c: float(reference_shares.get(c, 0.0)) for c in classes},
        "reference": basis,
        "predicted_class_shares": {c: float(np.mean(predicted == i)) for i, c in enumerate(classes)},
        "scored_rows": len(scored),
    }
    label = profile["label"]
    if label not in current.columns:
        return prediction, None
    labelled = scored[label].notna().to_numpy()
    if not labelled.any():
        return prediction, None
    scores = classification_scores(label_strings(scored[label][labelled]), proba[labelled], classes)
    performance: dict[str, Any] = {
        **scores,
        "labelled_rows": int(labelled.sum()),
        "reference": None,
        "degraded": False,
        "reasons": [],
    }
    if reference_performance:
        performance["reference"] = {k: float(v) for k, v in reference_performance.items() if k in scores}
        for metric, limit in (("accuracy", config.max_accuracy_drop), ("roc_auc", config.max_roc_auc_drop)):
            before, now = reference_performance.get(metric), scores.get(metric)
            if before is not None and now is not None and before - now > limit:
                performance["reasons"].append(f"{metric} {now:.4f} vs {before:.4f} on the reference (drop > {limit})")
        performance["degraded"] = bool(performance["reasons"])
    return prediction, performance


def predict(model: ModelBundle, frame: pd.DataFrame, where: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Class probabilities for the rows of ``frame`` with every feature present.

    Returns:
        Those rows and their probabilities (columns in ``model.classes`` order).

    Raises:
        DataError: no row has every feature, or the model cannot score the rows.
    """
    features = model.feature_names
    complete = frame[features].notna().all(axis=1)
    if not complete.any():
        raise DataError(f"{where}: no row has every feature the model needs; cannot score predictions")
    rows = frame[complete]
    try:
        return rows, model.model.predict_proba(rows[features])
    except Exception as exc:  # scikit-learn raises many types for data it cannot transform
        raise DataError(f"{where}: the model cannot score these rows: {type(exc).__name__}: {exc}") from None


def label_strings(labels: pd.Series) -> np.ndarray:
    """Labels as the model's class names (strings; a float column of whole numbers reads as ints)."""
    import pandas as pd

    if pd.api.types.is_float_dtype(labels) and (labels % 1 == 0).all():
        labels = labels.astype("int64")
    return labels.astype(str).to_numpy()


def classification_scores(truth: np.ndarray, proba: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    """Accuracy and ROC AUC (binary: of the second class; else one-vs-rest). AUC is left out when a
    class is missing from ``truth``."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    predicted = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    scores = {"accuracy": float(np.mean(predicted == truth))}
    if set(classes) <= set(truth):
        if len(classes) == 2:
            scores["roc_auc"] = float(roc_auc_score(truth == classes[1], proba[:, 1]))
        else:
            scores["roc_auc"] = float(roc_auc_score(truth, proba, multi_class="ovr", labels=list(classes)))
    return scores


# --- inputs -----------------------------------------------------------------------------------


@dataclass
class Reference:
    """What a check compares against: a profile, and reference rows when they are known.

    Attributes:
        profile: The reference profile.
        rows: Reference rows (for the report and reference predictions), or None.
        where: Where the profile came from, for errors and the verdict.
        rows_where: Where the rows came from.
        explicit_rows: The rows were given as the reference (not the model's training data), so
            performance on them is a fair baseline.
    """

    profile: dict[str, Any]
    rows: pd.DataFrame | None = None
    where: str = ""
    rows_where: str = ""
    explicit_rows: bool = False


def load_data(location: str, what: str = "data") -> pd.DataFrame:
    """Reads a ``.csv``/``.parquet`` file (local or ``gs://``) or a KFP Dataset artifact (Parquet).

    Raises:
        DataError: missing or unreadable.
    """
    from kfp_mlops.modeling.datasets import load_source, read_parquet

    try:
        if Path(location).suffix.lower() in (".csv", ".parquet", ".pq"):
            return load_source(location)
        return read_parquet(location)  # KFP artifacts have no suffix; components pass Parquet
    except DataError as exc:
        raise DataError(f"{what}: {exc}") from None


def load_reference(
    location: str,
    *,
    label: str | None = None,
    feature_kinds: Mapping[str, str] | None = None,
    ignore_columns: Sequence[str] = (),
) -> Reference:
    """Loads a reference given as a profile or as data.

    Args:
        location: A profile (``.json``, a KFP artifact, or a model folder holding
            ``reference_profile.json``), or reference data (``.csv``, ``.parquet``, a KFP Dataset).
        label: The label column of reference data (a profile names its own).
        feature_kinds: Feature name -> kind for reference data (e.g. a model's ``feature_kinds``);
            default: every column but the label and ``ignore_columns``, numeric by dtype.
        ignore_columns: Columns of reference data that are not features.

    Raises:
        ConfigError: reference data without a label column name, or lacking the label.
        DataError, StorageError: the location is missing or unreadable.
    """
    from kfp_mlops.core import storage
    from kfp_mlops.modeling.model_bundle import PROFILE_FILE
    from kfp_mlops.modeling.profile import build_profile

    if not location:
        raise ConfigError("reference: no location given (a profile JSON, a model folder or reference data)")
    if Path(location).suffix.lower() != ".json" and storage.exists(storage.join(location, PROFILE_FILE)):
        location = storage.join(location, PROFILE_FILE)  # a model folder or store version
    if Path(location).suffix.lower() == ".json" or _looks_like_json(location):
        return Reference(profile=storage.read_json(location), where=location)
    rows = load_data(location, "reference data")
    if not label:
        raise ConfigError(f"reference data {location}: name its label column (or give the model) to profile it")
    if label not in rows.columns:
        raise ConfigError(f"reference data {location}: no label column {label!r}")
    kinds = dict(feature_kinds) if feature_kinds else _infer_kinds(rows, label, ignore_columns)
    missing = [name for name in kinds if name not in rows.columns]
    if missing:
        raise DataError(f"reference data {location}: lacks feature(s) {', '.join(missing)}")
    profile = build_profile(rows, kinds, label)
    return Reference(profile=profile, rows=rows, where=location, rows_where=location, explicit_rows=True)


def _looks_like_json(location: str) -> bool:
    """Whether a suffix-less local file (a KFP artifact) holds JSON rather than Parquet."""
    path = Path(location)
    if "://" in location or not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(1) in (b"{", b"[")


def _infer_kinds(rows: pd.DataFrame, label: str, ignore: Sequence[str]) -> dict[str, str]:
    """Every column but the label and ``ignore``, numeric by dtype (train's rule)."""
    import pandas as pd

    return {
        str(name): "numeric"
        if pd.api.types.is_numeric_dtype(rows[name]) and not pd.api.types.is_bool_dtype(rows[name])
        else "categorical"
        for name in rows.columns
        if name != label and name not in ignore
    }


def load_model(location: str) -> tuple[ModelBundle, dict[str, float] | None]:
    """Loads a model folder and, when it is a store version, its held-out metrics (``evaluation.json``).

    Returns:
        The model and ``{"accuracy", "roc_auc"}`` from its evaluation, or None.
    """
    from kfp_mlops.core import storage
    from kfp_mlops.modeling.model_bundle import load_bundle
    from kfp_mlops.modeling.model_store import EVALUATION_FILE

    bundle = load_bundle(location)
    evaluation_uri = storage.join(location, EVALUATION_FILE)
    if not storage.exists(evaluation_uri):
        return bundle, None
    metrics = storage.read_json(evaluation_uri).get("metrics", {})
    return bundle, {k: float(metrics[k]) for k in ("accuracy", "roc_auc") if k in metrics} or None


def _model_training_rows(model: ModelBundle) -> tuple[pd.DataFrame | None, str]:
    """The model's training data when its ``training_data_uri`` can be read, and why not otherwise."""
    uri = model.metadata.get("training_data_uri", "")
    if not uri or uri == "memory":
        return None, "the model names no training data"
    try:
        return load_data(uri, "model training data"), uri
    except MlopsError as exc:
        return None, f"the model's training data cannot be read ({exc})"


def sample_rows(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """At most ``rows`` rows of ``frame``, drawn without replacement."""
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed)


# --- the report ---------------------------------------------------------------------------------


def build_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    profile: Mapping[str, Any],
    path: str | Path,
    *,
    config: DriftConfig | None = None,
) -> dict[str, Any]:
    """Writes Evidently's data drift report (HTML) for the profile's features.

    Both sides are sampled to ``config.report_rows`` rows. Evidently's PSI (equal-width bins over
    both samples) uses the verdict's PSI threshold and drift share, yet its numbers and decisions
    can differ from the verdict's: the verdict is :func:`check_drift`'s.

    Returns:
        Facts for the verdict: path, rows per side, Evidently's version and its drift share.
    """
    from evidently import DataDefinition, Dataset, Report, __version__
    from evidently.presets import DataDriftPreset

    config = config or DriftConfig()
    names = list(profile["feature_names"])
    kinds = {name: profile["features"][name]["kind"] for name in names}
    definition = DataDefinition(
        numerical_columns=[n for n in names if kinds[n] == "numeric"],
        categorical_columns=[n for n in names if kinds[n] == "categorical"],
    )
    ref = sample_rows(reference[names], config.report_rows, config.seed)
    cur = sample_rows(current[names], config.report_rows, config.seed)
    preset = DataDriftPreset(
        num_method="psi", cat_method="psi", threshold=config.psi_threshold, drift_share=config.drift_share
    )
    snapshot = Report([preset]).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    share = next(m["value"]["share"] for m in snapshot.dict()["metrics"] if "DriftedColumnsCount" in m["metric_name"])
    return {
        "path": str(path),
        "reference_rows": len(ref),
        "current_rows": len(cur),
        "evidently": __version__,
        "evidently_drift_share": float(share),
    }


def _write_skipped_report(path: str | Path, reason: str) -> None:
    """An HTML page saying why there is no Evidently report (KFP still expects the file)."""
    from html import escape

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>Drift report skipped</title></head>"
        f"<body><h1>No Evidently report</h1><p>{escape(reason)}</p>"
        "<p>The drift verdict (verdict.json) was computed from the reference profile.</p></body></html>\n"
    )


# --- end to end ---------------------------------------------------------------------------------


def run_drift(
    reference: str,
    current: str,
    *,
    model: str | None = None,
    label: str | None = None,
    config: DriftConfig | None = None,
    verdict_path: str | Path | None = None,
    report_path: str | Path | None = None,
) -> dict[str, Any]:
    """Loads the inputs, checks drift, writes the report and then the verdict.

    Args:
        reference: A profile or reference data (see :func:`load_reference`).
        current: The window to check (``.csv``, ``.parquet`` or a KFP Dataset).
        model: A model folder (local or ``gs://``, e.g. a store version), optional.
        label: The label column of reference data given without a model.
        config: Thresholds.
        verdict_path: Where to write the verdict JSON (None: not written).
        report_path: Where to write the HTML report (None: no report is built).

    Returns:
        The verdict (:func:`check_drift`) with ``report`` facts and input locations added.

    Raises:
        ConfigError, DataError, StorageError: bad inputs; nothing is written.
    """
    config = config or DriftConfig()
    bundle, reference_performance = load_model(model) if model else (None, None)
    ref = load_reference(
        reference,
        label=label or (bundle.metadata.get("label") if bundle else None),
        feature_kinds=bundle.metadata.get("feature_kinds") if bundle else None,
        ignore_columns=config.ignore_columns,
    )
    window = load_data(current, "current data")
    rows, rows_where = ref.rows, ref.rows_where
    if rows is None:
        rows, rows_where = _model_training_rows(bundle) if bundle else (None, "no model was given")
    if ref.explicit_rows:
        reference_performance = None  # performance on the given reference rows is the baseline
    reference_shares = None
    if bundle is not None and rows is not None:
        sample = sample_rows(rows, config.report_rows, config.seed)
        scored, proba = predict(bundle, sample, f"reference rows {rows_where}")
        reference_shares = dict(zip(bundle.classes, proba.mean(axis=0).tolist()))
        label_name = ref.profile["label"]
        if ref.explicit_rows and label_name in scored.columns and scored[label_name].notna().all():
            reference_performance = classification_scores(label_strings(scored[label_name]), proba, bundle.classes)

    verdict = check_drift(
        ref.profile,
        window,
        config=config,
        model=bundle,
        reference_prediction_shares=reference_shares,
        reference_performance=reference_performance,
        where=f"current data {current}",
        profile_where=ref.where,
    )
    verdict["inputs"] = {"reference": reference, "current": current, "model": model}
    if report_path is not None:
        if rows is None:
            reason = (
                f"the reference {reference} is a profile without rows and {rows_where}; pass reference "
                "data to get Evidently's report"
            )
            _write_skipped_report(report_path, reason)
            verdict["report"] = {"path": str(report_path), "skipped": reason}
        else:
            facts = build_report(rows, window, ref.profile, report_path, config=config)
            verdict["report"] = {**facts, "reference": rows_where}
    if verdict_path is not None:
        Path(verdict_path).parent.mkdir(parents=True, exist_ok=True)
        Path(verdict_path).write_text(json.dumps(verdict, indent=2, sort_keys=True) + "\n")
    return verdict


def run_drift_cli(
    reference: str,
    current: str,
    out: Path | None,
    *,
    model: str | None = None,
    label: str | None = None,
    config: DriftConfig | None = None,
) -> dict[str, Any]:
    """``kfp-mlops drift``: prints the verdict as JSON; with ``out``, writes verdict.json and report.html there.

    Without ``out`` no Evidently report is built (it costs seconds of imports).

    Returns:
        The verdict.
    """
    out_dir = Path(out) if out is not None else None
    verdict = run_drift(
        reference,
        current,
        model=model,
        label=label,
        config=config,
        verdict_path=out_dir / VERDICT_FILE if out_dir else None,
        report_path=out_dir / REPORT_FILE if out_dir else None,
    )
    print(json.dumps(verdict, indent=2, sort_keys=True))
    return verdict
