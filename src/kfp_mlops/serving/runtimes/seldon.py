"""The ``seldon`` runtime: Seldon Core's Python wrapper (Seldon protocol) around ServedModel.

Runs in its own environment (``.venv-seldon`` from ``make seldon-env``, or ``images/seldon``):
``seldon-core-microservice kfp_mlops.serving.runtimes.seldon.SeldonRuntime --workers 1`` with
``MODEL_URI`` (or Seldon's ``model_uri`` parameter), ``DEPLOYMENT_NAME`` and ``PREDICTOR_NAME`` in
the environment. The model is loaded when the wrapper builds this class, before it starts its
servers, so a model that cannot load ends the process with a one-line error and exit code 1.

Endpoints (Seldon protocol):

* ``POST /api/v1.0/predictions``: ``{"data": {"ndarray": [[...], ...]}}`` with rows in the model's
  feature order, or with ``"names": [...]`` naming the columns (an ndarray of ``{feature: value}``
  records works too). The answer is ``{"jsonData": {"labels": [...], "probabilities": [[...]],
  "classes": [...]}, "meta": {"puid": <request id>, "tags": {"deployment", "predictor",
  "model_version"}}}``.
* ``POST /api/v1.0/feedback``: ``{"response": <an answer above>, "truth": {"data": {"ndarray":
  [true labels]}}}``, one label per row; the request is the answer's ``meta.puid``
  (:mod:`.feedback`: only requests this server answered, scored against what it predicted). The
  answer's ``jsonData`` counts the correct ones and the live accuracy.
* ``GET /health/ping``, ``GET /health/status``, ``GET /api/v1.0/metadata``.
* ``GET /prometheus`` on the HTTP port: the metrics of :mod:`kfp_mlops.serving.metrics`. They live
  in the gunicorn worker, hence one worker (use ``--threads`` for concurrency); Seldon's own
  metrics port serves only Seldon's counters, from another process.

Request ids, prediction logging and feedback work as in the v2 runtime: every prediction and
feedback answer carries ``X-Request-Id``, the id the front issued or the server's own
(:mod:`.request_ids`; the client's comes back as ``X-Client-Request-Id``); with
``PREDICTION_LOG_URI`` set, every answered, refused (4xx) or failed prediction row is logged under
it (:mod:`.prediction_logger`, written by a thread of the gunicorn worker, and when it exits).

Every malformed request gets a 4xx JSON answer in Seldon's error shape ``{"status": {"code",
"info", "reason", "status"}}``, unknown paths included (the wrapper alone answers those with 500).
A body over the model's :attr:`~kfp_mlops.serving.model.ServedModel.max_request_bytes` gets 413,
before it is parsed: on its ``Content-Length`` before it is read, or, streamed, once the limit is
read (Flask's ``MAX_CONTENT_LENGTH`` stops the read there); a compressed body gets 415 (the wrapper
would parse the compressed bytes). The rest of a refused body is read and dropped, within
:data:`~kfp_mlops.serving.model.MAX_REQUEST_BYTES`, so that the client gets the answer.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import time
from typing import Any

from flask import Blueprint, Response, g, has_request_context, request
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from seldon_core.flask_utils import SeldonMicroserviceException
from seldon_core.proto import prediction_pb2
from werkzeug.exceptions import HTTPException

from kfp_mlops.core.errors import MlopsError
from kfp_mlops.serving.metrics import FEEDBACK, METRICS_PATH, PREDICT, ServingMetrics
from kfp_mlops.serving.model import MAX_REQUEST_BYTES, InvalidRequest, Prediction, ServedModel
from kfp_mlops.serving.runtimes.environment import DEPLOYMENT_ENV, MODEL_URI_ENV, PREDICTOR_ENV
from kfp_mlops.serving.runtimes.feedback import FeedbackDesk, IssuedRequests
from kfp_mlops.serving.runtimes.prediction_logger import PredictionLogger
from kfp_mlops.serving.runtimes.request_ids import (
    CLIENT_REQUEST_ID_HEADER,
    REQUEST_ID_HEADER,
    client_request_id,
    issue_request_id,
)

logger = logging.getLogger("kfp_mlops.seldon")

# The wrapper's routes for each counted endpoint (v1.0, the legacy v0.1, and the internal ones).
_ENDPOINTS = {
    "/api/v1.0/predictions": PREDICT,
    "/api/v0.1/predictions": PREDICT,
    "/predict": PREDICT,
    "/api/v1.0/feedback": FEEDBACK,
    "/api/v0.1/feedback": FEEDBACK,
    "/send-feedback": FEEDBACK,
}


class SeldonRuntime:
    """The user model class Seldon's wrapper serves.

    Args:
        model_uri: the model folder; Seldon passes it as a parameter when its storage initializer
            downloaded the model. Default: ``MODEL_URI`` from the environment.
    """

    def __init__(self, model_uri: str = "") -> None:
        model_uri = model_uri or os.environ.get(MODEL_URI_ENV, "")
        deployment, predictor = os.environ.get(DEPLOYMENT_ENV, ""), os.environ.get(PREDICTOR_ENV, "")
        settings = {MODEL_URI_ENV: model_uri, DEPLOYMENT_ENV: deployment, PREDICTOR_ENV: predictor}
        missing = [name for name, value in settings.items() if not value]
        if missing:
            raise SystemExit(f"error: seldon model server: set {', '.join(missing)} in the environment")
        try:
            self._served = ServedModel.load(model_uri)
        except MlopsError as exc:
            raise SystemExit(f"error: cannot serve model {deployment!r}: {exc}") from None
        self._tags = {"deployment": deployment, "predictor": predictor, "model_version": self._served.version}
        self._metrics = ServingMetrics(deployment=deployment, predictor=predictor, model_version=self._served.version)
        self._log = PredictionLogger.from_env(
            predictor,
            self._served.version,
            list(self._served.classes),
            logger=logger,
            on_drop=self._metrics.observe_log_dropped,
        )
        self._issued = IssuedRequests()
        self._feedback = FeedbackDesk(self._served, self._metrics, self._issued, self._log)
        # Seldon registers this attribute's blueprint on its Flask app (its hook for error handlers).
        self.model_error_handler = self._blueprint()
        print(f"serving model {model_uri} version {self._served.version}", file=sys.stderr, flush=True)

    def load(self) -> None:
        """Called by the wrapper in the worker that serves: the log's last records are written when it exits."""
        if self._log is not None:
            atexit.register(self._log.stop)
            print(f"logging predictions to {self._log.root}", file=sys.stderr, flush=True)

    def tags(self) -> dict[str, str]:
        """The deployment, predictor and model version, in every answer's ``meta.tags``."""
        return dict(self._tags)

    def predict_raw(self, message: Any) -> dict[str, Any]:
        """Answers a Seldon prediction request (the decoded JSON body); logs it under the issued id."""
        request_id, client_id, started = _request_context()
        rows: Any = None
        names: list[str] | None = None

        def note(outcome: Prediction | InvalidRequest | str) -> None:
            # Remembered for feedback, and logged; a refused batch over max_batch is logged as one row.
            self._issued.note(request_id, outcome)
            if self._log is not None:
                listed = rows if isinstance(rows, list) else []
                readable = not isinstance(outcome, InvalidRequest) or len(listed) <= self._served.max_batch
                features = _features(rows, names or self._served.feature_names) if readable else []
                latency_ms = (time.perf_counter() - started) * 1000
                self._log.log(request_id, features, outcome, latency_ms=latency_ms, client_request_id=client_id)

        try:
            rows, names = _rows(message)
            prediction = self._served.predict(rows, names)
        except InvalidRequest as exc:
            note(exc)
            raise SeldonMicroserviceException(str(exc), status_code=exc.status) from None
        except Exception as exc:
            note(f"{type(exc).__name__}: {exc}")
            raise
        note(prediction)
        self._metrics.observe_predictions(prediction.labels)
        return {
            "jsonData": {
                "labels": prediction.labels,
                "probabilities": prediction.probabilities.tolist(),
                "classes": prediction.classes,
            },
            "meta": {"puid": request_id, "tags": self.tags()},
        }

    def send_feedback_raw(self, feedback: prediction_pb2.Feedback) -> prediction_pb2.SeldonMessage:
        """Records the true labels of the answer ``feedback.response`` (by its ``meta.puid``)."""
        doc = json_format.MessageToDict(feedback)
        request_id = _get(doc, "response", "meta", "puid")
        truth = _get(doc, "truth", "data", "ndarray")
        if not isinstance(request_id, str) or not isinstance(truth, list):
            raise SeldonMicroserviceException(
                'feedback: expected {"response": {"meta": {"puid": "<the answer\'s request id>"}}, '
                '"truth": {"data": {"ndarray": [one true label per row]}}}'
            )
        # One label per row, as a list or a one-column ndarray; protobuf turns every number into a float.
        truth = [_label(row[0] if isinstance(row, list) and len(row) == 1 else row) for row in truth]
        try:
            recorded = self._feedback.record(request_id, truth)
        except InvalidRequest as exc:
            raise SeldonMicroserviceException(f"feedback: {exc}", status_code=exc.status) from None
        answer = {"jsonData": recorded, "meta": {"tags": self.tags()}}
        return json_format.ParseDict(answer, prediction_pb2.SeldonMessage())

    def health_status(self) -> dict[str, Any]:
        """What ``/health/status`` answers: ready, and who is serving."""
        return {"ready": True, **self.tags()}

    def init_metadata(self) -> dict[str, Any]:
        """What ``/api/v1.0/metadata`` answers: the input forms and the output."""
        features = self._served.feature_names
        return {
            "name": self._tags["deployment"],
            "versions": [self._served.version],
            "platform": "scikit-learn",
            "inputs": [{"messagetype": "ndarray", "schema": {"names": features, "shape": [len(features)]}}],
            "outputs": [{"messagetype": "jsonData", "schema": {"classes": self._served.classes}}],
            "custom": self.tags(),
        }

    def _blueprint(self) -> Blueprint:
        blueprint = Blueprint("kfp_mlops", __name__)

        limit = self._served.max_request_bytes
        # Werkzeug stops a streamed body at MAX_CONTENT_LENGTH without a word: one byte more tells.
        blueprint.record_once(lambda state: state.app.config.update(MAX_CONTENT_LENGTH=limit + 1))

        @blueprint.before_app_request
        def start() -> None:
            g.kfp_mlops_started = time.perf_counter()
            g.kfp_mlops_request_id = issue_request_id(request.headers.get(REQUEST_ID_HEADER))
            g.kfp_mlops_client_request_id = client_request_id(request.headers.get(CLIENT_REQUEST_ID_HEADER))
            refusal = _body_refusal(limit)
            if refusal is not None:
                _drop_body()
                raise refusal
            if _ENDPOINTS.get(request.path) == FEEDBACK:
                _check_feedback(request.get_json(silent=True))

        @blueprint.after_app_request
        def count(response: Response) -> Response:
            endpoint = _ENDPOINTS.get(request.path)
            if endpoint is not None:
                self._metrics.observe_request(endpoint, response.status_code, time.perf_counter() - g.kfp_mlops_started)
                response.headers[REQUEST_ID_HEADER] = g.kfp_mlops_request_id
                if g.kfp_mlops_client_request_id:
                    response.headers[CLIENT_REQUEST_ID_HEADER] = g.kfp_mlops_client_request_id
            return response

        @blueprint.app_errorhandler(HTTPException)
        def http_error(exc: HTTPException) -> tuple[dict[str, Any], int]:
            # The wrapper's catch-all turns these (404, 405, 415...) into 500.
            code = exc.code or 400
            return _error(f"{exc.name}: {request.method} {request.path}", code, "MICROSERVICE_BAD_REQUEST"), code

        @blueprint.app_errorhandler(RecursionError)
        def too_deep(exc: RecursionError) -> tuple[dict[str, Any], int]:
            return _error("the request body is nested too deeply", 400, "MICROSERVICE_BAD_DATA"), 400

        @blueprint.route(METRICS_PATH, methods=["GET"])
        def metrics() -> Response:
            return Response(generate_latest(REGISTRY), mimetype=CONTENT_TYPE_LATEST)

        return blueprint


