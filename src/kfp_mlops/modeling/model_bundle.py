"""The model artifact's format: a folder with ``model.joblib`` and ``metadata.json``.

The same folder is a KFP ``Model`` artifact, a version in the model store, and what the serving
runtimes load, so it must load in every environment that has a compatible scikit-learn (the
Seldon runtime's environment has numpy<2; joblib pickles load across that boundary). The model's
calibration maps are data in ``metadata.json`` (``calibration``; :mod:`kfp_mlops.modeling.calibration`),
not a second pickle, so they travel wherever the metadata goes.

A model is loaded only against a checksum recorded apart from it (:func:`load_bundle`); the
``model_sha256`` that :func:`save_bundle` writes into ``metadata.json`` is what the train step
hands on as its artifact's metadata, and what register records in the store.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfp_mlops.core import storage
from kfp_mlops.core.errors import MlopsError
from kfp_mlops.modeling.calibration import Calibration, read_calibration

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
PROFILE_FILE = "reference_profile.json"
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
"""A recorded checksum: a sha256 as 64 lowercase hex digits."""


@dataclass
class ModelBundle:
    """A fitted scikit-learn pipeline and what is known about it."""

    model: Any
    metadata: dict[str, Any]

    @property
    def feature_names(self) -> list[str]:
        return list(self.metadata["feature_names"])

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.metadata["classes"]]

    @property
    def calibration(self) -> Calibration:
        """The calibration maps fitted when the model was trained.

        Raises:
            CalibrationUnavailable: the model has none or they are malformed (the message says why).
        """
        return read_calibration(self.metadata)


def environment_versions() -> dict[str, str]:
    """Versions that decide whether a pickled model loads and behaves the same elsewhere."""
    import numpy
    import sklearn

    return {"sklearn": sklearn.__version__, "numpy": numpy.__version__, "python": platform.python_version()}


def dump_model(model: Any) -> bytes:
    """Serialises a fitted model with joblib."""
    import joblib

    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=3)
    return buffer.getvalue()


def save_bundle(folder: str | Path, model: Any, metadata: dict[str, Any]) -> dict[str, Any]:
    """Writes a model folder; returns the metadata with the model's sha256 added."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = dump_model(model)
    metadata = {**metadata, "model_sha256": hashlib.sha256(payload).hexdigest()}
    (folder / MODEL_FILE).write_bytes(payload)
    (folder / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return metadata


def load_bundle(location: str, *, sha256: str) -> ModelBundle:
    """Loads a model folder from a local path or ``gs://`` prefix, after checking it is the model recorded.

    The pickle is unpickled only once its bytes match ``sha256``, a checksum recorded apart from
    it (the champion pointer, the version's status record, the rollout state, the train step's
    artifact metadata): ``model_sha256`` in the folder's own ``metadata.json`` proves nothing
    about a folder someone could write to.

    Args:
        location: The model folder.
        sha256: The recorded sha256 of its ``model.joblib`` (64 hex digits); required.

    Raises:
        MlopsError: no valid checksum was given, the model file's bytes do not match it, the
            folder lacks a model, or it was trained with a scikit-learn whose major.minor differs
            from this environment's.
    """
    import joblib

    if not SHA256_PATTERN.match(sha256 or ""):
        raise MlopsError(
            f"model {location}: no recorded sha256 to check {MODEL_FILE} against (got {sha256!r}); "
            "an unverified pickle is never loaded"
        )
    metadata = storage.read_json(storage.join(location, METADATA_FILE))
    check_compatible(metadata, where=location)
    payload = storage.read_bytes(storage.join(location, MODEL_FILE))
    actual = hashlib.sha256(payload).hexdigest()
    if actual != sha256:
        raise MlopsError(
            f"model {location}: {MODEL_FILE} has sha256 {actual}, not the recorded {sha256}; "
            "refusing to load a model other than the one registered"
        )
    try:
        model = joblib.load(io.BytesIO(payload))
    except Exception as exc:  # unpickling can raise anything a broken or foreign file triggers
        raise MlopsError(f"model {location}: cannot load {MODEL_FILE}: {type(exc).__name__}: {exc}") from None
    return ModelBundle(model=model, metadata=metadata)


def check_compatible(metadata: dict[str, Any], *, where: str) -> None:
    """Refuses a model trained under a different scikit-learn major.minor (pickles are not portable)."""
    trained = str(metadata.get("versions", {}).get("sklearn", "unknown"))
    here = environment_versions()["sklearn"]
    if trained.split(".")[:2] != here.split(".")[:2]:
        raise MlopsError(
            f"model {where}: trained with scikit-learn {trained}, this environment has {here}; "
            "retrain it or serve it from an image with the same scikit-learn minor version"
        )
