"""Fixtures of the rollout tests."""

from __future__ import annotations

import pytest

from tests.rollout.simulated import Scorer, fit_scorers


@pytest.fixture(scope="session")
def scorers() -> dict[str, Scorer]:
    """Fraud models fitted once for every rollout test module that scores transactions."""
    return fit_scorers()
