"""Anytime-valid confidence sequences: intervals that stay valid however often a rollout looks.

The rollout controller re-decides on a stage's *cumulative* data at every step. A fixed 95 %
interval misses the truth at a given look one time in 20, but a challenger that is looked at
after every batch gets many chances for one lucky look: an equal challenger was promoted in 15 %
of simulated rollouts with a look every 5,000 labelled requests, more with finer looks. A
**confidence sequence** is a sequence of intervals, one per sample size ``n``, that covers the
truth at *every* ``n`` at once with probability ``1 - alpha``: the rule "act when the interval
clears the bar" then errs with probability at most ``alpha`` however often and whenever the
controller looks, so a schedule of any cadence has the same guarantee. The intervals depend only
on the plan (``alpha``, the tuning sample size) and the cumulative data (the estimate, its
standard error, ``n``); never on how many looks came before.

Two constructions, both of Robbins' *mixture* kind (a nonnegative martingale averaged over
alternatives, turned into intervals by Ville's inequality):

* :func:`mean_sequence` -- the **asymptotic confidence sequence** of Waudby-Smith, Arnold, Wu,
  Howard & Ramdas ("Time-uniform central limit theory and asymptotic confidence sequences",
  Annals of Statistics, 2024, Theorem 2.2): for an estimator that behaves like a mean of ``n``
  i.i.d. terms with standard deviation ``sigma`` (a difference of AUC-PR or of false-positive
  rates, through its influence function), ``estimate +- sigma * sqrt(2 (n rho^2 + 1) / (n^2 rho^2)
  * log(sqrt(n rho^2 + 1) / alpha))``, with ``sigma = se * sqrt(n)`` from the standard error
  ``se`` at ``n``. It is the two-sided normal-mixture boundary; valid for every ``rho > 0``, it
  is tightest near ``n* = (-2 log alpha + log(1 - 2 log alpha)) / rho^2``, so ``rho`` is set from
  a planned ``n*`` (:func:`planned_sample_size`). At ``n = n*`` the radius is about 3.0 standard
  errors at ``alpha = 0.05`` (1.96 for one fixed look), 3.0-3.5 over a hundredfold range of ``n``.
* :func:`proportion_sequence` -- for a rate (the error-rate and latency guardrails count events
  among requests), the exact **beta-binomial mixture** (Howard, Ramdas, McAuliffe & Sekhon,
  "Time-uniform, nonparametric, nonasymptotic confidence sequences", Annals of Statistics, 2021,
  conjugate mixtures): ``M_n(p) = B(a + S, b + n - S) / (B(a, b) p^S (1 - p)^(n - S))`` is a
  martingale under rate ``p``; the sequence is every ``p`` with ``M_n(p) < 1 / alpha``. Valid at
  any ``n`` (not only asymptotically) and for rare events, where a normal approximation with
  ``p-hat = 0`` collapses. The prior is Jeffreys' ``Beta(1/2, 1/2)``: no tuning, and in numerical
  checks it needs at most about 1.5 times the requests of a prior concentrated on the limit to
  flag a rate 1.5 to 5 times the limit, and fewer for a rate far above it (a prior concentrated on
  the limit has little mass where a badly failing challenger is).

Both are two-sided at level ``alpha``, so each one-sided error -- the lower bound ever above the
truth (a false promotion or a false guardrail trip), or the upper bound ever below it (a false
"significantly worse") -- has probability at most ``alpha / (2 - alpha)`` for the normal mixture
(about 2.6 % at ``alpha = 0.05``) and at most ``alpha`` for the beta-binomial one. The asymptotic
sequence relies on the central limit theorem at the sample sizes a plan waits for
(``min_labelled``, ``min_positives``); the simulations of :mod:`kfp_mlops.rollout.simulation`
measure the error rates it achieves there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kfp_mlops.rollout.intervals import Interval

_BISECTIONS = 60  # halvings of the search interval of a proportion bound: below 1e-17
_JEFFREYS = 0.5  # Beta(1/2, 1/2), the mixture's prior over rates


@dataclass(frozen=True)
class StandardError:
    """The standard error of an estimate and the sample size it scales with (``se`` ~ ``1/sqrt(n)``)."""

    se: float
    n: int

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-ready: a non-finite standard error becomes ``None``."""
        return {"se": self.se if math.isfinite(self.se) else None, "n": self.n}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> StandardError:
        """The inverse of :meth:`to_dict`."""
        return cls(math.nan if doc["se"] is None else float(doc["se"]), int(doc["n"]))


