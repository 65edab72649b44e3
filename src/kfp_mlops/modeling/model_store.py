"""The model store: immutable model versions, their lifecycle statuses and one ``champion`` pointer.

Layout under the root (a local folder, the GCS emulator or ``gs://``)::

    models/<name>/champion.json            <- {"version", "uri", "sha256", "previous", "promoted_at", "by", "reasons"}
    models/<name>/statuses/<version>.json  <- {"version", "sha256", "status", "history": [...]}
    models/<name>/versions/<version>/model.joblib
    models/<name>/versions/<version>/reference_profile.json
    models/<name>/versions/<version>/evaluation.json
    models/<name>/versions/<version>/metadata.json   <- written last: marks the version complete

A version is never overwritten (``create_only`` writes). Its lifecycle is a status history beside
it: registered as a **candidate**, it becomes **champion** only when the pointer moves to it (an
explicit ``single`` deployment, the first model of a name, or a rollout's promotion), is
**rejected** when its rollout rolls back, and **retired** when the pointer moves on. The pointer
moves by compare-and-swap, so two concurrent moves cannot both win, and every move records who
made it and why. The pointer is the authority on which version is champion: a status history that
a crash left one step behind never contradicts it (:meth:`ModelStore.status`).

**Provenance.** Publishing records the sha256 of the version's ``model.joblib`` in its status
record, apart from the folder it guards; the champion pointer copies it, and every load
(:meth:`ModelStore.load`, :func:`load_model`) checks the bytes against it before unpickling. A
version without a recorded checksum is never loaded nor promoted. Version ids match
:data:`VERSION_PATTERN` (no ``..``, no slashes): an id can never name a path outside its model's
folder. :func:`load_model` also confines model URIs to the store unless the caller opts out
(:data:`~kfp_mlops.core.config.OUTSIDE_STORE_ENV`), and then needs the checksum from the caller.

**Retries.** Every write is idempotent (:mod:`kfp_mlops.core.storage`): a write whose response was
lost and that the client retried is a success, never a conflict with itself, so :meth:`publish`
never deletes what it wrote and :meth:`promote` never reports that it lost to its own move.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kfp_mlops.core import storage
from kfp_mlops.core.config import OUTSIDE_STORE_ENV
from kfp_mlops.core.errors import AlreadyExistsError, ConfigError, DataError, MlopsError, StorageError
from kfp_mlops.modeling.model_bundle import (
    METADATA_FILE,
    MODEL_FILE,
    PROFILE_FILE,
    SHA256_PATTERN,
    ModelBundle,
    load_bundle,
)

EVALUATION_FILE = "evaluation.json"
CHAMPION_FILE = "champion.json"
STATUS_FOLDER = "statuses"
CANDIDATE, CHAMPION, REJECTED, RETIRED = "candidate", "champion", "rejected", "retired"
STATUSES = (CANDIDATE, CHAMPION, REJECTED, RETIRED)
_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
VERSION_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""A version id: letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit, at most
128 characters, and never ``..`` (publish makes ``v<UTC time>-<sha256 prefix>``)."""
# <root>/models/<name>/versions/<version>: a store version's folder, wherever the store is.
_VERSION_URI = re.compile(r"^(?P<root>.+)/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)/?$")
_STATUS_WRITE_ATTEMPTS = 5  # concurrent writers of one version's history retry on a lost compare-and-swap


@dataclass(frozen=True)
class RegisteredVersion:
    """One stored model version."""

    name: str
    version: str
    uri: str


@dataclass(frozen=True)
class VersionStatus:
    """Where a version stands in its lifecycle, and the change that put it there.

    Attributes:
        status: ``candidate``, ``champion``, ``rejected`` or ``retired`` (a former champion).
        at: When (ISO 8601, UTC).
        by: Who or what made the change (``register``, ``deploy single``, ``rollout <state>``...).
        reasons: Why, in words (the gate's or the rollout decision's reasons).
    """

    status: str
    at: str
    by: str
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"status": self.status, "at": self.at, "by": self.by, "reasons": list(self.reasons)}

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> VersionStatus:
        """Parses one history entry."""
        return cls(entry["status"], entry["at"], entry["by"], tuple(entry.get("reasons", ())))


