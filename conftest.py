"""Fixtures for every test, in tests/ and components/*/tests/.

An isolated KFP_MLOPS_HOME and offline W&B folders per test, and a real GCS emulator process.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gcs_emulator import GcsEmulator
from tests.support.wandb_offline import use_offline_wandb


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keeps every test local and offline: its own home, store and W&B folders, no API key."""
    home = tmp_path / "home"
    monkeypatch.setenv("KFP_MLOPS_HOME", str(home))
    monkeypatch.delenv("KFP_MLOPS_STORE", raising=False)
    monkeypatch.delenv("KFP_HOST", raising=False)
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # tests in a CI pod still run as on a laptop
    use_offline_wandb(monkeypatch, tmp_path)
    return home


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    """One fake-gcs-server process for the session."""
    emulator = GcsEmulator().start()
    yield emulator
    emulator.stop()


@pytest.fixture()
def gcs_bucket(gcs_emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the emulator, as ``gs://bucket``; STORAGE_EMULATOR_HOST points at it."""
    from kfp_mlops.core import storage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)
    uri = f"gs://test-{uuid.uuid4().hex[:12]}"
    storage.ensure_bucket(uri)
    return uri


@pytest.fixture(params=["local", "gcs"])
def store_root(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test against a local folder and against the GCS emulator."""
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("gcs_bucket") + "/store"
