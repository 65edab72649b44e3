"""The drift check's thresholds: :class:`DriftConfig`, with :class:`FeatureThresholds` per feature.

Both follow the package's config idiom (:mod:`kfp_mlops.core.configs`): ``from_dict`` refuses
unknown keys (``per_feature`` overrides too) with the known ones listed, ``problems()`` lists every
value that is not a number in its range, and ``to_dict`` is the inverse of ``from_dict`` (the verdict carries it as
``config``). A :class:`DriftConfig` validates itself when constructed, so no check ever runs with
thresholds it cannot honour. A :class:`FeatureThresholds` alone is not validated: its problems are
its :class:`DriftConfig`'s, named by feature.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kfp_mlops.core.configs import Config, refuse_unknown
from kfp_mlops.core.errors import ConfigError

# What a number field accepts, and how a problem says so.
_Rule = tuple[Callable[[float], bool], str]
_POSITIVE: _Rule = (lambda v: v > 0, "a number > 0")
_SHARE: _Rule = (lambda v: 0 <= v <= 1, "a share in [0, 1]")
_RULES: dict[str, _Rule] = {
    "psi_threshold": _POSITIVE,
    "ks_threshold": _POSITIVE,
    "js_threshold": _POSITIVE,
    "drift_share": (lambda v: 0 < v <= 1, "a share in (0, 1]"),
    "missing_share_increase": _SHARE,
    "out_of_range_increase": _SHARE,
    "prediction_psi_threshold": _POSITIVE,
    "max_accuracy_drop": _SHARE,
    "max_roc_auc_drop": _SHARE,
    "report_rows": (lambda v: v >= 1, "at least 1"),
}


@dataclass(frozen=True)
class FeatureThresholds(Config):
    """Per-feature overrides of :class:`DriftConfig` (``None`` keeps the config's value).

    Attributes:
        psi: PSI threshold.
        ks: KS statistic threshold (numeric features).
        js: Jensen-Shannon distance threshold (categorical features).
        weight: The feature's weight in the dataset's drift share (default 1).
    """

    config_name = "feature thresholds"

    psi: float | None = None
    ks: float | None = None
    js: float | None = None
    weight: float | None = None

    def problems(self) -> list[str]:
        """Every override that is not a number > 0."""
        return [
            problem
            for name in self.field_names()
            if getattr(self, name) is not None and (problem := _problem(name, getattr(self, name), _POSITIVE))
        ]

    def to_dict(self) -> dict[str, Any]:
        """The overrides that are set (the inverse of ``FeatureThresholds(**values)``)."""
        return {name: value for name, value in super().to_dict().items() if value is not None}


@dataclass(frozen=True)
class DriftConfig(Config):
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

    config_name = "drift config"

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
        object.__setattr__(self, "ignore_columns", tuple(self.ignore_columns))
        self.validate()

    def problems(self) -> list[str]:
        """Every threshold out of range, each named (per-feature ones as ``per_feature['x'].psi``)."""
        found = [problem for name, rule in _RULES.items() if (problem := _problem(name, getattr(self, name), rule))]
        for feature, overrides in self.per_feature.items():
            found += [f"per_feature[{feature!r}].{problem}" for problem in overrides.problems()]
        return found

    @classmethod
    def convert(cls, values: dict[str, Any]) -> dict[str, Any]:
        """JSON values to fields: ``per_feature`` objects become :class:`FeatureThresholds`.

        Raises:
            ConfigError: an override that is no object or has an unknown key (named by feature).
        """
        values = super().convert(values)
        per_feature = {}
        for feature, overrides in dict(values.get("per_feature") or {}).items():
            where = f"{cls.config_name}: per_feature[{feature!r}]"
            if not isinstance(overrides, Mapping):
                raise ConfigError(f"{where}: expected a JSON object, got {type(overrides).__name__}")
            refuse_unknown(overrides, FeatureThresholds.field_names(), where)
            per_feature[feature] = FeatureThresholds(**overrides)
        return {**values, "per_feature": per_feature}

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-able values (the inverse of :meth:`from_dict`)."""
        return {
            **super().to_dict(),
            "per_feature": {name: overrides.to_dict() for name, overrides in self.per_feature.items()},
        }

    def for_feature(self, name: str) -> dict[str, float]:
        """The thresholds and weight that apply to feature ``name``."""
        overrides = self.per_feature.get(name, FeatureThresholds())
        return {
            "psi": self.psi_threshold if overrides.psi is None else overrides.psi,
            "ks": self.ks_threshold if overrides.ks is None else overrides.ks,
            "js": self.js_threshold if overrides.js is None else overrides.js,
            "weight": 1.0 if overrides.weight is None else overrides.weight,
        }


def _problem(name: str, value: Any, rule: _Rule) -> str:
    """What is wrong with ``value`` of field ``name`` under ``rule`` (empty: nothing)."""
    accepts, expected = rule
    if isinstance(value, (int, float)) and not isinstance(value, bool) and accepts(value):
        return ""
    return f"{name}={value!r}: expected {expected}"
