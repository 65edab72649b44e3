"""The one storage layer: local folders, ``gs://`` on Google Cloud Storage, and a GCS emulator.

Every location is a URI string: a local path (or ``file://`` URI) or ``gs://bucket/key``. A
``gs://`` URI talks to the emulator named by ``STORAGE_EMULATOR_HOST`` when it is set, to Google
Cloud Storage otherwise; the calling code is the same in all three cases.

Two write modes matter for the model store:

* ``create_only=True`` never overwrites: GCS gets ``if_generation_match=0``, a local file is
  linked into place with ``os.link`` (which fails if the name exists). Either way the write is
  atomic: a reader sees the whole object or nothing.
* :func:`compare_and_swap` replaces an object only if it still has the version the caller read,
  so two writers cannot both move a pointer such as ``champion.json``.

Both are idempotent under retries. A conditional GCS upload whose response was lost (the
connection broke after the server stored the object) is retried by the client and then fails its
own precondition with 412. A create-only write whose stored bytes equal ours is therefore a
success (locally too, where a caller may retry a write that raised after it landed); a
compare-and-swap tags its upload with a random owner token in the object's metadata and, on 412,
re-reads the object: its own token means its write landed. Equal bytes are not enough there: two
controllers making the same decision must not both believe they recorded it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from kfp_mlops.core.errors import AlreadyExistsError, StorageError

GCS_SCHEME = "gs://"
# Bounded retries: an unreachable bucket must fail in seconds, not after the client's 120 s default.
_GCS_DEADLINE_S = 30.0
# Custom object metadata naming the compare-and-swap that wrote an object (see the module docstring).
_WRITE_TOKEN_KEY = "kfp-mlops-write-token"


def is_gcs(uri: str) -> bool:
    """Tells whether ``uri`` names an object in Google Cloud Storage (or its emulator)."""
    return uri.startswith(GCS_SCHEME)


def canonical_uri(path_or_uri: str) -> str:
    """Names a location the way other tools should see it.

    KFP on a cluster hands a task its ``gs://`` artifacts as local paths under ``/gcs/`` (copied
    in open-source KFP, a FUSE mount on Vertex AI); this maps them back to ``gs://`` so W&B and
    the model store record a location that works outside the task's container.
    """
    if path_or_uri.startswith("/gcs/"):
        return GCS_SCHEME + path_or_uri.removeprefix("/gcs/")
    return path_or_uri


def join(uri: str, *parts: str) -> str:
    """Joins path parts onto a local path or ``gs://`` URI with single slashes."""
    stripped = [p.strip("/") for p in parts if p.strip("/")]
    if is_gcs(uri):
        return "/".join([uri.rstrip("/"), *stripped])
    return str(Path(_local_path(uri), *stripped))


def read_bytes(uri: str) -> bytes:
    """Reads a whole object.

    Raises:
        StorageError: the object does not exist or the storage cannot be reached.
    """
    if is_gcs(uri):
        blob = _blob(uri)
        with _gcs_errors(uri):
            return blob.download_as_bytes(retry=_retry(), timeout=_GCS_DEADLINE_S)
    path = _local_path(uri)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise StorageError(f"{uri}: no such file") from None
    except OSError as exc:
        raise StorageError(f"{uri}: cannot read: {exc.strerror or exc}") from None


def read_json(uri: str) -> Any:
    """Reads and parses a JSON object."""
    data = read_bytes(uri)
    try:
        return json.loads(data)
    except ValueError as exc:
        raise StorageError(f"{uri}: not valid JSON: {exc}") from None


def write_bytes(uri: str, data: bytes, *, create_only: bool = False) -> None:
    """Writes a whole object atomically.

    Args:
        uri: where to write.
        data: the content.
        create_only: refuse to overwrite an existing object.

    Raises:
        AlreadyExistsError: ``create_only`` and another object exists there (it is left as it was);
            an existing object with exactly these bytes is a success, so a retried write is idempotent.
        StorageError: the storage cannot be reached or refuses the write.
    """
    if is_gcs(uri):
        blob = _blob(uri)
        if create_only and exists(uri):
            # Checked first as well: emulators enforce the precondition only on small uploads.
            _accept_if_same(uri, data)
            return
        try:
            with _gcs_errors(uri, create_only=create_only):
                blob.upload_from_string(
                    data,
                    if_generation_match=0 if create_only else None,
                    retry=_retry(),
                    timeout=_GCS_DEADLINE_S,
                )
        except AlreadyExistsError:
            _accept_if_same(uri, data)  # a retry whose first attempt landed meets its own object
        return
    path = _local_path(uri)
    _write_local(path, data, create_only=create_only, uri=uri)


def write_json(uri: str, obj: Any, *, create_only: bool = False) -> None:
    """Writes ``obj`` as indented, key-sorted JSON (see :func:`write_bytes`)."""
    write_bytes(uri, _dump_json(obj), create_only=create_only)


def upload_file(local_path: Path, uri: str, *, create_only: bool = False) -> None:
    """Copies a local file to ``uri`` (see :func:`write_bytes` for ``create_only``)."""
    write_bytes(uri, Path(local_path).read_bytes(), create_only=create_only)


