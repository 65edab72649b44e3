"""The ``v2`` runtime: an MLServer 1.7 custom runtime serving a model folder through ServedModel.

Run ``python -m kfp_mlops.serving.mlserver_runtime [FOLDER]`` with ``MODEL_URI``,
``DEPLOYMENT_NAME`` and ``PREDICTOR_NAME`` in the environment (MLServer's own ``MLSERVER_*``
variables set its ports and host). The model is served under the deployment's name; the settings
it runs with are written to FOLDER (default: the current folder) as ``settings.json`` and
``model-settings.json``. If the model cannot be loaded, the error is logged and the process exits
with code 1 (plain ``mlserver start`` logs it and exits 0).

Settings decided here whatever the environment says: ``debug: false`` (MLServer's default is
true) and ``parallel_workers: 0``, so the model runs in the server process. With parallel workers
MLServer 1.7 ignores SIGTERM, crashes with uvloop >= 0.22, and the metrics of
:mod:`kfp_mlops.serving.metrics` would live in worker processes its metrics endpoint cannot see;
in-process, MLServer's metrics endpoint exports them with its own.

Endpoints (Open Inference Protocol; ``<m>`` is the deployment name):

* ``POST /v2/models/<m>/infer``: either one input per feature (``{"name": "sepal_length",
  "shape": [rows], "datatype": "FP64", "data": [...]}``, categorical features as ``BYTES``), or
  one 2-D input of shape ``[rows, features]`` in the model's feature order (declared as
  :data:`NDARRAY_INPUT`; any name that is not a feature's is taken as this form). The response
  has outputs ``label`` (BYTES, ``[rows]``) and ``probabilities`` (FP64, ``[rows, classes]``,
  with the class order in its ``parameters.classes``), and ``parameters`` naming the deployment,
  predictor and model version.
* ``POST /v2/models/<m>/feedback``: ``{"predicted": [labels], "truth": [labels]}`` (the labels
  the model answered, and the true ones); the answer counts the correct ones and the live
  accuracy. The Open Inference Protocol has no feedback call; this one is MLServer's custom
  handler mechanism.
* ``GET /v2/models/<m>`` (metadata: every input form, the outputs, the version),
  ``GET /v2/health/ready``, ``GET /v2/health/live``; metrics on ``MLSERVER_METRICS_PORT`` at
  ``MLSERVER_METRICS_ENDPOINT``.

**Prediction log**: with ``PREDICTION_LOG_URI`` set (a :mod:`kfp_mlops.serving.prediction_log` root),
every answered or failed ``infer`` row is logged through a
:class:`~kfp_mlops.serving.prediction_log.PredictionLogWriter`: the request id (the ``X-Request-Id``
header the router sets, else the V2 request ``id``; row ``i`` of a multi-row request gets
``<id>-<i>``), the predictor, the model version, the inputs, the score (the probability of
class ``PREDICTION_LOG_POSITIVE_CLASS``, default ``"1"``; a model without that class logs its
top probability), the decision (``decline`` when the score reaches
``PREDICTION_LOG_THRESHOLD``, default: when the model predicts the positive class; else
``approve``; a model without the class logs its predicted label), the latency and ``ok`` /
``error``. Records are written every ``PREDICTION_LOG_FLUSH_SECONDS`` (default 1) and at
shutdown; a logging failure is reported in the server log and never fails a prediction.

Every malformed request gets a 4xx JSON answer ``{"error": "..."}`` (MLServer's own, 422
``{"detail": [...]}``, when the body is not JSON or not an inference request at all); the
streaming and ``generate`` variants of ``infer`` are refused with 404.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from mlserver import MLModel, MLServer
from mlserver.errors import MLServerError, ModelNotFound
from mlserver.handlers import custom_handler
from mlserver.logging import configure_logger
from mlserver.settings import ModelParameters, ModelSettings, Settings
from mlserver.types import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    MetadataModelResponse,
    MetadataTensor,
    Parameters,
    RequestInput,
    ResponseOutput,
)
from mlserver.utils import install_uvloop_event_loop
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kfp_mlops.core.errors import MlopsError
from kfp_mlops.serving.metrics import FEEDBACK, PREDICT, ServingMetrics
from kfp_mlops.serving.model import InvalidRequest, ServedModel
from kfp_mlops.serving.servers import DEPLOYMENT_ENV, MODEL_URI_ENV, PREDICTION_LOG_ENV, PREDICTOR_ENV

# A child of MLServer's logger, so it goes through MLServer's handler and format.
logger = logging.getLogger("mlserver.kfp_mlops")

RUNTIME = "kfp_mlops.serving.mlserver_runtime.KfpMlopsRuntime"
NDARRAY_INPUT = "input-0"  # the name MLServer's own codecs give a single tensor
LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"
_REFUSED = {"generate", "infer_stream", "generate_stream"}
# MLServer echoes a request's id in the Ce-Id and Ce-Requestid response headers.
_HEADER_SAFE_ID = re.compile(r"[\x20-\x7e]{0,256}")

# Served models by name (one per server), for the request middleware; and load failures, for the
# exit code. Module state is safe because the model runs in the server process (parallel_workers 0).
_ACTIVE: dict[str, ServingMetrics] = {}
_LOAD_FAILURES: list[str] = []
POSITIVE_CLASS_ENV = "PREDICTION_LOG_POSITIVE_CLASS"
THRESHOLD_ENV = "PREDICTION_LOG_THRESHOLD"
FLUSH_SECONDS_ENV = "PREDICTION_LOG_FLUSH_SECONDS"
REQUEST_ID_HEADER = "x-request-id"
DECLINE, APPROVE = "decline", "approve"


class PredictionLogger:
    """Turns answered (or failed) requests into prediction-log records; flushes in the background."""

    def __init__(
        self,
        root: str,
        *,
        predictor: str,
        version: str,
        classes: list[str],
        positive: str = "1",
        threshold: float | None = None,
        flush_seconds: float = 1.0,
    ) -> None:
        from kfp_mlops.serving.prediction_log import PredictionLogWriter

        self.writer = PredictionLogWriter(root, max_records=10_000, max_age_s=float("inf"))
        self.predictor = predictor
        self.version = version
        self.positive = positive
        self.positive_index = classes.index(positive) if positive in classes else None
        self.threshold = threshold
        self.flush_seconds = flush_seconds
        self._task: asyncio.Task | None = None

    @classmethod
    def from_env(cls, predictor: str, version: str, classes: list[str]) -> PredictionLogger | None:
        """A logger when :data:`PREDICTION_LOG_ENV` is set, else None."""
        root = os.environ.get(PREDICTION_LOG_ENV)
        if not root:
            return None
        threshold = os.environ.get(THRESHOLD_ENV)
        return cls(
            root,
            predictor=predictor,
            version=version,
            classes=classes,
            positive=os.environ.get(POSITIVE_CLASS_ENV, "1"),
            threshold=float(threshold) if threshold else None,
            flush_seconds=float(os.environ.get(FLUSH_SECONDS_ENV, "1")),
        )

    def start(self) -> None:
        """Starts the periodic flush on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._flush_periodically())

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            await asyncio.to_thread(self.flush)

    def flush(self) -> None:
        """Writes every buffered record; a failure is logged (the records stay for the next flush)."""
        try:
            self.writer.flush()
        except Exception as exc:
            logger.warning("prediction log %s: flush failed, will retry: %s", self.writer.root, exc)

    def stop(self) -> None:
        """Stops the periodic flush and writes what is buffered."""
        if self._task is not None:
            try:
                self._task.cancel()
            except RuntimeError:  # its event loop is already closed (shutdown)
                pass
            self._task = None
        self.flush()

    def log(
        self,
        request_id: str,
        features: list[dict[str, Any]],
        *,
        latency_ms: float,
        labels: list[str] | None = None,
        probabilities: Any = None,
        error: str | None = None,
    ) -> None:
        """Logs one record per row (``error`` set: every row failed)."""
        from datetime import datetime, timedelta, timezone

        from kfp_mlops.serving.prediction_log import PredictionRecord

        now = datetime.now(timezone.utc) - timedelta(milliseconds=latency_ms)  # when the request arrived
        rows = max(len(features), 1)
        for i in range(rows):
            row_id = request_id if rows == 1 else f"{request_id}-{i}"
            inputs = features[i] if i < len(features) else {}
            try:
                if error is not None:
                    record = PredictionRecord(
                        row_id,
                        self.predictor,
                        self.version,
                        inputs,
                        None,
                        None,
                        latency_ms,
                        "error",
                        now,
                        error=error[:500],
                    )
                else:
                    score, decision = self._score(labels[i], probabilities[i])
                    record = PredictionRecord(
                        row_id, self.predictor, self.version, inputs, score, decision, latency_ms, "ok", now
                    )
                self.writer.log(record)
            except Exception as exc:
                logger.warning("prediction log: request %s not logged: %s", row_id, exc)

    def _score(self, label: str, probabilities: Any) -> tuple[float, str]:
        if self.positive_index is None:
            return float(max(probabilities)), str(label)
        score = float(probabilities[self.positive_index])
        if self.threshold is None:
            declined = str(label) == self.positive
        else:
            declined = score >= self.threshold
        return score, DECLINE if declined else APPROVE


