"""The v2 runtime (MLServer) as a real server on a gs:// model: answers, metadata, tags, metrics, errors, stop."""

from __future__ import annotations

import gzip
import http.client
import json
import random
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kfp_mlops.core.errors import MlopsError
from kfp_mlops.serving.local.servers import PredictorServer, start_predictor
from tests.serving.support import (
    DEPLOYMENT,
    FEATURES,
    Client,
    IrisModel,
    gzip_bomb,
    resident_mib,
    scrape,
    serving,
    serving_client,
    total,
)

INFER = f"/v2/models/{DEPLOYMENT}/infer"
FEEDBACK = f"/v2/models/{DEPLOYMENT}/feedback"
ROW = [5.1, 3.5, 1.4, 0.2]


@pytest.fixture(scope="module")
def server(
    gcs_model: tuple[str, dict[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PredictorServer]:
    uri, env = gcs_model
    with serving("v2", uri, tmp_path_factory.mktemp("v2-gcs"), env) as started:
        yield started


def ndarray(rows: list[list[Any]], name: str = "input-0") -> dict[str, Any]:
    return {
        "inputs": [{"name": name, "shape": [len(rows), len(rows[0]) if rows else 4], "datatype": "FP64", "data": rows}]
    }


def named(rows: list[list[Any]], names: list[str] = FEATURES) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": name, "shape": [len(rows)], "datatype": "FP64", "data": [row[i] for row in rows]}
            for i, name in enumerate(names)
        ]
    }


def outputs(answer: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    by_name = {output["name"]: output for output in answer["outputs"]}
    probabilities = by_name["probabilities"]
    return by_name["label"]["data"], np.array(probabilities["data"]).reshape(probabilities["shape"])


def test_predictions_equal_the_pipeline_in_every_input_form(
    server: PredictorServer, client: Client, iris_model: IrisModel
) -> None:
    rows = iris_model.rows[::7]
    expected = iris_model.model.predict_proba(pd.DataFrame(rows, columns=FEATURES))
    order = random.Random(1).sample(range(4), 4)
    flat = ndarray(rows)
    flat["inputs"][0]["data"] = [value for row in rows for value in row]
    column = named(rows)
    for tensor in column["inputs"]:
        tensor["shape"] = [len(rows), 1]
    bodies = {
        "ndarray": ndarray(rows),
        "ndarray, flat data": flat,
        "ndarray, another name": ndarray(rows, "features"),
        "named, shuffled": named([[row[i] for i in order] for row in rows], [FEATURES[i] for i in order]),
        "named, [rows, 1]": column,
    }
    assert server.predict_path() == INFER
    for form, body in bodies.items():
        reply = client.post(INFER, body)
        assert reply.status == 200, (form, reply.text)
        labels, probabilities = outputs(reply.json)
        np.testing.assert_array_equal(probabilities, expected, err_msg=form)
        assert labels == [["setosa", "versicolor", "virginica"][i] for i in expected.argmax(axis=1)], form
        classes = next(o for o in reply.json["outputs"] if o["name"] == "probabilities")["parameters"]["classes"]
        assert classes == ["setosa", "versicolor", "virginica"]


def test_concurrent_requests_are_answered_alone_though_scored_together(
    server: PredictorServer, iris_model: IrisModel
) -> None:
    """Single-row requests sent at once share model calls (micro-batching); one the model refuses fails alone."""
    rows = iris_model.rows[::10]
    bad = len(rows) // 2
    bodies = [ndarray([[1e308] * 4] if i == bad else [row]) for i, row in enumerate(rows)]
    replies: list[Any] = [None] * len(bodies)
    start = threading.Barrier(len(bodies))

    def send(i: int) -> None:
        client = Client(server.url)
        start.wait()
        replies[i] = client.post(INFER, bodies[i])
        client.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert replies[bad].status == 422 and "cannot score" in replies[bad].json["error"]
    expected = iris_model.model.predict_proba(pd.DataFrame(rows, columns=FEATURES))
    for i, reply in enumerate(replies):
        if i != bad:
            assert reply.status == 200, reply.text
            np.testing.assert_allclose(outputs(reply.json)[1][0], expected[i], rtol=0, atol=1e-12)


def test_metadata_declares_every_input_form_and_the_outputs(client: Client, version: str) -> None:
    reply = client.request("GET", f"/v2/models/{DEPLOYMENT}")
    assert reply.status == 200, reply.text
    meta = reply.json
    assert meta["name"] == DEPLOYMENT and meta["versions"] == [version] and meta["platform"] == "scikit-learn"
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        *[(name, "FP64", [-1]) for name in FEATURES],
        ("input-0", "FP64", [-1, 4]),
    ]
    assert meta["inputs"][-1]["parameters"]["features"] == FEATURES
    assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
        ("label", "BYTES", [-1]),
        ("probabilities", "FP64", [-1, 3]),
    ]
    assert meta["outputs"][1]["parameters"]["classes"] == ["setosa", "versicolor", "virginica"]
    assert meta["parameters"] == {
        "deployment": DEPLOYMENT,
        "predictor": "main",
        "model_version": version,
        "max_batch": 10_000,
        "max_request_bytes": 64 * 1024 + 10_000 * (4 * 32 + len("".join(FEATURES))),
    }
    assert client.request("GET", "/v2/health/ready").status == 200
    assert client.request("GET", f"/v2/models/{DEPLOYMENT}/ready").status == 200


