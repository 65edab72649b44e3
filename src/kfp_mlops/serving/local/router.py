"""The local stack's router: nginx honouring a DeploymentSpec's traffic split and shadow.

What the rendered configuration does, for every request to the router's port:

* **weighted split** over the live predictors (``split_clients`` on a random key), or a **sticky**
  one when the caller sends ``X-Session-Id`` (the same id always reaches the same predictor);
* **override**: ``X-Predictor: <name>`` picks a live predictor outright (unknown names are ignored);
* **shadow**: every request is mirrored to the shadow relay (:mod:`.shadow_relay`), which
  acknowledges at once and forwards the copy; the shadow's answer never reaches a client;
* the response carries ``X-Predictor`` naming the predictor that answered;
* **request ids**: the router issues every request's id (nginx's ``$request_id``, 32 random hex
  digits), sets it as ``X-Request-Id`` on the proxied request and on the mirrored copy, and returns
  it to the client, so every predictor logs the request under the same id
  (:mod:`kfp_mlops.serving.prediction_log`) and no client can choose it: a client's own
  ``X-Request-Id`` travels on as ``X-Client-Request-Id`` and comes back under that name (a client
  retrying with the same id gets a new request id each time);
* **limits**: bodies over :data:`~kfp_mlops.serving.model.MAX_REQUEST_BYTES` (the ceiling of
  every model server's own limit) get a JSON 413 from nginx itself; slow clients time out;
* **fallback**: a live predictor that refuses the connection, times out or answers 500/502/503
  is retried once on the other live predictors (nginx ``backup`` servers and
  ``proxy_next_upstream``), so a dead or failing challenger costs no client request; the
  response's ``X-Predictor`` names the predictor that actually answered;
* ``/predictors/<name>/...`` goes straight to one predictor, shadow included (feedback must reach
  the predictor that served a request, not a fresh split), with the rest of the path as the client
  sent it (still percent-encoded: a ``%0D`` never reaches a predictor as a carriage return);
* ``/router/health`` answers 200 while nginx runs.

File paths in the configuration are quoted; a work folder whose path nginx cannot take literally
(``$``, control characters) is refused. :meth:`Router.reload` checks a configuration before
signalling nginx, then waits for nginx to start workers on it: nginx can still refuse a checked
configuration when it applies it (a listening port taken, say) and then keeps serving the old one,
so a reload without new workers is a failure too. Whatever goes wrong -- a refusal by the check or
by nginx, a check that fails silently -- puts the running configuration's file back and raises,
so the caller keeps what the old configuration routes to.

nginx is Debian's ``nginx-light`` (``apt-get install nginx-light``).
"""

from __future__ import annotations

import getpass
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from kfp_mlops.core.errors import MlopsError
from kfp_mlops.serving.model import MAX_REQUEST_BYTES
from kfp_mlops.serving.spec import DeploymentSpec

PREDICTOR_HEADER = "X-Predictor"
SESSION_HEADER = "X-Session-Id"
REQUEST_ID_HEADER = "X-Request-Id"
CLIENT_REQUEST_ID_HEADER = "X-Client-Request-Id"
CLIENT_TIMEOUT_S = 10  # to send the request line, headers or the next part of the body
RELOAD_TIMEOUT_S = 10.0  # for nginx to start workers on a reloaded configuration
_UNQUOTABLE = re.compile(r"[$\x00-\x1f\x7f]")  # "$" starts a variable even inside quotes