class ModelStore:
    """Model versions below ``root`` (a local path or ``gs://bucket/prefix``)."""

    def __init__(self, root: str) -> None:
        if not root:
            raise ConfigError("model store: the storage root is empty; set KFP_MLOPS_STORE or pass store_root")
        self.root = root

    def model_uri(self, name: str) -> str:
        """The folder of every version of model ``name``."""
        if not _NAME.match(name):
            raise ConfigError(
                f"model name {name!r}: use lowercase letters, digits, '.', '_' or '-' (at most 63 characters)"
            )
        return storage.join(self.root, "models", name)

    def version_uri(self, name: str, version: str) -> str:
        """The folder of one version of ``name``.

        Raises:
            ConfigError: the version id does not match :data:`VERSION_PATTERN`.
        """
        check_version(version)
        return storage.join(self.model_uri(name), "versions", version)

    def checksum(self, name: str, version: str) -> str:
        """The sha256 of the version's ``model.joblib`` that publishing recorded in its status record.

        Raises:
            MlopsError: none is recorded (the version cannot be loaded nor promoted).
        """
        uri = self._status_uri(name, version)
        data, _ = storage.read_versioned(uri)
        recorded = self._parse_status(uri, data).get("sha256") if data is not None else None
        if not isinstance(recorded, str) or not SHA256_PATTERN.match(recorded):
            raise MlopsError(
                f"model {name} version {version}: no sha256 of {MODEL_FILE} recorded in {uri}; "
                "it cannot be verified, so it is neither loaded nor promoted (register it again)"
            )
        return recorded

    def load(self, name: str, version: str, *, sha256: str | None = None) -> ModelBundle:
        """Loads a stored version after checking its bytes against the recorded checksum.

        Args:
            name: The model's name.
            version: The version id.
            sha256: A checksum the caller holds too (the champion pointer's, the rollout state's);
                it must agree with the recorded one.

        Raises:
            MlopsError: no checksum is recorded, the two disagree, or the version does not load.
        """
        recorded = self.checksum(name, version)
        if sha256 is not None and sha256 != recorded:
            raise MlopsError(
                f"model {name} version {version}: the expected sha256 {sha256} differs from the one "
                f"recorded at registration, {recorded}; not loaded"
            )
        return load_bundle(self.version_uri(name, version), sha256=recorded)

    def registered(self, name: str, version: str) -> RegisteredVersion:
        """The stored version ``version`` of ``name``.

        Raises:
            MlopsError: no complete version of that id is stored.
        """
        uri = self.version_uri(name, version)
        if not storage.exists(storage.join(uri, METADATA_FILE)):
            raise MlopsError(f"model {name}: no stored version {version!r} in {self.root}")
        return RegisteredVersion(name=name, version=version, uri=uri)

    def champion(self, name: str) -> RegisteredVersion | None:
        """The current champion of ``name``, or ``None`` before the first one was chosen."""
        pointer = self.champion_pointer(name)
        if pointer is None:
            return None
        return RegisteredVersion(name=name, version=pointer["version"], uri=pointer["uri"])

    def champion_pointer(self, name: str) -> dict[str, Any] | None:
        """The champion pointer document: version, uri, previous, promoted_at, by and reasons (None: no champion)."""
        data, _ = storage.read_versioned(self._pointer_uri(name))
        return None if data is None else json.loads(data)

    def versions(self, name: str) -> list[str]:
        """Complete versions of ``name``, oldest first (version ids sort by time)."""
        prefix = storage.join(self.model_uri(name), "versions")
        suffix = "/" + METADATA_FILE
        return sorted(uri[len(prefix) + 1 : -len(suffix)] for uri in storage.list_uris(prefix) if uri.endswith(suffix))

    def publish(
        self,
        name: str,
        model_dir: str | Path,
        *,
        profile_path: str | Path | None,
        evaluation: dict[str, Any],
        sha256: str,
    ) -> RegisteredVersion:
        """Stores a new immutable version and records its checksum; the champion pointer is not touched.

        Every input is read and checked before the first write. The model files go first, then
        the checksum (the status record, without statuses yet), then ``metadata.json``, whose
        presence marks the version complete: a version is listed only once all of it is stored.
        A retried write whose response was lost is a success (:mod:`kfp_mlops.core.storage`). If
        a write fails, the files this call wrote are removed while the marker is surely absent;
        anything the storage refused to remove stays invisible (no marker), and a rerun stores a
        new version.

        Args:
            name: The model's name.
            model_dir: The model folder (``model.joblib``, ``metadata.json``).
            profile_path: The reference profile stored beside it (None: none).
            evaluation: The gate's record, stored as ``evaluation.json``.
            sha256: The model file's checksum as the step that made it recorded it (the train
                step's artifact metadata); the file must match it.

        Raises:
            MlopsError: the model folder is incomplete, or its model file does not match ``sha256``.
            StorageError: the store is unreachable (no complete version is left behind).
        """
        model_dir = Path(model_dir)
        files: dict[str, bytes] = {}
        for required in (MODEL_FILE, METADATA_FILE):
            if not (model_dir / required).is_file():
                raise MlopsError(f"model {model_dir}: missing {required}; not registered")
            files[required] = (model_dir / required).read_bytes()
        actual = hashlib.sha256(files[MODEL_FILE]).hexdigest()
        if actual != sha256:
            raise MlopsError(
                f"model {model_dir}: {MODEL_FILE} has sha256 {actual}, not {sha256!r} as recorded when it "
                "was trained; not registered"
            )
        if profile_path is not None:
            files[PROFILE_FILE] = Path(profile_path).read_bytes()
        files[EVALUATION_FILE] = (json.dumps(evaluation, indent=2, sort_keys=True, default=str) + "\n").encode()

        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        version = f"v{stamp}-{sha256[:8]}"
        uri = self.version_uri(name, version)
        status_uri = self._status_uri(name, version)
        marker = storage.join(uri, METADATA_FILE)
        written: list[str] = []
        try:
            for file_name in [f for f in files if f != METADATA_FILE]:
                target = storage.join(uri, file_name)
                storage.write_bytes(target, files[file_name], create_only=True)
                written.append(target)
            status: dict[str, Any] = {"version": version, "sha256": sha256, "status": None, "history": []}
            storage.write_bytes(status_uri, _dump(status), create_only=True)
            written.append(status_uri)
            storage.write_bytes(marker, files[METADATA_FILE], create_only=True)
        except StorageError:
            _remove_unless_complete(marker, written)
            raise
        return RegisteredVersion(name=name, version=version, uri=uri)

    def check_champion(self, name: str, expected: str | None, *, expected_as: str = "as evaluated") -> None:
        """Refuses to go on when the champion of ``name`` is no longer ``expected`` (None: no champion).

        Args:
            name: The model's name.
            expected: The champion version the caller relies on.
            expected_as: What the caller relied on it for, for the message.

        Raises:
            AlreadyExistsError: the champion is another version (named) than the one expected.
        """
        pointer = self.champion_pointer(name)
        current = pointer["version"] if pointer else None
        if current != expected:
            raise AlreadyExistsError(
                f"{self._pointer_uri(name)}: champion is now {current!r}, not {expected!r} {expected_as}"
            )

    def promote(
        self, registered: RegisteredVersion, *, expected_champion: str | None, by: str, reasons: Sequence[str]
    ) -> None:
        """Points ``champion`` at ``registered`` if the champion is still ``expected_champion``.

        The pointer records who moved it (``by``), why (``reasons``) and when; the statuses follow:
        ``registered`` becomes champion, the champion it replaces is retired.

        Raises:
            AlreadyExistsError: the champion moved meanwhile; it is left as is.
            MlopsError: the version has no recorded checksum (it could never be loaded).
        """
        pointer_uri = self._pointer_uri(registered.name)
        data, token = storage.read_versioned(pointer_uri)
        current = json.loads(data)["version"] if data else None
        if current != expected_champion:
            raise AlreadyExistsError(
                f"{pointer_uri}: champion is now {current!r}, not {expected_champion!r} as evaluated; "
                f"{registered.version} stays registered but is not promoted"
            )
        sha256 = self.checksum(registered.name, registered.version)
        now = _now()
        pointer = {
            "version": registered.version,
            "uri": registered.uri,
            "sha256": sha256,
            "previous": current,
            "promoted_at": now,
            "by": by,
            "reasons": list(reasons),
        }
        storage.compare_and_swap(pointer_uri, _dump(pointer), token)
        self.record_status(registered.name, registered.version, CHAMPION, by=by, reasons=reasons, at=now)
        if current is not None:
            replaced_by = f"replaced by {registered.version}"
            self.record_status(registered.name, current, RETIRED, by=by, reasons=[replaced_by], at=now)

    def record_status(
        self, name: str, version: str, status: str, *, by: str, reasons: Sequence[str], at: str | None = None
    ) -> VersionStatus:
        """Appends ``status`` to the version's history (by compare-and-swap, retried when another writer won).

        Raises:
            ConfigError: an unknown status.
            AlreadyExistsError: other writers kept winning; nothing was appended.
        """
        if status not in STATUSES:
            raise ConfigError(f"model status {status!r}: unknown; choose one of {', '.join(STATUSES)}")
        entry = VersionStatus(status, at or _now(), by, tuple(reasons))
        uri = self._status_uri(name, version)
        for _ in range(_STATUS_WRITE_ATTEMPTS):
            data, token = storage.read_versioned(uri)
            doc: dict[str, Any] = self._parse_status(uri, data) if data is not None else {"version": version}
            history = self._parse_history(uri, data)
            doc.update(status=status, history=[*history, entry.to_dict()])
            try:
                storage.compare_and_swap(uri, _dump(doc), token)
            except AlreadyExistsError:
                continue
            return entry
        raise AlreadyExistsError(
            f"{uri}: changed by other writers {_STATUS_WRITE_ATTEMPTS} times; {status} not recorded"
        )

    def status_history(self, name: str, version: str) -> list[VersionStatus]:
        """Every recorded status of the version, oldest first (empty: none recorded)."""
        uri = self._status_uri(name, version)
        data, _ = storage.read_versioned(uri)
        return [VersionStatus.from_dict(entry) for entry in self._parse_history(uri, data)]

    def status(self, name: str, version: str) -> VersionStatus | None:
        """Where the version stands now (None: stored before statuses were recorded, and not champion).

        The champion pointer decides champion-ness: the version it names is champion, and a version
        whose last recorded status is champion while the pointer names another is retired.
        """
        pointer = self.champion_pointer(name)
        history = self.status_history(name, version)
        last = history[-1] if history else None
        if pointer is not None and pointer["version"] == version:
            if last is not None and last.status == CHAMPION:
                return last
            return VersionStatus(
                CHAMPION, pointer.get("promoted_at", ""), pointer.get("by", ""), tuple(pointer.get("reasons", ()))
            )
        if last is not None and last.status == CHAMPION:
            replaced = f"replaced by {pointer['version']}" if pointer else "no champion now"
            return VersionStatus(RETIRED, last.at, last.by, (replaced,))
        return last

    def _pointer_uri(self, name: str) -> str:
        return storage.join(self.model_uri(name), CHAMPION_FILE)

    def _status_uri(self, name: str, version: str) -> str:
        return storage.join(self.model_uri(name), STATUS_FOLDER, f"{version}.json")

    @staticmethod
    def _parse_status(uri: str, data: bytes) -> dict[str, Any]:
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise DataError(f"{uri}: not a status record ({exc})") from None
        if not isinstance(doc, dict):
            raise DataError(f"{uri}: not a status record (a JSON {type(doc).__name__})")
        return doc

    @classmethod
    def _parse_history(cls, uri: str, data: bytes | None) -> list[dict[str, Any]]:
        if data is None:
            return []
        try:
            return list(cls._parse_status(uri, data)["history"])
        except (KeyError, TypeError) as exc:
            raise DataError(f"{uri}: not a status history ({type(exc).__name__}: {exc})") from None


