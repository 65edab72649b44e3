"""Fixtures for the train component's tests: the project's shared ones from ``tests/conftest.py``.

Conftest fixtures only reach tests below their own folder, so ``isolated_env`` (autouse: own home
and W&B dirs per test) is re-exported here.
"""

from tests.conftest import isolated_env  # noqa: F401 - re-exported fixture
