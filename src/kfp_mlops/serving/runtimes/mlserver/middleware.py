"""What the v2 runtime adds to MLServer's REST app: request metrics, refused stream variants, JSON 500s.

:class:`RequestMetrics` counts and times every request to a served model's ``infer`` and
``feedback`` into its :class:`~kfp_mlops.serving.metrics.ServingMetrics`; as ASGI middleware it
sees every answer, including MLServer's own 422 ``{"detail": [...]}`` for bodies that are not JSON
or not an inference request at all, which never reach the runtime. It also refuses the
``generate`` and streaming variants of ``infer`` with 404, whose errors would otherwise break an
already started stream. :func:`instrument` adds it, and a JSON answer for unexpected errors, to the
app.
"""

from __future__ import annotations

import time

from fastapi import FastAPI, Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kfp_mlops.serving.metrics import FEEDBACK, PREDICT
from kfp_mlops.serving.runtimes.mlserver.runtime import served_metrics

_REFUSED = {"generate", "infer_stream", "generate_stream"}


class RequestMetrics:
    """ASGI middleware: counts and times requests to a served model's ``infer`` and ``feedback``.

    Args:
        app: The ASGI app it wraps.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts = scope["path"].split("/") if scope["type"] == "http" else []
        # /v2/models/<m>/<verb> or /v2/models/<m>/versions/<v>/<verb>
        served = len(parts) in (5, 7) and parts[1:3] == ["v2", "models"] and served_metrics(parts[3]) is not None
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
            metrics = served_metrics(parts[3])
            if metrics is not None:
                metrics.observe_request(endpoint, status, time.perf_counter() - started)


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    # A bug, not a bad request: still a JSON answer (Starlette's default is plain text).
    return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)


def instrument(app: FastAPI) -> None:
    """Adds the request metrics and the JSON answer for unexpected errors to MLServer's REST app."""
    app.add_middleware(RequestMetrics)
    app.add_exception_handler(Exception, _internal_error)
