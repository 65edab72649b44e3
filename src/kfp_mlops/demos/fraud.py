"""Synthetic card transactions with rare fraud, non-linear fraud patterns and late labels.

One row is one card transaction: what was bought (``amount``, ``merchant_category``), when and
where (``hour``, ``country``, ``distance_from_home_km``), through what (``device``,
``is_new_device``) and the cardholder's history (``tx_count_24h``, ``avg_amount_30d``,
``days_since_first_tx``). Every row also carries metadata that is not a feature: its
``transaction_id`` (``tx-<seed>-<index>``, unique for a seed), its ``timestamp`` (UTC), the label
``is_fraud`` (0/1, about 1 % of rows) and ``label_available_at``, when the label becomes known
(chargebacks arrive days later).

Features are drawn first, then ``is_fraud ~ Bernoulli(p(x))`` from a fixed fraud model
(:func:`fraud_probability`) with main effects and interactions:

* **account takeover**: night (00:00-05:59) *and* a new device *and* a foreign country together
  add far more risk than each alone (a three-way interaction on top of small main effects);
* **amount far above the cardholder's normal**: risk grows with ``log(amount / avg_amount_30d)``
  only beyond 3x the 30-day average (a hinge on a ratio of two features);
* **velocity**: each transaction beyond 4 in the last 24 h adds risk;
* **new accounts** (first transaction less than 30 days ago) and **resellable goods**
  (digital goods, electronics, jewellery) are riskier; groceries, fuel and restaurants safer.

So that these combinations are frequent enough to learn, 1.4 % of rows come from latent
:data:`PATTERNS` (takeover-like sessions, amount spikes, card-testing bursts) whose features
lean that way; the pattern is not a column and never sets the label, so
:func:`fraud_probability` remains the true risk and the best possible model is known.

On a holdout, a logistic regression on :data:`LEGACY_FEATURES` (amount, hour, new device,
distance: no ratio, no interaction, ``hour`` as a line) reaches an AUC-PR of about 0.20, gradient
boosting on all :data:`FEATURES` about 0.59, the true risk about 0.71 (100k training rows).

Timestamps follow a daily traffic profile (:data:`HOURLY_TRAFFIC`: quiet nights, busy evenings)
over ``span`` from ``start``; ``hour`` is the timestamp's hour. Rows are sorted by time and the
transaction ids follow that order. The same ``(n, seed, start, label_delay, span)`` always gives
the same frame.

Example::

    from datetime import datetime, timedelta, timezone
    from kfp_mlops.demos import fraud

    frame = fraud.generate(50_000, seed=0, start=datetime(2026, 11, 2, tzinfo=timezone.utc),
                           label_delay=(timedelta(days=2), timedelta(days=30)))
    frame[list(fraud.LEGACY_FEATURES)], frame[fraud.LABEL]

See ``docs/fraud_data.md`` for every feature's distribution and the fraud model's terms.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from kfp_mlops.core.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

LABEL = "is_fraud"
ID = "transaction_id"
TIMESTAMP = "timestamp"
LABEL_AVAILABLE_AT = "label_available_at"
FEATURES = (
    "amount",
    "merchant_category",
    "hour",
    "country",
    "device",
    "tx_count_24h",
    "avg_amount_30d",
    "days_since_first_tx",
    "distance_from_home_km",
    "is_new_device",
)
LEGACY_FEATURES = ("amount", "hour", "is_new_device", "distance_from_home_km")
CATEGORICAL_FEATURES = ("merchant_category", "country", "device")
HOME_COUNTRY = "US"
FOREIGN_COUNTRIES = ("CA", "MX", "GB", "FR", "DE", "ES", "BR", "IN", "JP", "AU")
# Foreign transactions per device: card-present abroad is rarer than buying from a foreign shop.
FOREIGN_SHARE = {"chip": 0.03, "contactless": 0.03, "web": 0.10, "app": 0.05}
DEVICES = ("chip", "contactless", "web", "app")
DEVICE_WEIGHTS = (0.30, 0.35, 0.22, 0.13)
# The chance that the device (phone, browser, new card) is seen for the first time.
NEW_DEVICE_SHARE = {"chip": 0.02, "contactless": 0.02, "web": 0.10, "app": 0.06}
# name -> (share of transactions, amount multiplier of the cardholder's average, fraud logit term)
CATEGORIES: dict[str, tuple[float, float, float]] = {
    "grocery": (0.24, 0.9, -0.6),
    "restaurant": (0.15, 0.7, -0.5),
    "fuel": (0.10, 1.0, -0.3),
    "retail": (0.15, 1.2, 0.0),
    "online_retail": (0.12, 1.3, 0.5),
    "travel": (0.05, 4.0, 0.3),
    "electronics": (0.07, 3.0, 0.9),
    "entertainment": (0.06, 0.8, 0.0),
    "digital_goods": (0.04, 0.5, 1.2),
    "jewelry": (0.02, 5.0, 1.0),
}
# Relative transaction intensity per hour of the day (UTC), 00:00 first.
HOURLY_TRAFFIC = (
    0.25,
    0.15,
    0.10,
    0.08,
    0.08,
    0.15,
    0.40,
    0.80,
    1.10,
    1.20,
    1.30,
    1.50,
    1.70,
    1.50,
    1.30,
    1.30,
    1.40,
    1.60,
    1.80,
    1.80,
    1.50,
    1.20,
    0.80,
    0.50,
)
# Nights (00:00-05:59) carry about two thirds of the account-takeover pattern's traffic.
NIGHT_HEAVY_TRAFFIC = (1.6, 1.6, 1.6, 1.6, 1.6, 1.6) + (0.3,) * 18
# Latent patterns and their shares of transactions; they shape features, never labels directly.
PATTERNS = {"normal": 0.986, "takeover": 0.005, "spike": 0.005, "testing": 0.004}
_SPIKE_CATEGORY_WEIGHTS = (0.02, 0.02, 0.01, 0.20, 0.15, 0.15, 0.25, 0.02, 0.03, 0.15)
_TESTING_CATEGORY_WEIGHTS = (0.0, 0.0, 0.0, 0.05, 0.25, 0.0, 0.0, 0.10, 0.60, 0.0)
# The fraud logit's terms (docs/fraud_data.md); the intercept makes about 1 % of rows fraud.
FRAUD_LOGIT = {
    "intercept": -7.77,
    "night": 1.0,
    "new_device": 1.0,
    "foreign": 0.8,
    "new_device_x_foreign": 1.5,
    "night_x_new_device_x_foreign": 5.0,
    "log_amount_ratio_above_3": 3.5,
    "tx_count_24h_above_4": 0.9,
    "new_account": 1.0,
}


def generate(
    n: int,
    seed: int,
    start: datetime,
    label_delay: timedelta | tuple[timedelta, timedelta],
    *,
    span: timedelta = timedelta(days=1),
) -> pd.DataFrame:
    """Draws ``n`` transactions between ``start`` and ``start + span``.

    Args:
        n: Number of transactions (> 0).
        seed: Seed of ``numpy.random.default_rng``.
        start: Time of the first possible transaction; a naive datetime is taken as UTC.
        label_delay: When each label becomes known after its transaction: a ``timedelta`` is the
            mean of an exponential delay, a ``(low, high)`` pair a uniform one (``(d, d)``: always
            ``d``).
        span: Length of the period the transactions fall in (> 0).

    Returns:
        Columns ``transaction_id``, ``timestamp``, the :data:`FEATURES`, ``is_fraud`` and
        ``label_available_at``, sorted by time. Timestamps are UTC (``datetime64[ns, UTC]``);
        categorical features are strings, the others int64 or float64.

    Raises:
        ConfigError: ``n`` < 1, ``span`` not positive, or a negative or reversed ``label_delay``.
    """
    import numpy as np
    import pandas as pd

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"fraud.generate: n={n!r}; expected a positive integer")
    if span <= timedelta(0):
        raise ConfigError(f"fraud.generate: span={span}; expected a positive duration")
    delay_low, delay_high, exponential = _parse_delay(label_delay)
    rng = np.random.default_rng(seed)
    start = _as_utc(start)

    # A latent pattern per row shapes its features (never its label directly): the label is drawn
    # from fraud_probability(features) alone, so that stays the true risk.
    pattern = rng.choice(len(PATTERNS), n, p=list(PATTERNS.values()))
    takeover, spike, testing = (pattern == list(PATTERNS).index(name) for name in ("takeover", "spike", "testing"))

    day_times = _timestamps(rng, n, start, span, HOURLY_TRAFFIC)
    night_times = _timestamps(rng, n, start, span, NIGHT_HEAVY_TRAFFIC)
    timestamps = pd.DatetimeIndex(np.where(takeover, night_times.asi8, day_times.asi8), tz="UTC")
    hour = timestamps.hour.to_numpy().astype(np.int64)
    device = rng.choice(np.array(DEVICES, dtype=object), n, p=DEVICE_WEIGHTS)
    device = np.where(takeover, rng.choice(np.array(("web", "app"), dtype=object), n), device)
    foreign_share = np.array([FOREIGN_SHARE[d] for d in device])
    foreign = rng.random(n) < np.where(takeover, 0.6, foreign_share)
    country = np.where(foreign, rng.choice(np.array(FOREIGN_COUNTRIES, dtype=object), n), HOME_COUNTRY)
    new_device_share = np.array([NEW_DEVICE_SHARE[d] for d in device])
    new_device = (rng.random(n) < np.where(takeover, 0.75, new_device_share)).astype(np.int64)

    names = list(CATEGORIES)
    which = rng.choice(len(names), n, p=[CATEGORIES[c][0] for c in names])
    which = np.where(spike, rng.choice(len(names), n, p=_SPIKE_CATEGORY_WEIGHTS), which)
    which = np.where(testing, rng.choice(len(names), n, p=_TESTING_CATEGORY_WEIGHTS), which)
    category = np.array(names, dtype=object)[which]
    avg_amount = np.round(rng.lognormal(np.log(45.0), 0.7, n), 2)
    multiplier = np.array([CATEGORIES[c][1] for c in names])[which]
    # A spike is typically 3-20x what the cardholder spends on such a purchase.
    multiplier = np.where(spike, multiplier * rng.lognormal(np.log(7.0), 0.5, n), multiplier)
    multiplier = np.where(testing, 0.1, multiplier)
    amount = np.round(np.maximum(avg_amount * multiplier * rng.lognormal(0.0, 0.6, n), 0.5), 2)
    # Gamma-Poisson: cardholders differ in how often they pay; card testing comes in bursts.
    tx_count = rng.poisson(rng.gamma(2.0, 1.0, n)) + np.where(testing, rng.poisson(7.0, n), 0)
    tx_count = tx_count.astype(np.int64)
    new_account = rng.random(n) < np.where(testing | takeover, 0.3, 0.08)
    account_age = np.where(new_account, rng.integers(0, 60, n), np.minimum(rng.lognormal(np.log(900.0), 0.8, n), 7300))
    account_age = account_age.astype(np.int64)
    # Near home mostly; some domestic travel; foreign places are far away.
    home_distance = rng.lognormal(np.log(6.0), 1.0, n)
    travelling = rng.random(n) < 0.03
    domestic = np.where(travelling, rng.lognormal(np.log(400.0), 0.8, n), home_distance)
    distance = np.round(np.where(foreign, domestic + rng.lognormal(np.log(2000.0), 0.6, n), domestic), 1)

    frame = pd.DataFrame(
        {
            TIMESTAMP: timestamps,
            "amount": amount,
            "merchant_category": category,
            "hour": hour,
            "country": country,
            "device": device,
            "tx_count_24h": tx_count,
            "avg_amount_30d": avg_amount,
            "days_since_first_tx": account_age,
            "distance_from_home_km": distance,
            "is_new_device": new_device,
        }
    )
    frame[LABEL] = (rng.random(n) < fraud_probability(frame)).astype(np.int64)
    frame = frame.sort_values(TIMESTAMP, kind="stable", ignore_index=True)
    frame.insert(0, ID, [f"tx-{seed}-{i:08d}" for i in range(n)])
    if exponential:
        delay_s = rng.exponential(delay_high.total_seconds(), n)
    else:
        delay_s = rng.uniform(delay_low.total_seconds(), delay_high.total_seconds(), n)
    frame[LABEL_AVAILABLE_AT] = frame[TIMESTAMP] + pd.to_timedelta(np.round(delay_s * 1e6), unit="us")
    return frame


def fraud_probability(frame: pd.DataFrame) -> np.ndarray:
    """The true fraud probability of each row (the generator's fraud model).

    No model can do better on average: it is the benchmark for AUC-PR and calibration.

    Args:
        frame: Rows with the :data:`FEATURES` columns.
    """
    import numpy as np

    night = (frame["hour"].to_numpy() < 6).astype(float)
    new_device = frame["is_new_device"].to_numpy().astype(float)
    foreign = (frame["country"].to_numpy() != HOME_COUNTRY).astype(float)
    ratio = frame["amount"].to_numpy() / frame["avg_amount_30d"].to_numpy()
    category = np.array([CATEGORIES[c][2] for c in frame["merchant_category"]])
    terms = FRAUD_LOGIT
    logit = (
        terms["intercept"]
        + terms["night"] * night
        + terms["new_device"] * new_device
        + terms["foreign"] * foreign
        + terms["new_device_x_foreign"] * new_device * foreign
        + terms["night_x_new_device_x_foreign"] * night * new_device * foreign
        + terms["log_amount_ratio_above_3"] * np.clip(np.log(ratio / 3.0), 0.0, 2.5)
        + terms["tx_count_24h_above_4"] * np.maximum(frame["tx_count_24h"].to_numpy() - 4, 0)
        + terms["new_account"] * (frame["days_since_first_tx"].to_numpy() < 30)
        + category
    )
    return 1.0 / (1.0 + np.exp(-logit))


def _timestamps(
    rng: np.random.Generator, n: int, start: datetime, span: timedelta, profile: tuple[float, ...]
) -> pd.DatetimeIndex:
    """``n`` sorted times in ``[start, start + span)``, their density proportional to ``profile[hour]``."""
    import numpy as np
    import pandas as pd

    # Pieces between hour boundaries have a constant intensity: invert their cumulative weight.
    t0 = pd.Timestamp(start)
    end = t0 + pd.Timedelta(span)
    bounds = pd.date_range(t0.floor("h") + pd.Timedelta(hours=1), end, freq="h", inclusive="left")
    edges = pd.DatetimeIndex([t0, *bounds, end])
    seconds = np.asarray((edges - t0).total_seconds(), dtype=float)
    weights = np.array(profile)[edges[:-1].hour] * np.diff(seconds)
    cumulative = np.concatenate([[0.0], np.cumsum(weights)])
    u = np.sort(rng.uniform(0.0, cumulative[-1], n))
    piece = np.clip(np.searchsorted(cumulative, u, side="right") - 1, 0, len(weights) - 1)
    offset = seconds[piece] + (u - cumulative[piece]) / weights[piece] * np.diff(seconds)[piece]
    return t0 + pd.to_timedelta(np.round(offset * 1e6), unit="us")


def _parse_delay(label_delay: timedelta | tuple[timedelta, timedelta]) -> tuple[timedelta, timedelta, bool]:
    """``(low, high, exponential)``; for an exponential delay ``high`` is the mean."""
    if isinstance(label_delay, timedelta):
        if label_delay < timedelta(0):
            raise ConfigError(f"fraud.generate: label_delay={label_delay}; expected a non-negative mean delay")
        return timedelta(0), label_delay, True
    try:
        low, high = label_delay
    except (TypeError, ValueError):
        raise ConfigError(
            f"fraud.generate: label_delay={label_delay!r}; expected a timedelta or a (low, high) pair of them"
        ) from None
    if not (isinstance(low, timedelta) and isinstance(high, timedelta)) or not timedelta(0) <= low <= high:
        raise ConfigError(f"fraud.generate: label_delay={label_delay!r}; expected 0 <= low <= high timedeltas")
    return low, high, False


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
