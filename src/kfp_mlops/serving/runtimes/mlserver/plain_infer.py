"""The plain path: a numeric model's ordinary ``infer`` request answered without MLServer's REST machinery.

MLServer answers ``POST /v2/models/<m>/infer`` through FastAPI: the body is validated into an
``InferenceRequest``, passed through its data plane (model lookup, CloudEvents headers, its
metrics), and the ``InferenceResponse`` is validated and serialized again -- pydantic and Python
work proportional to the values, several times over, for a request whose decoding the runtime
already does column-wise (:func:`.decoding.request_matrix`). Measured in ``bench/bench_serving.py``
that was about as much server CPU per 1,000-row request as stock MLServer spends, for a model that
needs a fraction of it.

:class:`PlainInfer` (ASGI middleware, innermost of :func:`.middleware.instrument`'s, so the body
it sees is already within its limit and decompressed) answers a request itself when it is
**plain** -- and only then:

* the path is ``/v2/models/<m>/infer`` of an all-numeric model this runtime serves (not a
  versioned path; a categorical model's requests go to MLServer's path unread);
* the body is JSON (``Content-Type`` absent or ``application/json``) that ``orjson`` parses into an
  object with ``inputs`` and at most an ``id`` (a printable-ASCII string), every input exactly
  ``name``, ``shape`` (integers), a numeric ``datatype`` and ``data`` (a list): no parameters;
* the runtime decodes it into a float matrix and scores it
  (:meth:`~.runtime.KfpMlopsRuntime.predict_plain`: the same decoding, micro-batching, logging and
  metrics as MLServer's path).

Anything else -- a categorical model, a request MLServer's path would refuse or answer with an
error, a number orjson will not read -- goes to MLServer's path untouched (the body is replayed),
which answers it exactly as before. A plain answer is the same as MLServer's: the same JSON
document (:meth:`~.runtime.KfpMlopsRuntime.answer_document`, the request's ``id`` or a new UUID),
the same CloudEvents headers (MLServer's own :class:`~mlserver.cloudevents.CloudEventsMiddleware`),
gzip when the client accepts it (as MLServer's GZip middleware: 500 bytes and up, level 9) and
``Vary: Accept-Encoding``; ``tests/serving/runtimes/test_plain_infer.py`` compares the two paths.
What it skips: MLServer's own per-model inference counters and HTTP metrics
(``model_infer_request_*``, ``rest_server_*``) count only requests that take its path; the
runtime's metrics (:mod:`kfp_mlops.serving.metrics`), which the dashboards and alerts use, count
every request.
"""

from __future__ import annotations

import gzip

import orjson
from mlserver.cloudevents import CloudEventsMiddleware, CloudEventsTypes
from mlserver.settings import Settings
from mlserver.types import Datatype, RequestInput, TensorData
from mlserver.utils import generate_uuid
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kfp_mlops.serving.runtimes.mlserver.request_body import header
from kfp_mlops.serving.runtimes.mlserver.runtime import KfpMlopsRuntime, served_runtime
from kfp_mlops.serving.runtimes.request_ids import (
    CLIENT_REQUEST_ID_HEADER,
    HEADER_SAFE_ID,
    REQUEST_ID_HEADER,
    client_request_id,
    issue_request_id,
)

NUMERIC_DATATYPES = frozenset(
    ["FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"]
)
GZIP_MIN_BYTES = 500  # what MLServer's GZip middleware (Starlette's defaults) compresses
GZIP_LEVEL = 9
_INPUT_FIELDS = {"name", "shape", "datatype", "data"}
_JSON_TYPES = {"", "application/json"}


def plain_request(body: bytes) -> tuple[str | None, list[RequestInput]] | None:
    """The V2 request ``id`` and inputs of a plain request body (module docstring), else None."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict) or not set(document) <= {"id", "inputs"}:
        return None
    request_id, tensors = document.get("id"), document.get("inputs")
    if request_id is not None and not (isinstance(request_id, str) and HEADER_SAFE_ID.fullmatch(request_id)):
        return None
    if not isinstance(tensors, list) or not tensors:
        return None
    inputs = []
    for tensor in tensors:
        if not isinstance(tensor, dict) or set(tensor) != _INPUT_FIELDS:
            return None
        name, shape, datatype, data = tensor["name"], tensor["shape"], tensor["datatype"], tensor["data"]
        if not (
            isinstance(name, str)
            and isinstance(shape, list)
            and all(type(size) is int for size in shape)
            and isinstance(datatype, str)
            and datatype in NUMERIC_DATATYPES
            and isinstance(data, list)
        ):
            return None
        inputs.append(
            RequestInput.model_construct(
                name=name, shape=shape, datatype=Datatype(datatype), data=TensorData.model_construct(root=data)
            )
        )
    return request_id, inputs


class PlainInfer:
    """ASGI middleware: answers plain ``infer`` requests itself (module docstring).

    Args:
        app: The ASGI app it wraps (MLServer's REST app).
        settings: MLServer's settings (the CloudEvents headers name its server).
    """

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.cloudevents = CloudEventsMiddleware(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts = scope["path"].split("/") if scope["type"] == "http" else []
        runtime = served_runtime(parts[3]) if len(parts) == 5 and parts[1:3] == ["v2", "models"] else None
        content_type = header(scope, b"content-type").split(";")[0].strip().lower()
        plain = parts[-1:] == ["infer"] and scope.get("method") == "POST" and content_type in _JSON_TYPES
        if runtime is None or not (plain and runtime.numeric):  # MLServer's path, the body unread
            await self.app(scope, receive, send)
            return
        body, after = await _whole_body(receive)
        answer = await self._answer(runtime, body, scope)
        if answer is None:
            await self.app(scope, _replay(body, after, receive), send)
            return
        payload, headers = answer
        if "gzip" in header(scope, b"accept-encoding") and len(payload) >= GZIP_MIN_BYTES:
            payload = gzip.compress(payload, GZIP_LEVEL)
            headers.append((b"content-encoding", b"gzip"))
        headers += [(b"content-length", str(len(payload)).encode()), (b"vary", b"Accept-Encoding")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _answer(
        self, runtime: KfpMlopsRuntime, body: bytes, scope: Scope
    ) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
        """The answer's JSON and headers, or None when the request is not plain."""
        request = plain_request(body)
        if request is None:
            return None
        request_id, inputs = request
        issued = issue_request_id(header(scope, REQUEST_ID_HEADER.encode()))  # the RequestIds middleware's
        client_id = client_request_id(header(scope, CLIENT_REQUEST_ID_HEADER.encode()))
        prediction = await runtime.predict_plain(inputs, issued, client_id)
        if prediction is None:
            return None
        v2_id = generate_uuid() if request_id is None else request_id  # as MLServer's data plane
        events = self.cloudevents._get_headers(CloudEventsTypes.Response, runtime.settings, v2_id)
        headers = [(b"content-type", b"application/json")]
        headers += [(name.lower().encode(), value.encode("latin-1")) for name, value in events.items()]
        return orjson.dumps(runtime.answer_document(prediction, v2_id)), headers


async def _whole_body(receive: Receive) -> tuple[bytes, list[Message]]:
    """The request's body, and the message that ended it when it was not a body (a disconnect)."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(parts), [message]
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts), []


def _replay(body: bytes, after: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives the body read already, then what follows it."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}, *after]

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
