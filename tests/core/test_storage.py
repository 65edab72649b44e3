"""The storage layer against a local folder and a real GCS emulator process (fake-gcs-server).

Lost responses are real: :class:`~tests.support.lossy_proxy.LossyProxy` sits between the client
and the emulator, lets an upload reach the emulator, waits for its answer, then drops the
connection, so the Google client retries an upload that already landed.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest

from kfp_mlops.core import storage
from kfp_mlops.core.errors import AlreadyExistsError, StorageError
from tests.support.gcs_emulator import GcsEmulator
from tests.support.lossy_proxy import LossyProxy


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


def test_create_only_retry_of_the_same_bytes_is_idempotent(store_root: str) -> None:
    uri = storage.join(store_root, "versions", "v1", "metadata.json")
    storage.write_bytes(uri, b"ours", create_only=True)
    storage.write_bytes(uri, b"ours", create_only=True)  # a retry meeting its own object: success
    with pytest.raises(AlreadyExistsError, match="must not be overwritten"):
        storage.write_bytes(uri, b"theirs", create_only=True)
    assert storage.read_bytes(uri) == b"ours"


def test_compare_and_swap_of_the_same_bytes_by_another_writer_is_a_conflict(store_root: str) -> None:
    """Two writers moving an object to the same content: only the first one wins (both would act on it)."""
    uri = storage.join(store_root, "rollout.json")
    storage.compare_and_swap(uri, b"v1", None)
    _, version = storage.read_versioned(uri)
    storage.compare_and_swap(uri, b"v2", version)
    with pytest.raises(AlreadyExistsError, match="changed by someone else"):
        storage.compare_and_swap(uri, b"v2", version)
    assert storage.read_bytes(uri) == b"v2"


@pytest.fixture()
def lossy_bucket(gcs_emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, LossyProxy]]:
    """A fresh bucket reached through a proxy that can lose the emulator's responses."""
    proxy = LossyProxy(gcs_emulator.url).start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
    bucket = f"gs://lossy-{uuid.uuid4().hex[:12]}"
    storage.ensure_bucket(bucket)
    yield bucket, proxy
    proxy.stop()


def _uploads(method: str, path: str) -> bool:
    return method == "POST" and path.startswith("/upload/storage/v1/")


def test_lost_response_of_a_create_only_upload_is_not_a_conflict(lossy_bucket: tuple[str, LossyProxy]) -> None:
    """The emulator stores the object, the proxy drops the answer, the client retries and gets 412."""
    bucket, proxy = lossy_bucket
    uri = f"{bucket}/models/iris/versions/v1/metadata.json"
    proxy.lose(_uploads)

    storage.write_bytes(uri, b'{"complete": true}', create_only=True)

    assert len(proxy.lost) == 1
    assert [status for method, path, status in proxy.forwarded if _uploads(method, path)] == [200, 412]
    assert storage.read_bytes(uri) == b'{"complete": true}'


def test_lost_response_of_a_compare_and_swap_is_not_a_conflict(lossy_bucket: tuple[str, LossyProxy]) -> None:
    bucket, proxy = lossy_bucket
    uri = f"{bucket}/models/iris/champion.json"
    storage.compare_and_swap(uri, b"v1", None)
    _, version = storage.read_versioned(uri)
    proxy.lose(_uploads)

    storage.compare_and_swap(uri, b"v2", version)

    assert [status for method, path, status in proxy.forwarded if _uploads(method, path)][-2:] == [200, 412]
    assert storage.read_bytes(uri) == b"v2"
    # A real conflict is still one: a writer holding the old version loses.
    with pytest.raises(AlreadyExistsError, match="changed by someone else"):
        storage.compare_and_swap(uri, b"stale", version)
