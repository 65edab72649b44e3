"""The model store: immutable model versions, their lifecycle statuses and one ``champion`` pointer.

Layout under the root (a local folder, the GCS emulator or ``gs://``)::

    models/<name>/champion.json                      <- {"version", "uri", "previous", "promoted_at", "by", "reasons"}
    models/<name>/statuses/<version>.json            <- {"version", "status", "history": [...]}
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
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kfp_mlops.core import storage
from kfp_mlops.core.errors import AlreadyExistsError, ConfigError, DataError, MlopsError
from kfp_mlops.modeling.model_bundle import METADATA_FILE, MODEL_FILE, PROFILE_FILE

EVALUATION_FILE = "evaluation.json"
CHAMPION_FILE = "champion.json"
STATUS_FOLDER = "statuses"
CANDIDATE, CHAMPION, REJECTED, RETIRED = "candidate", "champion", "rejected", "retired"
STATUSES = (CANDIDATE, CHAMPION, REJECTED, RETIRED)
_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
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
        return storage.join(self.model_uri(name), "versions", version)

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
        self, name: str, model_dir: str | Path, *, profile_path: str | Path | None, evaluation: dict[str, Any]
    ) -> RegisteredVersion:
        """Stores a new immutable version; neither its status nor the champion pointer is touched.

        Every input is read and checked before the first write; if a write fails part-way, the
        files this call wrote are removed, so a version is either complete or absent.

        Raises:
            MlopsError: the model folder is incomplete.
            StorageError: the store is unreachable (nothing is left half-written).
        """
        model_dir = Path(model_dir)
        files: dict[str, bytes] = {}
        for required in (MODEL_FILE, METADATA_FILE):
            if not (model_dir / required).is_file():
                raise MlopsError(f"model {model_dir}: missing {required}; not registered")
            files[required] = (model_dir / required).read_bytes()
        metadata = json.loads(files[METADATA_FILE])
        if profile_path is not None:
            files[PROFILE_FILE] = Path(profile_path).read_bytes()
        files[EVALUATION_FILE] = (json.dumps(evaluation, indent=2, sort_keys=True, default=str) + "\n").encode()

        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        version = f"v{stamp}-{metadata.get('model_sha256', 'unknown')[:8]}"
        uri = self.version_uri(name, version)
        written: list[str] = []
        try:
            # metadata.json goes last: its presence is what marks the version complete.
            for file_name in sorted(files, key=lambda f: f == METADATA_FILE):
                target = storage.join(uri, file_name)
                storage.write_bytes(target, files[file_name], create_only=True)
                written.append(target)
        except Exception:
            for target in written:
                storage.delete(target)
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
        """
        pointer_uri = self._pointer_uri(registered.name)
        data, token = storage.read_versioned(pointer_uri)
        current = json.loads(data)["version"] if data else None
        if current != expected_champion:
            raise AlreadyExistsError(
                f"{pointer_uri}: champion is now {current!r}, not {expected_champion!r} as evaluated; "
                f"{registered.version} stays registered but is not promoted"
            )
        now = _now()
        pointer = {
            "version": registered.version,
            "uri": registered.uri,
            "previous": current,
            "promoted_at": now,
            "by": by,
            "reasons": list(reasons),
        }
        storage.compare_and_swap(pointer_uri, (json.dumps(pointer, indent=2, sort_keys=True) + "\n").encode(), token)
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
            history = self._parse_history(uri, data)
            doc = {"version": version, "status": status, "history": [*history, entry.to_dict()]}
            try:
                storage.compare_and_swap(uri, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode(), token)
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
    def _parse_history(uri: str, data: bytes | None) -> list[dict[str, Any]]:
        if data is None:
            return []
        try:
            return list(json.loads(data)["history"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{uri}: not a status history ({type(exc).__name__}: {exc})") from None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
