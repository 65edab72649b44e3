"""The one model code path every serving runtime uses: load, validate a request, predict, score feedback.

This module must import in the Seldon runtime's environment too (numpy<2, protobuf<4, no kfp, no
wandb), so it needs only numpy, pandas, scikit-learn and joblib, and the storage layer's lazy
``gs://`` support.

Requests come in two shapes, both 2-D:

* **ndarray**: rows of values in the model's feature order (``[[5.1, 3.5, 1.4, 0.2]]``);
* **named**: rows with feature names (``names=[...]`` beside the rows, or a list of
  ``{"feature": value}`` records), in any order.

Anything else is an :class:`InvalidRequest` whose message says what was wrong; a runtime turns
it into a 4xx response, never a 5xx.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kfp_mlops.errors import MlopsError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from kfp_mlops.model_bundle import ModelBundle

DEFAULT_MAX_BATCH = 10_000


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

    @classmethod
    def load(cls, location: str, *, max_batch: int = DEFAULT_MAX_BATCH) -> ServedModel:
        """Loads a model folder (local path or ``gs://``), checking its scikit-learn version.

        The version is the store's version folder name when the location is one
        (``.../versions/<version>``), else the first 12 hex digits of the model's sha256.
        """
        from kfp_mlops.model_bundle import load_bundle

        bundle = load_bundle(location)
        parts = location.rstrip("/").split("/")
        if len(parts) >= 2 and parts[-2] == "versions":
            version = parts[-1]
        else:
            version = str(bundle.metadata.get("model_sha256", "unknown"))[:12]
        return cls(bundle, version=version, max_batch=max_batch)

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
        if len(rows) > self.max_batch:
            raise InvalidRequest(f"batch of {len(rows)} rows exceeds the limit of {self.max_batch}", status=413)
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
            self._check_column(name, columns[name], numeric)
        return pd.DataFrame({name: columns[name] for name in self.feature_names})

    def predict(self, rows: Any, names: Sequence[str] | None = None) -> Prediction:
        """Validates ``rows`` and predicts every row's class and class probabilities."""
        frame = self.frame(rows, names)
        try:
            probabilities = self.bundle.model.predict_proba(frame)
        except ValueError as exc:
            # scikit-learn's way to refuse an input, e.g. a finite value that overflows once scaled.
            raise InvalidRequest(f"the model cannot score this batch: {exc}", status=422) from None
        labels = [self.classes[i] for i in probabilities.argmax(axis=1)]
        return Prediction(labels=labels, probabilities=probabilities, classes=self.classes)

    def correct_answers(self, predicted: Sequence[Any], truth: Sequence[Any]) -> int:
        """How many predicted labels equal the true ones (feedback for live accuracy).

        Raises:
            InvalidRequest: lengths differ, or a true label is not one of the model's classes.
        """
        if len(predicted) != len(truth):
            raise InvalidRequest(f"feedback has {len(truth)} true labels for {len(predicted)} predictions")
        unknown = sorted({str(t) for t in truth} - set(self.classes))
        if unknown:
            raise InvalidRequest(f"unknown class(es) in feedback: {', '.join(unknown)}; expected {', '.join(self.classes)}")
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
    def _check_column(name: str, values: list[Any], numeric: bool) -> None:
        for i, value in enumerate(values):
            if numeric:
                if isinstance(value, bool) or not isinstance(value, numbers.Real):
                    raise InvalidRequest(f"feature {name!r} row {i}: expected a number, got {_describe(value)}")
                try:
                    finite = math.isfinite(value)
                except OverflowError:  # an integer beyond the float range
                    finite = False
                if not finite:
                    raise InvalidRequest(f"feature {name!r} row {i}: expected a finite number, got {_describe(value)}")
            elif not isinstance(value, (str, numbers.Real)) or isinstance(value, bool):
                raise InvalidRequest(f"feature {name!r} row {i}: expected a category string, got {_describe(value)}")


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}"