_LOGGERS: list[PredictionLogger] = []


class KfpMlopsRuntime(MLModel):
    """Serves the model folder in ``parameters.uri``; ``parameters.extra.predictor`` names the predictor."""

    async def load(self) -> bool:
        """Loads the model folder (local or ``gs://``), checking its scikit-learn version."""
        parameters = self.settings.parameters or ModelParameters()
        try:
            if not parameters.uri:
                raise MlopsError("no model folder in the model settings (parameters.uri)")
            self._served = ServedModel.load(parameters.uri)
        except Exception as exc:  # every failure must end the process non-zero, not only MlopsError
            reason = str(exc) if isinstance(exc, MlopsError) else f"{parameters.uri}: {type(exc).__name__}: {exc}"
            _LOAD_FAILURES.append(f"cannot serve model {self.name!r}: {reason}")
            logger.error("%s", _LOAD_FAILURES[-1])
            raise
        predictor = str((parameters.extra or {}).get("predictor", ""))
        self._tags = {"deployment": self.name, "predictor": predictor, "model_version": self._served.version}
        self._metrics = ServingMetrics(**self._tags)
        _ACTIVE[self.name] = self._metrics
        self._log = PredictionLogger.from_env(predictor, self._served.version, list(self._served.classes))
        if self._log is not None:
            self._log.start()
            _LOGGERS.append(self._log)
            logger.info("logging predictions to %s", self._log.writer.root)
        logger.info("serving model %s version %s from %s", self.name, self._served.version, parameters.uri)
        return True

    async def unload(self) -> bool:
        """Stops counting requests for this model (unless a reloaded copy took its place)."""
        if _ACTIVE.get(self.name) is getattr(self, "_metrics", None):
            _ACTIVE.pop(self.name, None)
        log = getattr(self, "_log", None)
        if log is not None:
            log.stop()
            if log in _LOGGERS:
                _LOGGERS.remove(log)
        return True

    async def metadata(self) -> MetadataModelResponse:
        """Every accepted input form, the outputs, and the deployment, predictor and model version."""
        served = self._served
        kinds = [served.feature_kinds.get(name, "numeric") for name in served.feature_names]
        inputs = [
            MetadataTensor(name=name, datatype=_datatype(kind), shape=[-1])
            for name, kind in zip(served.feature_names, kinds)
        ]
        inputs.append(
            MetadataTensor(
                name=NDARRAY_INPUT,
                datatype=Datatype.FP64 if set(kinds) == {"numeric"} else Datatype.BYTES,
                shape=[-1, len(served.feature_names)],
                parameters=Parameters(features=served.feature_names),
            )
        )
        outputs = [
            MetadataTensor(name=LABEL_OUTPUT, datatype=Datatype.BYTES, shape=[-1]),
            MetadataTensor(
                name=PROBABILITIES_OUTPUT,
                datatype=Datatype.FP64,
                shape=[-1, len(served.classes)],
                parameters=Parameters(classes=served.classes),
            ),
        ]
        return MetadataModelResponse(
            name=self.name,
            platform="scikit-learn",
            versions=[served.version],
            inputs=inputs,
            outputs=outputs,
            parameters=Parameters(**self._tags, max_batch=served.max_batch),
        )

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """Validates the request, predicts every row, and counts the predicted classes."""
        if payload.id is not None and not _HEADER_SAFE_ID.fullmatch(payload.id):
            # Else a control character breaks the HTTP answer, and a non-Latin-1 one makes it a 500.
            raise MLServerError(f"id {payload.id[:40]!r}: use at most 256 printable ASCII characters")
        started = time.perf_counter()
        rows: list[list[Any]] = []
        names: list[str] | None = None
        try:
            rows, names = request_rows(payload.inputs, self._served.feature_names)
            prediction = self._served.predict(rows, names)
        except InvalidRequest as exc:
            self._log_request(payload, rows, names, started, error=str(exc))
            raise MLServerError(str(exc), status_code=exc.status) from None
        except Exception as exc:
            self._log_request(payload, rows, names, started, error=f"{type(exc).__name__}: {exc}")
            raise
        self._log_request(
            payload, rows, names, started, labels=prediction.labels, probabilities=prediction.probabilities
        )
        self._metrics.observe_predictions(prediction.labels)
        rows_out, classes = prediction.probabilities.shape
        return InferenceResponse(
            model_name=self.name,
            model_version=self._served.version,
            parameters=Parameters(**self._tags),
            outputs=[
                ResponseOutput(name=LABEL_OUTPUT, shape=[rows_out], datatype=Datatype.BYTES, data=prediction.labels),
                ResponseOutput(
                    name=PROBABILITIES_OUTPUT,
                    shape=[rows_out, classes],
                    datatype=Datatype.FP64,
                    data=prediction.probabilities.ravel().tolist(),
                    parameters=Parameters(classes=prediction.classes),
                ),
            ],
        )

    def _log_request(
        self, payload: InferenceRequest, rows: list[list[Any]], names: list[str] | None, started: float, **outcome: Any
    ) -> None:
        if self._log is None:
            return
        headers = (payload.parameters.headers if payload.parameters is not None else None) or {}
        request_id = next((str(v) for k, v in headers.items() if k.lower() == REQUEST_ID_HEADER and v), None)
        request_id = request_id or payload.id or ""
        if not request_id:
            logger.warning("prediction log: a request without an id was not logged")
            return
        columns = names or self._served.feature_names
        features = [
            {name: (value.decode() if isinstance(value, bytes) else value) for name, value in zip(columns, row)}
            for row in rows
            if isinstance(row, (list, tuple))
        ]
        self._log.log(request_id, features, latency_ms=(time.perf_counter() - started) * 1000, **outcome)

    @custom_handler(rest_path="/v2/models/{model_name}/feedback")
    async def feedback(self, request: Request, model_name: str) -> dict[str, Any]:
        """Scores the labels the model answered against the true ones; updates the live accuracy."""
        if model_name != self.name:
            raise ModelNotFound(model_name)
        try:
            body = await request.json()
        except ValueError as exc:  # json's and orjson's decode errors are ValueErrors
            raise MLServerError(f"feedback: the body is not JSON: {exc}") from None
        if not isinstance(body, dict) or not all(isinstance(body.get(k), list) for k in ("predicted", "truth")):
            raise MLServerError('feedback: expected {"predicted": [labels...], "truth": [labels...]}')
        try:
            correct = self._served.correct_answers(body["predicted"], body["truth"])
        except InvalidRequest as exc:
            raise MLServerError(f"feedback: {exc}", status_code=exc.status) from None
        rows = len(body["truth"])
        accuracy = self._metrics.observe_feedback(rows, correct)
        return {"rows": rows, "correct": correct, "live_accuracy": accuracy, **self._tags}


