"""The storage layer against a local folder and a real GCS emulator process (fake-gcs-server)."""

from __future__ import annotations

import socket

import pytest

from kfp_mlops.core import storage
from kfp_mlops.core.errors import AlreadyExistsError, StorageError


def test_write_read_list_delete(store_root: str) -> None:
    a = storage.join(store_root, "models", "iris", "a.json")
    b = storage.join(store_root, "models/iris/", "/sub/b.bin")
    storage.write_json(a, {"x": 1})
    storage.write_bytes(b, b"\x00\x01")

    assert storage.read_json(a) == {"x": 1}
    assert storage.read_bytes(b) == b"\x00\x01"
    assert storage.exists(a) and not storage.exists(storage.join(store_root, "nope"))
    assert storage.list_uris(storage.join(store_root, "models")) == sorted([a, b])

    storage.delete(a)
    storage.delete(a)  # deleting twice is fine
    assert storage.list_uris(storage.join(store_root, "models")) == [b]


def test_create_only_never_overwrites(store_root: str) -> None:
    uri = storage.join(store_root, "versions", "v1", "model.joblib")
    storage.write_bytes(uri, b"first", create_only=True)
    with pytest.raises(AlreadyExistsError, match="already exists"):
        storage.write_bytes(uri, b"second", create_only=True)
    assert storage.read_bytes(uri) == b"first"


def test_compare_and_swap(store_root: str) -> None:
    uri = storage.join(store_root, "champion.json")
    assert storage.read_versioned(uri) == (None, None)
    storage.compare_and_swap(uri, b"v1", None)
    data, version = storage.read_versioned(uri)
    assert data == b"v1"

    with pytest.raises(AlreadyExistsError):
        storage.compare_and_swap(uri, b"lost", None)  # expected absent, but it exists

    storage.compare_and_swap(uri, b"v2", version)
    with pytest.raises(AlreadyExistsError):
        storage.compare_and_swap(uri, b"stale", version)  # a second writer with the old version
    assert storage.read_bytes(uri) == b"v2"


def test_local_copy(store_root: str) -> None:
    uri = storage.join(store_root, "data", "x.csv")
    storage.write_bytes(uri, b"a,b\n1,2\n")
    with storage.local_copy(uri) as path:
        assert path.read_bytes() == b"a,b\n1,2\n"


def test_missing_object_names_it(store_root: str) -> None:
    uri = storage.join(store_root, "missing.json")
    with pytest.raises(StorageError, match=r"missing\.json"):
        storage.read_bytes(uri)


def test_unreachable_emulator_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    with pytest.raises(StorageError, match=f"127.0.0.1:{port} does not answer"):
        storage.read_bytes("gs://bucket/x")


def test_emulator_host_without_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "localhost:4443")
    with pytest.raises(StorageError, match="must include the scheme"):
        storage.exists("gs://bucket/x")


def test_bucket_only_uri_is_refused(gcs_bucket: str) -> None:
    with pytest.raises(StorageError, match="names a bucket"):
        storage.read_bytes(gcs_bucket)
