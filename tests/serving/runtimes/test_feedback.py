"""Both runtimes with a prediction log: predictions logged under issued ids, feedback only for those ids.

Real servers (MLServer; Seldon's wrapper in .venv-seldon) writing a real prediction log. Once the
Seldon runtime logged nothing, and feedback scored whatever labels the client sent as "predicted"
against its truth, so a client could move the live accuracy (and, through the log, a rollout)
with labels for requests it never made.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kfp_mlops.serving.local.servers import PredictorServer
from kfp_mlops.serving.prediction_log import read_labels, read_predictions
from tests.serving.support import DEPLOYMENT, FEATURES, Client, IrisModel, serving

ROW = [5.1, 3.5, 1.4, 0.2]  # setosa
VIRGINICA = [7.7, 3.0, 6.1, 2.3]
UUID = re.compile("[0-9a-f]{32}")


@dataclass
class Runtime:
    """A server logging to ``log``, and how to talk to it in its protocol."""

    protocol: str
    server: PredictorServer
    client: Client
    log: str

    def predict(self, rows: list[list[Any]], headers: dict[str, str] | None = None) -> tuple[int, str, Any]:
        """(status, issued request id, answer) of a prediction for ``rows``."""
        if self.protocol == "v2":
            body = {"inputs": [{"name": "x", "shape": [len(rows), 4], "datatype": "FP64", "data": rows}]}
            reply = self.client.post(f"/v2/models/{DEPLOYMENT}/infer", body, headers)
        else:
            reply = self.client.post("/api/v1.0/predictions", {"data": {"ndarray": rows}}, headers)
        request_id = {k.lower(): v for k, v in reply.headers.items()}["x-request-id"]
        if self.protocol == "seldon" and reply.status == 200:
            assert reply.json["meta"]["puid"] == request_id
        return reply.status, request_id, reply.json

    def feedback(self, request_id: str, truth: list[Any], claimed: list[str] | None = None) -> tuple[int, Any]:
        """(status, answer) of feedback on ``request_id``; ``claimed``: labels the client says were predicted."""
        if self.protocol == "v2":
            reply = self.client.post(f"/v2/models/{DEPLOYMENT}/feedback", {"request_id": request_id, "truth": truth})
            return reply.status, reply.json if reply.status == 200 else reply.json["error"]
        response: dict[str, Any] = {"meta": {"puid": request_id}}
        if claimed is not None:
            response["jsonData"] = {"labels": claimed}
        reply = self.client.post("/api/v1.0/feedback", {"response": response, "truth": {"data": {"ndarray": truth}}})
        return reply.status, reply.json["jsonData"] if reply.status == 200 else reply.json["status"]["info"]


@pytest.fixture(scope="module", params=["v2", "seldon"])
def runtime(
    request: pytest.FixtureRequest, iris_model: IrisModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runtime]:
    folder = tmp_path_factory.mktemp(f"feedback-{request.param}")
    log = str(folder / "log")
    env = {
        **_outside_store(iris_model),
        "PREDICTION_LOG_URI": log,
        "PREDICTION_LOG_POSITIVE_CLASS": "virginica",
        "PREDICTION_LOG_FLUSH_SECONDS": "0.2",
    }
    with serving(request.param, iris_model.uri, folder / "server", env) as server:
        client = Client(server.url)
        yield Runtime(request.param, server, client, log)
        client.close()


def _outside_store(model: IrisModel) -> dict[str, str]:
    """The opt-out that serves a model folder outside a model store, checked against its sha256."""
    return {"KFP_MLOPS_ALLOW_MODELS_OUTSIDE_STORE": "1", "MODEL_SHA256": model.metadata["model_sha256"]}


def _logged(log: str, ids: set[str], timeout: float = 10.0) -> pd.DataFrame:
    """The log's predictions once every id in ``ids`` is there (the servers write every 0.2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = read_predictions(log)
        if ids <= set(frame["request_id"]) or time.monotonic() > deadline:
            return frame.set_index("request_id")
        time.sleep(0.1)