def _rows(message: Any) -> tuple[Any, list[str] | None]:
    """The rows of a Seldon request and the names of its columns (None: the model's order)."""
    data = message.get("data") if isinstance(message, dict) else None
    if not isinstance(data, dict) or "ndarray" not in data:
        raise InvalidRequest(
            'expected {"data": {"ndarray": [[...], ...]}} (optionally with "names"); '
            "tensor, jsonData, strData and binData payloads are not supported"
        )
    names = data.get("names")
    if names is not None and not isinstance(names, list):
        raise InvalidRequest(f"data.names must be a list of feature names, got {type(names).__name__}")
    # Seldon's clients send "names": [] for "no names".
    return data["ndarray"], names or None


def _request_context() -> tuple[str, str | None, float]:
    """The request's issued id, the client's own id and its start time (a gRPC request: new ones)."""
    if has_request_context():
        return g.kfp_mlops_request_id, g.kfp_mlops_client_request_id, g.kfp_mlops_started
    return issue_request_id(None), None, time.perf_counter()


def _features(rows: Any, columns: list[Any]) -> list[dict[str, Any]]:
    """Each row's inputs by feature name, as far as the request could be read (for the log)."""
    if not isinstance(rows, list):
        return []
    try:
        return [
            dict(row) if isinstance(row, dict) else dict(zip(columns, row)) if isinstance(row, list) else {}
            for row in rows
        ]
    except TypeError:  # names that cannot be keys (lists, objects): the refusal is logged without inputs
        return []


