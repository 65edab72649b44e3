"""The drift check: does a window of current data still look like the model's reference?

:func:`check_drift` compares the window with the reference *profile*
(:mod:`kfp_mlops.modeling.profile`), never with reference rows, so it needs no training data and
takes about a quarter of a second on a million rows of 22 features (numpy only;
``bench/bench_drift.py``). Each feature gets its scores (:mod:`kfp_mlops.drift.scores`: PSI, KS or
Jensen-Shannon, missing and out-of-range shares). A feature drifts when any score reaches its
threshold (:class:`~kfp_mlops.drift.config.DriftConfig`); the dataset drifts when the (weighted)
share of drifting features reaches ``drift_share``. With a model the verdict also holds prediction
and performance drift (:mod:`kfp_mlops.drift.model_checks`) and the label-free performance
estimate (:mod:`kfp_mlops.drift.performance_estimation`; reported, not part of the decision).
``verdict["drift"]`` is true when the dataset, the predictions or the performance drifted;
``verdict["reasons"]`` says which.

The verdict is built from each feature's counts (:class:`~kfp_mlops.drift.scores.Counts`) by
:func:`verdict_from_counts`, so a window streamed in batches (:mod:`kfp_mlops.drift.streaming`)
gets the same verdict as the loaded frame; :func:`check_profile` and :func:`check_window` are the
refusals both paths share.

Before scoring, the check refuses what it cannot compare, naming every problem: a malformed
profile, one of an unknown version or of another model, and a window that is empty, lacks or adds
columns, has non-numeric values in a numeric feature, or a feature with every value missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kfp_mlops.core.errors import ConfigError, DataError
from kfp_mlops.drift.config import DriftConfig
from kfp_mlops.drift.model_checks import model_drift
from kfp_mlops.drift.scores import Counts, categorical_counts, numeric_counts, scores_from_counts

if TYPE_CHECKING:
    import pandas as pd

    from kfp_mlops.modeling.model_bundle import ModelBundle

SUPPORTED_PROFILE_VERSIONS = (1,)
METHOD = (
    "reference-quantile PSI (the profile's decile bins, open outer bins, shares raised to at least 1e-4); "
    "KS statistic on the reference's percentile grid (a lower bound of the exact D, within ~0.01); "
    "Jensen-Shannon distance (base 2) over the reference categories plus an 'other' bucket"
)
_NUMERIC_FIELDS = ("cdf_grid", "cdf", "bin_edges", "bin_shares", "min", "max", "null_share")
_CATEGORICAL_FIELDS = ("frequencies", "other_share", "null_share")


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
        labels), ``performance_estimate`` (``None`` without a model; else the label-free estimate
        of accuracy and ROC AUC with intervals, beside the realized ones when there are labels, or
        why it is unavailable: :func:`~kfp_mlops.drift.model_checks.estimate_performance`),
        ``reference_performance`` (``reference_performance`` as given, the baseline of the retrain
        policy: :mod:`kfp_mlops.drift.policy`; None without a model or a baseline), ``rows``,
        ``reasons``, ``method``, ``config``, ``reference``.

    Raises:
        ConfigError: the profile is malformed, of an unknown version, or belongs to another model
            (features or label differ from ``model``'s); per_feature names an unknown feature.
        DataError: the window is empty, lacks or adds columns, has non-numeric values in a numeric
            feature, or a feature with every value missing (all named).
    """
    config = config or DriftConfig()
    check_profile(profile, config, model, profile_where)
    _check_current(current, profile, config, where)
    features: dict[str, Mapping[str, Any]] = profile["features"]
    counts = {
        name: numeric_counts(current[name].to_numpy(dtype="float64", na_value=float("nan")), features[name])
        if features[name]["kind"] == "numeric"
        else categorical_counts(current[name], features[name])
        for name in profile["feature_names"]
    }
    model_checks = None
    if model is not None:
        model_checks = model_drift(
            model, current, profile, config, reference_prediction_shares, reference_performance, where
        )
    return verdict_from_counts(
        profile,
        counts,
        len(current),
        config=config,
        model_checks=model_checks,
        reference_performance=reference_performance,
        profile_where=profile_where,
    )


