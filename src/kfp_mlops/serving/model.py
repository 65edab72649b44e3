"""The one model code path every serving runtime uses: load, validate a request, predict, score feedback.

This module must import in the Seldon runtime's environment too (numpy<2, protobuf<4, no kfp, no
wandb), so it needs only numpy, pandas, scikit-learn and joblib, and the storage layer's lazy
``gs://`` support.

Requests come in two shapes, both 2-D:

* **ndarray**: rows of values in the model's feature order (``[[5.1, 3.5, 1.4, 0.2]]``);
* **named**: rows with feature names (``names=[...]`` beside the rows, or a list of
  ``{"feature": value}`` records), in any order.

Every value is checked against its feature before the model sees it: a finite number for a numeric
feature; for a categorical one, a value of the type of the categories the model was fitted on
(strings; booleans for a boolean feature), so a number, NaN or ``null`` in a categorical feature is
refused by name rather than failing inside scikit-learn. Anything else is an
:class:`InvalidRequest` whose message says what was wrong; a runtime turns it into a 4xx response,
never a 5xx.

Request size is bounded twice, before any value is looked at: :attr:`ServedModel.max_batch` rows,
and :attr:`ServedModel.max_request_bytes` of body (raw or decompressed), which the runtimes enforce
while reading the body, never above :data:`MAX_REQUEST_BYTES` (the local router's limit too).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import MlopsError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from kfp_mlops.modeling.model_bundle import ModelBundle

DEFAULT_MAX_BATCH = 10_000
MODEL_SHA256_ENV = "MODEL_SHA256"
"""The sha256 of a model loaded from outside the model store (with the opt-out only)."""
MAX_REQUEST_BYTES = 16 * 2**20
"""The largest request body, raw or decompressed, that any runtime or the local router accepts."""
# A model's own body limit: the envelope (names, shapes, datatypes, ids), then per value a JSON
# number at full precision with its separator and some indentation, plus the feature's name, which
# the records form repeats in every row.
_BODY_ENVELOPE_BYTES = 64 * 1024
_BYTES_PER_VALUE = 32


class InvalidRequest(MlopsError):
    """A request the model cannot answer; ``status`` is the HTTP status to reply with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Prediction:
    """The answer for a batch: the predicted class and every class's probability, per row."""

    labels: list[str]
    probabilities: np.ndarray
    classes: list[str]


