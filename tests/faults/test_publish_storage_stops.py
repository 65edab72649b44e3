"""Fault: the GCS emulator dies in the middle of a model-store publish.

A real fake-gcs-server (filesystem backend, so what it stored survives it) sits behind a proxy
that, right after the emulator stored the k-th object of a publish, kills the emulator and drops
the answer: the object is stored, the client never hears so, and every retry meets a dead server.
Publish writes the model files, then the checksum record, then ``metadata.json`` last. Whatever
k is, once the emulator is back: no reader sees a half version (nothing listed, nothing loadable),
and a rerun of the publish stores a complete version that loads.

The client's retry deadline is cut from 30 s to 3 s (``storage._GCS_DEADLINE_S``) so each case
waits 3 s for the dead server instead of 30; the retry logic is the same.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kfp_mlops.core import storage
from kfp_mlops.core.errors import MlopsError, StorageError
from kfp_mlops.modeling.model_bundle import METADATA_FILE, MODEL_FILE
from kfp_mlops.modeling.model_store import ModelStore
from tests.support.gcs_emulator import GcsEmulator
from tests.support.lossy_proxy import LossyProxy
from tests.support.models import iris_model, register

# What a publish without a profile uploads, in order: model.joblib, evaluation.json, the status
# record with the checksum, metadata.json (the marker).
UPLOADS = ("model file", "evaluation", "checksum record", "marker")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return iris_model(tmp_path_factory.mktemp("iris") / "model")


@pytest.fixture()
def emulator() -> Iterator[GcsEmulator]:
    """An emulator of this test's own: it gets killed."""
    server = GcsEmulator().start()
    yield server
    server.stop()


@pytest.mark.parametrize("stored", [1, 2, 3, 4], ids=[f"dies after the {u}" for u in UPLOADS])
def test_no_half_version_is_visible_and_a_rerun_completes(
    stored: int, emulator: GcsEmulator, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = LossyProxy(emulator.url).start()
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        monkeypatch.setattr(storage, "_GCS_DEADLINE_S", 3.0)
        root = f"gs://faults-{uuid.uuid4().hex[:12]}/store"
        storage.ensure_bucket(root)
        store = ModelStore(root)
        uploads = itertools.count(1)

        def dies_after_storing(method: str, path: str) -> bool:
            # Called once the emulator answered: the object is stored when it dies.
            if method == "POST" and path.startswith("/upload/") and next(uploads) == stored:
                emulator.kill()
                return True  # and its answer is lost with it
            return False

        proxy.lose(dies_after_storing, times=1)
        with pytest.raises(StorageError, match="storage unreachable"):
            register(root, model_dir)
        assert len(proxy.lost) == 1

        emulator.start()  # same port, same folder: what it stored is back
        stored_names = [uri.rsplit("/", 1)[1] for uri in storage.list_uris(store.model_uri("iris"))]
        assert len(stored_names) == stored  # the dead server kept what it stored; publish could not clean up
        if stored < len(UPLOADS):
            assert METADATA_FILE not in stored_names
            assert store.versions("iris") == []  # nothing half-written is listed ...
            half = next(uri for uri in storage.list_uris(store.model_uri("iris")) if uri.endswith(MODEL_FILE))
            with pytest.raises(MlopsError, match="no stored version"):
                store.registered("iris", half.rsplit("/", 2)[1])  # ... nor found by its id
        else:  # the marker landed, the client never heard: a complete version, loadable
            (lost,) = store.versions("iris")
            assert store.load("iris", lost).classes == ["setosa", "versicolor", "virginica"]

        rerun = register(root, model_dir)
        assert rerun.version in store.versions("iris")
        assert store.load("iris", rerun.version).classes == ["setosa", "versicolor", "virginica"]
        assert len(store.versions("iris")) == (1 if stored < len(UPLOADS) else 2)
    finally:
        proxy.stop()
