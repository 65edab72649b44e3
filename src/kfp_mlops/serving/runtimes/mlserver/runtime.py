"""The v2 runtime's model: an MLServer custom runtime serving a model folder through ServedModel.

MLServer builds :class:`KfpMlopsRuntime` from the model settings :mod:`.server` writes
(``implementation`` is :data:`RUNTIME`): ``parameters.uri`` is the model folder (local or
``gs://``), ``parameters.extra.predictor`` the predictor's name, and the model is served under the
deployment's name. Endpoints (``<m>`` is the deployment name):

* ``POST /v2/models/<m>/infer``: either input form of :mod:`.decoding`. The response has outputs
  ``label`` (BYTES, ``[rows]``) and ``probabilities`` (FP64, ``[rows, classes]``, with the class
  order in its ``parameters.classes``), and ``parameters`` naming the deployment, predictor and
  model version. A request ``id`` must be printable ASCII (MLServer echoes it in a header).
* ``POST /v2/models/<m>/feedback``: ``{"predicted": [labels], "truth": [labels]}`` (the labels
  the model answered, and the true ones); the answer counts the correct ones and the live
  accuracy. The Open Inference Protocol has no feedback call; this one is MLServer's custom
  handler mechanism.
* ``GET /v2/models/<m>``: metadata, every input form, the outputs, the version.

Every ``infer`` and ``feedback`` answer carries ``X-Request-Id``: the id its front (the local
router, a mesh's edge proxy) issued, else one the server issues (:mod:`.middleware`); never an id the
client chose -- the V2 request ``id`` stays the client's and is echoed in the body as MLServer does.
With a prediction log configured (:mod:`.prediction_logger`), every answered, refused (4xx) or
failed ``infer`` row is logged under that id, so a client that retries with the same id cannot
make the log hold one id twice.

A numeric model's request of plain numbers is decoded column-wise into one float matrix
(:func:`.decoding.request_matrix`); any other request row by row, value by value. Small requests
(at most half of ``BATCH_MAX_ROWS`` rows, default 64) are scored in micro-batches with concurrent
ones (:mod:`.batching`), waiting at most ``BATCH_WAIT_MS`` milliseconds (default 2; 0 turns it
off). A request whose shapes declare more than :data:`INLINE_VALUES` values is decoded and scored
in a worker thread, so that the event loop keeps answering other requests and the liveness probe.
Plain numeric requests -- most traffic -- reach :meth:`KfpMlopsRuntime.predict_plain` from
:mod:`.plain_infer` without MLServer's request and response models; the rest come through
:meth:`KfpMlopsRuntime.predict`. Both decode, score, log and answer the same way. Once the model is
loaded the heap is frozen (``gc.freeze``), so full collections skip the long-lived objects.

The module keeps the served runtimes (for the middleware of :mod:`.middleware` and :mod:`.plain_infer`),
load failures (for the exit code) and prediction loggers (flushed at shutdown) in module state,
which is safe because the model runs in the server process (``parallel_workers: 0``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import Request
from mlserver import MLModel
from mlserver.errors import MLServerError, ModelNotFound
from mlserver.handlers import custom_handler
from mlserver.settings import ModelParameters
from mlserver.types import (
    Datatype,
    InferenceRequest,
    InferenceResponse,
    MetadataModelResponse,
    MetadataTensor,
    Parameters,
    RequestInput,
)

from kfp_mlops.core.errors import MlopsError
from kfp_mlops.serving.metrics import ServingMetrics
from kfp_mlops.serving.model import InvalidRequest, Prediction, ServedModel
from kfp_mlops.serving.runtimes.environment import BATCH_MAX_ROWS_ENV, BATCH_WAIT_MS_ENV
from kfp_mlops.serving.runtimes.feedback import FeedbackDesk, IssuedRequests
from kfp_mlops.serving.runtimes.mlserver.batching import DEFAULT_MAX_ROWS, DEFAULT_MAX_WAIT_S, MicroBatcher
from kfp_mlops.serving.runtimes.mlserver.decoding import NDARRAY_INPUT, declared_values, request_matrix, request_rows
from kfp_mlops.serving.runtimes.prediction_logger import PredictionLogger
from kfp_mlops.serving.runtimes.request_ids import CLIENT_REQUEST_ID_HEADER, HEADER_SAFE_ID, REQUEST_ID_HEADER

if TYPE_CHECKING:
    import numpy as np

# A child of MLServer's logger, so it goes through MLServer's handler and format.
logger = logging.getLogger("mlserver.kfp_mlops")

LABEL_OUTPUT = "label"
PROBABILITIES_OUTPUT = "probabilities"
INLINE_VALUES = 4096  # more declared values than this: decoded and scored off the event loop

_T = TypeVar("_T")
_RUNTIMES: dict[str, KfpMlopsRuntime] = {}  # by the name each loaded model is served under
_LOAD_FAILURES: list[str] = []
_LOGGERS: list[PredictionLogger] = []


def served_runtime(model_name: str) -> KfpMlopsRuntime | None:
    """The runtime serving the model named ``model_name``, or None (not ours)."""
    return _RUNTIMES.get(model_name)


def served_metrics(model_name: str) -> ServingMetrics | None:
    """The metrics of the model this runtime serves under ``model_name``, or None (not ours)."""
    runtime = _RUNTIMES.get(model_name)
    return None if runtime is None else runtime._metrics


def served_body_limit(model_name: str) -> int | None:
    """The largest request body the model served under ``model_name`` accepts, or None (not ours)."""
    runtime = _RUNTIMES.get(model_name)
    return None if runtime is None else runtime._served.max_request_bytes


def load_failures() -> list[str]:
    """Why each model that failed to load could not be served."""
    return list(_LOAD_FAILURES)


def stop_prediction_loggers() -> None:
    """Stops every prediction logger, writing its last records (at shutdown)."""
    for log in list(_LOGGERS):
        log.stop()


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
        self._metrics = ServingMetrics(deployment=self.name, predictor=predictor, model_version=self._served.version)
        self._batcher = _batcher(self._served)
        self._log = PredictionLogger.from_env(
            predictor,
            self._served.version,
            list(self._served.classes),
            logger=logger,
            on_drop=self._metrics.observe_log_dropped,
        )
        self._feedback = FeedbackDesk(self._served, self._metrics, IssuedRequests(), self._log)
        if self._log is not None:
            _LOGGERS.append(self._log)
            logger.info("logging predictions to %s", self._log.writer.root)
        _RUNTIMES[self.name] = self
        # What is alive now (MLServer, the libraries, the model) leaves the collector's generations:
        # a full collection then walks only what requests create. Measured in bench/bench_serving.py,
        # single-row p99 at 16 connections fell from 112 to 21 ms (the tail was full collections).
        gc.collect()
        gc.freeze()
        logger.info("serving model %s version %s from %s", self.name, self._served.version, parameters.uri)
        return True

    async def unload(self) -> bool:
        """Stops counting requests for this model (unless a reloaded copy took its place)."""
        if _RUNTIMES.get(self.name) is self:
            _RUNTIMES.pop(self.name)
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
            parameters=Parameters(**self._tags, max_batch=served.max_batch, max_request_bytes=served.max_request_bytes),
        )

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """Validates the request, predicts every row, and counts the predicted classes."""
        if payload.id is not None and not HEADER_SAFE_ID.fullmatch(payload.id):
            # Else a control character breaks the HTTP answer, and a non-Latin-1 one makes it a 500.
            raise MLServerError(f"id {payload.id[:40]!r}: use at most 256 printable ASCII characters")
        started = time.perf_counter()
        run = asyncio.to_thread if declared_values(payload.inputs) > INLINE_VALUES else _inline
        headers = (payload.parameters.headers if payload.parameters is not None else None) or {}
        # The middleware puts the id in every REST request; a gRPC request gets one here.
        request_id = next((str(v) for k, v in headers.items() if k.lower() == REQUEST_ID_HEADER and v), None)
        request_id = request_id or uuid.uuid4().hex
        client_id = next((str(v) for k, v in headers.items() if k.lower() == CLIENT_REQUEST_ID_HEADER and v), None)
        rows: list[list[Any]] | np.ndarray = []
        names: list[str] | None = None
        try:
            matrix = await run(request_matrix, payload.inputs, self._served)
            if matrix is not None:
                rows = matrix
                prediction = self._served.answer(await self._probabilities(matrix, run))
            else:
                rows, names = await run(request_rows, payload.inputs, self._served)
                prediction = await run(self._served.predict, rows, names)
        except InvalidRequest as exc:
            self._log_outcome(request_id, client_id, rows, names, started, exc)
            raise MLServerError(str(exc), status_code=exc.status) from None
        except Exception as exc:
            self._log_outcome(request_id, client_id, rows, names, started, f"{type(exc).__name__}: {exc}")
            raise
        self._log_outcome(request_id, client_id, rows, names, started, prediction)
        return InferenceResponse.model_validate(self.answer_document(prediction))

    @property
    def numeric(self) -> bool:
        """Every feature is numeric: the model can take plain requests (:mod:`.plain_infer`)."""
        return self._served.numeric

    async def predict_plain(
        self, inputs: list[RequestInput], request_id: str, client_id: str | None
    ) -> Prediction | None:
        """The prediction of a request the plain path decoded (:mod:`.plain_infer`), logged and counted.

        Returns:
            None, having logged nothing, when the request is not a plain numeric batch this model
            takes, or anything goes wrong: MLServer's path (:meth:`predict`) then answers it, with
            its refusal or error, and logs it.
        """
        started = time.perf_counter()
        run = asyncio.to_thread if declared_values(inputs) > INLINE_VALUES else _inline
        try:
            matrix = await run(request_matrix, inputs, self._served)
            if matrix is None:
                return None
            prediction = self._served.answer(await self._probabilities(matrix, run))
        except Exception:  # the standard path answers (refusal or error) and logs it
            return None
        self._log_outcome(request_id, client_id, matrix, None, started, prediction)
        return prediction

    def answer_document(self, prediction: Prediction, request_id: str | None = None) -> dict[str, Any]:
        """The V2 answer to a prediction, as JSON-ready data (``id``: the V2 request's, set by the caller)."""
        rows, classes = prediction.probabilities.shape
        return {
            "model_name": self.name,
            "model_version": self._served.version,
            "id": request_id,
            "parameters": self._tags,
            "outputs": [
                {"name": LABEL_OUTPUT, "shape": [rows], "datatype": "BYTES", "data": prediction.labels},
                {
                    "name": PROBABILITIES_OUTPUT,
                    "shape": [rows, classes],
                    "datatype": "FP64",
                    "parameters": {"classes": prediction.classes},
                    "data": prediction.probabilities.ravel().tolist(),
                },
            ],
        }

    async def _probabilities(self, matrix: np.ndarray, run: Callable[..., Any]) -> np.ndarray:
        """Class probabilities of a checked matrix: micro-batched when small, else scored on its own."""
        if self._batcher.takes(len(matrix)):
            return await self._batcher.score(matrix)
        probabilities: np.ndarray = await run(self._served.score, matrix)
        return probabilities

    def _log_outcome(
        self,
        request_id: str,
        client_id: str | None,
        rows: list[list[Any]] | np.ndarray,
        names: list[str] | None,
        started: float,
        outcome: Prediction | InvalidRequest | str,
    ) -> None:
        """Notes the outcome for feedback, counts predicted classes, and logs the request's rows."""
        self._feedback.issued.note(request_id, outcome)  # what feedback for this id may label
        if isinstance(outcome, Prediction):
            self._metrics.observe_predictions(outcome.labels)
        if self._log is None:
            return
        columns = names or self._served.feature_names
        if not isinstance(rows, list):
            rows = rows.tolist()
        features = [
            {name: (value.decode() if isinstance(value, bytes) else value) for name, value in zip(columns, row)}
            for row in rows
            if isinstance(row, (list, tuple))
        ]
        latency_ms = (time.perf_counter() - started) * 1000
        self._log.log(request_id, features, outcome, latency_ms=latency_ms, client_request_id=client_id)

    @custom_handler(rest_path="/v2/models/{model_name}/feedback")
    async def feedback(self, request: Request, model_name: str) -> dict[str, Any]:
        """Records the true labels of a request this server answered, by its id (:mod:`..feedback`)."""
        if model_name != self.name:
            raise ModelNotFound(model_name)
        try:
            body = await request.json()
        except ValueError as exc:  # json's and orjson's decode errors are ValueErrors
            raise MLServerError(f"feedback: the body is not JSON: {exc}") from None
        unknown = sorted(set(body) - {"request_id", "truth"}) if isinstance(body, dict) else []
        if not isinstance(body, dict) or unknown:
            raise MLServerError(
                'feedback: expected {"request_id": "<the answer\'s X-Request-Id>", "truth": [one label per row]}'
                + (f"; unknown field(s): {', '.join(map(repr, unknown))}" if unknown else "")
            )
        try:
            # Reads and appends to the prediction log: off the event loop.
            recorded = await asyncio.to_thread(self._feedback.record, body.get("request_id"), body.get("truth"))
        except InvalidRequest as exc:
            raise MLServerError(f"feedback: {exc}", status_code=exc.status) from None
        return {**recorded, **self._tags}


# The model settings' ``implementation``: where MLServer imports the runtime from.
RUNTIME = f"{KfpMlopsRuntime.__module__}.{KfpMlopsRuntime.__qualname__}"


async def _inline(function: Callable[..., _T], *args: Any) -> _T:
    return function(*args)


def _batcher(served: ServedModel) -> MicroBatcher:
    """The model's micro-batcher, configured by ``BATCH_WAIT_MS`` and ``BATCH_MAX_ROWS``."""
    try:
        wait_ms = float(os.environ.get(BATCH_WAIT_MS_ENV) or DEFAULT_MAX_WAIT_S * 1000)
        max_rows = int(os.environ.get(BATCH_MAX_ROWS_ENV) or DEFAULT_MAX_ROWS)
        return MicroBatcher(served.score, max_wait_s=wait_ms / 1000, max_rows=max_rows)
    except ValueError as exc:
        raise MlopsError(f"{BATCH_WAIT_MS_ENV} / {BATCH_MAX_ROWS_ENV}: {exc}") from None


def _datatype(kind: str) -> Datatype:
    return Datatype.FP64 if kind == "numeric" else Datatype.BYTES
