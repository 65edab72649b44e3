"""An HTTP proxy that loses responses on purpose: the write lands, the client never hears so.

A real network loses a response when a connection breaks after the server committed a request
(a load balancer's idle timeout, a pod restart, a flaky NAT). This proxy reproduces exactly that in
front of a real server (the GCS emulator): it forwards a matching request, waits for the server's
whole answer -- so the server has done the work -- and then closes the client's connection
without sending a byte of it. The client sees a dropped connection (``RemoteDisconnected``),
which the Google client retries; the retry then meets the object its own first attempt wrote.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

# Hop-by-hop headers are the proxy's own business, never forwarded.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class LossyProxy:
    """Forwards HTTP to ``upstream``; ``lose(match, times)`` arms it to swallow matching responses.

    Attributes:
        url: The proxy's base URL (use it as ``STORAGE_EMULATOR_HOST``).
        lost: ``(method, path)`` of every request whose response was swallowed.
        forwarded: ``(method, path, status)`` of every request forwarded.
    """

    def __init__(self, upstream: str) -> None:
        target = urlsplit(upstream)
        self._host, self._port = target.hostname or "127.0.0.1", target.port or 80
        self._lock = threading.Lock()
        self._match: Callable[[str, str], bool] = lambda method, path: False
        self._remaining = 0
        self.lost: list[tuple[str, str]] = []
        self.forwarded: list[tuple[str, str, int]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> LossyProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def lose(self, match: Callable[[str, str], bool], times: int = 1) -> None:
        """Swallows the responses of the next ``times`` requests for which ``match(method, path)`` holds."""
        with self._lock:
            self._match, self._remaining = match, times

    def _take(self, method: str, path: str) -> bool:
        with self._lock:
            if self._remaining > 0 and self._match(method, path):
                self._remaining -= 1
                self.lost.append((method, path))
                return True
            return False

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream = http.client.HTTPConnection(proxy._host, proxy._port, timeout=30)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()  # the server has answered: its work is done
                finally:
                    upstream.close()
                proxy.forwarded.append((self.command, self.path, response.status))
                if proxy._take(self.command, self.path):
                    self.close_connection = True  # the response is lost with the connection
                    return
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward  # noqa: N815 - http.server dispatches on these names

        return Handler
