"""Request ids as both runtimes issue them: the front's, else the server's own; never the client's.

Every prediction and feedback request gets the id its front issued -- the local router, a mesh's
edge proxy, sets ``X-Request-Id`` and passes a client's own ``X-Request-Id`` on as
``X-Client-Request-Id`` -- or, without a front, a new one (a uuid). The id is logged with the
prediction (:mod:`.prediction_logger`), returned on the answer, and is what feedback refers to
(:mod:`.feedback`); the client's id is returned and logged beside it, never in its place, so a
client that retries with the same id cannot make the log hold one id twice.
"""

from __future__ import annotations

import re
import uuid

REQUEST_ID_HEADER = "x-request-id"
CLIENT_REQUEST_ID_HEADER = "x-client-request-id"
HEADER_SAFE_ID = re.compile(r"[\x20-\x7e]{0,256}")
"""An id an answer can carry in a header (MLServer also echoes a V2 request's id in headers)."""


def issue_request_id(forwarded: str | None) -> str:
    """The front's id if an answer can carry it in a header, else a new one."""
    return forwarded if forwarded and HEADER_SAFE_ID.fullmatch(forwarded) else uuid.uuid4().hex


def client_request_id(sent: str | None) -> str | None:
    """The client's own id, if an answer can carry it in a header."""
    return sent if sent and HEADER_SAFE_ID.fullmatch(sent) else None