def request_rows(inputs: list[RequestInput], features: list[str]) -> tuple[list[list[Any]], list[str] | None]:
    """The rows of a V2 request, and the feature name of each column (None: the model's order).

    Raises:
        InvalidRequest: no inputs, a shape that does not fit the data or the form, or feature
            inputs with different numbers of rows.
    """
    if not inputs:
        raise InvalidRequest(
            f"no inputs: send one input per feature ({', '.join(features)}) "
            f"or one input {NDARRAY_INPUT!r} of shape [rows, {len(features)}]"
        )
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
        values = _values(tensor)
        return [values[start : start + width] for start in range(0, len(values), width)], None
    columns = []
    for tensor in inputs:
        if not (len(tensor.shape) == 1 or (len(tensor.shape) == 2 and tensor.shape[1] == 1)):
            raise InvalidRequest(
                f"input {tensor.name!r}: a feature's input has shape [rows] or [rows, 1], got {tensor.shape}"
            )
        columns.append(_values(tensor))
    if len({len(column) for column in columns}) > 1:
        counts = ", ".join(f"{t.name} {len(c)}" for t, c in zip(inputs, columns))
        raise InvalidRequest(f"feature inputs have different numbers of rows: {counts}")
    return [list(row) for row in zip(*columns)], [tensor.name for tensor in inputs]


