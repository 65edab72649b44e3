"""The local stack: what a SeldonDeployment is on a cluster, as processes on this machine.

One model server per predictor (:func:`.servers.start_predictor`), a shadow relay (:mod:`.shadow_relay`)
when the spec has a shadow, and an nginx router (:mod:`.router`) in front, all on loopback.
:meth:`LocalStack.apply` moves a running stack to a new spec without dropping requests: servers for
new or changed predictors start first, the router reloads, then servers no longer needed stop.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from kfp_mlops.core.errors import MlopsError
from kfp_mlops.serving.local import shadow_relay
from kfp_mlops.serving.local.router import Router, render_config
from kfp_mlops.serving.local.servers import PredictorServer, free_port, start_predictor
from kfp_mlops.serving.spec import DeploymentSpec


@dataclass
class _Relay:
    target: str
    port: int
    process: subprocess.Popen

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class LocalStack:
    """Serves a DeploymentSpec on ``port`` (0 picks a free one), keeping files under ``workdir``.

    With ``prediction_log`` (a :mod:`kfp_mlops.serving.prediction_log` root), every ``v2`` predictor logs
    its predictions there. The servers load versions of the model store ``store_root`` (None: the
    ``KFP_MLOPS_STORE`` of this process's environment), as on a cluster.
    """

    def __init__(
        self, workdir: Path, port: int = 0, *, prediction_log: str | None = None, store_root: str | None = None
    ) -> None:
        self.workdir = workdir
        self.prediction_log = prediction_log
        self.store_root = store_root
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.router = Router(workdir / "router", port or free_port())
        self.router.workdir.mkdir(parents=True, exist_ok=True)
        self.spec: DeploymentSpec | None = None
        self.servers: dict[str, PredictorServer] = {}
        self.relay: _Relay | None = None
        self._generation = 0

    @property
    def url(self) -> str:
        """The router's base URL: what clients call."""
        return self.router.url

    def apply(self, spec: DeploymentSpec) -> None:
        """Starts the stack on ``spec``, or moves the running stack to it.

        A spec that fails validation, or a predictor that fails to start, leaves the running stack
        as it was.

        Raises:
            InvalidSpec: the spec breaks a deployment rule.
            MlopsError: a server, the relay or the router failed to start.
        """
        spec.validate()
        self._generation += 1
        wanted = {p.name: p for p in spec.predictors}
        started: dict[str, PredictorServer] = {}
        try:
            for name, predictor in wanted.items():
                current = self.servers.get(name)
                if current is None or self._changed(current, spec, predictor.model_uri):
                    started[name] = start_predictor(
                        protocol=spec.protocol,
                        model_uri=predictor.model_uri,
                        predictor=name,
                        deployment=spec.name,
                        workdir=self.workdir / f"{name}-{self._generation}",
                        prediction_log=self.prediction_log,
                        store_root=self.store_root,
                    )
            servers = {name: started.get(name) or self.servers[name] for name in wanted}
            relay = self._relay_for(spec, servers)
            config = render_config(
                spec,
                {name: s.url.removeprefix("http://") for name, s in servers.items()},
                port=self.router.port,
                workdir=self.router.workdir,
                relay=f"127.0.0.1:{relay.port}" if relay else None,
            )
            if self.router.process is None:
                self.router.start(config)
            else:
                self.router.reload(config)
                time.sleep(0.5)  # old nginx workers finish their requests to the old servers
        except BaseException:
            for server in started.values():
                server.stop()
            raise
        retired = [s for name, s in self.servers.items() if servers.get(name) is not s]
        if self.relay is not None and self.relay is not relay:
            self.relay.stop()
        self.servers, self.relay, self.spec = servers, relay, spec
        for server in retired:
            server.stop()
        (self.workdir / "applied.json").write_text(json.dumps(spec.to_dict(), indent=2, sort_keys=True))

    def relay_stats(self) -> dict[str, int]:
        """Counters of the shadow relay (received, forwarded, dropped, failed)."""
        if self.relay is None:
            return {}
        with urllib.request.urlopen(f"http://127.0.0.1:{self.relay.port}/relay/stats", timeout=5) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        """Stops the router first (no new requests), then the relay and the servers."""
        self.router.stop()
        if self.relay is not None:
            self.relay.stop()
            self.relay = None
        for server in self.servers.values():
            server.stop()
        self.servers = {}

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _changed(self, server: PredictorServer, spec: DeploymentSpec, model_uri: str) -> bool:
        previous = self.spec
        if previous is None or previous.protocol != spec.protocol or previous.name != spec.name:
            return True
        before = next((p for p in previous.predictors if p.name == server.predictor), None)
        return before is None or before.model_uri != model_uri or server.process.poll() is not None

    def _relay_for(self, spec: DeploymentSpec, servers: dict[str, PredictorServer]) -> _Relay | None:
        if spec.shadow is None:
            return None
        target = servers[spec.shadow.name].url
        if self.relay is not None and self.relay.target == target and self.relay.process.poll() is None:
            return self.relay
        port = free_port()
        with open(self.workdir / "relay.log", "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", shadow_relay.__name__, "--port", str(port), "--target", target],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        relay = _Relay(target, port, process)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise MlopsError(f"shadow relay exited with {process.returncode}; see {self.workdir / 'relay.log'}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/relay/stats", timeout=1):
                    return relay
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        relay.stop()
        raise MlopsError(f"shadow relay did not answer on port {port}")