def render_config(
    spec: DeploymentSpec,
    backends: Mapping[str, str],
    *,
    port: int,
    workdir: Path,
    relay: str | None = None,
) -> str:
    """The nginx configuration for ``spec``.

    Args:
        spec: a validated deployment spec.
        backends: predictor name -> ``host:port`` of its server.
        port: the router's loopback port.
        workdir: where nginx keeps its pid, logs and temporary files.
        relay: ``host:port`` of the shadow relay; required when the spec has a shadow.
    """
    spec.validate()
    if spec.shadow is not None and relay is None:
        raise MlopsError(f"deployment {spec.name}: has shadow {spec.shadow.name!r} but no relay address")
    live = spec.live
    fallback_names = [p.name for p in live if p.traffic > 0]
    routed = []
    for name, address in backends.items():
        backups = "".join(
            f" server {backends[other]} backup;" for other in fallback_names if other != name and other in backends
        )
        routed.append(f"    upstream p_{name} {{ server {address};{backups} keepalive 32; }}")
        # The direct route never falls back: feedback must reach this predictor or fail.
        routed.append(f"    upstream d_{name} {{ server {address}; keepalive 16; }}")
    upstreams = "\n".join(routed)
    answered = "\n".join(f'        "~(^|, ){re.escape(address)}$" {name};' for name, address in backends.items())
    # split_clients takes percentages; the last predictor with traffic takes the rest ("*"), which
    # is exact because live traffic sums to 100. Zero-traffic predictors are reachable only by name.
    serving = [p for p in live if p.traffic > 0]
    shares = [f"        {p.traffic}% {p.name};" for p in serving[:-1]] + [f"        * {serving[-1].name};"]
    overrides = "\n".join(f"        {p.name} {p.name};" for p in live)
    direct = "\n".join(f"        {name} d_{name};" for name in backends)
    mirror = ""
    if spec.shadow is not None:
        mirror = "            mirror /_shadow;\n            mirror_request_body on;\n"
    shadow_location = ""
    if spec.shadow is not None:
        shadow_location = f"""
        location = /_shadow {{
            internal;
            proxy_pass http://relay$request_uri;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Shadow-Of {spec.name};
            proxy_set_header {REQUEST_ID_HEADER} $request_id;
            proxy_set_header {CLIENT_REQUEST_ID_HEADER} $http_{_variable(REQUEST_ID_HEADER)};
            proxy_connect_timeout 1s;
            proxy_read_timeout 2s;
        }}"""
    relay_upstream = f"    upstream relay {{ server {relay}; keepalive 16; }}\n" if relay else ""
    tmp = workdir / "tmp"
    # The router's request id upstream and back; the client's under its own name.
    ids = f"""proxy_set_header {REQUEST_ID_HEADER} $request_id;
            proxy_set_header {CLIENT_REQUEST_ID_HEADER} $http_{_variable(REQUEST_ID_HEADER)};"""
    answered_ids = f"""proxy_hide_header {REQUEST_ID_HEADER};
            proxy_hide_header {CLIENT_REQUEST_ID_HEADER};
            add_header {REQUEST_ID_HEADER} $request_id always;
            add_header {CLIENT_REQUEST_ID_HEADER} $http_{_variable(REQUEST_ID_HEADER)} always;"""
    return f"""# Rendered by kfp_mlops.serving.local.router for deployment {spec.name}; do not edit.
worker_processes 1;
daemon off;
user {_quoted(getpass.getuser())};
pid {_quoted(workdir / "nginx.pid")};
error_log {_quoted(workdir / "error.log")} warn;
events {{ worker_connections 1024; }}
http {{
    log_format routed '$time_iso8601 $status $request_time $upstream_response_time '
                      '$predictor $answered_by $request_id "$request"';
    access_log {_quoted(workdir / "access.log")} routed;
    client_body_temp_path {_quoted(tmp / "body")};
    proxy_temp_path {_quoted(tmp / "proxy")};
    fastcgi_temp_path {_quoted(tmp / "fastcgi")};
    uwsgi_temp_path {_quoted(tmp / "uwsgi")};
    scgi_temp_path {_quoted(tmp / "scgi")};
    client_max_body_size {MAX_REQUEST_BYTES};
    client_body_buffer_size 1m;
    client_header_timeout {CLIENT_TIMEOUT_S}s;
    client_body_timeout {CLIENT_TIMEOUT_S}s;
    send_timeout {CLIENT_TIMEOUT_S}s;
    default_type application/json;

{upstreams}
{relay_upstream}
    map $http_{_variable(SESSION_HEADER)} $split_key {{
        "" $request_id;
        default $http_{_variable(SESSION_HEADER)};
    }}
    split_clients "${{split_key}}" $split_predictor {{
{chr(10).join(shares)}
    }}
    map $upstream_addr $answered_by {{
        default $predictor;
{answered}
    }}
    map $http_{_variable(PREDICTOR_HEADER)} $predictor {{
        default $split_predictor;
{overrides}
    }}
    map $direct_name $direct_upstream {{
        default "";
{direct}
    }}
    # The direct route's path as the client sent it: $uri (and its captures) are percent-decoded.
    map $request_uri $direct_path {{
        default "";
        "~^/predictors/[^/?]+(?<sent>/[^?]*)" $sent;
    }}

    server {{
        listen 127.0.0.1:{port};
        keepalive_requests 100000;
        error_page 413 = @too_large;

        location = /router/health {{
            return 200 '{{"status": "ok", "deployment": "{spec.name}"}}';
        }}

        location @too_large {{
            return 413 '{{"error": "request body exceeds the limit of {MAX_REQUEST_BYTES} bytes"}}';
        }}

        location ~ ^/predictors/(?<direct_name>[a-z0-9-]+)/ {{
            if ($direct_upstream = "") {{
                return 404 '{{"error": "no predictor $direct_name in deployment {spec.name}"}}';
            }}
            if ($direct_path = "") {{
                return 400 '{{"error": "a direct route is /predictors/<name>/<path>"}}';
            }}
            proxy_pass http://$direct_upstream$direct_path$is_args$args;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            {ids}
            {answered_ids}
            add_header {PREDICTOR_HEADER} $direct_name always;
        }}

        location / {{
{mirror}            proxy_pass http://p_$predictor;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            {ids}
            proxy_connect_timeout 1s;
            proxy_next_upstream error timeout http_500 http_502 http_503 non_idempotent;
            proxy_next_upstream_tries 2;
            {answered_ids}
            add_header {PREDICTOR_HEADER} $answered_by always;
        }}
{shadow_location}
    }}
}}
"""