def planned_sample_size(min_labelled: int, max_labelled: int) -> float:
    """The sample size a stage's sequence is tightest at: the geometric mean of the plan's bounds.

    A stage decides between ``min_labelled`` and ``max_labelled`` labelled requests; over the
    default plan's 25-fold range (2,000 to 50,000) the radius, in standard errors, is at most about
    11 % wider than at its tightest (3.36 and 3.15 at the ends, 3.03 in the middle, at 95 %).
    """
    return math.sqrt(min_labelled * max_labelled)


def _tuning_constant(alpha: float) -> float:
    """``c = -2 log alpha + log(1 - 2 log alpha)``: the mixture is tightest at ``n`` where ``n rho^2 = c``."""
    log_term = -2 * math.log(alpha)
    return log_term + math.log(log_term + 1)


def normal_radius(se: float, n: float, *, alpha: float, planned_n: float) -> float:
    """The half-width of the asymptotic confidence sequence at ``n`` (see the module docstring).

    Args:
        se: The estimate's standard error at ``n`` (so ``sigma = se * sqrt(n)``).
        n: The sample size the standard error scales with (``se`` proportional to ``1/sqrt(n)``).
        alpha: One minus the confidence, over every ``n`` at once.
        planned_n: Where the sequence is tightest (:func:`planned_sample_size`).
    """
    rho2 = _tuning_constant(alpha) / planned_n
    scale = n * rho2 + 1
    return se * math.sqrt(n) * math.sqrt(2 * scale / (n * n * rho2) * math.log(math.sqrt(scale) / alpha))


def mean_sequence(value: float, se: float, n: float, *, alpha: float, planned_n: float) -> Interval:
    """``value`` with its asymptotic confidence sequence at ``n`` (unbounded without a finite ``se``)."""
    if not (math.isfinite(value) and math.isfinite(se) and n > 0):
        return Interval(value, -math.inf, math.inf)
    radius = normal_radius(se, n, alpha=alpha, planned_n=planned_n)
    return Interval(value, value - radius, value + radius)


def proportion_sequence(successes: int, n: int, *, alpha: float) -> Interval:
    """The rate ``successes / n`` with its beta-binomial confidence sequence (see the module docstring).

    Args:
        successes: Events counted (errors, slow requests).
        n: Trials (requests).
        alpha: One minus the confidence, over every ``n`` at once.
    """
    if n <= 0:
        return Interval(math.nan, 0.0, 1.0)
    a = b = _JEFFREYS
    log_prior = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    log_marginal = math.lgamma(a + successes) + math.lgamma(b + n - successes) - math.lgamma(a + b + n)
    threshold = math.log(1 / alpha)

    def evidence(p: float) -> float:  # log M_n(p): convex in p, smallest at successes / n
        return log_marginal - log_prior - successes * math.log(p) - (n - successes) * math.log1p(-p)

    estimate = successes / n
    low = 0.0 if successes == 0 else _crossing(evidence, threshold, inside=estimate, outside=0.0)
    high = 1.0 if successes == n else _crossing(evidence, threshold, inside=estimate, outside=1.0)
    return Interval(estimate, low, high)


def _crossing(evidence: Callable[[float], float], threshold: float, *, inside: float, outside: float) -> float:
    """The point between ``inside`` (evidence below ``threshold``) and ``outside`` where it reaches it."""
    for _ in range(_BISECTIONS):
        middle = (inside + outside) / 2
        if evidence(middle) < threshold:
            inside = middle
        else:
            outside = middle
    return inside