def _values(tensor: RequestInput) -> list[Any]:
    """The tensor's data, flattened, after checking it fills its shape exactly."""
    if any(size < 0 for size in tensor.shape):
        raise InvalidRequest(f"input {tensor.name!r}: negative size in shape {tensor.shape}")
    data = tensor.data.root
    if not isinstance(data, list):
        raise InvalidRequest(f"input {tensor.name!r}: data must be a list, got {type(data).__name__}")
    values: list[Any] = []
    # Iterative: JSON nests deeper than Python's recursion limit.
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            values.append(item)
        else:
            stack.pop()
    expected = math.prod(tensor.shape)
    if len(values) != expected:
        raise InvalidRequest(f"input {tensor.name!r}: shape {tensor.shape} needs {expected} values, got {len(values)}")
    return values


def _datatype(kind: str) -> Datatype:
    return Datatype.FP64 if kind == "numeric" else Datatype.BYTES


class RequestMetrics:
    """ASGI middleware: counts and times requests to a served model's ``infer`` and ``feedback``.

    It sees every answer, including MLServer's own 422s for bodies that are not inference requests,
    which never reach the runtime. It also refuses the ``generate`` and streaming variants of
    ``infer``, whose errors would otherwise break an already started stream.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts = scope["path"].split("/") if scope["type"] == "http" else []
        # /v2/models/<m>/<verb> or /v2/models/<m>/versions/<v>/<verb>
        served = len(parts) in (5, 7) and parts[1:3] == ["v2", "models"] and parts[3] in _ACTIVE
        if not served or (len(parts) == 7 and parts[4] != "versions"):
            await self.app(scope, receive, send)
            return
        if parts[-1] in _REFUSED:
            await JSONResponse(
                {"error": f"{parts[-1]} is not served: use POST /v2/models/{parts[3]}/infer"}, status_code=404
            )(scope, receive, send)
            return
        endpoint = {"infer": PREDICT, "feedback": FEEDBACK}.get(parts[-1])
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        status = 500  # unless a response starts
        started = time.perf_counter()

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            metrics = _ACTIVE.get(parts[3])
            if metrics is not None:
                metrics.observe_request(endpoint, status, time.perf_counter() - started)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # A bug, not a bad request: still a JSON answer (Starlette's default is plain text).
    return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)


def instrument(app: FastAPI) -> None:
    """Adds the request metrics and the JSON answer for unexpected errors to MLServer's REST app."""
    app.add_middleware(RequestMetrics)
    app.add_exception_handler(Exception, _internal_error)


