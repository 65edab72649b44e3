"""The seldon runtime (Seldon Core's wrapper, in .venv-seldon) as a real server on a gs:// model."""

from __future__ import annotations

import gzip
import http.client
import json
import random
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kfp_mlops.core.errors import MlopsError
from kfp_mlops.serving.local.servers import PredictorServer, start_predictor
from tests.serving.support import DEPLOYMENT, FEATURES, Client, IrisModel, scrape, serving, serving_client, total

PREDICT = "/api/v1.0/predictions"
FEEDBACK = "/api/v1.0/feedback"
ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture(scope="module")
def server(
    gcs_model: tuple[str, dict[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PredictorServer]:
    uri, env = gcs_model
    with serving("seldon", uri, tmp_path_factory.mktemp("seldon-gcs"), env) as started:
        yield started


def ndarray(rows: Any, names: list[str] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"ndarray": rows}
    if names is not None:
        data["names"] = names
    return {"data": data}


def feedback(request_id: str, truth: Any) -> dict[str, Any]:
    """Feedback on the answer to request ``request_id``: its ``meta.puid``, with the true labels."""
    return {"response": {"meta": {"puid": request_id}}, "truth": {"data": {"ndarray": truth}}}


def predicted(client: Client, rows: list[list[float]]) -> str:
    """The request id of a prediction for ``rows`` (its answer's ``meta.puid``)."""
    reply = client.post(PREDICT, ndarray(rows))
    assert reply.status == 200, reply.text
    assert reply.json["meta"]["puid"] == reply.headers["X-Request-Id"]
    return reply.json["meta"]["puid"]


def test_predictions_equal_the_pipeline_in_every_input_form(
    server: PredictorServer, client: Client, iris_model: IrisModel
) -> None:
    rows = iris_model.rows[::7]
    expected = iris_model.model.predict_proba(pd.DataFrame(rows, columns=FEATURES))
    order = random.Random(2).sample(range(4), 4)
    bodies = {
        "ndarray": ndarray(rows),
        "ndarray, empty names": ndarray(rows, []),
        "named, shuffled": ndarray([[row[i] for i in order] for row in rows], [FEATURES[i] for i in order]),
        "records": ndarray([dict(zip(FEATURES, row)) for row in rows]),
    }
    assert server.predict_path() == PREDICT
    for form, body in bodies.items():
        reply = client.post(PREDICT, body)
        assert reply.status == 200, (form, reply.text)
        answer = reply.json["jsonData"]
        # numpy 1.26 on Python 3.12 here: equal to the last bit or two.
        np.testing.assert_allclose(np.array(answer["probabilities"]), expected, rtol=1e-12, atol=1e-15, err_msg=form)
        assert answer["classes"] == ["setosa", "versicolor", "virginica"]
        assert answer["labels"] == [answer["classes"][i] for i in expected.argmax(axis=1)], form


def test_every_answer_is_tagged_with_version_and_predictor(client: Client, version: str) -> None:
    tags = {"deployment": DEPLOYMENT, "predictor": "main", "model_version": version}
    assert client.post(PREDICT, ndarray([ROW])).json["meta"]["tags"] == tags
    answer = client.post(FEEDBACK, feedback(predicted(client, [ROW]), ["setosa"]))
    assert answer.status == 200, answer.text
    assert answer.json["meta"]["tags"] == tags
    status = client.request("GET", "/health/status")
    assert status.status == 200 and status.json["jsonData"] == {"ready": True, **tags}
    assert client.request("GET", "/health/ping").status == 200


def test_metadata_describes_the_model(client: Client, version: str) -> None:
    reply = client.request("GET", "/api/v1.0/metadata")
    assert reply.status == 200, reply.text
    assert reply.json["name"] == DEPLOYMENT and reply.json["versions"] == [version]
    assert reply.json["inputs"] == [{"messagetype": "ndarray", "schema": {"names": FEATURES, "shape": [4]}}]
    assert reply.json["outputs"][0]["schema"]["classes"] == ["setosa", "versicolor", "virginica"]
    assert reply.json["custom"] == {"deployment": DEPLOYMENT, "predictor": "main", "model_version": version}


def _raw(body: Any) -> bytes:
    return json.dumps(body).encode()


MALFORMED = {
    "invalid JSON": ("POST", PREDICT, b'{"data": ', 400),
    "NaN literal": ("POST", PREDICT, _raw(ndarray([ROW])).replace(b"5.1", b"NaN"), 400),
    "Infinity literal": ("POST", PREDICT, _raw(ndarray([ROW])).replace(b"5.1", b"-Infinity"), 400),
    "number beyond the float range": ("POST", PREDICT, _raw(ndarray([ROW])).replace(b"5.1", b"1e400"), 400),
    "integer beyond the float range": ("POST", PREDICT, _raw(ndarray([[10**400, 3.5, 1.4, 0.2]])), 400),
    "not an object": ("POST", PREDICT, b"[]", 400),
    "no data": ("POST", PREDICT, _raw({"meta": {}}), 400),
    "tensor payload": ("POST", PREDICT, _raw({"data": {"tensor": {"shape": [1, 4], "values": ROW}}}), 400),
    "ndarray not a list": ("POST", PREDICT, _raw(ndarray("5.1,3.5,1.4,0.2")), 400),
    "names not a list": ("POST", PREDICT, _raw(ndarray([ROW], "sepal_length")), 400),  # type: ignore[arg-type]
    "wrong feature count": ("POST", PREDICT, _raw(ndarray([ROW[:3]])), 400),
    "ragged rows": ("POST", PREDICT, _raw(ndarray([ROW, ROW[:3]])), 400),
    "unknown feature name": ("POST", PREDICT, _raw(ndarray([ROW], [*FEATURES[:3], "petal_size"])), 400),
    "missing feature": ("POST", PREDICT, _raw(ndarray([ROW[:3]], FEATURES[:3])), 400),
    "duplicate feature": ("POST", PREDICT, _raw(ndarray([[*ROW, 1.0]], [*FEATURES, "sepal_width"])), 400),
    "string value": ("POST", PREDICT, _raw(ndarray([["5.1", 3.5, 1.4, 0.2]])), 400),
    "boolean value": ("POST", PREDICT, _raw(ndarray([[True, 3.5, 1.4, 0.2]])), 400),
    "null value": ("POST", PREDICT, _raw(ndarray([[None, 3.5, 1.4, 0.2]])), 400),
    "object value": ("POST", PREDICT, _raw(ndarray([[{"v": 1}, 3.5, 1.4, 0.2]])), 400),
    "empty batch": ("POST", PREDICT, _raw(ndarray([])), 400),
    "1-D input": ("POST", PREDICT, _raw(ndarray(ROW)), 400),
    "value the model cannot score": ("POST", PREDICT, _raw(ndarray([[1e308, 1e308, 1e308, 1e308]])), 422),
    "nested deeper than Python recurses": (
        "POST",
        PREDICT,
        _raw(ndarray([ROW])).replace(b"5.1", b"[" * 5000 + b"1" + b"]" * 5000),
        400,
    ),
    "oversized batch": ("POST", PREDICT, _raw(ndarray([ROW] * 10_001)), 413),
    "not JSON content": ("POST", PREDICT, "text/plain", 415),
    "unknown path": ("GET", "/api/v1.0/nothing", None, 404),
    "unknown path, POST": ("POST", "/api/v1.0/nothing", _raw(ndarray([ROW])), 405),
    "GET on the predictions path": ("GET", PREDICT, None, 404),  # Flask's static route answers GETs
    "feedback not JSON": ("POST", FEEDBACK, b"setosa", 400),
    "feedback not an object": ("POST", FEEDBACK, b"[1, 2]", 400),
    "feedback with an unknown field": ("POST", FEEDBACK, _raw({"verdict": "good"}), 400),
    "feedback with a reward that is not a number": ("POST", FEEDBACK, _raw({"reward": "high"}), 400),
    "feedback without a request id": ("POST", FEEDBACK, _raw({"truth": {"data": {"ndarray": ["setosa"]}}}), 400),
    "feedback with the client's labels only": (
        "POST",
        FEEDBACK,
        _raw({"response": {"jsonData": {"labels": ["setosa"]}}, "truth": {"data": {"ndarray": ["setosa"]}}}),
        400,
    ),
    "feedback for an unknown request": ("POST", FEEDBACK, _raw(feedback("nobody", ["setosa"])), 404),
    "feedback with an infinity": ("POST", FEEDBACK, _raw(feedback("r", [])).replace(b"[]}}}", b"[Infinity]}}}"), 400),
    "feedback with a number beyond the float range": ("POST", FEEDBACK, _raw(feedback("r", [10**400])), 400),
}


@pytest.mark.parametrize(("method", "path", "raw", "status"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_requests_get_a_4xx_json_answer(
    client: Client, method: str, path: str, raw: bytes | str | None, status: int
) -> None:
    if isinstance(raw, str):  # a content type: a valid body sent as something else
        reply = client.request(method, path, raw=_raw(ndarray([ROW])), content_type=raw)
    else:
        reply = client.request(method, path, raw=raw)
    assert reply.status == status, reply.text
    assert reply.content_type.startswith("application/json"), reply.content_type
    assert reply.json["status"]["info"], reply.text


def test_error_messages_say_what_is_wrong(client: Client) -> None:
    reply = client.post(PREDICT, ndarray([["5.1", 3.5, 1.4, 0.2]]))
    assert reply.json["status"] == {
        "status": 1,
        "code": -1,
        "reason": "MICROSERVICE_BAD_DATA",
        "info": "feature 'sepal_length' row 0: expected a number, got str '5.1'",
    }
    assert client.request("GET", "/nothing").json["status"]["info"] == "Not Found: GET /nothing"


def test_metrics_count_requests_classes_and_feedback(server: PredictorServer, client: Client, version: str) -> None:
    identity = {"deployment": DEPLOYMENT, "predictor": "main", "model_version": version}
    before = scrape(server.metrics_url)
    for _ in range(3):
        assert client.post(PREDICT, ndarray([ROW])).status == 200
    assert client.post(PREDICT, ndarray([ROW[:3]])).status == 400
    assert client.request("POST", PREDICT, raw=b"{").status == 400  # rejected by the wrapper, counted all the same
    # Numbers in the truth come back from Seldon's protobuf as floats; labels are strings here.
    four = predicted(client, [ROW] * 4)  # the model answers setosa for each
    answer = client.post(FEEDBACK, feedback(four, [["setosa"], ["setosa"], ["setosa"], ["virginica"]]))
    assert answer.status == 200, answer.text
    assert answer.json["jsonData"]["rows"] == 4 and answer.json["jsonData"]["correct"] == 3
    assert client.post(FEEDBACK, feedback(predicted(client, [ROW]), ["rose"])).status == 400
    after = scrape(server.metrics_url)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **identity, **labels) - total(before, name, **identity, **labels)

    counted = {
        (e, s): delta("kfp_mlops_requests_total", endpoint=e, status=s)
        for e, s in [("predict", "200"), ("predict", "400"), ("feedback", "200"), ("feedback", "400")]
    }
    assert counted == {("predict", "200"): 5, ("predict", "400"): 2, ("feedback", "200"): 1, ("feedback", "400"): 1}
    assert delta("kfp_mlops_request_duration_seconds_count", endpoint="predict", status="200") == 5
    assert delta("kfp_mlops_predictions_total", **{"class": "setosa"}) == 8
    assert delta("kfp_mlops_feedback_total") == 4 and delta("kfp_mlops_feedback_correct_total") == 3
    accuracy = total(after, "kfp_mlops_feedback_correct_total", **identity) / total(
        after, "kfp_mlops_feedback_total", **identity
    )
    assert total(after, "kfp_mlops_live_accuracy", **identity) == pytest.approx(accuracy)
    assert answer.json["jsonData"]["live_accuracy"] == pytest.approx(accuracy)


def test_a_body_over_the_limit_gets_a_413_before_it_is_parsed(server: PredictorServer, client: Client) -> None:
    """Declared too large, or streamed past the limit: once parsed whole whatever its size."""
    limit = 64 * 1024 + 10_000 * (4 * 32 + len("".join(FEATURES)))
    padded = b" " * 8 * 2**20 + _raw(ndarray([ROW]))  # more than socket buffers hold: the rest is read and dropped
    declared = client.request("POST", PREDICT, raw=padded)
    assert declared.status == 413 and declared.json["status"]["info"] == (
        f"request body of {len(padded)} bytes exceeds the limit of {limit} bytes"
    )
    connection = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=30)
    chunks = (b" " * 2**16 for _ in range(32))  # 2 MiB, sent chunked: http.client knows no length
    connection.request("POST", PREDICT, body=chunks, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["status"]["info"] == f"request body exceeds the limit of {limit} bytes"
    connection.close()


def test_a_compressed_body_gets_a_415(client: Client) -> None:
    reply = client.request(
        "POST", PREDICT, raw=gzip.compress(_raw(ndarray([ROW]))), headers={"Content-Encoding": "gzip"}
    )
    assert reply.status == 415 and "Content-Encoding 'gzip' is not accepted" in reply.json["status"]["info"]


@pytest.fixture(scope="module")
def categorical_client(categorical_model: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with serving_client("seldon", categorical_model, tmp_path_factory.mktemp("seldon-categorical")) as client:
        yield client


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        (b'[1.0, "red"], [2.0, 1.5]', "feature 'colour' row 1: expected a category string, got float 1.5"),
        (b'[1.0, "red"], [2.0, NaN]', "feature 'colour' row 1: expected a category string, got float nan"),
        (b'[1.0, "red"], [2.0, 3]', "feature 'colour' row 1: expected a category string, got int 3"),
        (b'[1.0, "red"], [2.0, true]', "feature 'colour' row 1: expected a category string, got bool True"),
        (b'[1.0, "red"], [2.0, null]', "feature 'colour' row 1: expected a category string, got NoneType None"),
        (b'[1.0, "red"], ["big", "blue"]', "feature 'size' row 1: expected a number, got str 'big'"),
        (b"[2.0, NaN]", "feature 'colour' row 0: expected a category string, got float nan"),
    ],
    ids=["float", "NaN", "int", "bool", "null", "string in a numeric feature", "NaN alone"],
)
def test_a_value_of_the_wrong_kind_in_a_categorical_model_gets_a_400_naming_the_feature(
    categorical_client: Client, rows: bytes, reason: str
) -> None:
    """A number or NaN in a categorical feature once raised inside the one-hot encoder (a 500), or, beside
    a string, was taken for an unknown category (a 200 with a wrong answer)."""
    body = b'{"data": {"names": ["size", "colour"], "ndarray": [%s]}}'
    assert categorical_client.request("POST", PREDICT, raw=body % b'[1.0, "red"], [2.0, "blue"]').status == 200
    reply = categorical_client.request("POST", PREDICT, raw=body % rows)
    assert (reply.status, reply.json["status"]["info"]) == (400, reason)


def test_numeric_true_labels_survive_seldons_protobuf(client: Client) -> None:
    # Iris classes are strings; a numeric label arrives as a float and must not read as "1.0".
    reply = client.post(FEEDBACK, feedback(predicted(client, [ROW]), [1]))
    assert reply.status == 400 and "unknown class(es) in feedback: 1;" in reply.json["status"]["info"]


def test_a_model_that_cannot_load_ends_the_server_with_a_clear_error(old_sklearn_model: str, tmp_path: Path) -> None:
    with pytest.raises(MlopsError, match="seldon server for predictor 'p' of 'old' exited with code 1") as caught:
        start_predictor(
            protocol="seldon", model_uri=old_sklearn_model, predictor="p", deployment="old", workdir=tmp_path
        )
    last = str(caught.value).splitlines()[-1]
    assert last.startswith("error: cannot serve model 'old': model ")
    assert "trained with scikit-learn 0.24.2, this environment has 1.9." in last


def test_a_missing_seldon_environment_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KFP_MLOPS_SELDON_PYTHON", str(tmp_path / "no-python"))
    with pytest.raises(MlopsError, match=r"no Python at .*no-python .*run `make seldon-env`"):
        start_predictor(protocol="seldon", model_uri=str(tmp_path), predictor="p", deployment="d", workdir=tmp_path)


def test_stop_is_clean_and_idempotent(server: PredictorServer) -> None:
    server.stop()
    assert server.process.returncode == 0
    server.stop()
    port = int(server.url.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