def test_every_answer_is_tagged_with_version_and_predictor(client: Client, version: str) -> None:
    tags = {"deployment": DEPLOYMENT, "predictor": "main", "model_version": version}
    reply = client.post(INFER, ndarray([ROW]))
    answer = reply.json
    assert answer["model_name"] == DEPLOYMENT and answer["model_version"] == version
    assert answer["parameters"] == tags
    feedback = client.post(FEEDBACK, {"request_id": reply.headers["x-request-id"], "truth": ["setosa"]})
    assert feedback.status == 200, feedback.text
    assert {k: feedback.json[k] for k in tags} == tags


def _deep(depth: int) -> bytes:
    data = "[" * depth + "1" + "]" * depth
    return ('{"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ' + data + "}]}").encode()


def _raw(body: Any) -> bytes:
    return json.dumps(body).encode()


MALFORMED = {
    "invalid JSON": ("POST", INFER, b'{"inputs": [', 422),
    "NaN literal": ("POST", INFER, _raw(ndarray([ROW])).replace(b"5.1", b"NaN"), 422),
    "Infinity literal": ("POST", INFER, _raw(ndarray([ROW])).replace(b"5.1", b"-Infinity"), 422),
    "not an object": ("POST", INFER, b"[]", 422),
    "no inputs": ("POST", INFER, _raw({"inputs": []}), 400),
    "shape not a list": ("POST", INFER, _raw(ndarray([ROW])).replace(b"[1, 4]", b'"1x4"'), 422),
    "unknown datatype": ("POST", INFER, _raw(ndarray([ROW])).replace(b"FP64", b"FP128"), 422),
    "wrong feature count": ("POST", INFER, _raw(ndarray([ROW[:3]])), 400),
    "unknown feature name": ("POST", INFER, _raw(named([ROW], [*FEATURES[:3], "petal_size"])), 400),
    "missing feature": ("POST", INFER, _raw(named([ROW[:3]], FEATURES[:3])), 400),
    "duplicate feature": ("POST", INFER, _raw(named([[*ROW, 1.0]], [*FEATURES, "sepal_width"])), 400),
    "feature inputs of different lengths": (
        "POST",
        INFER,
        _raw({"inputs": [*named([ROW])["inputs"][:3], named([ROW, ROW])["inputs"][3]]}),
        400,
    ),
    "string value": ("POST", INFER, _raw(ndarray([["5.1", 3.5, 1.4, 0.2]])), 400),
    "boolean value": ("POST", INFER, _raw(ndarray([[True, 3.5, 1.4, 0.2]])), 400),
    "null value": ("POST", INFER, _raw(ndarray([[None, 3.5, 1.4, 0.2]])), 400),
    "object value": ("POST", INFER, _raw(ndarray([[{"v": 1}, 3.5, 1.4, 0.2]])), 400),
    "data not a list": ("POST", INFER, _raw({"inputs": [{**ndarray([ROW])["inputs"][0], "data": "5.1"}]}), 400),
    "empty batch": (
        "POST",
        INFER,
        _raw({"inputs": [{**ndarray([ROW])["inputs"][0], "shape": [0, 4], "data": []}]}),
        400,
    ),
    "1-D input": ("POST", INFER, _raw({"inputs": [{**ndarray([ROW])["inputs"][0], "shape": [4], "data": ROW}]}), 400),
    "shape and data disagree": (
        "POST",
        INFER,
        _raw({"inputs": [{**ndarray([ROW])["inputs"][0], "shape": [2, 4]}]}),
        400,
    ),
    "negative shape": ("POST", INFER, _raw({"inputs": [{**ndarray([ROW])["inputs"][0], "shape": [-1, -4]}]}), 400),
    "integer beyond the float range": ("POST", INFER, _raw(ndarray([[10**400, 3.5, 1.4, 0.2]])), 422),
    "value the model cannot score": ("POST", INFER, _raw(ndarray([[1e308, 1e308, 1e308, 1e308]])), 422),
    "nested deeper than Python recurses": ("POST", INFER, _deep(5000), 422),
    "oversized batch": ("POST", INFER, _raw(ndarray([ROW] * 10_001)), 413),
    "unknown model": ("POST", "/v2/models/nobody/infer", _raw(ndarray([ROW])), 404),
    "unknown path": ("POST", "/v2/models/iris/predict", _raw(ndarray([ROW])), 404),
    "unknown top-level path": ("GET", "/nothing/here", None, 404),
    "wrong method": ("GET", INFER, None, 405),
    "streaming variant": ("POST", f"/v2/models/{DEPLOYMENT}/infer_stream", _raw(ndarray([ROW])), 404),
    "feedback not JSON": ("POST", FEEDBACK, b"setosa", 400),
    "feedback without truth": ("POST", FEEDBACK, _raw({"request_id": "r"}), 400),
    "feedback truth not a list": ("POST", FEEDBACK, _raw({"request_id": "r", "truth": "setosa"}), 400),
    "feedback with the client's labels": ("POST", FEEDBACK, _raw({"predicted": ["setosa"], "truth": ["setosa"]}), 400),
    "feedback for an unknown request": ("POST", FEEDBACK, _raw({"request_id": "nobody", "truth": ["setosa"]}), 404),
    "feedback for an unknown model": ("POST", "/v2/models/nobody/feedback", _raw({"truth": []}), 404),
}


