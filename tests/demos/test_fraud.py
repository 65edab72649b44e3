"""The synthetic card transactions: shape, determinism, fraud rate, fraud patterns, late labels."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from kfp_mlops.core.errors import ConfigError
from kfp_mlops.demos import fraud

START = datetime(2026, 11, 2, 9, 30, tzinfo=timezone.utc)
DELAY = (timedelta(days=2), timedelta(days=30))


@pytest.fixture(scope="module")
def big() -> pd.DataFrame:
    return fraud.generate(300_000, seed=0, start=START, label_delay=DELAY, span=timedelta(days=7))


def test_columns_types_and_time_order() -> None:
    frame = fraud.generate(5_000, seed=1, start=START, label_delay=DELAY)

    assert list(frame.columns) == [fraud.ID, fraud.TIMESTAMP, *fraud.FEATURES, fraud.LABEL, fraud.LABEL_AVAILABLE_AT]
    assert set(fraud.LEGACY_FEATURES) < set(fraud.FEATURES)
    for name in fraud.FEATURES:
        expected = "object" if name in fraud.CATEGORICAL_FEATURES else ("int64", "float64")
        assert str(frame[name].dtype) in expected, name
    assert str(frame[fraud.TIMESTAMP].dtype) == "datetime64[ns, UTC]"
    assert frame[fraud.ID].is_unique
    assert frame[fraud.TIMESTAMP].is_monotonic_increasing
    assert frame[fraud.TIMESTAMP].min() >= pd.Timestamp(START)
    assert frame[fraud.TIMESTAMP].max() < pd.Timestamp(START + timedelta(days=1))
    assert (frame["hour"] == frame[fraud.TIMESTAMP].dt.hour).all()
    assert set(frame[fraud.LABEL]) <= {0, 1}
    assert (frame["amount"] > 0).all() and (frame["distance_from_home_km"] >= 0).all()
    assert frame["is_new_device"].isin([0, 1]).all()
    assert set(frame["merchant_category"]) <= set(fraud.CATEGORIES)


def test_seeded_determinism() -> None:
    one = fraud.generate(2_000, seed=7, start=START, label_delay=timedelta(days=5))
    again = fraud.generate(2_000, seed=7, start=START, label_delay=timedelta(days=5))
    other = fraud.generate(2_000, seed=8, start=START, label_delay=timedelta(days=5))

    pd.testing.assert_frame_equal(one, again)
    assert not one["amount"].equals(other["amount"])


def test_fraud_rate_is_about_one_percent(big: pd.DataFrame) -> None:
    assert big[fraud.LABEL].mean() == pytest.approx(0.01, abs=0.0015)
    # The label is drawn from fraud_probability: its mean is the expected rate.
    assert fraud.fraud_probability(big).mean() == pytest.approx(big[fraud.LABEL].mean(), abs=0.001)


def test_fraud_patterns_are_interactions(big: pd.DataFrame) -> None:
    rate = big[fraud.LABEL].mean()
    night = big["hour"] < 6
    new_device = big["is_new_device"] == 1
    foreign = big["country"] != fraud.HOME_COUNTRY
    spike = big["amount"] / big["avg_amount_30d"] > 8

    takeover = big.loc[night & new_device & foreign, fraud.LABEL].mean()
    assert takeover > 30 * rate
    # Together far more than any one alone: the pattern is an interaction.
    for alone in (night & ~new_device & ~foreign, new_device & ~night & ~foreign, foreign & ~night & ~new_device):
        assert big.loc[alone, fraud.LABEL].mean() < takeover / 5
    assert big.loc[spike, fraud.LABEL].mean() > 5 * rate
    assert big.loc[big["tx_count_24h"] >= 10, fraud.LABEL].mean() > 5 * rate


def test_daily_traffic_profile(big: pd.DataFrame) -> None:
    per_hour = big["hour"].value_counts(normalize=True)
    assert per_hour[18] > 5 * per_hour[3]


def test_label_delays() -> None:
    uniform = fraud.generate(5_000, seed=2, start=START, label_delay=DELAY)
    delay = uniform[fraud.LABEL_AVAILABLE_AT] - uniform[fraud.TIMESTAMP]
    assert delay.min() >= DELAY[0] and delay.max() <= DELAY[1]

    exponential = fraud.generate(20_000, seed=2, start=START, label_delay=timedelta(days=10))
    mean_days = (exponential[fraud.LABEL_AVAILABLE_AT] - exponential[fraud.TIMESTAMP]).dt.total_seconds().mean() / 86400
    assert mean_days == pytest.approx(10, rel=0.05)

    fixed = fraud.generate(100, seed=2, start=START, label_delay=(timedelta(hours=6), timedelta(hours=6)))
    assert ((fixed[fraud.LABEL_AVAILABLE_AT] - fixed[fraud.TIMESTAMP]) == timedelta(hours=6)).all()


def test_naive_start_is_utc() -> None:
    naive = fraud.generate(50, seed=3, start=START.replace(tzinfo=None), label_delay=DELAY)
    aware = fraud.generate(50, seed=3, start=START, label_delay=DELAY)
    pd.testing.assert_frame_equal(naive, aware)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n=0"),
        ({"span": timedelta(0)}, "span"),
        ({"label_delay": timedelta(days=-1)}, "non-negative"),
        ({"label_delay": (timedelta(days=3), timedelta(days=1))}, "low <= high"),
        ({"label_delay": 5}, "timedelta or a"),
    ],
)
def test_invalid_parameters(kwargs: dict, match: str) -> None:
    args = {"n": 10, "seed": 0, "start": START, "label_delay": DELAY, **kwargs}
    with pytest.raises(ConfigError, match=match):
        fraud.generate(**args)


def test_fraud_probability_is_a_probability(big: pd.DataFrame) -> None:
    p = fraud.fraud_probability(big.head(10_000))
    assert np.all((p > 0) & (p < 1))