def test_every_prediction_is_logged_under_the_id_the_server_issued(runtime: Runtime) -> None:
    fronted = runtime.predict([ROW], {"X-Request-Id": "front-1", "X-Client-Request-Id": "mine"})
    assert fronted[:2] == (200, "front-1")
    retried = [runtime.predict([VIRGINICA], {"X-Client-Request-Id": "retry"}) for _ in range(2)]
    issued = [request_id for _, request_id, _ in retried]
    assert len(set(issued)) == 2 and all(UUID.fullmatch(i) for i in issued)
    status, batch, _ = runtime.predict([ROW, VIRGINICA])
    refused_status, refused, _ = runtime.predict([ROW[:3]])
    assert (status, refused_status) == (200, 400)

    frame = _logged(runtime.log, {"front-1", *issued, f"{batch}-0", f"{batch}-1", refused})
    assert sorted(frame.index) == sorted(["front-1", *issued, f"{batch}-0", f"{batch}-1", refused])
    assert set(frame["predictor"]) == {"main"}
    assert frame.loc["front-1", "client_request_id"] == "mine"
    assert frame.loc[issued, "client_request_id"].tolist() == ["retry", "retry"]
    assert frame.loc["front-1", "features"] == dict(zip(FEATURES, ROW))
    # The positive class is virginica: its probability is the score, predicting it declines.
    assert frame.loc[issued, "decision"].tolist() == ["decline", "decline"]
    assert frame.loc[[f"{batch}-0", f"{batch}-1"], "decision"].tolist() == ["approve", "decline"]
    assert (frame.loc[issued, "score"] > 0.5).all() and frame.loc["front-1", "score"] < 0.1
    assert frame.loc["front-1", "status"] == "ok"
    row = frame.loc[refused]
    assert row["status"] == "rejected" and pd.isna(row["score"]) and pd.isna(row["decision"])
    assert row["error"].startswith("400: "), row["error"]


def test_feedback_labels_a_logged_request_with_the_servers_own_prediction(runtime: Runtime) -> None:
    status, request_id, _ = runtime.predict([ROW])  # the model predicts setosa
    assert status == 200
    claimed = ["virginica"] if runtime.protocol == "seldon" else None  # Seldon's message can carry labels
    status, answer = runtime.feedback(request_id, ["virginica"], claimed)
    assert status == 200, answer
    # Scored against what the server predicted (setosa), not against what the client claims.
    assert (answer["request_id"], answer["rows"], answer["correct"]) == (request_id, 1, 0)
    labels = read_labels(runtime.log).set_index("request_id")
    assert labels.loc[request_id, "label"] == 1  # virginica is the log's positive class

    status, reason = runtime.feedback(request_id, ["setosa"])
    assert (status, reason) == (409, f"feedback: request {request_id!r} is already labelled")
    assert len(read_labels(runtime.log)) == len(labels)


def test_feedback_for_a_multi_row_request_labels_every_row(runtime: Runtime) -> None:
    status, request_id, _ = runtime.predict([ROW, VIRGINICA, ROW])
    assert status == 200
    status, reason = runtime.feedback(request_id, ["setosa", "virginica"])
    assert (status, reason) == (400, f"feedback: request {request_id!r} had 3 row(s); got 2 true label(s)")
    status, reason = runtime.feedback(request_id, ["setosa", "rose", "setosa"])
    assert status == 400 and "unknown class(es) in feedback: rose" in reason
    status, answer = runtime.feedback(request_id, ["setosa", "virginica", "versicolor"])
    assert status == 200 and (answer["rows"], answer["correct"]) == (3, 2)
    labels = read_labels(runtime.log).set_index("request_id")["label"]
    assert [labels[f"{request_id}-{i}"] for i in range(3)] == [0, 1, 0]


def test_feedback_refuses_ids_the_server_did_not_answer(runtime: Runtime) -> None:
    before = len(read_labels(runtime.log))
    status, reason = runtime.feedback("made-up", ["setosa"])
    assert status == 404 and reason.startswith("feedback: request id 'made-up' was not answered by this server")
    assert "kfp-mlops labels import" in reason
    _, refused, _ = runtime.predict([ROW[:3]])
    status, reason = runtime.feedback(refused, ["setosa"])
    assert (status, reason) == (409, f"feedback: request {refused!r} cannot be labelled: it was refused (400)")
    assert runtime.feedback("", ["setosa"])[0] == 400
    _, request_id, _ = runtime.predict([ROW])
    assert runtime.feedback(request_id, [])[0] == 400
    assert len(read_labels(runtime.log)) == before


def test_the_last_records_are_written_when_the_server_stops(iris_model: IrisModel, tmp_path: Path) -> None:
    """The Seldon runtime writes from a thread of its gunicorn worker, and at the worker's exit."""
    log = str(tmp_path / "log")
    env = {**_outside_store(iris_model), "PREDICTION_LOG_URI": log, "PREDICTION_LOG_FLUSH_SECONDS": "600"}
    with serving("seldon", iris_model.uri, tmp_path / "server", env) as server:
        client = Client(server.url)
        ids = [client.post("/api/v1.0/predictions", {"data": {"ndarray": [ROW]}}).json["meta"]["puid"]]
        client.close()
        time.sleep(0.5)
        assert read_predictions(log).empty  # nothing written yet: the flush period is 10 minutes
    assert read_predictions(log)["request_id"].tolist() == ids