def _quoted(path: object) -> str:
    """``path`` as a double-quoted nginx string.

    Raises:
        MlopsError: the path holds a character nginx would not take literally (``$``, a control character).
    """
    text = str(path)
    if _UNQUOTABLE.search(text):
        raise MlopsError(f"router: nginx cannot use the path {text!r} (no '$' or control characters)")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _variable(header: str) -> str:
    """The name of nginx's variable for a request header (``$http_<name>``), without the prefix."""
    return header.lower().replace("-", "_")


class Router:
    """An nginx process serving a rendered configuration; reloads in place on change."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.config_path = workdir / "nginx.conf"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, config: str, ready_timeout: float = 10.0) -> None:
        """Writes ``config`` and starts nginx on it.

        Raises:
            MlopsError: nginx is not installed, the configuration is refused, or it does not answer.
        """
        nginx = _nginx()
        if nginx is None:
            raise MlopsError("nginx not found: the local stack's router needs it (apt-get install nginx-light)")
        self._write(config)
        self._check(nginx)
        with open(self.workdir / "nginx.out", "ab") as log:
            self.process = subprocess.Popen(
                [nginx, "-p", str(self.workdir), "-c", str(self.config_path)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise MlopsError(f"router: nginx exited with {self.process.returncode}; see {self.workdir}/error.log")
            try:
                with urllib.request.urlopen(f"{self.url}/router/health", timeout=1):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        self.stop()
        raise MlopsError(f"router: nginx did not answer on {self.url} within {ready_timeout} s")

    def reload(self, config: str) -> None:
        """Swaps in ``config`` without dropping connections (nginx re-reads it on SIGHUP).

        The new configuration is checked first; a refused one leaves the running one in place.
        """
        if self.process is None or self.process.poll() is not None:
            raise MlopsError("router: not running")
        previous = self.config_path.read_text()
        self._write(config)
        try:
            self._check(_nginx() or "/usr/sbin/nginx")
            workers = _children(self.process.pid)
            self.process.send_signal(signal.SIGHUP)
            self._wait_for_new_workers(workers)
        except BaseException:  # whatever failed, the file must stay the configuration nginx runs
            self._write(previous)
            raise

    def _wait_for_new_workers(self, before: set[int], timeout: float = RELOAD_TIMEOUT_S) -> None:
        """Waits until nginx runs a worker it started after the reload signal (it applied the configuration).

        Raises:
            MlopsError: none started in time: nginx refused the configuration and serves the old one.
        """
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _children(self.process.pid) - before:
                return
            time.sleep(0.02)
        said = (self.workdir / "error.log").read_text(errors="replace").splitlines()
        reason = next((line for line in reversed(said) if "[emerg]" in line or "[alert]" in line), "no reason logged")
        raise MlopsError(f"router: nginx did not apply the configuration and still serves the old one: {reason}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stops nginx (graceful quit, then kill)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def _write(self, config: str) -> None:
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.workdir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(config)
        os.replace(tmp, self.config_path)

    def _check(self, nginx: str) -> None:
        checked = subprocess.run(
            [nginx, "-t", "-q", "-p", str(self.workdir), "-c", str(self.config_path)], capture_output=True, text=True
        )
        if checked.returncode != 0:
            said = (checked.stderr.strip() or checked.stdout.strip()).splitlines()
            # nginx names the problem on an [emerg] line and ends with "test failed".
            reason = next((line for line in said if "[emerg]" in line), said[-1] if said else "")
            reason = reason or f"`nginx -t` exited with {checked.returncode} and said nothing"
            raise MlopsError(f"router: nginx refused the configuration: {reason}")


def _children(pid: int) -> set[int]:
    """The ids of the processes whose parent is ``pid`` (nginx's workers, for its master)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # ended meanwhile
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _nginx() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
