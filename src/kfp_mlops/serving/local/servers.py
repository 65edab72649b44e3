"""Start and stop one model server process per predictor (the local stack and the tests use this).

Both runtimes load the model through :class:`~kfp_mlops.serving.model.ServedModel` and read the
same environment (:mod:`kfp_mlops.serving.runtimes.environment`), which the SeldonDeployment
manifests set on a cluster and :func:`start_predictor` sets here.

* ``v2``: ``python -m kfp_mlops.serving.runtimes.mlserver WORKDIR`` from this environment (MLServer
  1.7, Open Inference Protocol), told its ports through MLServer's ``MLSERVER_*`` settings; it
  binds 127.0.0.1 and writes the settings it runs with into the work folder.
* ``seldon``: Seldon Core's ``seldon_core.microservice`` with
  :class:`~kfp_mlops.serving.runtimes.seldon.SeldonRuntime`, run by the Python of ``.venv-seldon``
  (``make seldon-env``; override with ``KFP_MLOPS_SELDON_PYTHON``). Seldon's wrapper always binds
  0.0.0.0 (its HTTP port and its own metrics port), so it is reachable from the network while it runs.

Each server runs in its own process group, so :meth:`PredictorServer.stop` can end helper
processes it leaves behind (Seldon's gunicorn worker, metrics server and shared-memory manager).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kfp_mlops.core.errors import ConfigError, MlopsError
from kfp_mlops.serving.metrics import METRICS_PATH
from kfp_mlops.serving.runtimes.environment import (
    DEPLOYMENT_ENV,
    MODEL_URI_ENV,
    PREDICTION_LOG_ENV,
    PREDICTOR_ENV,
    STORE_ENV,
)

SELDON_PYTHON_ENV = "KFP_MLOPS_SELDON_PYTHON"
SELDON_PREDICT_PATH = "/api/v1.0/predictions"
# By name: the runtimes are started as processes, and the seldon one cannot import in this environment.
MLSERVER_MODULE = "kfp_mlops.serving.runtimes.mlserver"
SELDON_INTERFACE = "kfp_mlops.serving.runtimes.seldon.SeldonRuntime"
# The checkout this package runs from (editable install), where `make seldon-env` puts .venv-seldon.
REPO_ROOT = Path(__file__).resolve().parents[4]
_LOG_TAIL_LINES = 40


@dataclass
class PredictorServer:
    """A running model server for one predictor.

    Attributes:
        predictor: the predictor name.
        deployment: the deployment name (the V2 model name).
        protocol: ``v2`` or ``seldon``.
        url: ``http://127.0.0.1:<port>``, the inference HTTP endpoint.
        metrics_url: the full URL of its Prometheus text endpoint.
        process: the server process (leader of its own process group).
        log_path: where its stdout and stderr go.
    """

    predictor: str
    deployment: str
    protocol: str
    url: str
    metrics_url: str
    process: subprocess.Popen
    log_path: Path

    def stop(self, timeout: float = 10.0) -> None:
        """Sends SIGTERM to the server, then SIGKILL to its process group after ``timeout``; idempotent."""
        if self.process.poll() is not None:
            return
        # The server stops its own helpers on SIGTERM (signalling them too races its shutdown).
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        _signal_group(self.process, signal.SIGKILL)  # a server that hung, or helpers it left behind
        self.process.wait()

    def predict_path(self) -> str:
        """The path that answers predictions: ``/v2/models/<deployment>/infer`` or ``/api/v1.0/predictions``."""
        return f"/v2/models/{self.deployment}/infer" if self.protocol == "v2" else SELDON_PREDICT_PATH

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the server's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(cannot read {self.log_path}: {exc.strerror or exc})"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seldon_python() -> Path:
    """The Python of the seldon runtime's environment.

    Raises:
        MlopsError: it does not exist.
    """
    configured = os.environ.get(SELDON_PYTHON_ENV)
    python = Path(configured) if configured else REPO_ROOT / ".venv-seldon" / "bin" / "python"
    if not python.exists():
        raise MlopsError(
            f"seldon runtime: no Python at {python} (set {SELDON_PYTHON_ENV} to another one); "
            "run `make seldon-env` to create .venv-seldon"
        )
    return python


def start_predictor(
    *,
    protocol: str,
    model_uri: str,
    predictor: str,
    deployment: str,
    workdir: Path,
    port: int | None = None,
    ready_timeout: float = 90.0,
    env: Mapping[str, str] | None = None,
    prediction_log: str | None = None,
    store_root: str | None = None,
) -> PredictorServer:
    """Starts a model server for one predictor and waits until it answers.

    Args:
        protocol: ``v2`` (MLServer) or ``seldon`` (Seldon Core's Python wrapper).
        model_uri: the model folder, a local path or ``gs://``.
        predictor: the predictor name, reported with every answer and metric.
        deployment: the deployment name; the V2 model name.
        workdir: a folder for the server's log (``server.log``) and settings.
        port: the HTTP port (default: a free one).
        ready_timeout: seconds to wait for the model to be loaded and served.
        env: extra environment for the server (e.g. ``STORAGE_EMULATOR_HOST``).
        prediction_log: a prediction-log root; the ``v2`` server logs every prediction there
            (sets :data:`PREDICTION_LOG_ENV`).
        store_root: the model store whose versions the server may load (sets ``KFP_MLOPS_STORE``;
            None: the one in this process's environment). Other folders need the opt-out
            ``KFP_MLOPS_ALLOW_MODELS_OUTSIDE_STORE=1`` and ``MODEL_SHA256`` in ``env``.

    Raises:
        ConfigError: unknown protocol.
        MlopsError: the server exited or was not ready in time (with the tail of its log), or the
            seldon environment is missing.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    child_env = {
        **os.environ,
        **(env or {}),
        MODEL_URI_ENV: model_uri,
        DEPLOYMENT_ENV: deployment,
        PREDICTOR_ENV: predictor,
    }
    if prediction_log:
        child_env[PREDICTION_LOG_ENV] = prediction_log
    if store_root:
        child_env[STORE_ENV] = store_root
    if protocol == "v2":
        metrics_port = free_port()
        child_env.update(
            MLSERVER_HOST="127.0.0.1",
            MLSERVER_HTTP_PORT=str(port),
            MLSERVER_GRPC_PORT=str(free_port()),
            MLSERVER_METRICS_PORT=str(metrics_port),
            MLSERVER_METRICS_ENDPOINT=METRICS_PATH,
        )
        command = [sys.executable, "-m", MLSERVER_MODULE, str(workdir)]
        metrics_url = f"http://127.0.0.1:{metrics_port}{METRICS_PATH}"
        ready_path = f"/v2/models/{deployment}/ready"
    elif protocol == "seldon":
        command = [
            str(seldon_python()),
            "-m",
            "seldon_core.microservice",
            SELDON_INTERFACE,
            "--http-port",
            str(port),
            "--metrics-port",
            str(free_port()),
            # One worker: the metrics live in the worker process (threads share them; workers would not).
            "--workers",
            "1",
            "--threads",
            "4",
            "--grpc-workers",
            "0",
        ]
        metrics_url = f"http://127.0.0.1:{port}{METRICS_PATH}"
        ready_path = "/health/ping"
    else:
        raise ConfigError(f"protocol {protocol!r}: use v2 or seldon")
    log_path = workdir / "server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = PredictorServer(
        predictor=predictor,
        deployment=deployment,
        protocol=protocol,
        url=f"http://127.0.0.1:{port}",
        metrics_url=metrics_url,
        process=process,
        log_path=log_path,
    )
    _wait_ready(server, server.url + ready_path, ready_timeout)
    return server


def _wait_ready(server: PredictorServer, url: str, timeout: float) -> None:
    what = f"{server.protocol} server for predictor {server.predictor!r} of {server.deployment!r}"
    deadline = time.monotonic() + timeout
    while True:
        code = server.process.poll()
        if code is not None:
            _signal_group(server.process, signal.SIGKILL)  # helpers it may have left behind
            raise MlopsError(
                f"{what} exited with code {code} before it was ready; last lines of {server.log_path}:\n"
                f"{server.log_tail()}"
            )
        if _answers(url):
            return
        if time.monotonic() > deadline:
            server.stop()
            raise MlopsError(
                f"{what} was not ready after {timeout:.0f} s ({url}); last lines of {server.log_path}:\n"
                f"{server.log_tail()}"
            )
        time.sleep(0.1)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):  # refused, reset, or an error status while loading
        return False


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    # The server leads its own process group (start_new_session), which holds only its own helpers.
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
