"""Decoding an Open Inference Protocol request into the rows :class:`~kfp_mlops.serving.model.ServedModel` takes.

Two input forms, told apart by the inputs' names:

* one input per feature (``{"name": "sepal_length", "shape": [rows], "datatype": "FP64",
  "data": [...]}``; ``[rows, 1]`` works too), categorical features as ``BYTES``; every feature
  input must have the same number of rows;
* one 2-D input of shape ``[rows, features]`` in the model's feature order, declared in the
  metadata as :data:`NDARRAY_INPUT`; any single input whose name is not a feature's is taken as
  this form.

The data may be flat or nested, but must fill its shape exactly. The declared shapes are checked
first -- their form, the batch size against the model's ``max_batch`` (413) -- and the data is
flattened only up to the number of values the shape declares, so an oversized request costs no
more than its (size-limited) body. Anything else is an
:class:`~kfp_mlops.serving.model.InvalidRequest` naming the input and what was wrong.
"""

from __future__ import annotations

import math
from typing import Any

from mlserver.types import RequestInput

from kfp_mlops.serving.model import InvalidRequest, ServedModel

NDARRAY_INPUT = "input-0"  # the name MLServer's own codecs give a single tensor


def request_rows(inputs: list[RequestInput], served: ServedModel) -> tuple[list[list[Any]], list[str] | None]:
    """The rows of a V2 request, and the feature name of each column (None: the model's order).

    Raises:
        InvalidRequest: no inputs, a shape that does not fit the data or the form, more rows than
            the model's ``max_batch`` (413), or feature inputs with different numbers of rows.
    """
    features = served.feature_names
    if not inputs:
        raise InvalidRequest(
            f"no inputs: send one input per feature ({', '.join(features)}) "
            f"or one input {NDARRAY_INPUT!r} of shape [rows, {len(features)}]"
        )
    for tensor in inputs:
        if any(size < 0 for size in tensor.shape):
            raise InvalidRequest(f"input {tensor.name!r}: negative size in shape {tensor.shape}")
    if len(inputs) == 1 and inputs[0].name not in features:
        tensor = inputs[0]
        if len(tensor.shape) != 2:
            raise InvalidRequest(
                f"input {tensor.name!r}: expected a 2-D batch of shape [rows, {len(features)}], "
                f"got shape {tensor.shape}"
            )
        width = tensor.shape[1]
        if width != len(features):
            raise InvalidRequest(
                f"input {tensor.name!r}: rows have {width} values, expected {len(features)} ({', '.join(features)})"
            )
        served.check_batch(tensor.shape[0])
        values = _values(tensor)
        return [values[start : start + width] for start in range(0, len(values), width)], None
    for tensor in inputs:
        if not (len(tensor.shape) == 1 or (len(tensor.shape) == 2 and tensor.shape[1] == 1)):
            raise InvalidRequest(
                f"input {tensor.name!r}: a feature's input has shape [rows] or [rows, 1], got {tensor.shape}"
            )
        served.check_batch(tensor.shape[0])
    columns = [_values(tensor) for tensor in inputs]
    if len({len(column) for column in columns}) > 1:
        counts = ", ".join(f"{t.name} {len(c)}" for t, c in zip(inputs, columns))
        raise InvalidRequest(f"feature inputs have different numbers of rows: {counts}")
    return [list(row) for row in zip(*columns)], [tensor.name for tensor in inputs]


def declared_values(inputs: list[RequestInput]) -> int:
    """How many values the inputs' shapes declare (what decoding them will cost)."""
    return sum(math.prod(max(size, 0) for size in tensor.shape) for tensor in inputs)


def _values(tensor: RequestInput) -> list[Any]:
    """The tensor's data, flattened, after checking it fills its shape exactly.

    Flattening stops one value past the shape's count: data far larger than its shape is refused
    without being copied.
    """
    data = tensor.data.root
    if not isinstance(data, list):
        raise InvalidRequest(f"input {tensor.name!r}: data must be a list, got {type(data).__name__}")
    expected = math.prod(tensor.shape)
    values: list[Any] = []
    # Iterative: JSON nests deeper than Python's recursion limit.
    stack = [iter(data)]
    while stack and len(values) <= expected:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            values.append(item)
            if len(values) > expected:
                break
        else:
            stack.pop()
    if len(values) != expected:
        got = "more" if len(values) > expected else str(len(values))
        raise InvalidRequest(f"input {tensor.name!r}: shape {tensor.shape} needs {expected} values, got {got}")
    return values
