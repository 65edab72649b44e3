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
from itertools import chain
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
_PLAIN = {float, int}  # the value types of a numeric batch's fast path (bool is not int here: type() is exact)


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
        import numpy as np

        self.bundle = bundle
        self.version = version
        self.max_batch = max_batch
        self.feature_names: list[str] = bundle.feature_names
        self.feature_kinds: dict[str, str] = dict(bundle.metadata.get("feature_kinds") or {})
        self.classes: list[str] = bundle.classes
        self._class_array = np.array(self.classes, dtype=object)  # a batch's labels by index, in C
        self._numeric = [self.feature_kinds.get(n, "numeric") == "numeric" for n in self.feature_names]
        self._category_kinds = _category_kinds(bundle.model)
        self._scorer = _matrix_scorer(bundle.model, self.feature_names) if all(self._numeric) else None

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
        if matrix is not None:
            return self.answer(self.score(matrix))
        try:
            probabilities = self.bundle.model.predict_proba(self.frame(rows, names))
        except ValueError as exc:
            raise _unscorable(exc) from None
        return self.answer(probabilities)

    @property
    def numeric(self) -> bool:
        """Every feature is numeric: a request can be checked and scored as one float matrix."""
        return all(self._numeric)

    def numeric_matrix(self, values: list[Any], rows: int, *, by_column: bool = False) -> np.ndarray | None:
        """Flat ``values`` as a ``[rows, features]`` float matrix in the model's feature order.

        The columnar check of a numeric model's batch: the values' types are collected in C
        (``set(map(type, ...))``) and the finiteness is checked by numpy, so a large batch costs
        no Python work per value. Returns ``None`` when any value is not a finite ``float`` or
        ``int`` (a bool, a string, ``null``, NaN, an integer beyond the float range) or the count
        does not fill ``rows``: :meth:`frame` then checks the values one by one and names the problem.

        Args:
            values: Row after row, or (``by_column``) feature after feature, in the model's order.
            rows: The number of rows.
            by_column: ``values`` holds whole columns, one after the other.
        """
        import numpy as np

        width = len(self.feature_names)
        if not self.numeric or rows < 1 or len(values) != rows * width or not set(map(type, values)) <= _PLAIN:
            return None
        try:
            flat = np.array(values, dtype=np.float64)
        except OverflowError:  # an int beyond the float range
            return None
        if not np.isfinite(flat).all():
            return None
        return np.ascontiguousarray(flat.reshape(width, rows).T) if by_column else flat.reshape(rows, width)

    def score(self, matrix: np.ndarray) -> np.ndarray:
        """Class probabilities of a checked batch: finite floats ``[rows, features]`` in the model's feature order.

        Raises:
            InvalidRequest: the model refuses the batch (422), e.g. a finite value that overflows once scaled.
        """
        import pandas as pd

        try:
            if self._scorer is not None:
                probabilities: np.ndarray = self._scorer.predict_proba(matrix)
            else:
                probabilities = self.bundle.model.predict_proba(pd.DataFrame(matrix, columns=self.feature_names))
        except ValueError as exc:
            raise _unscorable(exc) from None
        return probabilities

    def answer(self, probabilities: np.ndarray) -> Prediction:
        """The prediction of a batch from its class probabilities (the label is the likeliest class).

        Raises:
            InvalidRequest: a row's probabilities are not finite (422): a finite input the model
                cannot score (one that overflows once scaled) would otherwise be answered as NaN.
        """
        import numpy as np

        unscored = np.flatnonzero(~np.isfinite(probabilities).all(axis=1))
        if len(unscored):
            rows = ", ".join(map(str, unscored[:10])) + (", ..." if len(unscored) > 10 else "")
            raise InvalidRequest(
                f"the model cannot score row(s) {rows}: its probabilities are not finite "
                "(a value far outside what the model was trained on?)",
                status=422,
            )
        labels: list[str] = self._class_array[probabilities.argmax(axis=1)].tolist()
        return Prediction(labels=labels, probabilities=probabilities, classes=self.classes)

    def _plain_matrix(self, rows: Any, names: Sequence[str] | None) -> np.ndarray | None:
        """The fast path: an all-numeric model and a well-formed batch of plain numbers in order.

        Returns the batch as a float matrix, or ``None`` when anything is unusual, so that
        :meth:`frame` checks it value by value and names the problem.
        """
        if not self.numeric or (names is not None and list(names) != self.feature_names):
            return None
        if not isinstance(rows, list) or not 0 < len(rows) <= self.max_batch:
            return None
        if set(map(type, rows)) != {list} or set(map(len, rows)) != {len(self.feature_names)}:
            return None
        return self.numeric_matrix(list(chain.from_iterable(rows)), len(rows))

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