ENCODED = {
    "gzip bomb": (INFER, gzip_bomb(), "gzip", 413, "decompressed request body exceeds the limit of 1805536 bytes"),
    "gzip bomb to an unknown model": (
        "/v2/models/nobody/infer",
        gzip_bomb(),
        "gzip",
        413,
        "decompressed request body exceeds the limit of 65536 bytes",
    ),
    "gzip cut short": (INFER, gzip.compress(_raw(ndarray([ROW])))[:-12], "gzip", 400, "the gzip body is truncated"),
    "not gzip": (INFER, _raw(ndarray([ROW])), "gzip", 400, "the body is not valid gzip"),
    "another encoding": (INFER, _raw(ndarray([ROW])), "br", 415, "Content-Encoding 'br' is not accepted"),
}


@pytest.mark.parametrize(("path", "raw", "encoding", "status", "reason"), ENCODED.values(), ids=ENCODED.keys())
def test_compressed_bodies_are_refused_past_the_limit(
    client: Client, path: str, raw: bytes, encoding: str, status: int, reason: str
) -> None:
    reply = client.request("POST", path, raw=raw, headers={"Content-Encoding": encoding})
    assert (reply.status, reply.content_type) == (status, "application/json"), reply.text
    assert reason in reply.json["error"]


def test_a_gzip_request_is_answered_like_a_plain_one(client: Client) -> None:
    body = _raw(ndarray([ROW, ROW[::-1]]))
    plain = client.request("POST", INFER, raw=body)
    zipped = client.request(
        "POST", INFER, raw=gzip.compress(body) + gzip.compress(b""), headers={"Content-Encoding": "gzip"}
    )
    assert plain.status == zipped.status == 200, zipped.text
    assert outputs(zipped.json)[0] == outputs(plain.json)[0]


