"""The router's nginx configuration (checked by nginx itself) and the shadow relay, without models."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
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


def test_relay_bounds_what_it_holds_in_bytes(slow_target) -> None:
    """Copies wait in memory: the queue is bounded in bytes too, and an oversized copy is refused unread."""
    from kfp_mlops.serving.model import MAX_REQUEST_BYTES

    url, _ = slow_target
    relay = ShadowRelay(0, url, capacity=100, workers=1, max_bytes=250)
    threading.Thread(target=relay.serve_forever, daemon=True).start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=5)
        for _ in range(6):
            connection.request("POST", "/x", body=b"0" * 100)
            assert connection.getresponse().read() == b"{}"
        assert relay.stats.as_dict()["dropped"] >= 3  # one forwarding, two waiting: 200 of 250 bytes
        with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as sock:
            sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (MAX_REQUEST_BYTES + 1))
            assert sock.recv(65536).startswith(b"HTTP/1.1 413 ")
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
    """A predictor stand-in: answers ``status`` with its name; notes the path and ids it received."""

    protocol_version = "HTTP/1.1"
    name = "x"
    status = 200
    seen: ClassVar[list[str]] = []
    clients: ClassVar[list[str]] = []
    paths: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).seen.append(self.headers.get("X-Request-Id", ""))
        type(self).clients.append(self.headers.get("X-Client-Request-Id", ""))
        type(self).paths.append(self.path)
        body = json.dumps({"predictor": self.name}).encode()
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-Id", "the-servers-own")  # the router answers with its own
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def echoes() -> Iterator[dict[str, tuple[ThreadingHTTPServer, type[_Echo]]]]:
    """A legacy stand-in answering 200 and a challenger answering 500."""
    servers = {}
    for name, status in (("legacy", 200), ("challenger", 500)):
        handler = type(name, (_Echo,), {"name": name, "status": status, "seen": [], "clients": [], "paths": []})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers[name] = (server, handler)
    yield servers
    for server, _ in servers.values():
        server.shutdown()


FRAUD = DeploymentSpec("fraud", (PredictorSpec("legacy", "m1", 50), PredictorSpec("challenger", "m2", 50)))


@pytest.fixture()
def router(tmp_path: Path, echoes: dict) -> Iterator[tuple[Router, dict[str, str]]]:
    """nginx routing FRAUD over the stand-ins."""
    backends = {name: f"127.0.0.1:{server.server_address[1]}" for name, (server, _) in echoes.items()}
    port = _free_port()
    running = Router(tmp_path / "router", port)
    running.workdir.mkdir(parents=True)
    running.start(render_config(FRAUD, backends, port=port, workdir=running.workdir))
    yield running, backends
    running.stop()


def _post(connection: http.client.HTTPConnection, path: str, headers: dict[str, str] | None = None) -> tuple:
    connection.request("POST", path, body=b"{}", headers=headers or {})
    response = connection.getresponse()
    return response, response.read()


def test_request_ids_and_fallback_from_a_failing_predictor(router: tuple[Router, dict[str, str]], echoes: dict) -> None:
    """X-Request-Id: the router's, sent upstream and back; a 500 or a dead predictor is retried elsewhere."""
    running, backends = router
    connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
    ids = []
    for i in range(20):
        headers = {"X-Request-Id": f"client-{i}"} if i % 2 else {}
        response, body = _post(connection, "/v2/models/fraud/infer", headers)
        assert response.status == 200 and json.loads(body) == {"predictor": "legacy"}
        assert response.getheader("X-Predictor") == "legacy"
        ids.append(response.getheader("X-Request-Id"))
        assert response.getheader("X-Client-Request-Id") == (f"client-{i}" if i % 2 else None)
    assert len(set(ids)) == 20 and set(ids) == set(echoes["legacy"][1].seen)
    assert all(re.fullmatch("[0-9a-f]{32}", i) for i in ids)
    assert echoes["challenger"][1].seen  # it was tried, and its 500s never reached the client

    # The direct route does not fall back: feedback must reach the named predictor or fail.
    response, _ = _post(connection, "/predictors/challenger/v2/models/fraud/feedback")
    assert response.status == 500 and response.getheader("X-Predictor") == "challenger"
    assert re.fullmatch("[0-9a-f]{32}", response.getheader("X-Request-Id"))

    dead = f"127.0.0.1:{_free_port()}"  # nothing listens there
    running.reload(render_config(FRAUD, {**backends, "challenger": dead}, port=running.port, workdir=running.workdir))
    time.sleep(0.5)
    connection.close()  # the old worker closed its idle connections
    connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
    for _ in range(10):
        response, body = _post(connection, "/v2/models/fraud/infer")
        assert response.status == 200 and json.loads(body) == {"predictor": "legacy"}