def exists(uri: str) -> bool:
    """Tells whether an object (or, locally, a file or folder) exists at ``uri``."""
    if is_gcs(uri):
        blob = _blob(uri)
        with _gcs_errors(uri):
            return blob.exists(retry=_retry(), timeout=_GCS_DEADLINE_S)
    return _local_path(uri).exists()


def list_uris(prefix: str) -> list[str]:
    """Lists the objects below a folder-like prefix, recursively, sorted."""
    if is_gcs(prefix):
        bucket, key = _split_gcs(prefix)
        key = key.rstrip("/") + "/" if key else ""
        with _gcs_errors(prefix):
            blobs = _client().list_blobs(bucket, prefix=key, retry=_retry(), timeout=_GCS_DEADLINE_S)
            return sorted(f"{GCS_SCHEME}{bucket}/{b.name}" for b in blobs)
    root = _local_path(prefix)
    if not root.is_dir():
        return []
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and not p.name.endswith(".lock"))


def delete(uri: str) -> None:
    """Deletes one object; a missing object is not an error."""
    if is_gcs(uri):
        from google.api_core.exceptions import NotFound

        blob = _blob(uri)
        with _gcs_errors(uri), contextlib.suppress(NotFound):
            blob.delete(retry=_retry(), timeout=_GCS_DEADLINE_S)
        return
    _local_path(uri).unlink(missing_ok=True)


def read_versioned(uri: str) -> tuple[bytes | None, str | None]:
    """Reads an object with a version token for :func:`compare_and_swap`.

    Returns:
        ``(content, version)``, or ``(None, None)`` when the object does not exist.
    """
    if is_gcs(uri):
        blob = _blob(uri)
        with _gcs_errors(uri):
            if not blob.exists(retry=_retry(), timeout=_GCS_DEADLINE_S):
                return None, None
            blob.reload(retry=_retry(), timeout=_GCS_DEADLINE_S)
            generation = blob.generation
            data = blob.download_as_bytes(if_generation_match=generation, retry=_retry(), timeout=_GCS_DEADLINE_S)
        return data, str(generation)
    path = _local_path(uri)
    if not path.exists():
        return None, None
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


def compare_and_swap(uri: str, data: bytes, expected_version: str | None) -> None:
    """Replaces an object only if it still has ``expected_version``.

    Args:
        uri: the object to replace.
        data: the new content.
        expected_version: the token :func:`read_versioned` returned, or ``None`` when the object
            must not exist yet.

    Raises:
        AlreadyExistsError: someone else changed the object since it was read; nothing was written.
            Never raised against the caller's own write: a retry whose first attempt landed succeeds.
    """
    if is_gcs(uri):
        blob = _blob(uri)
        generation = int(expected_version) if expected_version is not None else 0
        token = uuid.uuid4().hex
        blob.metadata = {_WRITE_TOKEN_KEY: token}
        try:
            with _gcs_errors(uri, create_only=True):
                blob.upload_from_string(data, if_generation_match=generation, retry=_retry(), timeout=_GCS_DEADLINE_S)
        except AlreadyExistsError:
            if not _written_by(uri, token):
                raise AlreadyExistsError(f"{uri}: changed by someone else since it was read; not written") from None
        return
    path = _local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    # An flock on a side file serialises local writers; the content hash is the version.
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _, current = read_versioned(uri)
        if current != expected_version:
            raise AlreadyExistsError(f"{uri}: changed by someone else since it was read; not written")
        _write_local(path, data, create_only=False, uri=uri)


@contextlib.contextmanager
def local_copy(uri: str) -> Iterator[Path]:
    """Yields a local path holding the object at ``uri`` (a download for ``gs://``)."""
    if not is_gcs(uri):
        path = _local_path(uri)
        if not path.exists():
            raise StorageError(f"{uri}: no such file")
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="kfp-mlops-") as tmp:
        path = Path(tmp) / uri.rsplit("/", 1)[-1]
        path.write_bytes(read_bytes(uri))
        yield path


@contextlib.contextmanager
def open_reader(uri: str, *, chunk_bytes: int = 16 << 20) -> Iterator[BinaryIO]:
    """Yields a seekable binary file that reads the object at ``uri`` as it is read.

    For readers that stream a large object in constant memory (Parquet record batches): on
    ``gs://`` each read beyond the buffered ``chunk_bytes`` is a ranged download, pinned to the
    object's generation when opened, so an object replaced meanwhile fails the read instead of
    mixing two versions.

    Raises:
        StorageError: the object does not exist, the storage cannot be reached, or (``gs://``) it
            changed while being read.
    """
    if not is_gcs(uri):
        try:
            handle = _local_path(uri).open("rb")
        except FileNotFoundError:
            raise StorageError(f"{uri}: no such file") from None
        except OSError as exc:
            raise StorageError(f"{uri}: cannot read: {exc.strerror or exc}") from None
        with handle:
            yield handle
        return
    blob = _blob(uri)
    with _gcs_errors(uri):
        blob.reload(retry=_retry(), timeout=_GCS_DEADLINE_S)
        with blob.open(
            "rb",
            chunk_size=chunk_bytes,
            if_generation_match=blob.generation,
            retry=_retry(),
            timeout=_GCS_DEADLINE_S,
        ) as reader:
            yield reader


