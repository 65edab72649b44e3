"""Synthetic e-commerce interactions whose features and purchase behaviour change with the season.

One row is one user seeing one item: user features (age, activity, basket size, recency), item
features (category, price, discount, rating) and context (device, hour, weekend), with the label
``purchased`` (0/1) drawn from a logistic model of those features. Every row carries its ``week``
(0..51), which is metadata, not a feature.

The year has five seasons (:data:`SEASONS`); within a season every week has the same
distribution, and at a season's first week it changes at once:

========== ======== =================================================================================
season     weeks    what changes
========== ======== =================================================================================
winter     0-8      January sales: discounts up; sports and home; fewer sessions
spring     9-21     garden season starts; discounts end; more sessions
summer     22-34    garden, fashion; mobile and late evenings; fewer sessions, long recency; summer sales
autumn     35-45    back to home, books, electronics; busy users; small discounts
holidays   46-51    Black Friday to Christmas: toys and electronics, big baskets, deep discounts, frequent
                    visits; discounts weigh 3x autumn's in the purchase model, price much less
========== ======== =================================================================================

``user_age``, ``item_rating`` and ``is_weekend`` never change: they are the controls a drift check
should leave quiet. The label relationship shifts too (concept drift): the discount and price
coefficients and the per-category boosts depend on the season, so a model trained in autumn
under-predicts purchases of discounted toys in December.

Data is reproducible per week: week ``w`` of seed ``s`` is drawn from its own generator seeded by
``(s, w)``, so ``generate(range(52), n, s)`` and ``generate([w], n, s)`` agree on week ``w``.

Example::

    from kfp_mlops.demos import ecommerce

    autumn = ecommerce.generate(range(35, 46), rows_per_week=2_000, seed=0)
    december = ecommerce.generate([46], rows_per_week=5_000, seed=1)
    ecommerce.season_of(46)  # "holidays"

See ``docs/ecommerce_data.md`` for every feature and its per-season parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

WEEKS_PER_YEAR = 52
WEEK = "week"
LABEL = "purchased"
FEATURES = (
    "user_age",
    "sessions_last_30d",
    "avg_basket_value",
    "days_since_last_purchase",
    "category",
    "item_price",
    "item_discount",
    "item_rating",
    "device",
    "hour_of_day",
    "is_weekend",
)
CATEGORICAL_FEATURES = ("category", "device")
NUMERIC_FEATURES = tuple(name for name in FEATURES if name not in CATEGORICAL_FEATURES)
DEVICES = ("mobile", "desktop", "tablet")
CATEGORIES = ("electronics", "fashion", "home", "toys", "garden", "beauty", "sports", "books")
# Median item price per category; prices are log-normal around it, so the season's category mix
# moves the price distribution.
_PRICE_MEDIAN = {
    "electronics": 180.0,
    "fashion": 40.0,
    "home": 60.0,
    "toys": 28.0,
    "garden": 45.0,
    "beauty": 22.0,
    "sports": 50.0,
    "books": 14.0,
}


@dataclass(frozen=True)
class Season:
    """The distribution of one season's weeks and its purchase model.

    Attributes:
        name: Season name.
        weeks: First and last week (inclusive).
        category_weights: Share of impressions per category (sums to 1).
        device_weights: Share of mobile, desktop, tablet.
        sessions_mean: Mean of ``sessions_last_30d`` (negative binomial, shape 2).
        basket_mean: Mean of ``avg_basket_value`` (log-normal, sigma 0.5).
        recency_mean: Mean of ``days_since_last_purchase`` (exponential, floored, at most 365).
        discount_beta: Beta(a, b) parameters of ``item_discount``.
        evening_peak: Hour of the evening traffic peak.
        intercept: Season term of the purchase logit.
        discount_coef: Logit coefficient of ``item_discount``.
        price_coef: Logit coefficient of ``-log(item_price / 50)``.
        category_boost: Logit terms per category (missing: 0).
    """

    name: str
    weeks: tuple[int, int]
    category_weights: Mapping[str, float]
    device_weights: tuple[float, float, float]
    sessions_mean: float
    basket_mean: float
    recency_mean: float
    discount_beta: tuple[float, float]
    evening_peak: float
    intercept: float
    discount_coef: float
    price_coef: float
    category_boost: Mapping[str, float]


SEASONS: dict[str, Season] = {
    season.name: season
    for season in (
        Season(
            "winter",
            (0, 8),
            {
                "electronics": 0.18,
                "fashion": 0.20,
                "home": 0.20,
                "toys": 0.04,
                "garden": 0.03,
                "beauty": 0.12,
                "sports": 0.15,
                "books": 0.08,
            },
            (0.50, 0.40, 0.10),
            sessions_mean=5.0,
            basket_mean=70.0,
            recency_mean=32.0,
            discount_beta=(2.2, 7.8),
            evening_peak=20.0,
            intercept=0.0,
            discount_coef=3.0,
            price_coef=0.6,
            category_boost={"sports": 0.4},
        ),
        Season(
            "spring",
            (9, 21),
            {
                "electronics": 0.14,
                "fashion": 0.20,
                "home": 0.16,
                "toys": 0.06,
                "garden": 0.18,
                "beauty": 0.10,
                "sports": 0.10,
                "books": 0.06,
            },
            (0.58, 0.34, 0.08),
            sessions_mean=7.0,
            basket_mean=55.0,
            recency_mean=24.0,
            discount_beta=(1.2, 13.8),
            evening_peak=20.0,
            intercept=0.1,
            discount_coef=2.0,
            price_coef=0.6,
            category_boost={"garden": 0.5},
        ),
        Season(
            "summer",
            (22, 34),
            {
                "electronics": 0.10,
                "fashion": 0.25,
                "home": 0.09,
                "toys": 0.07,
                "garden": 0.24,
                "beauty": 0.08,
                "sports": 0.12,
                "books": 0.05,
            },
            (0.70, 0.22, 0.08),
            sessions_mean=4.5,
            basket_mean=48.0,
            recency_mean=35.0,
            discount_beta=(1.6, 8.4),
            evening_peak=21.5,
            intercept=-0.1,
            discount_coef=3.0,
            price_coef=0.6,
            category_boost={"garden": 0.7, "fashion": 0.3},
        ),
        Season(
            "autumn",
            (35, 45),
            {
                "electronics": 0.18,
                "fashion": 0.22,
                "home": 0.20,
                "toys": 0.08,
                "garden": 0.05,
                "beauty": 0.10,
                "sports": 0.07,
                "books": 0.10,
            },
            (0.52, 0.40, 0.08),
            sessions_mean=7.5,
            basket_mean=62.0,
            recency_mean=22.0,
            discount_beta=(1.0, 13.0),
            evening_peak=20.0,
            intercept=0.0,
            discount_coef=2.0,
            price_coef=0.6,
            category_boost={"home": 0.3, "books": 0.3},
        ),
        Season(
            "holidays",
            (46, 51),
            {
                "electronics": 0.28,
                "fashion": 0.14,
                "home": 0.10,
                "toys": 0.25,
                "garden": 0.02,
                "beauty": 0.10,
                "sports": 0.04,
                "books": 0.07,
            },
            (0.50, 0.32, 0.18),
            sessions_mean=12.0,
            basket_mean=105.0,
            recency_mean=10.0,
            discount_beta=(3.0, 7.0),
            evening_peak=19.0,
            intercept=-1.4,
            discount_coef=6.0,
            price_coef=0.25,
            category_boost={"toys": 0.9, "electronics": 0.5},
        ),
    )
}


def season_of(week: int) -> str:
    """The season of a week of the year.

    Args:
        week: Week number, 0..51.

    Raises:
        ValueError: ``week`` is outside 0..51.
    """
    if not 0 <= int(week) < WEEKS_PER_YEAR:
        raise ValueError(f"week {week}: expected 0..{WEEKS_PER_YEAR - 1}")
    return next(s.name for s in SEASONS.values() if s.weeks[0] <= week <= s.weeks[1])


def check_weeks(start_week: int, weeks: int) -> None:
    """Raises ConfigError unless ``weeks`` weeks from ``start_week`` lie within one year (a demo's range)."""
    from kfp_mlops.core.errors import ConfigError

    if not 0 <= start_week < WEEKS_PER_YEAR:
        raise ConfigError(f"start week {start_week}: expected 0..{WEEKS_PER_YEAR - 1}")
    if not 1 <= weeks <= WEEKS_PER_YEAR - start_week:
        raise ConfigError(f"weeks={weeks}: expected 1..{WEEKS_PER_YEAR - start_week} from week {start_week}")


def v2_request(columns: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """The Open Inference Protocol request of some shoppers: one input per feature, categories as BYTES.

    Args:
        columns: Every feature's values, one per shopper (a DataFrame, or a mapping of lists).
    """
    inputs = []
    for name in FEATURES:
        categorical = name in CATEGORICAL_FEATURES
        values = columns[name]
        inputs.append(
            {
                "name": name,
                "shape": [len(values)],
                "datatype": "BYTES" if categorical else "FP64",
                "data": [str(v) for v in values] if categorical else [float(v) for v in values],
            }
        )
    return {"inputs": inputs}


def feature_kinds() -> dict[str, str]:
    """Feature name -> "numeric" or "categorical", in column order (what ``build_profile`` takes)."""
    return {name: "categorical" if name in CATEGORICAL_FEATURES else "numeric" for name in FEATURES}


def generate(weeks: Iterable[int], rows_per_week: int, seed: int) -> pd.DataFrame:
    """Draws ``rows_per_week`` interactions for each week.

    Args:
        weeks: Weeks of the year (0..51), e.g. ``range(35, 46)``; repeated weeks repeat their rows.
        rows_per_week: Rows per week (> 0).
        seed: Base seed; week ``w`` is drawn from ``numpy.random.default_rng((seed, w))``.

    Returns:
        Columns ``week``, the :data:`FEATURES` and ``purchased``, weeks in the given order. Numeric
        columns are int64 or float64, ``device`` and ``category`` are strings.

    Raises:
        ValueError: no weeks, a week outside 0..51, or ``rows_per_week`` < 1.
    """
    import pandas as pd

    weeks = [int(w) for w in weeks]
    if not weeks:
        raise ValueError("generate: no weeks given")
    if rows_per_week < 1:
        raise ValueError(f"generate: rows_per_week={rows_per_week}; expected at least 1")
    return pd.concat([_week(w, rows_per_week, seed) for w in weeks], ignore_index=True)


def _week(week: int, rows: int, seed: int) -> pd.DataFrame:
    """One week's rows, from its own generator."""
    import numpy as np
    import pandas as pd

    season = SEASONS[season_of(week)]
    rng = np.random.default_rng((seed, week))

    age = np.clip(np.rint(rng.normal(39.0, 12.0, rows)), 18, 80).astype(np.int64)
    # Gamma-Poisson (negative binomial): users differ in activity.
    sessions = rng.poisson(rng.gamma(2.0, season.sessions_mean / 2.0, rows)).astype(np.int64)
    basket = np.round(rng.lognormal(np.log(season.basket_mean) - 0.125, 0.5, rows), 2)
    recency = np.minimum(np.floor(rng.exponential(season.recency_mean, rows)), 365).astype(np.int64)

    which = rng.choice(len(CATEGORIES), rows, p=[season.category_weights[c] for c in CATEGORIES])
    category = np.array(CATEGORIES, dtype=object)[which]
    price = np.round(np.array([_PRICE_MEDIAN[c] for c in CATEGORIES])[which] * rng.lognormal(0.0, 0.6, rows), 2)
    discount = np.round(rng.beta(*season.discount_beta, rows), 2)
    rating = np.round(np.clip(rng.normal(4.1, 0.45, rows), 1.0, 5.0), 1)

    device = rng.choice(np.array(DEVICES, dtype=object), rows, p=season.device_weights)
    evening = rng.random(rows) < 0.65
    hour = np.where(evening, rng.normal(season.evening_peak, 2.2, rows), rng.normal(12.5, 2.5, rows))
    hour = np.mod(np.rint(hour), 24).astype(np.int64)
    weekend = (rng.random(rows) < 2 / 7).astype(np.int64)

    boost = np.array([season.category_boost.get(c, 0.0) for c in CATEGORIES])[which]
    logit = (
        -2.3
        + season.intercept
        + season.discount_coef * discount
        - season.price_coef * np.log(price / 50.0)
        + 0.06 * (sessions - 6)
        - 0.025 * (recency - 25)
        + 0.8 * (rating - 4.1)
        + np.select([device == "desktop", device == "tablet"], [0.3, 0.1], 0.0)
        + boost
        + 0.15 * weekend
        + 0.2 * ((hour >= 18) & (hour <= 22))
    )
    purchased = (rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)

    return pd.DataFrame(
        {
            WEEK: np.full(rows, week, dtype=np.int64),
            "user_age": age,
            "sessions_last_30d": sessions,
            "avg_basket_value": basket,
            "days_since_last_purchase": recency,
            "category": category,
            "item_price": price,
            "item_discount": discount,
            "item_rating": rating,
            "device": device,
            "hour_of_day": hour,
            "is_weekend": weekend,
            LABEL: purchased,
        }
    )
