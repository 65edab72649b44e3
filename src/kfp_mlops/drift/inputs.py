"""Where a drift check's inputs come from: the reference, the current window, the model.

The reference is a *profile* (:mod:`kfp_mlops.modeling.profile`: a ``.json``, a KFP artifact, or a
model folder / store version holding ``reference_profile.json``) or reference *data* (``.csv``,
``.parquet``, a KFP Dataset), which is profiled the way train profiles its data; reference data
without a label (none named, and no model to name it) is profiled as unlabelled: every column but
the ignored ones is a feature, and the profile's ``label`` is None. The verdict needs
only the profile; reference *rows* serve Evidently's report and the model's reference predictions.
They are the reference data when the reference is given as data, else the model's training data
(``training_data_uri`` in its metadata) when it can be read, else there are none: rows are never
invented from the profile. Only rows given as the reference are a fair baseline for performance;
otherwise the model store's held-out metrics (``evaluation.json``) are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfp_mlops.core import storage
from kfp_mlops.core.errors import ConfigError, DataError, MlopsError
from kfp_mlops.modeling import model_store
from kfp_mlops.modeling.datasets import load_source, read_parquet
from kfp_mlops.modeling.model_bundle import PROFILE_FILE, ModelBundle
from kfp_mlops.modeling.model_store import EVALUATION_FILE
from kfp_mlops.modeling.profile import build_profile

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Reference:
    """What a check compares against: a profile, and reference rows when they are known.

    Attributes:
        profile: The reference profile.
        rows: Reference rows (for the report and reference predictions), or None.
        where: Where the profile came from, for errors and the verdict.
        rows_where: Where the rows came from.
        explicit_rows: The rows were given as the reference (not the model's training data), so
            performance on them is a fair baseline.
    """

    profile: dict[str, Any]
    rows: pd.DataFrame | None = None
    where: str = ""
    rows_where: str = ""
    explicit_rows: bool = False


def load_data(location: str, what: str = "data") -> pd.DataFrame:
    """Reads a ``.csv``/``.parquet`` file (local or ``gs://``) or a KFP Dataset artifact (Parquet).

    Raises:
        DataError: missing or unreadable.
    """
    try:
        if Path(location).suffix.lower() in (".csv", ".parquet", ".pq"):
            return load_source(location)
        return read_parquet(location)  # KFP artifacts have no suffix; components pass Parquet
    except DataError as exc:
        raise DataError(f"{what}: {exc}") from None


def load_reference(
    location: str,
    *,
    label: str | None = None,
    feature_kinds: Mapping[str, str] | None = None,
    ignore_columns: Sequence[str] = (),
) -> Reference:
    """Loads a reference given as a profile or as data.

    Args:
        location: A profile (``.json``, a KFP artifact, or a model folder holding
            ``reference_profile.json``), or reference data (``.csv``, ``.parquet``, a KFP Dataset).
        label: The label column of reference data (a profile names its own); None: the data is
            unlabelled.
        feature_kinds: Feature name -> kind for reference data (e.g. a model's ``feature_kinds``);
            default: every column but the label and ``ignore_columns``, numeric by dtype.
        ignore_columns: Columns of reference data that are not features.

    Raises:
        ConfigError: reference data lacks the label column named.
        DataError, StorageError: the location is missing or unreadable.
    """
    if not location:
        raise ConfigError("reference: no location given (a profile JSON, a model folder or reference data)")
    if Path(location).suffix.lower() != ".json" and storage.exists(storage.join(location, PROFILE_FILE)):
        location = storage.join(location, PROFILE_FILE)  # a model folder or store version
    if Path(location).suffix.lower() == ".json" or _looks_like_json(location):
        return Reference(profile=storage.read_json(location), where=location)
    rows = load_data(location, "reference data")
    label = label or None
    if label is not None and label not in rows.columns:
        raise ConfigError(
            f"reference data {location}: no label column {label!r} (leave the label out for unlabelled data)"
        )
    kinds = dict(feature_kinds) if feature_kinds else _infer_kinds(rows, label, ignore_columns)
    missing = [name for name in kinds if name not in rows.columns]
    if missing:
        raise DataError(f"reference data {location}: lacks feature(s) {', '.join(missing)}")
    profile = build_profile(rows, kinds, label)
    return Reference(profile=profile, rows=rows, where=location, rows_where=location, explicit_rows=True)


def _looks_like_json(location: str) -> bool:
    """Whether a suffix-less local file (a KFP artifact) holds JSON rather than Parquet."""
    path = Path(location)
    if "://" in location or not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(1) in (b"{", b"[")


def _infer_kinds(rows: pd.DataFrame, label: str | None, ignore: Sequence[str]) -> dict[str, str]:
    """Every column but the label and ``ignore``, numeric by dtype (train's rule)."""
    import pandas as pd

    return {
        str(name): "numeric"
        if pd.api.types.is_numeric_dtype(rows[name]) and not pd.api.types.is_bool_dtype(rows[name])
        else "categorical"
        for name in rows.columns
        if name != label and name not in ignore
    }


def load_model(
    location: str, *, store_root: str, sha256: str | None = None, outside_store: bool = False
) -> tuple[ModelBundle, dict[str, float] | None]:
    """Loads a model and, when it is a store version, its held-out metrics (``evaluation.json``).

    The model is a version of the store at ``store_root``, checked against the sha256 recorded at
    registration (and ``sha256`` too, when given); a folder elsewhere loads only with
    ``outside_store`` (the user's opt-out) and its ``sha256``
    (:func:`kfp_mlops.modeling.model_store.load_model`).

    Returns:
        The model and ``{"accuracy", "roc_auc"}`` from its evaluation, or None.

    Raises:
        MlopsError: the model is outside the store without the opt-out, has no checksum to check
            it against, does not match it, or does not load here.
    """
    bundle = model_store.load_model(location, store_root=store_root, outside_store=outside_store, sha256=sha256)
    evaluation_uri = storage.join(location, EVALUATION_FILE)
    if not storage.exists(evaluation_uri):
        return bundle, None
    metrics = storage.read_json(evaluation_uri).get("metrics", {})
    return bundle, {k: float(metrics[k]) for k in ("accuracy", "roc_auc") if k in metrics} or None


def model_training_rows(model: ModelBundle) -> tuple[pd.DataFrame | None, str]:
    """The model's training data when its ``training_data_uri`` can be read, and why not otherwise."""
    uri = model.metadata.get("training_data_uri", "")
    if not uri or uri == "memory":
        return None, "the model names no training data"
    try:
        return load_data(uri, "model training data"), uri
    except MlopsError as exc:
        return None, f"the model's training data cannot be read ({exc})"


def sample_rows(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """At most ``rows`` rows of ``frame``, drawn without replacement."""
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed)