def test_a_client_retrying_with_one_id_gets_a_new_request_id_each_time(
    router: tuple[Router, dict[str, str]], echoes: dict
) -> None:
    """Once the client's X-Request-Id was every predictor's log key: a retry logged one id twice."""
    running, _ = router
    connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
    answers = [_post(connection, "/v2/models/fraud/infer", {"X-Request-Id": "retried"})[0] for _ in range(3)]
    ids = [a.getheader("X-Request-Id") for a in answers]
    assert len(set(ids)) == 3 and "retried" not in ids and "the-servers-own" not in ids
    assert [a.getheader("X-Client-Request-Id") for a in answers] == ["retried"] * 3
    legacy = echoes["legacy"][1]
    assert set(ids) <= set(legacy.seen) and set(legacy.clients) == {"retried"}
    _post(connection, "/v2/models/fraud/infer", {"X-Client-Request-Id": "forged"})  # not the client's to set
    assert legacy.clients[-1] == ""


def test_direct_routes_forward_the_path_as_the_client_sent_it(
    router: tuple[Router, dict[str, str]], echoes: dict
) -> None:
    """Once the percent-decoded path: a %0D reached the predictor as a carriage return."""
    running, _ = router
    connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
    for path in ("/v2/models/fraud/in%0Dfer?x=%0A%0D", "/v2/models/fraud%2Finfer", "/v2/a%20b/c"):
        response, _ = _post(connection, f"/predictors/legacy{path}")
        assert response.status == 200 and echoes["legacy"][1].paths[-1] == path
    response, body = _post(connection, "/predictors/nobody/v2/models/fraud/infer")
    assert response.status == 404 and json.loads(body) == {"error": "no predictor nobody in deployment fraud"}


def test_a_body_over_the_limit_gets_a_json_413_from_the_router(
    router: tuple[Router, dict[str, str]], echoes: dict
) -> None:
    from kfp_mlops.serving.model import MAX_REQUEST_BYTES

    running, _ = router
    with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v2/models/fraud/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (MAX_REQUEST_BYTES + 1)
        )
        response = http.client.HTTPResponse(sock)  # reads the answer nginx sends before the body
        response.begin()
        body = response.read()
    assert response.status == 413
    assert json.loads(body) == {"error": f"request body exceeds the limit of {MAX_REQUEST_BYTES} bytes"}
    assert echoes["legacy"][1].paths == echoes["challenger"][1].paths == []


def test_a_refused_reload_keeps_the_running_configuration(
    router: tuple[Router, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A configuration nginx refuses, or a check that fails without a word, leaves the file nginx runs."""
    running, backends = router
    running_config = running.config_path.read_text()
    broken = running_config.replace("keepalive_requests 100000;", "keepalive_requests;")
    with pytest.raises(MlopsError, match='invalid number of arguments in "keepalive_requests"'):
        running.reload(broken)
    assert running.config_path.read_text() == running_config

    silent = tmp_path / "silent-nginx"
    silent.mkdir()
    (silent / "nginx").write_text("#!/bin/sh\nexit 1\n")
    (silent / "nginx").chmod(0o755)
    monkeypatch.setenv("PATH", f"{silent}:{os.environ['PATH']}")
    with pytest.raises(MlopsError, match="`nginx -t` exited with 1 and said nothing"):
        running.reload(render_config(FRAUD, backends, port=running.port + 1, workdir=running.workdir))
    assert running.config_path.read_text() == running_config
    connection = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
    assert _post(connection, "/v2/models/fraud/infer")[0].status == 200


def test_file_paths_in_the_configuration_are_quoted(tmp_path: Path) -> None:
    """A work folder with spaces, quotes, semicolons or braces once broke (or rewrote) the configuration."""
    workdir = tmp_path / 'a b;c"d{e}#f\\g'
    workdir.mkdir()
    config = render_config(DeploymentSpec.single("iris", "m1"), {"main": "127.0.0.1:9000"}, port=1, workdir=workdir)
    checked = _check(config, workdir)
    assert checked.returncode == 0, checked.stderr
    assert (workdir / "error.log").exists() and not (tmp_path / "a").exists()  # nginx opened its log there
    with pytest.raises(MlopsError, match=r"nginx cannot use the path .*\$HOME"):
        render_config(DeploymentSpec.single("iris", "m1"), {"main": "x:1"}, port=1, workdir=tmp_path / "$HOME")


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
