"""Schema-driven fuzzing of the whole HTTP surface: both runtimes and the router, from OpenAPI descriptions.

Schemathesis generates requests for every operation of:

* the **v2 runtime**: the Open Inference Protocol's OpenAPI description as MLServer 1.7.1 ships it
  (``mlserver/rest/openapi/dataplane.json``, Apache-2.0, read from the installed package), plus our
  ``feedback`` operation, with the request-id headers;
* the **Seldon runtime**: ``tests/serving/openapi/seldon_runtime.json``, written for our endpoints
  from Seldon's own protocol description;
* the **router** (nginx, two live predictors and a shadow, prediction logging on): the v2
  description again, with the routing headers (``X-Predictor``, ``X-Session-Id``) and the direct
  routes ``/predictors/<name>/...``.

Every answer must come within :data:`TIMEOUT_S` (no hang) and be below 500. Then compressed and
oversized bodies -- a gzip bomb (49 KB holding 25 million zeros), a truncated gzip stream, another
encoding, a body declared or streamed past the limit -- must each get a 4xx, in time, and leave
every server's resident memory (read from ``/proc``, summed over its process group) within
:data:`MEMORY_GROWTH_MIB` of what it was before.
"""

from __future__ import annotations

import copy
import http.client
import json
import os
import socket
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from kfp_mlops.serving.local.servers import PredictorServer
from kfp_mlops.serving.local.stack import LocalStack
from kfp_mlops.serving.spec import DeploymentSpec, PredictorSpec
from tests.serving.support import DEPLOYMENT, IrisModel, gzip_bomb

TIMEOUT_S = 15.0
MEMORY_GROWTH_MIB = 100.0
EXAMPLES = 25  # per operation
LIVE, SHADOW = ("a", "b"), "shadow"
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),  # servers are module fixtures; bodies may be large
)


def _v2_description(*, router: bool) -> dict[str, Any]:
    """MLServer's Open Inference Protocol description, narrowed to our model and widened by our endpoints."""
    text = resources.files("mlserver.rest.openapi").joinpath("dataplane.json").read_text()
    # Its TensorData names a JSON Schema type "bytes", which does not exist: base64 text is a string.
    doc = json.loads(text.replace('"type": "bytes"', '"type": "string"'))
    headers = [
        {"name": name, "in": "header", "required": False, "schema": {"type": "string"}}
        for name in ("X-Request-Id", "X-Client-Request-Id", *(("X-Predictor", "X-Session-Id") if router else ()))
    ]
    for item in doc["paths"].values():
        for parameter in item.get("parameters", []):
            # Mostly our model (and version), sometimes another: the 404 paths are fuzzed too.
            if parameter["name"] == "model_name":
                parameter["schema"] = {"type": "string", "enum": [DEPLOYMENT, DEPLOYMENT, "nobody"]}
            elif parameter["name"] == "model_version":
                parameter["schema"] = {"type": "string", "enum": ["v1", "x"]}
        if "post" in item:
            item["post"].setdefault("parameters", []).extend(copy.deepcopy(headers))
    doc["paths"]["/v2/models/{model_name}/feedback"] = {
        "parameters": copy.deepcopy(doc["paths"]["/v2/models/{model_name}/infer"]["parameters"]),
        "post": {
            "operationId": "model-feedback",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"request_id": {"type": "string"}, "truth": {"type": "array"}},
                            "required": ["request_id", "truth"],
                        }
                    }
                },
            },
            "responses": {"200": {"description": "rows, correct, live accuracy"}},
        },
    }
    if router:
        for verb in ("infer", "feedback"):
            direct = copy.deepcopy(doc["paths"][f"/v2/models/{{model_name}}/{verb}"])
            direct["parameters"].append(
                {
                    "name": "predictor",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "enum": [*LIVE, SHADOW, "nobody"]},
                }
            )
            direct["post"]["operationId"] = f"direct-{verb}"
            doc["paths"][f"/predictors/{{predictor}}/v2/models/{{model_name}}/{verb}"] = direct
        doc["paths"]["/router/health"] = {"get": {"operationId": "router-health", "responses": {"200": {}}}}
    return doc