class ServedModel:
    """A loaded model bundle behind request validation.

    Args:
        bundle: the model and its metadata.
        version: the version reported with every answer (the store version, or a checksum prefix).
        max_batch: the largest number of rows one request may carry.
    """

    def __init__(self, bundle: ModelBundle, *, version: str, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self.bundle = bundle
        self.version = version
        self.max_batch = max_batch
        self.feature_names: list[str] = bundle.feature_names
        self.feature_kinds: dict[str, str] = dict(bundle.metadata.get("feature_kinds") or {})
        self.classes: list[str] = bundle.classes
        self._numeric = [self.feature_kinds.get(n, "numeric") == "numeric" for n in self.feature_names]
        self._category_kinds = _category_kinds(bundle.model)
        self._positional = _positional_copy(bundle.model, self.feature_names) if all(self._numeric) else None

    @classmethod
    def load(
        cls,
        location: str,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        settings: Settings | None = None,
        sha256: str | None = None,
    ) -> ServedModel:
        """Loads a model folder (local path or ``gs://``) after checking where it is and what it is.

        The folder must be a version of the model store (``settings.store_root``:
        ``KFP_MLOPS_STORE``), and its model file must match the sha256 recorded when it was
        registered (:func:`kfp_mlops.modeling.model_store.load_model`). With the opt-out
        ``KFP_MLOPS_ALLOW_MODELS_OUTSIDE_STORE=1`` another folder loads, checked against ``sha256``
        (default: :data:`MODEL_SHA256_ENV` from the environment). The version is the store's
        version folder name when the location is one (``.../versions/<version>``), else the first
        12 hex digits of the model's sha256.

        Raises:
            MlopsError: the folder is outside the store without the opt-out, has no recorded (or
                given) checksum or does not match it, or does not load here.
        """
        import os

        from kfp_mlops.modeling.model_store import load_model

        settings = settings or Settings.from_env()
        bundle = load_model(
            location,
            store_root=settings.store_root,
            outside_store=settings.allow_models_outside_store,
            sha256=sha256 or os.environ.get(MODEL_SHA256_ENV) or None,
        )
        parts = location.rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] == "versions":
            version = parts[-1]
        else:
            version = str(bundle.metadata.get("model_sha256", "unknown"))[:12]
        return cls(bundle, version=version, max_batch=max_batch)

    @property
    def max_request_bytes(self) -> int:
        """The largest request body this model accepts: ample for ``max_batch`` rows, at most :data:`MAX_REQUEST_BYTES`.

        A body of that size holds at most about 16 times the values of a full batch (a value
        takes at least two bytes), which bounds what parsing it can cost before the rows are counted.
        """
        per_row = sum(_BYTES_PER_VALUE + len(name) for name in self.feature_names)
        return min(MAX_REQUEST_BYTES, _BODY_ENVELOPE_BYTES + self.max_batch * per_row)

    def check_batch(self, rows: int) -> None:
        """Refuses a batch of more than ``max_batch`` rows (413), before any of its values is read.

        Raises:
            InvalidRequest: the batch is too large.
        """
        if rows > self.max_batch:
            raise InvalidRequest(f"batch of {rows} rows exceeds the limit of {self.max_batch}", status=413)

    def frame(self, rows: Any, names: Sequence[str] | None = None) -> pd.DataFrame:
        """Validates a request body's rows and returns them as the model's input frame.

        Args:
            rows: a 2-D list (or numpy array) of rows, or a list of ``{feature: value}`` records.
            names: the feature name of each column of ``rows``; ``None`` means the model's order.

        Raises:
            InvalidRequest: naming the first thing wrong with the request.
        """
        import numpy as np
        import pandas as pd

        if isinstance(rows, np.ndarray):
            if rows.ndim != 2:
                raise InvalidRequest(f"expected a 2-D batch of rows, got a {rows.ndim}-D array")
            rows = rows.tolist()
        if not isinstance(rows, list):
            raise InvalidRequest(f"expected a list of rows, got {type(rows).__name__}")
        if not rows:
            raise InvalidRequest("empty batch: send at least one row")
        self.check_batch(len(rows))
        if all(isinstance(row, Mapping) for row in rows):
            self._check_names(sorted({k for row in rows for k in row}))
            rows = [[row.get(n) for n in self.feature_names] for row in rows]
            names = self.feature_names
        elif any(not isinstance(row, (list, tuple)) for row in rows):
            raise InvalidRequest("expected a 2-D batch: each row must be a list of feature values (got a 1-D list?)")
        names = self.feature_names if names is None else self._check_names(list(names))
        width = len(names)
        for i, row in enumerate(rows):
            if len(row) != width:
                raise InvalidRequest(
                    f"row {i} has {len(row)} values, expected {width} ({', '.join(self.feature_names)})"
                )
        columns = {name: [row[j] for row in rows] for j, name in enumerate(names)}
        for name, numeric in zip(self.feature_names, self._numeric):
            self._check_column(name, columns[name], "number" if numeric else self._category_kinds.get(name, "string"))
        return pd.DataFrame({name: columns[name] for name in self.feature_names})

    def predict(self, rows: Any, names: Sequence[str] | None = None) -> Prediction:
        """Validates ``rows`` and predicts every row's class and class probabilities."""
        matrix = self._plain_matrix(rows, names)
        try:
            if matrix is not None and self._positional is not None:
                probabilities = self._positional.predict_proba(matrix)
            else:
                probabilities = self.bundle.model.predict_proba(self.frame(rows, names))
        except ValueError as exc:
            # scikit-learn's way to refuse an input, e.g. a finite value that overflows once scaled.
            raise InvalidRequest(f"the model cannot score this batch: {exc}", status=422) from None
        labels = [self.classes[i] for i in probabilities.argmax(axis=1)]
        return Prediction(labels=labels, probabilities=probabilities, classes=self.classes)

    def _plain_matrix(self, rows: Any, names: Sequence[str] | None) -> np.ndarray | None:
        """The fast path: an all-numeric model and a well-formed batch of plain numbers in order.

        Returns the batch as a float matrix, or ``None`` when anything is unusual, so that
        :meth:`frame` checks it value by value and names the problem.
        """
        import numpy as np

        if self._positional is None or (names is not None and list(names) != self.feature_names):
            return None
        if not isinstance(rows, list) or not 0 < len(rows) <= self.max_batch:
            return None
        width = len(self.feature_names)
        if not all(type(row) is list and len(row) == width for row in rows):
            return None
        if not {type(v) for row in rows for v in row} <= {float, int}:  # bools and strings take the slow path
            return None
        try:
            matrix = np.asarray(rows, dtype=float)
        except OverflowError:  # an int beyond float range
            return None
        return matrix if np.isfinite(matrix).all() else None

    def correct_answers(self, predicted: Sequence[Any], truth: Sequence[Any]) -> int:
        """How many predicted labels equal the true ones (feedback for live accuracy).

        Raises:
            InvalidRequest: lengths differ, or a true label is not one of the model's classes.
        """
        if len(predicted) != len(truth):
            raise InvalidRequest(f"feedback has {len(truth)} true labels for {len(predicted)} predictions")
        unknown = sorted({str(t) for t in truth} - set(self.classes))
        if unknown:
            raise InvalidRequest(
                f"unknown class(es) in feedback: {', '.join(unknown)}; expected {', '.join(self.classes)}"
            )
        return sum(str(p) == str(t) for p, t in zip(predicted, truth))

    def _check_names(self, names: list[str]) -> list[str]:
        if not all(isinstance(n, str) for n in names):
            raise InvalidRequest("feature names must be strings")
        unknown = [n for n in names if n not in self.feature_names]
        if unknown:
            raise InvalidRequest(f"unknown feature(s) {', '.join(unknown)}; expected {', '.join(self.feature_names)}")
        missing = [n for n in self.feature_names if n not in names]
        if missing:
            raise InvalidRequest(f"missing feature(s) {', '.join(missing)}")
        if len(set(names)) != len(names):
            raise InvalidRequest("duplicate feature names")
        return names

    @staticmethod
    def _check_column(name: str, values: list[Any], kind: str) -> None:
        """Refuses the first value that is not a ``kind``: a finite ``number``, a ``string`` or a ``boolean``."""
        for i, value in enumerate(values):
            if kind == "number":
                if isinstance(value, bool) or not isinstance(value, numbers.Real):
                    raise InvalidRequest(f"feature {name!r} row {i}: expected a number, got {_describe(value)}")
                try:
                    finite = math.isfinite(value)
                except OverflowError:  # an integer beyond the float range
                    finite = False
                if not finite:
                    raise InvalidRequest(f"feature {name!r} row {i}: expected a finite number, got {_describe(value)}")
            elif not isinstance(value, bool if kind == "boolean" else str):
                raise InvalidRequest(f"feature {name!r} row {i}: expected a category {kind}, got {_describe(value)}")


