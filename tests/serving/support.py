"""Helpers for the serving tests: the Iris model's shape, a running server, an HTTP client, metrics."""

from __future__ import annotations

import http.client
import json
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from requests.structures import CaseInsensitiveDict

from kfp_mlops.serving.local.servers import PredictorServer, start_predictor

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
DEPLOYMENT = "iris"


@dataclass(frozen=True)
class IrisModel:
    """A model folder trained on Iris, the fitted pipeline, and the rows it was trained on."""

    uri: str
    model: Any
    rows: list[list[float]]
    labels: list[str]
    metadata: dict[str, Any]


@contextmanager
def serving(
    protocol: str,
    model_uri: str,
    workdir: Path,
    env: dict[str, str] | None = None,
) -> Iterator[PredictorServer]:
    """A running server for predictor ``main`` of deployment ``iris``, stopped afterwards."""
    server = start_predictor(
        protocol=protocol, model_uri=model_uri, predictor="main", deployment=DEPLOYMENT, workdir=workdir, env=env
    )
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def serving_client(protocol: str, model_uri: str, workdir: Path) -> Iterator[Client]:
    """A keep-alive client of a running server for predictor ``main`` of ``iris``, both stopped afterwards."""
    with serving(protocol, model_uri, workdir) as server:
        client = Client(server.url)
        try:
            yield client
        finally:
            client.close()


@dataclass(frozen=True)
class Reply:
    """One HTTP answer; ``json`` is the parsed body, or None when it is not JSON.

    ``headers`` are looked up case-insensitively, as HTTP names are (Flask sends ``x-request-id``
    as set, MLServer ``X-Request-Id``).
    """

    status: int
    content_type: str
    text: str
    json: Any
    headers: Mapping[str, str] = field(default_factory=dict)


class Client:
    """Sends requests to one server over a kept-alive connection (reopened when the server closes it)."""

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self._connection: http.client.HTTPConnection | None = None
        self.sent = 0

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Sends ``raw`` bytes, or ``body`` as JSON (None: no body), with ``headers`` besides the content type."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        headers = {**({"Content-Type": content_type} if data is not None else {}), **(headers or {})}
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                self._connection.request(method, path, body=data, headers=headers)
                response = self._connection.getresponse()
                text = response.read().decode("utf-8", errors="replace")
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt == 2:
                    raise
        self.sent += 1
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        headers = CaseInsensitiveDict(response.getheaders())
        return Reply(response.status, response.getheader("Content-Type", ""), text, parsed, headers)

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> Reply:
        return self.request("POST", path, body, headers=headers)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def gzip_bomb(values: int = 25_000_000, name: str = "input-0") -> bytes:
    """A V2 request of ``values`` zeros in one input, gzipped (25 million: 49 KB, 50 MB decompressed)."""
    import zlib

    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    head = json.dumps({"name": name, "shape": [values // 4, 4], "datatype": "FP64"})[:-1]
    parts = [compressor.compress(f'{{"inputs": [{head}, "data": ['.encode())]
    chunk = b"0," * 1_000_000
    for _ in range((values - 1) // 1_000_000):
        parts.append(compressor.compress(chunk))
    parts.append(compressor.compress(b"0," * ((values - 1) % 1_000_000) + b"0]}]}"))
    return b"".join([*parts, compressor.flush()])


def resident_mib(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory now (``VmRSS``) or at its peak (``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no {field} for process {pid}")


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text endpoint, by name and labels."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(value for (sample, have), value in samples.items() if sample == name and wanted <= have)
