"""What the v2 runtime adds to MLServer's REST app: body limits, request ids, metrics, JSON errors.

:func:`instrument` wraps the app, outermost first, in:

* :class:`RequestMetrics`, which counts and times every request to a served model's ``infer`` and
  ``feedback`` into its :class:`~kfp_mlops.serving.metrics.ServingMetrics`; as ASGI middleware it
  sees every answer, including MLServer's own 422 ``{"detail": [...]}`` for bodies that are not
  JSON or not an inference request at all, which never reach the runtime, and the body limit's
  413s. It also refuses the ``generate`` and streaming variants of ``infer`` with 404 for every
  model name, served or not: MLServer starts their streamed answer before it looks the model up,
  so its own error would be a 500 on an already started response;
* :class:`RequestIds`, which gives every ``infer`` and ``feedback`` request of a served model its
  id (:mod:`..request_ids`): the ``X-Request-Id`` its front (the local router, a mesh's edge
  proxy) issued, else a new one, set on the request for the runtime to log (and for feedback to
  refer to) and returned on the answer; a client's own id arrives, from the router, as
  ``X-Client-Request-Id`` and is returned too (the runtime logs it beside the issued one);
* :class:`~.request_body.BodyLimit`, which reads every body within the served model's limit
  before MLServer parses it (:mod:`.request_body`);
* :class:`~.plain_infer.PlainInfer`, which answers a numeric model's plain ``infer`` requests
  without MLServer's request and response models (:mod:`.plain_infer`).

It also answers unexpected errors with JSON (Starlette's default is plain text).
"""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from mlserver.settings import Settings
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kfp_mlops.serving.metrics import FEEDBACK, PREDICT
from kfp_mlops.serving.runtimes.mlserver.plain_infer import PlainInfer
from kfp_mlops.serving.runtimes.mlserver.request_body import OTHER_REQUEST_BYTES, BodyLimit, header
from kfp_mlops.serving.runtimes.mlserver.runtime import served_body_limit, served_metrics
from kfp_mlops.serving.runtimes.request_ids import (
    CLIENT_REQUEST_ID_HEADER,
    REQUEST_ID_HEADER,
    client_request_id,
    issue_request_id,
)

_REFUSED = {"generate", "infer_stream", "generate_stream"}
_ENDPOINTS = {"infer": PREDICT, "feedback": FEEDBACK}


def model_endpoint(scope: Scope) -> tuple[str, str] | None:
    """``(model, verb)`` of a request to any model's endpoint, else None.

    The paths are ``/v2/models/<m>/<verb>`` and ``/v2/models/<m>/versions/<v>/<verb>``.
    """
    parts = scope["path"].split("/") if scope["type"] == "http" else []
    if len(parts) not in (5, 7) or parts[1:3] != ["v2", "models"] or (len(parts) == 7 and parts[4] != "versions"):
        return None
    return parts[3], parts[-1]


def served_endpoint(scope: Scope) -> tuple[str, str] | None:
    """``(model, verb)`` of a request to a model this runtime serves, else None."""
    endpoint = model_endpoint(scope)
    return endpoint if endpoint is not None and served_metrics(endpoint[0]) is not None else None


class _ServedRequests:
    """ASGI middleware for the requests to a model this runtime serves; every other request passes through.

    Args:
        app: The ASGI app it wraps.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        served = served_endpoint(scope)
        if served is None:
            await self.app(scope, receive, send)
        else:
            await self.handle(*served, scope, receive, send)

    async def handle(self, model: str, verb: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Serves a request to ``model``'s ``verb``."""
        raise NotImplementedError


class RequestMetrics(_ServedRequests):
    """ASGI middleware: counts and times requests to a served model's ``infer`` and ``feedback``.

    Refuses the streaming and ``generate`` verbs of every model name first.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = model_endpoint(scope)
        if endpoint is not None and endpoint[1] in _REFUSED:
            model, verb = endpoint
            await JSONResponse({"error": f"{verb} is not served: use POST /v2/models/{model}/infer"}, status_code=404)(
                scope, receive, send
            )
            return
        await super().__call__(scope, receive, send)

    async def handle(self, model: str, verb: str, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = _ENDPOINTS.get(verb)
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
            metrics = served_metrics(model)
            if metrics is not None:
                metrics.observe_request(endpoint, status, time.perf_counter() - started)


class RequestIds(_ServedRequests):
    """ASGI middleware: the request id of every ``infer`` and ``feedback`` request, on the request and its answer."""

    async def handle(self, model: str, verb: str, scope: Scope, receive: Receive, send: Send) -> None:
        if verb not in _ENDPOINTS:
            await self.app(scope, receive, send)
            return
        request_id = issue_request_id(header(scope, REQUEST_ID_HEADER.encode()))
        client_id = client_request_id(header(scope, CLIENT_REQUEST_ID_HEADER.encode()))
        echoed = [(REQUEST_ID_HEADER.encode(), request_id.encode())]
        if client_id:
            echoed.append((CLIENT_REQUEST_ID_HEADER.encode(), client_id.encode()))
        headers = [(k, v) for k, v in scope["headers"] if k != REQUEST_ID_HEADER.encode()]
        headers.append(echoed[0])

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *echoed]}
            await send(message)

        await self.app({**scope, "headers": headers}, receive, send_with_ids)


def request_limit(path: str) -> int:
    """The body limit of a request path: the served model's, else :data:`~.request_body.OTHER_REQUEST_BYTES`."""
    parts = path.split("/")
    limit = served_body_limit(parts[3]) if len(parts) > 3 and parts[1:3] == ["v2", "models"] else None
    return limit or OTHER_REQUEST_BYTES


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # A bug, not a bad request: still a JSON answer (Starlette's default is plain text).
    return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)


def instrument(app: FastAPI, settings: Settings) -> None:
    """Adds the plain path, body limit, request ids, request metrics and JSON 500s to MLServer's REST app."""
    # Starlette runs the middleware added last first.
    app.add_middleware(PlainInfer, settings=settings)
    app.add_middleware(BodyLimit, limit_for=request_limit)
    app.add_middleware(RequestIds)
    app.add_middleware(RequestMetrics)
    app.add_exception_handler(Exception, _internal_error)
