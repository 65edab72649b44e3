"""The e-commerce generator: reproducible, seasonal, with a purchase model that changes in December."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kfp_mlops.demos import ecommerce


def test_columns_dtypes_and_ranges() -> None:
    frame = ecommerce.generate([0, 30], rows_per_week=500, seed=1)

    assert list(frame.columns) == ["week", *ecommerce.FEATURES, "purchased"]
    assert len(frame) == 1_000 and frame["week"].tolist() == [0] * 500 + [30] * 500
    assert {c: str(frame[c].dtype) for c in ecommerce.CATEGORICAL_FEATURES} == {
        "category": "object",
        "device": "object",
    }
    assert all(pd.api.types.is_numeric_dtype(frame[c]) for c in ecommerce.NUMERIC_FEATURES)
    assert frame.notna().all().all()
    assert set(frame["category"]) <= set(ecommerce.CATEGORIES) and set(frame["device"]) <= set(ecommerce.DEVICES)
    assert frame["user_age"].between(18, 80).all() and frame["item_rating"].between(1, 5).all()
    assert frame["item_discount"].between(0, 1).all() and frame["hour_of_day"].between(0, 23).all()
    assert set(frame["is_weekend"]) == {0, 1} and set(frame["purchased"]) == {0, 1}
    assert (frame["item_price"] > 0).all() and (frame["days_since_last_purchase"] <= 365).all()
    assert ecommerce.feature_kinds() == {
        name: "categorical" if name in ("category", "device") else "numeric" for name in ecommerce.FEATURES
    }


def test_reproducible_per_week() -> None:
    """Same seed, same rows; a week's rows do not depend on which other weeks are drawn."""
    year = ecommerce.generate(range(52), rows_per_week=50, seed=3)
    pd.testing.assert_frame_equal(year, ecommerce.generate(range(52), rows_per_week=50, seed=3))
    pd.testing.assert_frame_equal(
        year[year["week"] == 47].reset_index(drop=True), ecommerce.generate([47], rows_per_week=50, seed=3)
    )
    assert not year.equals(ecommerce.generate(range(52), rows_per_week=50, seed=4))


@pytest.mark.parametrize(
    ("week", "season"),
    [
        (0, "winter"),
        (8, "winter"),
        (9, "spring"),
        (21, "spring"),
        (22, "summer"),
        (34, "summer"),
        (35, "autumn"),
        (45, "autumn"),
        (46, "holidays"),
        (51, "holidays"),
    ],
)
def test_season_of(week: int, season: str) -> None:
    assert ecommerce.season_of(week) == season


def test_seasons_cover_the_year_once() -> None:
    weeks = sorted(w for s in ecommerce.SEASONS.values() for w in range(s.weeks[0], s.weeks[1] + 1))
    assert weeks == list(range(52))
    for season in ecommerce.SEASONS.values():
        assert sum(season.category_weights.values()) == pytest.approx(1.0)
        assert sum(season.device_weights) == pytest.approx(1.0)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match=r"^week 52: expected 0\.\.51$"):
        ecommerce.season_of(52)
    with pytest.raises(ValueError, match=r"^week -1: expected 0\.\.51$"):
        ecommerce.generate([-1], rows_per_week=10, seed=0)
    with pytest.raises(ValueError, match="no weeks given"):
        ecommerce.generate([], rows_per_week=10, seed=0)
    with pytest.raises(ValueError, match="rows_per_week=0; expected at least 1"):
        ecommerce.generate([1], rows_per_week=0, seed=0)


def test_holidays_shift_features_and_controls_stay() -> None:
    """December: toys and electronics, bigger baskets, deeper discounts; age, rating, weekend unchanged."""
    autumn = ecommerce.generate(range(35, 46), rows_per_week=2_000, seed=0)
    holidays = ecommerce.generate(range(46, 52), rows_per_week=4_000, seed=0)

    def share(frame: pd.DataFrame, column: str, value: str) -> float:
        return float((frame[column] == value).mean())

    assert share(holidays, "category", "toys") == pytest.approx(0.25, abs=0.01)
    assert share(autumn, "category", "toys") == pytest.approx(0.08, abs=0.01)
    assert share(holidays, "device", "tablet") == pytest.approx(0.18, abs=0.01)
    assert holidays["avg_basket_value"].mean() == pytest.approx(105, rel=0.03)
    assert autumn["avg_basket_value"].mean() == pytest.approx(62, rel=0.03)
    assert holidays["item_discount"].mean() == pytest.approx(0.30, abs=0.01)
    assert holidays["sessions_last_30d"].mean() == pytest.approx(12, rel=0.03)
    for control in ("user_age", "item_rating", "is_weekend"):
        assert holidays[control].mean() == pytest.approx(autumn[control].mean(), rel=0.02), control


def test_purchase_model_changes_with_the_season() -> None:
    """More purchases in December, and a discount raises the purchase rate far more than in autumn."""
    autumn = ecommerce.generate(range(35, 46), rows_per_week=4_000, seed=0)
    holidays = ecommerce.generate(range(46, 52), rows_per_week=8_000, seed=0)

    def discount_lift(frame: pd.DataFrame) -> float:
        deep = frame["item_discount"] >= 0.2
        return float(frame.loc[deep, "purchased"].mean() - frame.loc[~deep, "purchased"].mean())

    assert autumn["purchased"].mean() == pytest.approx(0.20, abs=0.02)
    assert holidays["purchased"].mean() == pytest.approx(0.39, abs=0.02)
    assert discount_lift(holidays) > 2 * discount_lift(autumn) > 0
    toys = np.mean(holidays.loc[holidays["category"] == "toys", "purchased"])
    assert toys > holidays["purchased"].mean() + 0.1
