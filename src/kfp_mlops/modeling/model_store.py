"""The model store: immutable model versions and a ``champion`` pointer, on any storage root.

Layout under the root (a local folder, the GCS emulator or ``gs://``)::

    models/<name>/champion.json                      <- {"version": ..., "uri": ...}
    models/<name>/versions/<version>/model.joblib
    models/<name>/versions/<version>/reference_profile.json
    models/<name>/versions/<version>/evaluation.json
    models/<name>/versions/<version>/metadata.json   <- written last: marks the version complete

A version is never overwritten (``create_only`` writes); the champion pointer moves by
compare-and-swap, so two concurrent registrations cannot both win.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kfp_mlops.core import storage
from kfp_mlops.core.errors import AlreadyExistsError, ConfigError, MlopsError
from kfp_mlops.modeling.model_bundle import METADATA_FILE, MODEL_FILE, PROFILE_FILE

EVALUATION_FILE = "evaluation.json"
CHAMPION_FILE = "champion.json"
_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class RegisteredVersion:
    """One stored model version."""

    name: str
    version: str
    uri: str


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

    def champion(self, name: str) -> RegisteredVersion | None:
        """The current champion of ``name``, or ``None`` before the first registration."""
        data, _ = storage.read_versioned(storage.join(self.model_uri(name), CHAMPION_FILE))
        if data is None:
            return None
        pointer = json.loads(data)
        return RegisteredVersion(name=name, version=pointer["version"], uri=pointer["uri"])

    def versions(self, name: str) -> list[str]:
        """Complete versions of ``name``, oldest first (version ids sort by time)."""
        prefix = storage.join(self.model_uri(name), "versions")
        suffix = "/" + METADATA_FILE
        return sorted(uri[len(prefix) + 1 : -len(suffix)] for uri in storage.list_uris(prefix) if uri.endswith(suffix))

    def publish(
        self, name: str, model_dir: str | Path, *, profile_path: str | Path | None, evaluation: dict[str, Any]
    ) -> RegisteredVersion:
        """Stores a new immutable version; the champion pointer is not touched.

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

    def promote(self, registered: RegisteredVersion, *, expected_champion: str | None) -> None:
        """Points ``champion`` at ``registered`` if the champion is still ``expected_champion``.

        Raises:
            AlreadyExistsError: another registration moved the champion meanwhile; it is left as is.
        """
        pointer_uri = storage.join(self.model_uri(registered.name), CHAMPION_FILE)
        data, token = storage.read_versioned(pointer_uri)
        current = json.loads(data)["version"] if data else None
        if current != expected_champion:
            raise AlreadyExistsError(
                f"{pointer_uri}: champion is now {current!r}, not {expected_champion!r} as evaluated; "
                f"{registered.version} stays registered but is not promoted"
            )
        pointer = {
            "version": registered.version,
            "uri": registered.uri,
            "previous": current,
            "promoted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        storage.compare_and_swap(pointer_uri, (json.dumps(pointer, indent=2, sort_keys=True) + "\n").encode(), token)