def _category_kinds(model: Any) -> dict[str, str]:
    """Each categorical feature's kind of value, from the categories its fitted encoder learned.

    ``string``, unless every category is a boolean (``boolean``) or a number (``number``):
    scikit-learn's encoder fails on a number among string categories, and takes the string
    ``"True"`` for an unknown category of a boolean feature. Features that the model's first step
    does not encode are left out (taken as strings).
    """
    import numpy as np

    steps = getattr(model, "steps", None)
    kinds = {}
    for _, fitted, columns in getattr(steps[0][1] if steps else None, "transformers_", []):
        categories = getattr(fitted, "categories_", None)
        if categories is None or isinstance(columns, str):
            continue
        for column, values in zip(columns, categories):
            if all(isinstance(v, (bool, np.bool_)) for v in values):
                kinds[str(column)] = "boolean"
            elif all(isinstance(v, (numbers.Real, np.number)) and not isinstance(v, bool) for v in values):
                kinds[str(column)] = "number"
            else:
                kinds[str(column)] = "string"
    return kinds


def _positional_copy(model: Any, feature_names: list[str]) -> Any | None:
    """A copy of a fitted pipeline that takes a float matrix in ``feature_names`` order.

    scikit-learn spends more time on a one-row DataFrame (column lookup, feature-name checks) than
    on the model itself, and every feature here is numeric: the copy selects columns by position
    and forgets the names. It is used only if it scores like the original on probe rows.
    """
    import copy

    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer

    steps = getattr(model, "steps", None)
    preprocess = steps[0][1] if steps else None
    if not isinstance(preprocess, ColumnTransformer):
        return None
    positional = copy.deepcopy(model)
    transformer = positional.steps[0][1]
    index = {name: i for i, name in enumerate(feature_names)}
    try:
        transformer.transformers_ = [
            (name, fitted, [index[c] for c in columns] if not isinstance(columns, str) else columns)
            for name, fitted, columns in transformer.transformers_
        ]
    except KeyError:  # a column that is not a feature: leave the model as it is
        return None
    for estimator in [transformer, *(fitted for _, fitted, _ in transformer.transformers_)]:
        if hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_
    probe = np.random.default_rng(0).normal(size=(8, len(feature_names)))
    try:
        expected = model.predict_proba(pd.DataFrame(probe, columns=feature_names))
        same = np.allclose(positional.predict_proba(probe), expected, rtol=0, atol=1e-12)
    except Exception:  # any failure means the copy is not equivalent
        return None
    return positional if same else None


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}"
