"""Fixtures for the ingest component's tests: the project's shared ones from ``tests/conftest.py``.

Conftest fixtures only reach tests below their own folder, so the ones these tests use are
re-exported here (``isolated_env`` stays autouse: every test gets its own home and W&B dirs).
"""

from tests.conftest import gcs_bucket, gcs_emulator, isolated_env  # noqa: F401 - re-exported fixtures
