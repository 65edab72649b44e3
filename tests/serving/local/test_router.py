"""The router's nginx configuration (checked by nginx itself) and the shadow relay, without models."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from kfp_mlops.core.errors import MlopsError
from kfp_mlops.serving.local.router import Router, render_config
from kfp_mlops.serving.local.shadow_relay import ShadowRelay
from kfp_mlops.serving.spec import DeploymentSpec, InvalidSpec, PredictorSpec

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


class _SlowTarget(BaseHTTPRequestHandler):
    """A shadow that takes ``delay`` seconds per answer and counts what it got."""

    protocol_version = "HTTP/1.1"
    delay = 0.0
    received: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.delay)
        type(self).received.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture()
def slow_target() -> Iterator[tuple[str, type[_SlowTarget]]]:
    handler = type("Slow", (_SlowTarget,), {"delay": 0.5, "received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()


def _check(config: str, workdir: Path) -> subprocess.CompletedProcess:
    router = Router(workdir, 1)
    router._write(config)
    return subprocess.run(
        [NGINX, "-t", "-p", str(workdir), "-c", str(router.config_path)], capture_output=True, text=True
    )


@pytest.mark.parametrize(
    "spec",
    [
        DeploymentSpec.single("iris", "m1"),
        DeploymentSpec.ab("iris", "m1", "m2", 25),
        DeploymentSpec.ab("iris", "m1", "m2", 0),
        DeploymentSpec.with_shadow("iris", "m1", "m2"),
        DeploymentSpec(
            "iris",
            (
                PredictorSpec("a", "m1", 50),
                PredictorSpec("b-2", "m2", 30),
                PredictorSpec("c", "m3", 20),
                PredictorSpec("s", "m4", 0, shadow=True),
            ),
        ),
    ],
    ids=["single", "ab", "ab-zero", "shadow", "three-and-shadow"],
)
def test_rendered_configs_pass_nginx_check(spec: DeploymentSpec, tmp_path: Path) -> None:
    backends = {p.name: f"127.0.0.1:{9000 + i}" for i, p in enumerate(spec.predictors)}
    config = render_config(spec, backends, port=18080, workdir=tmp_path, relay="127.0.0.1:9999")
    checked = _check(config, tmp_path)
    assert checked.returncode == 0, checked.stderr
    live_with_traffic = [p for p in spec.live if p.traffic > 0]
    assert config.count("% ") == len(live_with_traffic) - 1  # the last one takes "*"
    assert ("mirror /_shadow;" in config) == (spec.shadow is not None)


def test_invalid_spec_renders_nothing(tmp_path: Path) -> None:
    bad = DeploymentSpec("iris", (PredictorSpec("a", "m1", 70), PredictorSpec("b", "m2", 20)))
    with pytest.raises(InvalidSpec, match="sums to 90"):
        render_config(bad, {"a": "127.0.0.1:1", "b": "127.0.0.1:2"}, port=1, workdir=tmp_path)


def test_shadow_without_relay_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MlopsError, match="no relay address"):
        render_config(
            DeploymentSpec.with_shadow("iris", "m1", "m2"), {"main": "x:1", "shadow": "x:2"}, port=1, workdir=tmp_path
        )


def test_relay_acknowledges_at_once_and_forwards_later(slow_target) -> None:
    url, handler = slow_target
    relay = ShadowRelay(0, url, capacity=100, workers=2)
    thread = threading.Thread(target=relay.serve_forever, daemon=True)
    thread.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=5)
        started = time.perf_counter()
        for i in range(10):
            connection.request(
                "POST", f"/v2/models/iris/infer?i={i}", body=b"{}", headers={"Content-Type": "application/json"}
            )
            response = connection.getresponse()
            response.read()
            assert response.status == 202
        elapsed = time.perf_counter() - started
        assert elapsed < 0.5 * 10 / 4  # ten copies of a 0.5 s shadow, acknowledged far sooner
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and relay.stats.as_dict()["forwarded"] < 10:
            time.sleep(0.05)
        assert sorted(handler.received) == sorted(f"/v2/models/iris/infer?i={i}" for i in range(10))
        connection.request("GET", "/relay/stats")
        stats = json.loads(connection.getresponse().read())
        assert stats == {"received": 10, "forwarded": 10, "dropped": 0, "failed": 0}
    finally:
        relay.shutdown()


def test_relay_drops_copies_when_the_shadow_falls_behind(slow_target) -> None:
    url, _ = slow_target
    relay = ShadowRelay(0, url, capacity=2, workers=1)
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=5)
        for _ in range(8):
            connection.request("POST", "/x", body=b"{}")
            assert connection.getresponse().read() == b"{}"
        stats = relay.stats.as_dict()
        assert stats["received"] == 8 and stats["dropped"] >= 4
    finally:
        relay.shutdown()


class _Closing(_SlowTarget):
    """Closes every connection after answering without saying so, like an idle keep-alive timeout."""

    def do_POST(self) -> None:
        super().do_POST()
        self.close_connection = True


def test_relay_retries_a_connection_the_shadow_closed() -> None:
    handler = type("Closing", (_Closing,), {"delay": 0.0, "received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    relay = ShadowRelay(0, f"http://127.0.0.1:{server.server_address[1]}", workers=1)
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=5)
        for _ in range(20):
            connection.request("POST", "/x", body=b"{}")
            connection.getresponse().read()
            time.sleep(0.01)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and relay.stats.as_dict()["forwarded"] < 20:
            time.sleep(0.05)
        assert relay.stats.as_dict() == {"received": 20, "forwarded": 20, "dropped": 0, "failed": 0}
        assert len(handler.received) == 20
    finally:
        relay.shutdown()
        server.shutdown()


class _Echo(BaseHTTPRequestHandler):
    """A predictor stand-in: answers ``status`` with its name and the X-Request-Id it received."""

    protocol_version = "HTTP/1.1"
    name = "x"
    status = 200
    seen: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).seen.append(self.headers.get("X-Request-Id", ""))
        body = json.dumps({"predictor": self.name}).encode()
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


def test_request_ids_and_fallback_from_a_failing_predictor(tmp_path: Path) -> None:
    """X-Request-Id: the client's or nginx's, sent upstream and back; a 500 or a dead predictor is retried elsewhere."""
    import socket

    servers = {}
    for name, status in (("legacy", 200), ("challenger", 500)):
        handler = type(name, (_Echo,), {"name": name, "status": status, "seen": []})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[name] = (server, handler)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"  # nothing listens once closed
    spec = DeploymentSpec("fraud", (PredictorSpec("legacy", "m1", 50), PredictorSpec("challenger", "m2", 50)))
    backends = {name: f"127.0.0.1:{server.server_address[1]}" for name, (server, _) in servers.items()}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    router = Router(tmp_path / "router", port)
    router.workdir.mkdir(parents=True)
    try:
        router.start(render_config(spec, backends, port=port, workdir=router.workdir))
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        ids = []
        for i in range(20):
            headers = {"X-Request-Id": f"client-{i}"} if i % 2 else {}
            connection.request("POST", "/v2/models/fraud/infer", body=b"{}", headers=headers)
            response = connection.getresponse()
            assert response.status == 200 and json.loads(response.read()) == {"predictor": "legacy"}
            assert response.getheader("X-Predictor") == "legacy"
            ids.append(response.getheader("X-Request-Id"))
            if i % 2:
                assert ids[-1] == f"client-{i}"
        assert len(set(ids)) == 20 and set(ids) == set(servers["legacy"][1].seen)
        assert servers["challenger"][1].seen  # it was tried, and its 500s never reached the client

        # The direct route does not fall back: feedback must reach the named predictor or fail.
        connection.request("POST", "/predictors/challenger/v2/models/fraud/feedback", body=b"{}")
        response = connection.getresponse()
        response.read()
        assert response.status == 500 and response.getheader("X-Predictor") == "challenger"

        router.reload(render_config(spec, {**backends, "challenger": dead}, port=port, workdir=router.workdir))
        time.sleep(0.5)
        connection.close()  # the old worker closed its idle connections
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(10):
            connection.request("POST", "/v2/models/fraud/infer", body=b"{}")
            response = connection.getresponse()
            assert response.status == 200 and json.loads(response.read()) == {"predictor": "legacy"}
    finally:
        router.stop()
        for server, _ in servers.values():
            server.shutdown()


def test_relay_accepts_a_burst_of_new_connections(slow_target) -> None:
    """nginx opens many mirror connections at once; none may wait out a connect timeout."""
    url, _ = slow_target
    relay = ShadowRelay(0, url, capacity=1000, workers=1)
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    start = threading.Barrier(48)

    def post() -> float:
        connection = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=5)
        start.wait()
        began = time.perf_counter()
        connection.request("POST", "/x", body=b"{}")
        connection.getresponse().read()
        connection.close()
        return time.perf_counter() - began

    try:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(48) as pool:
            took = list(pool.map(lambda _: post(), range(48)))
        assert relay.stats.as_dict()["received"] == 48
        assert max(took) < 0.9  # a dropped SYN is retried after 1 s
    finally:
        relay.shutdown()
