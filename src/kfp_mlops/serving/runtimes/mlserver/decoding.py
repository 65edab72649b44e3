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

Two paths, with the same shape checks:

* :func:`request_matrix`, the columnar one: a numeric model's request of plain finite numbers
  becomes one float matrix with no Python work per value (nested data is flattened with
  ``itertools.chain`` and the values are checked by
  :meth:`~kfp_mlops.serving.model.ServedModel.numeric_matrix`);
* :func:`request_rows`, value by value, for everything else (a categorical model, or a request
  the columnar path declined), whose errors name the input, the feature and the row.
"""

from __future__ import annotations

import math
from itertools import chain
from typing import TYPE_CHECKING, Any

from mlserver.types import RequestInput

from kfp_mlops.serving.model import InvalidRequest, ServedModel

if TYPE_CHECKING:
    import numpy as np

NDARRAY_INPUT = "input-0"  # the name MLServer's own codecs give a single tensor


def request_matrix(inputs: list[RequestInput], served: ServedModel) -> np.ndarray | None:
    """A numeric model's request as one ``[rows, features]`` float matrix in the model's feature order.

    Returns None when the columnar path does not apply (a categorical model, a value that is not
    a plain finite number, data that does not fill its shape, names that are not the features):
    :func:`request_rows` then decodes the request and names what is wrong.

    Raises:
        InvalidRequest: the shape checks of :func:`request_rows`.
    """
    ndarray = _check_shapes(inputs, served)
    if not served.numeric:
        return None
    if ndarray:
        values = _flat(inputs[0])
        return None if values is None else served.numeric_matrix(values, inputs[0].shape[0])
    by_name = {tensor.name: tensor for tensor in inputs}
    if len(by_name) != len(inputs) or sorted(by_name) != sorted(served.feature_names):
        return None
    rows = inputs[0].shape[0]
    columns = [_flat(by_name[name]) for name in served.feature_names]
    # Each column fills its own shape, and every shape has the same rows.
    if any(
        c is None or len(c) != rows or len(c) != math.prod(by_name[n].shape)
        for n, c in zip(served.feature_names, columns)
    ):
        return None
    return served.numeric_matrix(list(chain.from_iterable(columns)), rows, by_column=True)  # type: ignore[arg-type]


def request_rows(inputs: list[RequestInput], served: ServedModel) -> tuple[list[list[Any]], list[str] | None]:
    """The rows of a V2 request, and the feature name of each column (None: the model's order).

    Raises:
        InvalidRequest: no inputs, a shape that does not fit the data or the form, more rows than
            the model's ``max_batch`` (413), or feature inputs with different numbers of rows.
    """
    if _check_shapes(inputs, served):
        tensor = inputs[0]
        width = tensor.shape[1]
        values = _values(tensor)
        return [values[start : start + width] for start in range(0, len(values), width)], None
    columns = [_values(tensor) for tensor in inputs]
    if len({len(column) for column in columns}) > 1:
        counts = ", ".join(f"{t.name} {len(c)}" for t, c in zip(inputs, columns))
        raise InvalidRequest(f"feature inputs have different numbers of rows: {counts}")
    return [list(row) for row in zip(*columns)], [tensor.name for tensor in inputs]


def _check_shapes(inputs: list[RequestInput], served: ServedModel) -> bool:
    """Checks the inputs' declared shapes (and the batch size) before any value is read.

    Returns True for the 2-D form (one input ``[rows, features]``), False for one input per feature.
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
        return True
    for tensor in inputs:
        if not (len(tensor.shape) == 1 or (len(tensor.shape) == 2 and tensor.shape[1] == 1)):
            raise InvalidRequest(
                f"input {tensor.name!r}: a feature's input has shape [rows] or [rows, 1], got {tensor.shape}"
            )
        served.check_batch(tensor.shape[0])
    return False


def declared_values(inputs: list[RequestInput]) -> int:
    """How many values the inputs' shapes declare (what decoding them will cost)."""
    return sum(math.prod(max(size, 0) for size in tensor.shape) for tensor in inputs)


def _flat(tensor: RequestInput) -> list[Any] | None:
    """The tensor's data flattened in C, or None if it is not a list nested evenly within its shape's rank.

    A level is flattened only when its items are all lists holding no more values than the shape
    declares, so oversized data is declined without being copied. The values themselves are not
    looked at here: :meth:`~kfp_mlops.serving.model.ServedModel.numeric_matrix` checks their types.
    """
    data = tensor.data.root
    expected = math.prod(tensor.shape)
    for _ in range(len(tensor.shape)):
        if not isinstance(data, list) or len(data) > expected:
            return None
        if not data or type(data[0]) is not list:
            return data  # the values (a list among them fails numeric_matrix's type check)
        if set(map(type, data)) != {list} or sum(map(len, data)) > expected:
            return None
        data = list(chain.from_iterable(data))
    return None


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