def test_a_decompression_bomb_costs_no_time_or_memory_and_the_server_stays_live(server: PredictorServer) -> None:
    """49 KB of gzip holding 25 million zeros: once 48 s and +1.3 GiB before a 413, the liveness probe stalled."""
    bomb = gzip_bomb()
    port = int(server.url.rsplit(":", 1)[1])
    resident = resident_mib(server.process.pid)
    probes: list[float] = []
    done = threading.Event()

    def probe() -> None:
        while not done.is_set():
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            started = time.perf_counter()
            connection.request("GET", "/v2/health/live")
            assert connection.getresponse().status == 200
            probes.append(time.perf_counter() - started)
            connection.close()
            time.sleep(0.02)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        started = time.perf_counter()
        connection.request(
            "POST", INFER, body=bomb, headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
        )
        response = connection.getresponse()
        answer = json.loads(response.read())
        took = time.perf_counter() - started
        time.sleep(0.1)
    finally:
        done.set()
        prober.join()
    assert response.status == 413 and "decompressed request body exceeds the limit" in answer["error"]
    assert took < 2.0
    assert resident_mib(server.process.pid, "VmHWM") - resident < 64
    assert probes and max(probes) < 1.0


def test_a_body_over_the_limit_is_read_and_dropped_so_the_client_gets_its_413(client: Client) -> None:
    padded = b" " * 8 * 2**20 + _raw(ndarray([ROW]))  # more than socket buffers hold
    reply = client.request("POST", INFER, raw=padded)
    assert (reply.status, reply.json) == (
        413,
        {"error": f"request body of {len(padded)} bytes exceeds the limit of 1805536 bytes"},
    )
    assert reply.headers.get("connection") != "close" and client.post(INFER, ndarray([ROW])).status == 200


def test_a_body_declared_too_large_is_refused_before_it_is_sent(server: PredictorServer) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {100 * 2**20}\r\n\r\n".encode()
        )
        head = _answer(sock)
    assert head.startswith("HTTP/1.1 413 ") and "exceeds the limit of 1805536 bytes" in head


def test_a_streamed_body_is_refused_once_past_the_limit(server: PredictorServer) -> None:
    """Chunked, with no length to refuse up front: counted as it arrives, dropped past the limit."""
    connection = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=30)
    chunks = (b"0," * 2**16 for _ in range(24))  # 3 MiB, sent chunked: http.client knows no length
    connection.request("POST", INFER, body=chunks, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read()) == {"error": "request body exceeds the limit of 1805536 bytes"}
    connection.request("POST", INFER, body=_raw(ndarray([ROW])), headers={"Content-Type": "application/json"})
    assert connection.getresponse().status == 200  # the connection stays usable
    connection.close()


def _answer(sock: socket.socket) -> str:
    """Everything the server sends until it closes the connection (it does after a 413)."""
    parts = []
    while chunk := sock.recv(65536):
        parts.append(chunk)
    return b"".join(parts).decode()