def check_version(version: str) -> None:
    """Refuses a version id that does not match :data:`VERSION_PATTERN` (``..``, slashes, empty...).

    Raises:
        ConfigError: naming the id and the pattern.
    """
    if not VERSION_PATTERN.match(version) or ".." in version:
        raise ConfigError(
            f"model version {version!r}: use letters, digits, '.', '_' or '-', starting with a letter or "
            "digit, at most 128 characters, never '..'"
        )


def load_model(uri: str, *, store_root: str, outside_store: bool = False, sha256: str | None = None) -> ModelBundle:
    """Loads the model at ``uri``, confined to the store at ``store_root`` and checked against a recorded checksum.

    A version folder of that store (``<store_root>/models/<name>/versions/<version>``) is checked
    against the checksum recorded at registration (and against ``sha256`` too, when given). Any
    other folder is refused unless ``outside_store`` -- the user's opt-out,
    :data:`~kfp_mlops.core.config.OUTSIDE_STORE_ENV` -- and then ``sha256`` is required.

    Raises:
        MlopsError: the URI is outside the store without the opt-out, no checksum is recorded or
            given, it does not match, or the model does not load.
        ConfigError: a malformed model name or version id in the URI.
    """
    canonical = storage.canonical_uri(uri)
    found = _VERSION_URI.match(canonical)
    if found is not None and _same_root(found["root"], store_root):
        return ModelStore(store_root).load(found["name"], found["version"], sha256=sha256)
    if not outside_store:
        raise MlopsError(
            f"model URI {uri} is outside the model store {store_root} (expected "
            f"{storage.join(store_root, 'models', '<name>', 'versions', '<version>')}); "
            f"set {OUTSIDE_STORE_ENV}=1 to load models from elsewhere, with their sha256 given"
        )
    return load_bundle(canonical, sha256=sha256 or "")


def _same_root(found: str, store_root: str) -> bool:
    root = storage.canonical_uri(store_root).rstrip("/")
    if storage.is_gcs(root) or storage.is_gcs(found):
        return found == root
    return Path(found.removeprefix("file://")).resolve() == Path(root.removeprefix("file://")).expanduser().resolve()


def _remove_unless_complete(marker: str, written: Sequence[str]) -> None:
    """Removes a failed publish's files, unless its marker landed (then the version is complete)."""
    with contextlib.suppress(StorageError):  # storage down: the leftovers stay invisible, without a marker
        if storage.exists(marker):
            return
        for target in written:
            storage.delete(target)


def _dump(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n").encode()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
