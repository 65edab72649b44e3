"""Hypothesis-generated requests against both runtimes: nothing gets a 5xx, valid requests get 200.

Each runtime gets more than 1,000 requests: malformed ones (broken bytes, JSON literals Python
accepts but JSON does not, wrong shapes and names, junk values, deep nesting, oversized batches,
unknown paths and methods, bad feedback) must get a JSON 4xx (or a 200 when a mutation happened to
leave the request valid); valid ones in every input form must get 200 and the pipeline's answer, and
feedback on the id the server issued for them (v2: ``request_id``; Seldon: the answer's ``meta.puid``)
gets 200.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kfp_mlops.serving.local.servers import PredictorServer
from tests.serving.support import DEPLOYMENT, FEATURES, Client, IrisModel

CLASSES = ["setosa", "versicolor", "virginica"]
MALFORMED_EXAMPLES = 700
VALID_EXAMPLES = 350  # three requests each: a prediction, its feedback, and that feedback again
FUZZ = settings(
    deadline=None,
    database=None,
    print_blob=True,
    # The servers are module fixtures; the autouse isolated_env only sets environment variables.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
SENT: dict[str, int] = {}
DEEP = b'"deeply nested data"'  # replaced by [[[...]]] in the request bytes
ISSUED = "issued-request-id"  # replaced by the id the server issued for a prediction sent just before

values = st.floats(-1e6, 1e6, allow_nan=False) | st.integers(-(10**6), 10**6)
rows_of = st.lists(st.lists(values, min_size=4, max_size=4), min_size=1, max_size=12)
junk = st.one_of(
    st.text(max_size=6),
    st.booleans(),
    st.none(),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.lists(st.integers(), max_size=3),
    st.floats(),
    st.integers(10**300, 10**320),
    st.just(1e308),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
literals = st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"nan", b"0x10", b"01"])


@dataclass(frozen=True)
class Target:
    """One runtime under test and how to talk to it."""

    protocol: str
    server: PredictorServer
    client: Client
    predict_path: str
    feedback_path: str
    valid_body: Callable[[st.DrawFn, list[list[Any]]], dict[str, Any]]
    answer: Callable[[Any], tuple[list[str], np.ndarray]]
    feedback_body: Callable[[Any, list[Any]], dict[str, Any]]  # (the issued request id, the true labels)
    unknown_paths: tuple[tuple[str, str], ...]


def v2_body(draw: st.DrawFn, rows: list[list[Any]]) -> dict[str, Any]:
    form = draw(st.sampled_from(["nested", "flat", "named"]))
    datatype = draw(st.sampled_from(["FP64", "FP32"]))
    if form == "named":
        order = draw(st.permutations(range(4)))
        column_shape = draw(st.sampled_from([[len(rows)], [len(rows), 1]]))
        inputs = [
            {"name": FEATURES[i], "shape": column_shape, "datatype": datatype, "data": [row[i] for row in rows]}
            for i in order
        ]
    else:
        data = rows if form == "nested" else [value for row in rows for value in row]
        name = draw(st.sampled_from(["input-0", "features", "x"]))
        inputs = [{"name": name, "shape": [len(rows), 4], "datatype": datatype, "data": data}]
    body: dict[str, Any] = {"inputs": inputs}
    if draw(st.booleans()):
        body["id"] = draw(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=16))
    return body


def v2_answer(body: Any) -> tuple[list[str], np.ndarray]:
    outputs = {output["name"]: output for output in body["outputs"]}
    probabilities = outputs["probabilities"]
    return outputs["label"]["data"], np.array(probabilities["data"]).reshape(probabilities["shape"])


def seldon_body(draw: st.DrawFn, rows: list[list[Any]]) -> dict[str, Any]:
    form = draw(st.sampled_from(["ndarray", "empty names", "named", "records"]))
    if form == "named":
        order = draw(st.permutations(range(4)))
        return {"data": {"names": [FEATURES[i] for i in order], "ndarray": [[row[i] for i in order] for row in rows]}}
    if form == "records":
        return {"data": {"ndarray": [dict(zip(FEATURES, row)) for row in rows]}}
    return {"data": {"ndarray": rows, **({"names": []} if form == "empty names" else {})}}


def seldon_answer(body: Any) -> tuple[list[str], np.ndarray]:
    return body["jsonData"]["labels"], np.array(body["jsonData"]["probabilities"])


@pytest.fixture(params=["v2", "seldon"])
def target(request: pytest.FixtureRequest, outside_store: None) -> Iterator[Target]:
    server: PredictorServer = request.getfixturevalue(f"{request.param}_server")
    client = Client(server.url)
    if request.param == "v2":
        yield Target(
            "v2",
            server,
            client,
            server.predict_path(),
            f"/v2/models/{DEPLOYMENT}/feedback",
            v2_body,
            v2_answer,
            lambda request_id, truth: {"request_id": request_id, "truth": truth},
            (
                ("POST", "/v2/models/nobody/infer"),
                ("POST", f"/v2/models/{DEPLOYMENT}/infer_stream"),
                ("POST", f"/v2/models/{DEPLOYMENT}/generate"),
                ("GET", server.predict_path()),
                ("POST", f"/v2/models/{DEPLOYMENT}/versions/x/nothing"),
                ("PUT", "/v2/health/ready"),
            ),
        )
    else:
        yield Target(
            "seldon",
            server,
            client,
            server.predict_path(),
            "/api/v1.0/feedback",
            seldon_body,
            seldon_answer,
            lambda request_id, truth: {
                "response": {"meta": {"puid": request_id}},
                "truth": {"data": {"ndarray": truth}},
            },
            (
                ("POST", "/api/v9/predictions"),
                ("GET", server.predict_path()),
                ("DELETE", "/health/ping"),
                ("POST", "/api/v1.0/nothing"),
                ("GET", "/..%2f..%2fetc/passwd"),
            ),
        )
    SENT[request.param] = SENT.get(request.param, 0) + client.sent
    client.close()


def _expected(model: Any, rows: list[list[Any]]) -> np.ndarray:
    return model.predict_proba(pd.DataFrame(rows, columns=FEATURES, dtype=float))


@settings(FUZZ, max_examples=VALID_EXAMPLES)
@given(data=st.data())
def test_valid_requests_get_the_pipelines_answer(target: Target, iris_model: IrisModel, data: st.DataObject) -> None:
    rows = data.draw(rows_of)
    body = data.draw(st.composite(lambda draw: target.valid_body(draw, rows))())
    reply = target.client.post(target.predict_path, body)
    assert reply.status == 200, reply.text
    labels, probabilities = target.answer(reply.json)
    np.testing.assert_allclose(probabilities, _expected(iris_model.model, rows), rtol=1e-9, atol=1e-12)
    assert labels == [CLASSES[i] for i in probabilities.argmax(axis=1)]
    request_id = {name.lower(): value for name, value in reply.headers.items()}["x-request-id"]
    truth = data.draw(st.lists(st.sampled_from(CLASSES), min_size=len(labels), max_size=len(labels)))
    feedback = target.client.post(target.feedback_path, target.feedback_body(request_id, truth))
    assert feedback.status == 200, feedback.text
    assert feedback.json is not None
    again = target.client.post(target.feedback_path, target.feedback_body(request_id, truth))
    assert again.status == 409, again.text  # labelled once only


@st.composite
def malformed(draw: st.DrawFn, target: Target) -> tuple[str, str, bytes, str]:
    """A request with one thing wrong: (method, path, body, content type)."""
    rows = draw(rows_of)
    body = target.valid_body(draw, rows)
    method, path, content_type = "POST", target.predict_path, "application/json"
    kind = draw(
        st.sampled_from(
            [
                "bytes",
                "text",
                "json",
                "truncated",
                "literal",
                "junk value",
                "drop key",
                "bad shape",
                "bad datatype",
                "rename",
                "duplicate",
                "drop input",
                "width",
                "empty",
                "1-D",
                "deep",
                "oversized",
                "path",
                "content type",
                "feedback json",
                "feedback junk",
                "id",
            ]
        )
    )
    if kind == "bytes":
        return method, path, draw(st.binary(max_size=64)), content_type
    if kind == "text":
        return method, path, draw(st.text(max_size=64)).encode(), content_type
    if kind == "json":
        return method, path, json.dumps(draw(json_values)).encode(), content_type
    raw = json.dumps(body).encode()
    if kind == "truncated":
        return method, path, raw[: draw(st.integers(0, len(raw) - 1))], content_type
    if kind == "literal":
        number = draw(st.sampled_from(list(re.finditer(rb"(?<=[ \[])-?\d[\d.eE+-]*", raw))))
        return method, path, raw[: number.start()] + draw(literals) + raw[number.end() :], content_type
    if kind == "path":
        method, path = draw(st.sampled_from(target.unknown_paths))
        return method, path, raw, content_type
    if kind == "content type":
        return method, path, raw, draw(st.sampled_from(["text/plain", "application/x-www-form-urlencoded", ""]))
    if kind in ("feedback json", "feedback junk"):
        request_id = draw(st.just(ISSUED) | st.text(max_size=40) | junk)
        truth = draw(st.lists(st.sampled_from([*CLASSES, "rose"]) | junk, max_size=4) | junk)
        document = draw(json_values) if kind == "feedback json" else target.feedback_body(request_id, truth)
        return method, target.feedback_path, json.dumps(document).encode(), content_type
    mutate(draw, kind, body, rows, target.protocol)
    raw = json.dumps(body).encode()
    if kind == "deep":  # as bytes: json.dumps recurses too
        depth = draw(st.integers(50, 5000))
        raw = raw.replace(DEEP, b"[" * depth + b"1" + b"]" * depth)
    return method, path, raw, content_type


def mutate(draw: st.DrawFn, kind: str, body: dict[str, Any], rows: list[list[Any]], protocol: str) -> None:
    """Breaks ``body`` (a valid request for ``rows``) in place."""
    if protocol == "v2":
        tensors = body["inputs"]
        tensor = draw(st.sampled_from(tensors))
        if kind == "junk value":
            row = draw(st.integers(0, len(tensor["data"]) - 1))
            if isinstance(tensor["data"][row], list):
                tensor["data"][row][draw(st.integers(0, 3))] = draw(junk)
            else:
                tensor["data"][row] = draw(junk)
        elif kind == "drop key":
            del tensor[draw(st.sampled_from(["name", "shape", "datatype", "data"]))]
        elif kind == "bad shape":
            tensor["shape"] = draw(st.lists(st.integers(-3, 20), max_size=4) | junk)
        elif kind == "bad datatype":
            tensor["datatype"] = draw(st.text(max_size=6) | junk)
        elif kind == "rename":
            tensor["name"] = draw(st.text(max_size=12) | junk)
        elif kind == "duplicate":
            tensors.append(dict(tensor))
        elif kind == "drop input":
            tensors.remove(tensor)
        elif kind == "width":
            width = draw(st.sampled_from([0, 1, 3, 5, 8]))
            body["inputs"] = [
                {
                    "name": "input-0",
                    "shape": [len(rows), width],
                    "datatype": "FP64",
                    "data": [(row * 2)[:width] for row in rows],
                }
            ]
        elif kind == "empty":
            body["inputs"] = [{"name": "input-0", "shape": [0, 4], "datatype": "FP64", "data": []}]
        elif kind == "1-D":
            body["inputs"] = [{"name": "input-0", "shape": [4], "datatype": "FP64", "data": rows[0]}]
        elif kind == "deep":
            tensor["data"] = DEEP.decode().strip('"')
        elif kind == "oversized":
            body["inputs"] = [{"name": "input-0", "shape": [10_001, 4], "datatype": "FP64", "data": [rows[0]] * 10_001}]
        elif kind == "id":  # control characters and non-Latin-1 text: MLServer puts the id in headers
            body["id"] = draw(st.text(min_size=1, max_size=8) | junk)
        return
    data = body["data"]
    if kind == "junk value":
        row = draw(st.integers(0, len(data["ndarray"]) - 1))
        if isinstance(data["ndarray"][row], dict):
            data["ndarray"][row][draw(st.sampled_from(FEATURES))] = draw(junk)
        else:
            data["ndarray"][row][draw(st.integers(0, 3))] = draw(junk)
    elif kind == "drop key":
        body.pop("data")
    elif kind in ("bad shape", "bad datatype"):
        data["ndarray"] = draw(junk)
    elif kind == "rename":
        data["names"] = draw(st.lists(st.text(max_size=12), max_size=5) | junk)
    elif kind == "duplicate":
        data["names"] = [*FEATURES, "sepal_width"]
    elif kind == "drop input":
        data["tensor"] = {"shape": [1, 4], "values": rows[0]}
        del data["ndarray"]
    elif kind == "width":
        width = draw(st.sampled_from([0, 1, 3, 5, 8]))
        body["data"] = {"ndarray": [(row * 2)[:width] for row in rows]}
    elif kind == "empty":
        body["data"] = {"ndarray": []}
    elif kind == "1-D":
        body["data"] = {"ndarray": rows[0]}
    elif kind == "deep":
        body["data"] = {"ndarray": DEEP.decode().strip('"')}
    elif kind == "oversized":
        body["data"] = {"ndarray": [rows[0]] * 10_001}
    elif kind == "id":
        body["meta"] = {"puid": draw(st.text(max_size=8) | junk)}


@settings(FUZZ, max_examples=MALFORMED_EXAMPLES)
@given(data=st.data())
def test_malformed_requests_never_get_a_5xx(target: Target, data: st.DataObject) -> None:
    method, path, raw, content_type = data.draw(malformed(target))
    if ISSUED.encode() in raw:  # feedback with junk truth on a real request of one row
        body = data.draw(st.composite(lambda draw: target.valid_body(draw, [[5.1, 3.5, 1.4, 0.2]]))())
        answered = target.client.post(target.predict_path, body)
        assert answered.status == 200, answered.text
        issued = {name.lower(): value for name, value in answered.headers.items()}["x-request-id"]
        raw = raw.replace(ISSUED.encode(), issued.encode())
    reply = target.client.request(method, path, raw=raw, content_type=content_type)
    assert reply.status < 500, (method, path, raw[:300], reply.text)
    assert reply.json is not None, (method, path, raw[:300], reply.status, reply.text)
    if reply.status >= 400:
        assert reply.status < 500 and reply.content_type.startswith("application/json")


def test_each_runtime_got_over_a_thousand_requests() -> None:
    assert SENT.get("v2", 0) >= 1000 and SENT.get("seldon", 0) >= 1000, SENT
