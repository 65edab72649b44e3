"""Request bodies within limits, before MLServer parses them: raw size, and decompressed size streamed.

MLServer 1.7 reads a whole body and, for ``Content-Encoding: gzip``, decompresses it whole and
uncapped before parsing and validating it, all on the event loop: a 49 KB gzip request holding
25 million zeros made the server spend tens of seconds and over a gigabyte of memory before its
batch check refused it, while the liveness probe went unanswered.

:class:`BodyLimit` (ASGI middleware) reads the body in its place, chunk by chunk as it arrives:

* a body (``Content-Length``, or streamed) past the limit is refused (413) as soon as that is
  known, before anything is kept of it;
* a gzip body (``gzip`` or ``x-gzip``) is decompressed incrementally, never producing more than
  the limit plus one byte: past the limit it is refused (413); a body that is not gzip, or is cut
  short, gets 400; any other encoding gets 415;
* the app then sees the body it would have parsed, uncompressed, with ``Content-Encoding``
  removed and ``Content-Length`` set, so MLServer does not decompress it again.

The rest of a refused body is read and dropped, up to :data:`~kfp_mlops.serving.model.MAX_REQUEST_BYTES`
in all, before the answer: a client (or the router) still sending it would otherwise meet a
connection reset instead of the 413, and the connection stays usable. A body declared or sent
beyond that is answered at once, and the connection closed.

The limit is the served model's :attr:`~kfp_mlops.serving.model.ServedModel.max_request_bytes` for
its paths, and :data:`OTHER_REQUEST_BYTES` for every other path (MLServer parses bodies of unknown
models and of its repository API too). Refusals are JSON ``{"error": ...}`` answers, like the
runtime's own.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kfp_mlops.serving.model import MAX_REQUEST_BYTES

OTHER_REQUEST_BYTES = 64 * 1024  # paths that are not a served model's take small JSON bodies only
_GZIP = {"gzip", "x-gzip"}
_IDENTITY = {"", "identity"}


class BodyRefused(Exception):
    """A request body the server will not read further; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class BodyLimit:
    """ASGI middleware: reads (and gunzips) every request body up to a limit, before the app parses it.

    Args:
        app: The ASGI app it wraps.
        limit_for: The body limit of a request path, in bytes (raw and decompressed).
    """

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-length", b"content-encoding")]
        reader = _Reader(receive)
        try:
            body = await read_body(scope, reader, limit)
        except BodyRefused as exc:
            declared = header(scope, b"content-length")
            drained = not (declared.isdigit() and int(declared) > MAX_REQUEST_BYTES) and await reader.drop_rest()
            answer = JSONResponse(
                {"error": str(exc)}, status_code=exc.status, headers={} if drained else {"Connection": "close"}
            )
            await answer(scope, receive, send)
            return
        headers.append((b"content-length", str(len(body)).encode()))
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()  # what follows the body: a disconnect
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app({**scope, "headers": headers}, replay, send)


class _Reader:
    """A request body's chunks as they arrive, counted."""

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.received = 0
        self.ended = False

    async def chunk(self) -> bytes | None:
        """The next chunk of the body; None once it has ended (or the client went away)."""
        if self.ended:
            return None
        message = await self.receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.ended = True
        body: bytes = message.get("body", b"")
        self.received += len(body)
        return body

    async def drop_rest(self) -> bool:
        """Reads and drops what is left of the body, up to MAX_REQUEST_BYTES in all; True if it ended."""
        while self.received <= MAX_REQUEST_BYTES and await self.chunk() is not None:
            pass
        return self.ended


async def read_body(scope: Scope, reader: _Reader, limit: int) -> bytes:
    """The request's body, decompressed if it is gzip, refused once either size passes ``limit``.

    Raises:
        BodyRefused: too large (413), an encoding other than gzip (415), or a broken gzip stream (400).
    """
    declared = header(scope, b"content-length")
    if declared.isdigit() and int(declared) > limit:
        raise BodyRefused(f"request body of {int(declared)} bytes exceeds the limit of {limit} bytes", 413)
    encoding = header(scope, b"content-encoding").strip().lower()
    if encoding not in _GZIP | _IDENTITY:
        raise BodyRefused(f"Content-Encoding {encoding!r} is not accepted: send gzip or an uncompressed body", 415)
    gunzip = _Gunzip(limit) if encoding in _GZIP else None
    parts: list[bytes] = []
    while (chunk := await reader.chunk()) is not None:
        if reader.received > limit:
            raise BodyRefused(f"request body exceeds the limit of {limit} bytes", 413)
        parts.append(gunzip.feed(chunk) if gunzip else chunk)
    if gunzip is not None:
        gunzip.finish()
    return b"".join(parts)


class _Gunzip:
    """Incremental gzip decompression (of every member, as ``gzip.decompress``) that never passes ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.produced = 0
        self._member = _gzip_member()
        self._inside = False  # fed part of a member that has not ended yet

    def feed(self, data: bytes) -> bytes:
        """The decompressed bytes of the next chunk of the body."""
        out = []
        try:
            while data:
                # At most one byte past the limit: enough to know it was passed.
                piece = self._member.decompress(data, self.limit - self.produced + 1)
                self.produced += len(piece)
                if self.produced > self.limit:
                    raise BodyRefused(f"decompressed request body exceeds the limit of {self.limit} bytes", 413)
                out.append(piece)
                if self._member.eof:
                    data, self._member, self._inside = self._member.unused_data, _gzip_member(), False
                else:
                    data, self._inside = self._member.unconsumed_tail, True
        except zlib.error as exc:
            raise BodyRefused(f"the body is not valid gzip: {exc}", 400) from None
        return b"".join(out)

    def finish(self) -> None:
        """Refuses a body that ended inside a gzip member."""
        if self._inside:
            raise BodyRefused("the gzip body is truncated", 400)


def _gzip_member() -> zlib._Decompress:
    return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)


def header(scope: Scope, name: bytes) -> str:
    """The value of the request header ``name`` (lower case), or ``""``."""
    return next((v.decode("latin-1") for k, v in scope["headers"] if k == name), "")
