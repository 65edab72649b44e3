"""DriftConfig: JSON values, unknown keys and every out-of-range value named."""

from __future__ import annotations

import pytest

from kfp_mlops.core.errors import ConfigError
from kfp_mlops.drift.config import DriftConfig, FeatureThresholds


def test_config_is_checked() -> None:
    """Unknown keys and out-of-range values are named."""
    assert DriftConfig.from_dict({}) == DriftConfig()
    config = DriftConfig.from_dict(
        {"psi_threshold": 0.25, "per_feature": {"x": {"ks": 0.2}}, "ignore_columns": ["week"]}
    )
    assert config.for_feature("x") == {"psi": 0.25, "ks": 0.2, "js": 0.1, "weight": 1.0}
    assert DriftConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match=r"unknown key\(s\) psi; known: drift_share"):
        DriftConfig.from_dict({"psi": 0.1})
    with pytest.raises(
        ConfigError, match=r"per_feature\['x'\]: unknown key\(s\) threshold; known: js, ks, psi, weight"
    ):
        DriftConfig.from_dict({"per_feature": {"x": {"threshold": 0.1}}})
    with pytest.raises(ConfigError, match=r"^drift config is invalid: drift_share=0: expected a share in \(0, 1\]$"):
        DriftConfig(drift_share=0)
    with pytest.raises(
        ConfigError, match=r"^drift config is invalid: per_feature\['x'\].psi=-1: expected a number > 0$"
    ):
        DriftConfig(per_feature={"x": FeatureThresholds(psi=-1)})


def test_every_problem_is_listed_at_once() -> None:
    """problems() names each bad value, per-feature ones by feature; validate() raises them in one message."""
    doc = {
        "psi_threshold": -1,
        "drift_share": 2,
        "report_rows": 0,
        "max_roc_auc_drop": "high",
        "per_feature": {"x": {"psi": 0, "weight": -2}},
    }
    with pytest.raises(ConfigError) as exc:
        DriftConfig.from_dict(doc)
    assert str(exc.value) == (
        "drift config is invalid: psi_threshold=-1: expected a number > 0; drift_share=2: expected a share in "
        "(0, 1]; max_roc_auc_drop='high': expected a share in [0, 1]; report_rows=0: expected at least 1; "
        "per_feature['x'].psi=0: expected a number > 0; per_feature['x'].weight=-2: expected a number > 0"
    )
    assert FeatureThresholds(psi=-1, ks=0.2).problems() == ["psi=-1: expected a number > 0"]


def test_json_shapes() -> None:
    """Non-objects are refused by name; to_dict leaves out unset per-feature overrides."""
    with pytest.raises(ConfigError, match=r"^drift config: expected a JSON object, got list$"):
        DriftConfig.from_dict([("psi_threshold", 0.2)])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^drift config: per_feature\['x'\]: expected a JSON object, got float$"):
        DriftConfig.from_dict({"per_feature": {"x": 0.3}})
    config = DriftConfig(per_feature={"x": FeatureThresholds(weight=2)}, ignore_columns=("week",))
    assert config.to_dict()["per_feature"] == {"x": {"weight": 2}}
    assert config.to_dict()["ignore_columns"] == ["week"]
    assert list(config.to_dict()) == [
        "psi_threshold",
        "ks_threshold",
        "js_threshold",
        "drift_share",
        "missing_share_increase",
        "out_of_range_increase",
        "prediction_psi_threshold",
        "max_accuracy_drop",
        "max_roc_auc_drop",
        "per_feature",
        "ignore_columns",
        "report_rows",
        "seed",
    ]