class _MatrixScorer:
    """A fitted ``Pipeline(ColumnTransformer, ..., classifier)`` scoring a float matrix in feature order, lean.

    scikit-learn spends far more time around a small batch than on it: a one-row DataFrame's column
    lookups and feature-name checks, the ColumnTransformer's per-call machinery (a joblib
    ``Parallel`` over its transformers, output checks), and every step's parameter and finiteness
    validation. Every feature here is numeric and every batch has been checked finite, so this
    scorer applies each fitted transformer to its columns (by position) and stacks the results
    itself, then runs the remaining steps, with ``assume_finite`` and ``skip_parameter_validation``
    set (checking with numpy alone that no step made a value infinite). Built by
    :func:`_matrix_scorer`, which keeps it only if it scores like the original.
    """

    def __init__(self, parts: list[tuple[Any, list[int]]], steps: list[Any]) -> None:
        self.parts = parts  # (fitted transformer or "passthrough", column positions)
        self.steps = steps  # the steps after the ColumnTransformer, the classifier last

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        import numpy as np
        import sklearn

        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            blocks = [
                matrix[:, columns] if transformer == "passthrough" else transformer.transform(matrix[:, columns])
                for transformer, columns in self.parts
            ]
            if not all(isinstance(block, np.ndarray) for block in blocks):
                raise TypeError("a transformer returned a sparse matrix")  # caught by the equivalence probe
            features = _finite(blocks[0] if len(blocks) == 1 else np.hstack(blocks))
            for step in self.steps[:-1]:
                features = _finite(step.transform(features))
            probabilities: np.ndarray = self.steps[-1].predict_proba(features)
        return probabilities


def _finite(features: np.ndarray) -> np.ndarray:
    """``features``, unless a step made a value infinite (scikit-learn's own check is skipped: ``assume_finite``)."""
    import numpy as np

    if not np.isfinite(features).all():
        raise ValueError("a value is infinite or too large for float64 once transformed")
    return features


def _matrix_scorer(model: Any, feature_names: list[str]) -> _MatrixScorer | None:
    """The lean scorer of a fitted pipeline whose first step is a ColumnTransformer, or None.

    The scorer works on a copy whose fitted transformers forget the feature names they were fitted
    with (else each call warns that a matrix has none). It is used only if it scores like the
    original on probe rows (to 1e-12); any other model is scored through its own ``predict_proba``.
    """
    import copy

    import numpy as np
    import pandas as pd
    from sklearn.compose import ColumnTransformer

    steps = getattr(model, "steps", None)
    if not steps or not isinstance(steps[0][1], ColumnTransformer):
        return None
    copied = copy.deepcopy([step for _, step in steps])
    index = {name: i for i, name in enumerate(feature_names)}
    parts: list[tuple[Any, list[int]]] = []
    try:
        for _, fitted, columns in copied[0].transformers_:
            positions = [index[c] for c in columns] if not isinstance(columns, str) else None
            if positions is None:  # a single column by name: a 1-D selection, left to scikit-learn
                return None
            if fitted != "drop" and positions:
                parts.append((fitted, positions))
    except KeyError:  # a column that is not a feature
        return None
    if not parts:
        return None
    for estimator in [fitted for fitted, _ in parts if fitted != "passthrough"] + copied[1:]:
        if hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_
    scorer = _MatrixScorer(parts, copied[1:])
    probe = np.random.default_rng(0).normal(size=(8, len(feature_names)))
    try:
        expected = model.predict_proba(pd.DataFrame(probe, columns=feature_names))
        same = np.allclose(scorer.predict_proba(probe), expected, rtol=0, atol=1e-12)
    except Exception:  # any failure means the scorer is not equivalent
        return None
    return scorer if same else None


def _unscorable(exc: ValueError) -> InvalidRequest:
    # scikit-learn's way to refuse an input, e.g. a finite value that overflows once scaled.
    return InvalidRequest(f"the model cannot score this batch: {exc}", status=422)


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}"
