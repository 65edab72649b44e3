"""The shadow relay: takes the router's mirrored requests and forwards them to the shadow predictor.

nginx's ``mirror`` holds a keep-alive client connection until the mirror subrequest has finished,
so a slow shadow would slow the live traffic. The router therefore mirrors to this relay, which
acknowledges at once (``202``) and forwards the copy from a bounded queue with its own worker
threads. When the shadow falls behind, the queue fills and further copies are dropped (and
counted) rather than delaying anyone. The queue is bounded in copies and in body bytes (a copy
over :data:`~kfp_mlops.serving.model.MAX_REQUEST_BYTES`, which nginx never sends, is refused
unread), so a burst of large requests cannot grow the relay without limit.

Run as ``python -m kfp_mlops.serving.local.shadow_relay --port P --target http://127.0.0.1:S``;
``GET /relay/stats`` returns the counters as JSON.
"""

from __future__ import annotations

import argparse
import http.client
import json
import queue
import signal
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from kfp_mlops.serving.model import MAX_REQUEST_BYTES

# Hop-by-hop headers are the connection's, not the request's: never forwarded.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "proxy-connection", "content-length"}


@dataclass
class RelayStats:
    """What the relay did with the copies it received."""

    received: int = 0
    forwarded: int = 0
    dropped: int = 0
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)

    def as_dict(self) -> dict[str, int]:
        with self.lock:
            return {
                "received": self.received,
                "forwarded": self.forwarded,
                "dropped": self.dropped,
                "failed": self.failed,
            }


class _RelayServer(ThreadingHTTPServer):
    # nginx opens a burst of mirror connections at once; the default listen backlog of 5 dropped
    # some, and a retried SYN outlasts the mirror's 1 s connect timeout, losing those copies.
    request_queue_size = 1024


class ShadowRelay:
    """Accepts copies on ``port`` and forwards them to ``target`` from a queue of ``capacity``.

    Args:
        port: loopback port to listen on (0 picks a free one).
        target: the shadow predictor's base URL, ``http://host:port``.
        capacity: how many copies may wait; beyond that they are dropped.
        workers: concurrent forwarding connections to the shadow.
        timeout: seconds a forward may take before it counts as failed.
        max_bytes: how many body bytes the waiting copies may hold; beyond that they are dropped.
    """

    def __init__(
        self,
        port: int,
        target: str,
        *,
        capacity: int = 1000,
        workers: int = 4,
        timeout: float = 10.0,
        max_bytes: int = 4 * MAX_REQUEST_BYTES,
    ):
        parsed = urllib.parse.urlsplit(target)
        self.target_host, self.target_port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self.timeout = timeout
        self.stats = RelayStats()
        self.copies: queue.Queue[tuple[str, str, dict[str, str], bytes] | None] = queue.Queue(maxsize=capacity)
        self.max_bytes = max_bytes
        self._queued_bytes = 0
        self._bytes_lock = threading.Lock()
        self.server = _RelayServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._workers = [threading.Thread(target=self._forward_loop, daemon=True) for _ in range(workers)]

    def serve_forever(self) -> None:
        """Serves until :meth:`shutdown`."""
        for worker in self._workers:
            worker.start()
        self.server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        """Stops accepting copies and the workers (copies still queued are dropped)."""
        self.server.shutdown()
        for _ in self._workers:
            self.copies.put(None)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        relay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: nginx reuses its connections to the relay

            def do_GET(self) -> None:
                if self.path == "/relay/stats":
                    self._reply(200, json.dumps(relay.stats.as_dict()).encode())
                else:
                    self._reply(404, b'{"error": "the relay only accepts mirrored POSTs"}')

            def do_POST(self) -> None:
                relay.stats.add("received")
                length = self.headers.get("Content-Length") or "0"
                if not length.isdigit() or int(length) > MAX_REQUEST_BYTES:
                    relay.stats.add("dropped")
                    self.close_connection = True  # its body is left unread
                    self._reply(413, b'{"error": "the relay takes bodies within MAX_REQUEST_BYTES"}')
                    return
                body = self.rfile.read(int(length))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                if not relay._enqueue(("POST", self.path, headers, body)):
                    relay.stats.add("dropped")
                self._reply(202, b"{}")

            def _reply(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return  # one line per request would drown the stack's logs

        return Handler

    def _enqueue(self, copy: tuple[str, str, dict[str, str], bytes]) -> bool:
        """Queues a copy if the queue has room for it, in copies and in bytes."""
        with self._bytes_lock:
            if self._queued_bytes + len(copy[3]) > self.max_bytes:
                return False
            try:
                self.copies.put_nowait(copy)
            except queue.Full:
                return False
            self._queued_bytes += len(copy[3])
            return True

    def _forward_loop(self) -> None:
        connection: http.client.HTTPConnection | None = None
        while (copy := self.copies.get()) is not None:
            with self._bytes_lock:
                self._queued_bytes -= len(copy[3])
            # A kept-alive connection the shadow closed while idle fails at once: one retry on a
            # fresh connection, as HTTP clients do, so such a copy is not lost.
            for attempt in range(2):
                reused = connection is not None
                try:
                    connection = connection or self._connect()
                    self._forward(connection, *copy)
                    self.stats.add("forwarded")
                    break
                except (OSError, http.client.HTTPException):
                    if connection is not None:
                        connection.close()
                    connection = None
                    if not reused or attempt == 1:
                        self.stats.add("failed")
                        break

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.target_host, self.target_port, timeout=self.timeout)

    @staticmethod
    def _forward(
        connection: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> None:
        connection.request(method, path, body=body, headers=headers)
        connection.getresponse().read()  # the shadow's answer is discarded, by design


def main(argv: list[str] | None = None) -> None:
    """Runs a relay until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--capacity", type=int, default=1000)
    args = parser.parse_args(argv)
    relay = ShadowRelay(args.port, args.target, capacity=args.capacity)
    # shutdown() blocks until serve_forever returns, so it runs beside the serving thread.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=relay.shutdown).start())
    try:
        relay.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
