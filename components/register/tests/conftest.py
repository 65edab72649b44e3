"""Fixtures for the register component's tests: the project's shared ones from ``tests/conftest.py``.

Conftest fixtures only reach tests below their own folder, so the ones these tests use are
re-exported here (``isolated_env`` stays autouse; ``store_root`` runs a test on a local folder and
on the GCS emulator).
"""

from tests.conftest import gcs_bucket, gcs_emulator, isolated_env, store_root  # noqa: F401 - re-exported fixtures