def ensure_bucket(uri: str) -> None:
    """Creates the bucket of a ``gs://`` URI if it is missing (emulators start empty)."""
    if not is_gcs(uri):
        return
    bucket, _ = _split_gcs(uri)
    client = _client()
    with _gcs_errors(uri):
        if client.lookup_bucket(bucket, retry=_retry(), timeout=_GCS_DEADLINE_S) is None:
            client.create_bucket(bucket, retry=_retry(), timeout=_GCS_DEADLINE_S)


# --- local files ---------------------------------------------------------------------------


def _local_path(uri: str) -> Path:
    return Path(uri.removeprefix("file://")).expanduser()


def _write_local(path: Path, data: bytes, *, create_only: bool, uri: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as tmp:
                tmp.write(data)
                tmp.flush()
                os.fsync(tmp.fileno())
            if create_only:
                os.link(tmp_name, path)  # fails if the name exists: never overwrites
            else:
                os.replace(tmp_name, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
    except FileExistsError:
        _accept_if_same(uri, data)
    except OSError as exc:
        raise StorageError(f"{uri}: cannot write: {exc.strerror or exc}") from None


def _accept_if_same(uri: str, data: bytes) -> None:
    """Accepts an existing object holding exactly ``data`` (a retried create-only write); refuses any other."""
    if read_bytes(uri) != data:
        raise AlreadyExistsError(f"{uri}: already exists and must not be overwritten")


def _dump_json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()


# --- Google Cloud Storage --------------------------------------------------------------------


def _split_gcs(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix(GCS_SCHEME).partition("/")
    if not bucket:
        raise StorageError(f"{uri}: a gs:// URI needs a bucket name")
    return bucket, key


def _blob(uri: str):  # -> google.cloud.storage.Blob
    bucket, key = _split_gcs(uri)
    if not key:
        raise StorageError(f"{uri}: names a bucket, not an object")
    return _client().bucket(bucket).blob(key)


def _written_by(uri: str, token: str) -> bool:
    """Whether the object at ``uri`` is the write of the compare-and-swap that tagged it ``token``."""
    blob = _blob(uri)
    with _gcs_errors(uri):
        if not blob.exists(retry=_retry(), timeout=_GCS_DEADLINE_S):
            return False
        blob.reload(retry=_retry(), timeout=_GCS_DEADLINE_S)
    return (blob.metadata or {}).get(_WRITE_TOKEN_KEY) == token


def _retry():  # -> google.api_core.retry.Retry
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY.with_timeout(_GCS_DEADLINE_S)


@contextlib.contextmanager
def _gcs_errors(uri: str, *, create_only: bool = False) -> Iterator[None]:
    """Turns client exceptions into one-line :class:`StorageError` messages naming ``uri``."""
    from google.api_core import exceptions as gexc
    from google.auth.exceptions import GoogleAuthError

    try:
        yield
    except gexc.PreconditionFailed:
        if create_only:
            raise AlreadyExistsError(f"{uri}: already exists or changed; not overwritten") from None
        raise StorageError(f"{uri}: precondition failed") from None
    except gexc.NotFound:
        raise StorageError(f"{uri}: no such object or bucket") from None
    except gexc.Forbidden as exc:
        raise StorageError(f"{uri}: permission denied ({exc.message})") from None
    except (gexc.GoogleAPIError, GoogleAuthError, OSError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StorageError(f"{uri}: storage unreachable or refused the request: {first_line}") from None


def _client():  # -> google.cloud.storage.Client
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    return _cached_client(emulator)


@lru_cache(maxsize=4)
def _cached_client(emulator: str | None):
    from google.cloud import storage

    if emulator:
        if not emulator.startswith(("http://", "https://")):
            raise StorageError(f"STORAGE_EMULATOR_HOST={emulator!r}: must include the scheme, e.g. http://{emulator}")
        _wait_for_emulator(emulator)
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project="local", credentials=AnonymousCredentials())
    from google.auth.exceptions import DefaultCredentialsError

    try:
        return storage.Client()
    except DefaultCredentialsError as exc:
        raise StorageError(
            f"gs:// storage: no Google credentials ({str(exc).splitlines()[0]}); "
            "run `gcloud auth application-default login` or set STORAGE_EMULATOR_HOST"
        ) from None


def _wait_for_emulator(emulator: str, timeout_s: float = 5.0) -> None:
    # Asked first because the client would otherwise retry an unreachable emulator for 120 s.
    import urllib.error  # here: local storage, the common case, need not load an HTTP client
    import urllib.request

    try:
        with urllib.request.urlopen(f"{emulator.rstrip('/')}/storage/v1/b?project=local", timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return  # it answered, which is all this checks
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StorageError(f"GCS emulator at STORAGE_EMULATOR_HOST={emulator} does not answer: {reason}") from None
