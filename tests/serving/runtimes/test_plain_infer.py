"""The v2 runtime's plain path answers exactly as MLServer's path does, and only the requests it may take."""

from __future__ import annotations

import gzip
import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from kfp_mlops.serving.local.servers import PredictorServer
from kfp_mlops.serving.runtimes.mlserver.plain_infer import plain_request
from tests.serving.support import DEPLOYMENT, IrisModel, scrape, serving, total

INFER = f"/v2/models/{DEPLOYMENT}/infer"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
PLAIN = {"inputs": [{"name": "input-0", "shape": [3, 4], "datatype": "FP64", "data": ROWS}]}
# The same request with an (empty) parameters object: not plain, so MLServer's path answers it.
THROUGH_MLSERVER = {**PLAIN, "parameters": {}}
# Headers that differ between any two answers.
PER_ANSWER = {"date", "x-request-id", "ce-id", "ce-requestid"}


@pytest.fixture(scope="module")
def server(iris_model: IrisModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PredictorServer]:
    with serving("v2", iris_model.uri, tmp_path_factory.mktemp("v2-plain")) as started:
        yield started


def _post(server: PredictorServer, body: Any, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    host, port = server.url.rsplit("/", 1)[1].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(
            "POST", INFER, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}
        )
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def _infer_requests(server: PredictorServer) -> tuple[float, float]:
    """MLServer's count of the inferences through its path, and the runtime's count of every predict request."""
    samples = scrape(server.metrics_url)
    return total(samples, "model_infer_request_success_total"), total(
        samples, "kfp_mlops_requests_total", endpoint="predict"
    )


@pytest.mark.parametrize("accept", ["identity", "gzip"])
@pytest.mark.parametrize("v2_id", [None, "order-17", ""])
def test_a_plain_answer_is_mlservers_answer(server: PredictorServer, accept: str, v2_id: str | None) -> None:
    answers = []
    for body in (PLAIN, THROUGH_MLSERVER):
        sent = body if v2_id is None else {**body, "id": v2_id}
        status, headers, raw = _post(server, sent, {"Accept-Encoding": accept})
        assert status == 200, raw
        assert (headers.get("content-encoding") == "gzip") == (accept == "gzip")
        document = json.loads(gzip.decompress(raw) if accept == "gzip" else raw)
        if v2_id is None:
            assert headers["ce-id"] == document.pop("id")  # a new UUID each time, in the body and the headers
        else:
            assert document.pop("id") == v2_id and headers.get("ce-id") == (v2_id or None)
        # Two gzip encoders need not agree byte for byte: the decompressed answers are compared.
        varying = PER_ANSWER | ({"content-length"} if accept == "gzip" else set())
        answers.append((document, {k: v for k, v in headers.items() if k not in varying}))
    assert answers[0] == answers[1]
    assert answers[0][0]["outputs"][0]["data"] == ["setosa", "virginica", "versicolor"]


def test_plain_requests_skip_mlservers_path_and_are_counted_by_the_runtime(server: PredictorServer) -> None:
    mlserver_before, runtime_before = _infer_requests(server)
    for _ in range(5):
        assert _post(server, PLAIN)[0] == 200
    assert _post(server, THROUGH_MLSERVER)[0] == 200
    mlserver_after, runtime_after = _infer_requests(server)
    assert (mlserver_after - mlserver_before, runtime_after - runtime_before) == (1, 6)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"parameters": {"content_type": "np"}}, "request parameters"),
        ({"id": 17}, "an id that is not a string"),
        ({"id": "line\nbreak"}, "an id MLServer refuses"),
        ({"inputs": []}, "no inputs"),
        ({"inputs": [{**PLAIN["inputs"][0], "datatype": "BYTES"}]}, "a non-numeric datatype"),
        ({"inputs": [{**PLAIN["inputs"][0], "datatype": {}}]}, "a datatype that is not a string"),
        ({"inputs": [{**PLAIN["inputs"][0], "shape": [3, True]}]}, "a shape that is not integers"),
        ({"inputs": [{**PLAIN["inputs"][0], "parameters": {}}]}, "input parameters"),
        ({"inputs": [{**PLAIN["inputs"][0], "data": "5.1"}]}, "data that is not a list"),
    ],
)
def test_anything_but_a_plain_request_is_left_to_mlserver(change: dict[str, Any], why: str) -> None:
    assert plain_request(json.dumps(PLAIN).encode()) is not None
    assert plain_request(json.dumps({**PLAIN, **change}).encode()) is None, why


def test_numbers_orjson_refuses_are_left_to_mlserver() -> None:
    body = json.dumps(PLAIN).replace("5.1", "NaN").encode()
    assert plain_request(body) is None
    assert plain_request(b"{not json") is None


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        ([[5.1, 3.5, 1.4]], 400, "rows have 3 values, expected 4"),
        # finite, but it overflows once scaled: the model's probabilities are NaN
        ([[5.1, 3.5, 1.4, 1e308]], 422, "the model cannot score row(s) 0: its probabilities are not finite"),
    ],
)
def test_refusals_of_plain_requests_are_mlservers(
    server: PredictorServer, data: list[list[float]], status: int, message: str
) -> None:
    shape = [len(data), len(data[0])]
    code, _, raw = _post(server, {"inputs": [{"name": "input-0", "shape": shape, "datatype": "FP64", "data": data}]})
    assert code == status, raw
    assert message in json.loads(raw)["error"]
