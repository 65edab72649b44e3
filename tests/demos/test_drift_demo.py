"""``kfp-mlops demo drift``: a short run across the autumn -> holidays change, and its quality checks.

Weeks 43-47: three quiet autumn weeks, the first holiday week (covariate and concept drift), and
one more holiday week served by the retrained model. Everything is seeded, so the numbers repeat.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from kfp_mlops.cli import main
from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.demos import ecommerce
from kfp_mlops.demos.drift import DemoConfig, render_table, run_demo
from kfp_mlops.modeling.model_bundle import ModelBundle
from kfp_mlops.modeling.model_store import ModelStore


def _accuracy(bundle: ModelBundle, frame: pd.DataFrame) -> float:
    predicted = bundle.model.predict(frame[bundle.feature_names]).astype(str)
    return float((predicted == frame[ecommerce.LABEL].astype(str)).mean())


@pytest.mark.slow
def test_short_demo_flags_the_season_change_and_the_retrained_model_recovers(tmp_path: Path) -> None:
    lines: list[str] = []
    result = run_demo(
        DemoConfig(weeks=3, start_week=45),
        settings=Settings.from_env(),
        workdir=tmp_path / "demo",
        announce=lines.append,
    )
    by_week = {w.week: w for w in result.weeks}

    # The seasonal shift is flagged in the first shifted window, and only there.
    assert [w.week for w in result.weeks if w.drift] == [46]
    assert by_week[46].drift_share >= 0.3 and "item_discount" in by_week[46].drifted_features
    assert result.retrain_weeks == [46]
    new_version = by_week[46].new_version
    assert by_week[47].served_version == new_version != result.initial_version
    assert by_week[46].retrain["passed"] is True and by_week[46].retrain["source"].endswith("week-46.csv")
    assert by_week[46].retrain["version"] == new_version
    assert by_week[46].retrain["previous_champion"] == result.initial_version
    assert (by_week[46].retrain["deploy_mode"], by_week[46].retrain["status"]) == ("single", "champion")

    # Quality: on the new season the retrained model reaches >= 90 % of the pre-drift accuracy and
    # beats the old model on the same window.
    pre_drift = by_week[45].live_accuracy
    assert by_week[47].live_accuracy >= 0.9 * pre_drift, (by_week[47].live_accuracy, pre_drift)
    store = ModelStore(result.store_root)
    window = pd.read_csv(result.workdir / "data" / "week-47.csv")
    old = _accuracy(store.load("shop", result.initial_version), window)
    new = _accuracy(store.load("shop", new_version), window)
    assert new > old and new == pytest.approx(by_week[47].live_accuracy)  # the router served the new model
    assert by_week[46].live_accuracy < 0.9 * pre_drift  # the old model did degrade

    table = pd.read_csv(result.table_path)
    assert list(table["week"]) == [45, 46, 47] and list(table["retrained"]) == [False, True, False]
    assert result.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "week" not in window.columns  # windows are written without the week (not a feature)
    assert "drift flagged in weeks 46; new champion after weeks 46" in render_table(result)
    assert any("retrained, deployed" in line for line in lines)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (DemoConfig(weeks=0), "weeks=0"),
        (DemoConfig(start_week=50, weeks=3), "weeks=3: expected 1..2 from week 50"),
        (DemoConfig(rows_per_week=10), "rows_per_week=10"),
        (DemoConfig(drift_config={"psi": 1}), "unknown key"),
    ],
)
def test_bad_configs_are_refused_before_anything_runs(config: DemoConfig, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        run_demo(config, settings=Settings.from_env(), workdir=tmp_path / "demo")
    assert not (tmp_path / "demo").exists()


def test_cli_refuses_a_bad_week_range(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "drift", "--weeks", "60"]) == 1
    assert capsys.readouterr().err.strip() == "error: weeks=60: expected 1..52 from week 0"