@pytest.mark.parametrize(("method", "path", "raw", "status"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_requests_get_a_4xx_json_answer(
    client: Client, method: str, path: str, raw: bytes | None, status: int
) -> None:
    reply = client.request(method, path, raw=raw)
    assert reply.status == status, reply.text
    assert reply.content_type.startswith("application/json"), reply.content_type
    reason = reply.json.get("error") or reply.json.get("detail")
    assert reason, reply.text


def test_error_messages_say_what_is_wrong(client: Client) -> None:
    reply = client.post(INFER, ndarray([["5.1", 3.5, 1.4, 0.2]]))
    assert reply.json == {"error": "feature 'sepal_length' row 0: expected a number, got str '5.1'"}
    reply = client.post(INFER, named([ROW], [*FEATURES[:3], "petal_size"]))
    assert "unknown feature(s) petal_size; expected sepal_length" in reply.json["error"]


def test_metrics_count_requests_classes_and_feedback(server: PredictorServer, client: Client, version: str) -> None:
    identity = {"deployment": DEPLOYMENT, "predictor": "main", "model_version": version}
    before = scrape(server.metrics_url)
    for _ in range(3):
        assert client.post(INFER, ndarray([ROW])).status == 200
    assert client.post(INFER, ndarray([ROW[:3]])).status == 400
    assert client.request("POST", INFER, raw=b"{").status == 422  # rejected by MLServer, counted all the same
    four = client.post(INFER, ndarray([ROW] * 4))  # the model answers setosa for each
    truth = ["setosa", "setosa", "setosa", "virginica"]
    feedback = client.post(FEEDBACK, {"request_id": four.headers["x-request-id"], "truth": truth})
    assert feedback.status == 200 and feedback.json["rows"] == 4 and feedback.json["correct"] == 3
    one = client.post(INFER, ndarray([ROW])).headers["x-request-id"]
    assert client.post(FEEDBACK, {"request_id": one, "truth": ["rose"]}).status == 400
    after = scrape(server.metrics_url)

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **identity, **labels) - total(before, name, **identity, **labels)

    counted = {
        (e, s): delta("kfp_mlops_requests_total", endpoint=e, status=s)
        for e, s in [
            ("predict", "200"),
            ("predict", "400"),
            ("predict", "422"),
            ("feedback", "200"),
            ("feedback", "400"),
        ]
    }
    assert counted == {
        ("predict", "200"): 5,
        ("predict", "400"): 1,
        ("predict", "422"): 1,
        ("feedback", "200"): 1,
        ("feedback", "400"): 1,
    }
    assert delta("kfp_mlops_request_duration_seconds_count", endpoint="predict", status="200") == 5
    assert delta("kfp_mlops_request_duration_seconds_sum", endpoint="predict", status="200") > 0
    assert delta("kfp_mlops_predictions_total", **{"class": "setosa"}) == 8
    assert delta("kfp_mlops_feedback_total") == 4 and delta("kfp_mlops_feedback_correct_total") == 3
    accuracy = total(after, "kfp_mlops_feedback_correct_total", **identity) / total(
        after, "kfp_mlops_feedback_total", **identity
    )
    assert total(after, "kfp_mlops_live_accuracy", **identity) == pytest.approx(accuracy)
    assert feedback.json["live_accuracy"] == pytest.approx(accuracy)
    # MLServer's own metrics are on the same endpoint.
    assert total(after, "model_infer_request_duration_count", model=DEPLOYMENT) > 0


def test_a_model_that_cannot_load_ends_the_server_with_a_clear_error(old_sklearn_model: str, tmp_path: Path) -> None:
    with pytest.raises(MlopsError, match="v2 server for predictor 'p' of 'old' exited with code 1") as caught:
        start_predictor(protocol="v2", model_uri=old_sklearn_model, predictor="p", deployment="old", workdir=tmp_path)
    last = str(caught.value).splitlines()[-1]
    assert last.startswith("error: cannot serve model 'old': model ")
    assert "trained with scikit-learn 0.24.2, this environment has 1.9." in last


def test_the_server_writes_only_to_its_work_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MLServer's defaults put metrics files and environments in the working folder (read-only in the image)."""
    from kfp_mlops.serving.runtimes.mlserver.server import server_settings

    for name, value in (("MODEL_URI", "gs://b/m"), ("DEPLOYMENT_NAME", "iris"), ("PREDICTOR_NAME", "main")):
        monkeypatch.setenv(name, value)
    monkeypatch.chdir("/")
    settings, _ = server_settings(tmp_path / "work")
    for folder in (settings.model_repository_root, settings.metrics_dir, settings.environments_dir):
        assert Path(folder).is_relative_to(tmp_path / "work"), folder


def test_stop_is_clean_and_idempotent(server: PredictorServer) -> None:
    server.stop()
    assert server.process.returncode == 0
    server.stop()
    port = int(server.url.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_every_request_is_logged_under_an_id_the_client_did_not_choose(iris_model: IrisModel, tmp_path: Path) -> None:
    """PREDICTION_LOG_URI set: the front's id, else the server's; refusals logged as such; flushed at stop.

    Once the V2 request ``id`` was the logged id: a client retrying with the same id made the log
    hold it twice, and the log join refused the whole log.
    """
    from kfp_mlops.serving.prediction_log import join, read_predictions

    log = str(tmp_path / "log")
    with serving(
        "v2", iris_model.uri, tmp_path / "server", {"PREDICTION_LOG_URI": log, "PREDICTION_LOG_FLUSH_SECONDS": "60"}
    ) as server:
        client = Client(server.url)
        fronted = client.post(INFER, named([ROW]), {"X-Request-Id": "front-1", "X-Client-Request-Id": "mine"})
        assert fronted.status == 200 and fronted.headers["x-request-id"] == "front-1"
        assert fronted.headers["x-client-request-id"] == "mine"
        retried = [client.post(INFER, {**named([ROW]), "id": "retried"}) for _ in range(2)]
        assert [r.status for r in retried] == [200, 200] and [r.json["id"] for r in retried] == ["retried"] * 2
        issued = [r.headers["x-request-id"] for r in retried]
        assert len(set(issued)) == 2 and all(re.fullmatch("[0-9a-f]{32}", i) for i in issued)
        batch = client.post(INFER, {**ndarray([ROW, ROW]), "id": "batch"})
        bad = client.post(
            INFER, {"inputs": [{"name": "sepal_length", "shape": [2], "datatype": "FP64", "data": [1.0]}]}
        )
        assert (batch.status, bad.status) == (200, 400)
        garbled = client.post(INFER, named([ROW]), {"X-Request-Id": "bad\tid"})  # not header-safe: replaced
        assert garbled.status == 200 and re.fullmatch("[0-9a-f]{32}", garbled.headers["x-request-id"])
        client.close()
    frame = read_predictions(log).set_index("request_id")  # written at shutdown (flush period 60 s)
    batch_id, bad_id = batch.headers["x-request-id"], bad.headers["x-request-id"]
    assert sorted(frame.index) == sorted(
        ["front-1", *issued, f"{batch_id}-0", f"{batch_id}-1", bad_id, garbled.headers["x-request-id"]]
    )
    assert set(frame["predictor"]) == {"main"}
    ok = frame[frame["status"] == "ok"]
    assert len(ok) == 6 and ok["score"].between(0, 1).all() and set(ok["decision"]) == {"setosa"}
    assert frame.loc["front-1", "features"] == dict(zip(FEATURES, ROW))
    refused = frame.loc[bad_id]
    assert (refused["status"], refused["decision"]) == ("rejected", None)
    assert refused["error"].startswith("400: ") and "shape" in refused["error"]
    assert len(join(log, datetime.now(timezone.utc))) == len(frame) == 7  # the join takes the log whole


@pytest.fixture(scope="module")
def categorical_client(categorical_model: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    with serving_client("v2", categorical_model, tmp_path_factory.mktemp("v2-categorical")) as client:
        yield client


def _colour(value: Any, size: Any = 2.0) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "size", "shape": [2], "datatype": "FP64", "data": [1.0, size]},
            {"name": "colour", "shape": [2], "datatype": "BYTES", "data": ["red", value]},
        ]
    }


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (_colour(1.0), "feature 'colour' row 1: expected a category string, got float 1.0"),
        (_colour(3), "feature 'colour' row 1: expected a category string, got int 3"),
        (_colour(True), "feature 'colour' row 1: expected a category string, got bool True"),
        (_colour(None), "feature 'colour' row 1: expected a category string, got NoneType None"),
        (_colour("blue", "big"), "feature 'size' row 1: expected a number, got str 'big'"),
        (
            {"inputs": [{**tensor, "shape": [1], "data": tensor["data"][1:]} for tensor in _colour(1.0)["inputs"]]},
            "feature 'colour' row 0: expected a category string, got float 1.0",
        ),
    ],
    ids=["float", "int", "bool", "null", "string in a numeric feature", "float alone"],
)
def test_a_value_of_the_wrong_kind_in_a_categorical_model_gets_a_400_naming_the_feature(
    categorical_client: Client, body: dict[str, Any], reason: str
) -> None:
    """A number in a categorical feature once raised inside the one-hot encoder (a 500), or, beside a
    string, was taken for an unknown category (a 200 with a wrong answer)."""
    assert categorical_client.post(INFER, _colour("blue")).status == 200
    reply = categorical_client.post(INFER, body)
    assert (reply.status, reply.json) == (400, {"error": reason})