def _body_refusal(limit: int) -> SeldonMicroserviceException | None:
    """413 for a body over ``limit`` (declared, or streamed and read up to it), 415 for a compressed one."""
    length = request.content_length
    if length is not None and length > limit:
        return SeldonMicroserviceException(
            f"request body of {length} bytes exceeds the limit of {limit} bytes", status_code=413
        )
    if (request.content_encoding or "identity").lower() != "identity":
        return SeldonMicroserviceException(
            f"Content-Encoding {request.content_encoding!r} is not accepted: send an uncompressed body", status_code=415
        )
    # A streamed body (no Content-Length) is read now, up to the limit; Flask keeps it for the wrapper.
    if length is None and len(request.get_data(cache=True)) > limit:
        return SeldonMicroserviceException(f"request body exceeds the limit of {limit} bytes", status_code=413)
    return None


def _drop_body() -> None:
    """Reads and drops what is left of a refused body, up to MAX_REQUEST_BYTES in all.

    A client still sending it would otherwise meet a closed connection instead of the answer. A
    body declared larger than that is not read at all (the router never sends one).
    """
    if (request.content_length or 0) > MAX_REQUEST_BYTES:
        return
    stream, budget = request.environ["wsgi.input"], MAX_REQUEST_BYTES
    while budget > 0 and (chunk := stream.read(min(budget, 2**16))):
        budget -= len(chunk)


def _check_feedback(body: Any) -> None:
    """Refuses a feedback body that does not survive the trip through Seldon's protobuf.

    The wrapper answers 400 only for protobuf's ParseError; a body that is not an object, a number
    beyond the float range, or an infinity (parsed, but not serialisable back) would get a 500.
    """
    if not isinstance(body, dict):
        raise SeldonMicroserviceException("feedback: expected a JSON object with response and truth")
    try:
        json_format.MessageToDict(json_format.ParseDict(body, prediction_pb2.Feedback()))
    except Exception as exc:  # whatever protobuf refuses is the client's input
        raise SeldonMicroserviceException(f"feedback: not a Seldon Feedback message: {exc}") from None


def _get(doc: Any, *keys: str) -> Any:
    for key in keys:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return doc


def _label(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _error(message: str, code: int, reason: str) -> dict[str, Any]:
    return SeldonMicroserviceException(message, status_code=code, reason=reason).to_dict()