def verdict_from_counts(
    profile: Mapping[str, Any],
    counts: Mapping[str, Counts],
    rows: int,
    *,
    config: DriftConfig,
    model_checks: tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any]] | None,
    reference_performance: Mapping[str, float] | None,
    profile_where: str,
) -> dict[str, Any]:
    """The verdict of :func:`check_drift` from a checked window's per-feature counts.

    Args:
        profile: The reference profile (checked by :func:`check_profile`).
        counts: Per feature of the profile, its counts over the window.
        rows: The window's rows.
        config: Thresholds.
        model_checks: :func:`~kfp_mlops.drift.model_checks.model_drift`'s prediction, performance
            and estimate, or None without a model.
        reference_performance: As given to :func:`check_drift`.
        profile_where: Names the profile in the verdict.
    """
    features: dict[str, Mapping[str, Any]] = profile["features"]
    scores = {name: scores_from_counts(counts[name], features[name]) for name in profile["feature_names"]}
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
    prediction = performance = estimate = None
    if model_checks is not None:
        prediction, performance, estimate = model_checks
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
        "performance_estimate": estimate,
        "reference_performance": dict(reference_performance)
        if model_checks is not None and reference_performance
        else None,
        "rows": rows,
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


def check_profile(
    profile: Mapping[str, Any], config: DriftConfig, model: ModelBundle | None, where: str = "reference profile"
) -> None:
    """Refuses a malformed profile, an unknown version, one that belongs to another model, and a
    ``config`` whose ``per_feature`` names features the profile does not have.

    Raises:
        ConfigError: naming every problem.
    """
    _check_profile(profile, where, model)
    unknown = sorted(set(config.per_feature) - set(profile["features"]))
    if unknown:
        raise ConfigError(f"drift config: per_feature names features {where} does not have: {', '.join(unknown)}")


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

    present = [n for n in profile["feature_names"] if n in current.columns]
    wrong = [
        f"{n} ({current[n].dtype})"
        for n in present
        if profile["features"][n]["kind"] == "numeric"
        and (not pd.api.types.is_numeric_dtype(current[n]) or pd.api.types.is_bool_dtype(current[n]))
    ]
    empty = [n for n in present if current[n].isna().all()] if len(current) else []
    check_window([str(c) for c in current.columns], len(current), wrong, empty, profile, config, where)


def check_window(
    columns: Sequence[str],
    rows: int,
    non_numeric: Sequence[str],
    all_missing: Sequence[str],
    profile: Mapping[str, Any],
    config: DriftConfig,
    where: str,
) -> None:
    """Refuses a window from facts about it: missing or unknown columns, no rows, wrong dtypes,
    all-missing features.

    Args:
        columns: The window's columns.
        rows: Its rows.
        non_numeric: Numeric features whose values are not numbers, each as ``"name (type)"``.
        all_missing: Features with every value missing.
        profile: The reference profile.
        config: Its ``ignore_columns`` are allowed beside the features and the label.
        where: Names the window in the error.

    Raises:
        DataError: naming every problem.
    """
    names = list(profile["feature_names"])
    problems = []
    missing = [n for n in names if n not in columns]
    if missing:
        problems.append(f"lacks the reference's feature(s) {', '.join(missing)}")
    allowed = {*names, profile["label"], *config.ignore_columns}
    extra = [c for c in columns if c not in allowed]
    if extra:
        problems.append(
            f"has column(s) the reference does not know: {', '.join(extra)} "
            "(drop them, or list them in DriftConfig.ignore_columns)"
        )
    if rows == 0:
        problems.append("has no rows")
    if non_numeric:
        problems.append(f"has non-numeric values in numeric feature(s) {', '.join(non_numeric)}")
    if all_missing:
        problems.append(f"has every value missing in {', '.join(all_missing)}")
    if problems:
        raise DataError(f"{where}: {'; '.join(problems)}; no verdict written")
