"""The local stack for real: MLServer predictor processes, the shadow relay and nginx on loopback.

Counts come from two sides: the ``X-Predictor`` header clients see, and each server's own
Prometheus request counter, so a router that mislabels responses cannot pass.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kfp_mlops.serving.local.stack import LocalStack
from kfp_mlops.serving.spec import DeploymentSpec, InvalidSpec, PredictorSpec
from tests.support.models import iris_model, register

pytestmark = pytest.mark.slow
ROW = {"sepal_length": 6.1, "sepal_width": 2.8, "petal_length": 4.7, "petal_width": 1.2}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, serving_store: str) -> dict[str, str]:
    """Two versions of the store the servers trust (tests/serving/conftest.py): they load only store versions."""
    root = tmp_path_factory.mktemp("models")
    return {
        "legacy": register(serving_store, iris_model(root / "legacy", "logistic_regression", seed=1)).uri,
        "challenger": register(serving_store, iris_model(root / "challenger", "random_forest", seed=2)).uri,
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, models: dict[str, str]) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("stack")) as running:
        running.apply(DeploymentSpec.ab("iris", models["legacy"], models["challenger"], 20))
        yield running


def _body() -> bytes:
    return json.dumps(
        {"inputs": [{"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in ROW.items()]}
    ).encode()


def _send(
    stack: LocalStack, count: int, headers: dict[str, str] | None = None, threads: int = 8
) -> list[tuple[int, str, dict]]:
    """``count`` predictions over keep-alive connections; (status, X-Predictor, body) each."""
    port = int(stack.url.rsplit(":", 1)[1])
    per_thread = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]

    def worker(n: int) -> list[tuple[int, str, dict]]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        results = []
        for i in range(n):
            try:
                response = _post(connection, headers)
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                if i == 0:
                    raise
                # As HTTP clients do: a kept-alive connection the router closed (nginx's old workers
                # close idle ones on reload) is replaced once; a fresh connection failing is a failure.
                connection.close()
                response = _post(connection, headers)
            results.append((response.status, response.getheader("X-Predictor"), json.loads(response.read())))
        connection.close()
        return results

    with ThreadPoolExecutor(threads) as pool:
        return [r for chunk in pool.map(worker, per_thread) for r in chunk]


def _post(connection: http.client.HTTPConnection, headers: dict[str, str] | None) -> http.client.HTTPResponse:
    connection.request(
        "POST", "/v2/models/iris/infer", body=_body(), headers={"Content-Type": "application/json", **(headers or {})}
    )
    return connection.getresponse()


def _served(stack: LocalStack, predictor: str, status: str | None = "200") -> float | dict[str, float]:
    """Successful inference requests a predictor's server counted itself (its /metrics).

    With ``status=None``, the counts by status instead (for failure messages).
    """
    with urllib.request.urlopen(stack.servers[predictor].metrics_url, timeout=5) as response:
        text = response.read().decode()
    pattern = re.compile(r"^kfp_mlops_requests_total\{([^}]*)\} ([0-9.e+]+)$", re.M)
    if status is None:
        counts: dict[str, float] = {}
        for labels, value in pattern.findall(text):
            key = re.search(r'status="([^"]*)"', labels).group(1)
            counts[key] = counts.get(key, 0.0) + float(value)
        return counts
    return sum(float(value) for labels, value in pattern.findall(text) if f'status="{status}"' in labels)


def test_ab_split_matches_the_spec(stack: LocalStack) -> None:
    before = {name: _served(stack, name) for name in ("a", "b")}
    results = _send(stack, 2000)
    assert {status for status, _, _ in results} == {200}
    seen = Counter(predictor for _, predictor, _ in results)
    assert set(seen) == {"a", "b"}
    # 80/20 over n=2000: within 4 standard deviations of 20% (a false alarm about 1 in 16,000 runs).
    share_b = seen["b"] / len(results)
    assert abs(share_b - 0.2) <= 4 * math.sqrt(0.2 * 0.8 / len(results)), seen
    counted = {name: _served(stack, name) - before[name] for name in ("a", "b")}
    assert counted == {"a": seen["a"], "b": seen["b"]}


def test_sticky_split_by_session_header(stack: LocalStack) -> None:
    routes: dict[str, set[str]] = {}
    for session in range(40):
        results = _send(stack, 5, headers={"X-Session-Id": f"user-{session}"}, threads=1)
        routes[f"user-{session}"] = {predictor for _, predictor, _ in results}
    assert all(len(predictors) == 1 for predictors in routes.values())
    assert set().union(*routes.values()) == {"a", "b"}


def test_override_header_and_direct_routes(stack: LocalStack) -> None:
    assert {p for _, p, _ in _send(stack, 50, headers={"X-Predictor": "b"}, threads=2)} == {"b"}
    assert {p for _, p, _ in _send(stack, 200, headers={"X-Predictor": "nobody"}, threads=2)} == {"a", "b"}
    request = urllib.request.Request(
        f"{stack.url}/predictors/b/v2/models/iris/infer", data=_body(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["X-Predictor"] == "b"
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{stack.url}/predictors/zzz/v2/health/ready", timeout=10)
    assert missing.value.code == 404


def test_reload_moves_traffic_without_failed_requests(stack: LocalStack, models: dict[str, str]) -> None:
    failures: list[object] = []
    stop = threading.Event()

    def background() -> None:
        while not stop.is_set():
            try:
                failures.extend(status for status, _, _ in _send(stack, 20, threads=2) if status != 200)
            except OSError as exc:  # a request that got no answer is a failed request too
                failures.append(exc)

    thread = threading.Thread(target=background)
    thread.start()
    try:
        stack.apply(DeploymentSpec.ab("iris", models["legacy"], models["challenger"], 0))
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join()
    assert failures == []
    assert {p for _, p, _ in _send(stack, 200)} == {"a"}


def test_invalid_spec_is_refused_and_the_stack_keeps_serving(stack: LocalStack, models: dict[str, str]) -> None:
    bad = DeploymentSpec("iris", (PredictorSpec("a", models["legacy"], 60), PredictorSpec("b", "", 30)))
    refused = r"traffic of live predictors sums to 90.*missing model URI|missing model URI"
    with pytest.raises(InvalidSpec, match=refused):
        stack.apply(bad)
    assert {status for status, _, _ in _send(stack, 20)} == {200}


def test_shadow_sees_every_request_and_no_client_gets_its_answer(stack: LocalStack, models: dict[str, str]) -> None:
    stack.apply(DeploymentSpec.with_shadow("iris", models["legacy"], models["challenger"]))
    before = stack.relay_stats()["received"]
    shadow_before = _served(stack, "shadow")
    results = _send(stack, 300)
    assert {(status, predictor) for status, predictor, _ in results} == {(200, "main")}
    assert all(_tag(body, "predictor") == "main" for _, _, body in results)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _served(stack, "shadow") - shadow_before < 300:
        time.sleep(0.2)
    assert (_served(stack, "shadow") - shadow_before, stack.relay_stats()["received"] - before) == (300, 300), (
        stack.relay_stats(),
        _served(stack, "shadow", status=None),
    )


def test_a_frozen_shadow_does_not_slow_the_primary(stack: LocalStack, models: dict[str, str]) -> None:
    stack.apply(DeploymentSpec.with_shadow("iris", models["legacy"], models["challenger"]))
    baseline = _latencies(stack, 100)
    shadow = stack.servers["shadow"].process
    os.kill(shadow.pid, signal.SIGSTOP)  # the slowest shadow there is: it never answers
    try:
        frozen = _latencies(stack, 200)
    finally:
        os.kill(shadow.pid, signal.SIGCONT)
    assert sorted(frozen)[int(0.99 * len(frozen))] < max(0.25, 5 * sorted(baseline)[int(0.99 * len(baseline))])


def test_a_client_retrying_one_id_cannot_break_the_log_join(tmp_path: Path, models: dict[str, str]) -> None:
    """Once the client's X-Request-Id was the logged id: three tries with one id made the join refuse the log."""
    from datetime import datetime, timezone

    from kfp_mlops.serving.prediction_log import join, record_labels

    log = str(tmp_path / "log")
    with LocalStack(tmp_path / "stack", prediction_log=log) as stack:
        stack.apply(DeploymentSpec.single("iris", models["legacy"]))
        connection = http.client.HTTPConnection("127.0.0.1", int(stack.url.rsplit(":", 1)[1]), timeout=30)
        answers = []
        for body in (_body(), _body(), _body(), b'{"inputs": []}'):
            connection.request(
                "POST",
                "/v2/models/iris/infer",
                body=body,
                headers={"Content-Type": "application/json", "X-Request-Id": "retried"},
            )
            response = connection.getresponse()
            response.read()
            assert response.getheader("X-Client-Request-Id") == "retried"
            answers.append((response.status, response.getheader("X-Request-Id")))
        connection.close()
    assert [status for status, _ in answers] == [200, 200, 200, 400]
    ids = [request_id for _, request_id in answers]
    assert len(set(ids)) == 4 and "retried" not in ids
    record_labels(log, [(request_id, 0, datetime.now(timezone.utc)) for request_id in ids[:3]])
    joined = join(log, datetime.now(timezone.utc)).set_index("request_id")
    assert sorted(joined.index) == sorted(ids)
    assert joined.loc[ids[:3], "label"].tolist() == [0.0] * 3
    # The refused request is logged as rejected: left out of the rollout's error rate (issue 11).
    assert joined.loc[ids[3], ["status", "decision"]].tolist() == ["rejected", None]


def test_serve_command_answers_and_stops_cleanly(tmp_path: Path) -> None:
    cli = str(Path(sys.executable).parent / "kfp-mlops")
    process = subprocess.Popen(
        [cli, "serve", "--port", "0"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.strip().startswith("curl "):
                break
        curl = next(text.strip() for text in lines if text.strip().startswith("curl "))
        answer = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30)
        body = json.loads(answer.stdout)
        assert _tag(body, "predictor") == "main"
        assert any(o["name"] == "label" for o in body["outputs"])
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, "".join(lines) + rest
    assert "Stopping" in rest


def _latencies(stack: LocalStack, count: int) -> list[float]:
    port = int(stack.url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        connection.request("POST", "/v2/models/iris/infer", body=_body(), headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        timings.append(time.perf_counter() - started)
    connection.close()
    return timings


def _tag(body: dict, key: str) -> str | None:
    """A tag of a V2 response (runtimes put predictor and model version in ``parameters``)."""
    return (body.get("parameters") or {}).get(key)