def server_settings(folder: Path) -> tuple[Settings, ModelSettings]:
    """MLServer's settings from the environment, with this runtime's fixed choices.

    Raises:
        MlopsError: the model URI, deployment or predictor is not set.
    """
    missing = [name for name in (MODEL_URI_ENV, DEPLOYMENT_ENV, PREDICTOR_ENV) if not os.environ.get(name)]
    if missing:
        raise MlopsError(f"v2 model server: set {', '.join(missing)} in the environment")
    settings = Settings(debug=False, parallel_workers=0, model_repository_root=str(folder))
    model = ModelSettings(
        name=os.environ[DEPLOYMENT_ENV],
        implementation=RUNTIME,
        parameters=ModelParameters(uri=os.environ[MODEL_URI_ENV], extra={"predictor": os.environ[PREDICTOR_ENV]}),
    )
    return settings, model


async def _serve(settings: Settings, model: ModelSettings) -> None:
    server = MLServer(settings)
    # MLServer offers no hook on its REST app; 1.7.1 is pinned exactly and the tests exercise this.
    instrument(server._rest_server._app)
    await server.start([model])


def main(argv: list[str] | None = None) -> int:
    """Serves the model until SIGTERM/SIGINT; returns 1 if it could not be loaded, 2 if misconfigured."""
    parser = argparse.ArgumentParser(
        prog="python -m kfp_mlops.serving.mlserver_runtime",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "folder",
        nargs="?",
        default=".",
        type=Path,
        help="where the effective settings.json and model-settings.json are written",
    )
    args = parser.parse_args(argv)
    try:
        settings, model = server_settings(args.folder)
    except MlopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.folder.mkdir(parents=True, exist_ok=True)
    (args.folder / "settings.json").write_text(settings.model_dump_json(indent=2) + "\n")
    (args.folder / "model-settings.json").write_text(
        model.model_dump_json(indent=2, by_alias=True, exclude_none=True, exclude={"parallel_workers", "warm_workers"})
        + "\n"
    )
    configure_logger(settings)
    install_uvloop_event_loop()
    try:
        asyncio.run(_serve(settings, model))
    finally:
        for log in list(_LOGGERS):
            log.stop()  # the last records, at shutdown
    if _LOAD_FAILURES:
        print(f"error: {'; '.join(_LOAD_FAILURES)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # Run the importable module's main, not this __main__ copy: MLServer imports the runtime class
    # from kfp_mlops.serving.mlserver_runtime, and main() must see that module's load failures.
    from kfp_mlops.serving.mlserver_runtime import main as _main

    sys.exit(_main())