@pytest.fixture(scope="module")
def router(
    outside_store: None, iris_model: IrisModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    """The router before two live predictors and a shadow, every predictor logging predictions."""
    folder = tmp_path_factory.mktemp("fuzz-router")
    spec = DeploymentSpec(
        name=DEPLOYMENT,
        predictors=(
            PredictorSpec(LIVE[0], iris_model.uri, 70),
            PredictorSpec(LIVE[1], iris_model.uri, 30),
            PredictorSpec(SHADOW, iris_model.uri, 0, shadow=True),
        ),
    )
    with LocalStack(folder / "stack", prediction_log=str(folder / "log")) as stack:
        stack.apply(spec)
        yield stack


def _call(case: Any, base_url: str) -> None:
    """Sends one generated request; a hang (no answer within TIMEOUT_S) or a 5xx fails."""
    response = case.call(base_url=base_url, timeout=TIMEOUT_S)
    assert response.status_code < 500, (case.method, case.formatted_path, case.body, response.text[:500])


v2_schema = schemathesis.openapi.from_dict(_v2_description(router=False))
seldon_schema = schemathesis.openapi.from_path(Path(__file__).parent / "openapi" / "seldon_runtime.json")
router_schema = schemathesis.openapi.from_dict(_v2_description(router=True))


@v2_schema.parametrize()
@FUZZ
def test_the_v2_runtime_answers_every_generated_request_below_500(case: Any, v2_fuzzed: PredictorServer) -> None:
    _call(case, v2_fuzzed.url)


@seldon_schema.parametrize()
@FUZZ
def test_the_seldon_runtime_answers_every_generated_request_below_500(
    case: Any, seldon_fuzzed: PredictorServer
) -> None:
    _call(case, seldon_fuzzed.url)


@pytest.mark.slow
@router_schema.parametrize()
@FUZZ
def test_the_router_answers_every_generated_request_below_500(case: Any, router: LocalStack) -> None:
    _call(case, router.url)


@pytest.fixture(scope="module")
def v2_fuzzed(outside_store: None, v2_server: PredictorServer) -> PredictorServer:
    return v2_server


@pytest.fixture(scope="module")
def seldon_fuzzed(outside_store: None, seldon_server: PredictorServer) -> PredictorServer:
    return seldon_server


def _group_resident_mib(leader: int) -> float:
    """Resident memory of a server and every helper in its process group (Seldon's gunicorn worker), in MiB."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
        except OSError:  # the process ended meanwhile
            continue
        group = int(stat.rsplit(")", 1)[1].split()[2])
        if group == leader:
            total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")) / 1024
    return total


def _send(url: str, path: str, body: bytes | Iterator[bytes], headers: dict[str, str]) -> tuple[int, bytes]:
    """(status, body) of one POST, read while the body is still being sent, as curl does.

    A server may answer a body it refuses before it has read it, and close the connection (the v2
    runtime does past 16 MiB declared): a client that writes the whole body before reading (like
    ``http.client``) meets a broken pipe instead of the answer.
    """
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=TIMEOUT_S * 4)
    framing = {"Content-Length": str(len(body))} if isinstance(body, bytes) else {"Transfer-Encoding": "chunked"}
    head = {"Host": f"{host}:{port}", "Content-Type": "application/json", **framing, **headers}
    request = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"

    def write() -> None:
        chunks = [body] if isinstance(body, bytes) else (b"%x\r\n%s\r\n" % (len(c), c) for c in [*body, b""])
        try:
            sock.sendall(request.encode())
            for chunk in chunks:
                sock.sendall(chunk)
        except OSError:  # the server answered and closed: the answer is read below
            pass

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()
    finally:
        writer.join(TIMEOUT_S)
        sock.close()


HOSTILE = {
    "gzip bomb": (gzip_bomb(), {"Content-Encoding": "gzip"}),
    "truncated gzip": (gzip_bomb(1_000_000)[:4000], {"Content-Encoding": "gzip"}),
    "deflate": (b"x\x9c" + os.urandom(64), {"Content-Encoding": "deflate"}),
    "declared too large": (b" " * (20 * 2**20), {}),
    "streamed too large": (None, {}),  # chunked: 20 MiB with no Content-Length
}


@pytest.mark.parametrize("kind", HOSTILE, ids=list(HOSTILE))
@pytest.mark.parametrize("target", ["v2", "seldon", "router"])
def test_compressed_and_oversized_bodies_get_a_4xx_in_time_and_cost_no_memory(
    request: pytest.FixtureRequest, outside_store: None, target: str, kind: str
) -> None:
    if target == "router":
        stack: LocalStack = request.getfixturevalue("router")
        url, path = stack.url, f"/v2/models/{DEPLOYMENT}/infer"
        leaders = [server.process.pid for server in stack.servers.values()]
    else:
        server: PredictorServer = request.getfixturevalue(f"{target}_server")
        url, path, leaders = server.url, server.predict_path(), [server.process.pid]
    body, headers = HOSTILE[kind]
    before = [_group_resident_mib(pid) for pid in leaders]
    chunks = body if body is not None else (b" " * 2**16 for _ in range(320))
    status, answer = _send(url, path, chunks, headers)
    after = [_group_resident_mib(pid) for pid in leaders]
    assert 400 <= status < 500, (status, answer[:300])
    growth = max(a - b for a, b in zip(after, before))
    assert growth < MEMORY_GROWTH_MIB, f"{kind} to {target}: resident memory grew {growth:.0f} MiB"
