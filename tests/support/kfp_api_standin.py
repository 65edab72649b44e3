"""A local stand-in for the KFP v2beta1 REST API, for tests.

No Kubeflow Pipelines backend can run on this machine (it needs Kubernetes, Argo Workflows, MySQL
and object storage), so the tests talk to this instead: a real HTTP server on 127.0.0.1 that
answers the requests ``kfp.Client`` (through ``kfp_server_api`` and urllib3) sends for the health
check, experiments, runs created from an inline pipeline spec, and recurring runs. Everything on
the client side is real; only the backend is imitated, in memory.

It imitates the parts of the real API's behaviour the project relies on: JSON shaped like
grpc-gateway's (ids are uuid strings, RFC 3339 timestamps, int64 fields as strings, empty fields
left out), ``display_name`` EQUALS filters, opaque page tokens and a page size cap, 404s for
unknown ids, and ``max_concurrency`` limited to 1-10. Test controls:

* ``token`` / ``cookie``: every request (the health check included, as behind Kubeflow's
  gateway) must carry ``Authorization: Bearer <token>`` or the ``Cookie`` pair, or it gets a 401
  -- or, with ``login_redirect``, a 302 to a login page, as oauth2-proxy answers a browser.
* :meth:`KfpApiStandIn.fail_next`: the next N matching requests fail with a status (and a
  ``Retry-After`` if given) and change nothing, to prove retries and their limits;
  :meth:`KfpApiStandIn.stall_next` delays them, to prove timeouts.
* ``run_states``: a run is created in the first state and moves one state along on every read
  of it, so a waiting client sees PENDING -> RUNNING -> its end state; ``run_error`` is the
  error message of a run that ends FAILED.

What it does not model: running pipelines (a run's state is only that script), multi-user
namespaces and profiles (listing ignores ``namespace``; any valid credential may do anything),
Istio's 403 "RBAC: access denied" or token expiry and audiences (a token is valid or it is not),
and pipeline upload (unknown paths get a 404, so a client that starts using them fails loudly).

Every request is recorded (method, path, query, JSON body, headers) so tests can assert what was sent.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from tests.support.loopback import JsonHandler, LoopbackServer

_API = "/apis/v2beta1"
# grpc status codes used in error bodies, as the real API returns them.
_GRPC_CODE = {400: 3, 401: 16, 404: 5, 409: 6, 429: 8, 500: 13, 503: 14}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stand-in received it."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """Answered as a JSON error body with this HTTP status (and these extra headers)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class _Failure:
    method: str
    path_prefix: str
    status: int
    message: str
    times: int
    retry_after: int | None


@dataclass
class _Stall:
    method: str
    path_prefix: str
    seconds: float
    times: int


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class KfpApiStandIn(LoopbackServer):
    """An in-memory KFP v2beta1 API on a free loopback port.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.

    Args:
        max_page_size: the largest page a list returns, whatever the client asks for (the real
            server caps it too); small values let tests exercise paging.
        token: the bearer token requests must carry (None: no token accepted); may be changed
            while serving, as a rotated service account token is.
        cookie: a ``NAME=VALUE`` session cookie requests may carry instead.
        login_redirect: refuse unauthenticated requests with a 302 to a login page, not a 401.
        run_states: the states a run goes through, one more on each read of it.
        run_error: the error message a run that ends ``FAILED`` carries.
    """

    def __init__(
        self,
        max_page_size: int = 100,
        *,
        token: str | None = None,
        cookie: str | None = None,
        login_redirect: bool = False,
        run_states: Sequence[str] = ("PENDING",),
        run_error: str = "task train failed: exit code 1",
    ) -> None:
        self.max_page_size = max_page_size
        self.token = token
        self.cookie = cookie
        self.login_redirect = login_redirect
        self.run_states = list(run_states)
        self.run_error = run_error
        self.experiments: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.recurring_runs: dict[str, dict[str, Any]] = {}
        self._requests: list[RecordedRequest] = []
        self._failures: list[_Failure] = []
        self._stalls: list[_Stall] = []
        self._lock = threading.Lock()
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Any]]] = [
            ("GET", re.compile(rf"{_API}/healthz"), self._healthz),
            ("POST", re.compile(rf"{_API}/experiments"), self._create_experiment),
            ("GET", re.compile(rf"{_API}/experiments"), self._list_experiments),
            ("GET", re.compile(rf"{_API}/experiments/([^/:]+)"), self._get_experiment),
            ("POST", re.compile(rf"{_API}/runs"), self._create_run),
            ("GET", re.compile(rf"{_API}/runs"), self._list_runs),
            ("GET", re.compile(rf"{_API}/runs/([^/:]+)"), self._get_run),
            ("POST", re.compile(rf"{_API}/recurringruns"), self._create_recurring_run),
            ("GET", re.compile(rf"{_API}/recurringruns"), self._list_recurring_runs),
            ("GET", re.compile(rf"{_API}/recurringruns/([^/:]+)"), self._get_recurring_run),
            ("DELETE", re.compile(rf"{_API}/recurringruns/([^/:]+)"), self._delete_recurring_run),
        ]

    # -- lifecycle ---------------------------------------------------------------------------

    # -- test helpers ------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in order."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, method: str, path_prefix: str = _API) -> list[RecordedRequest]:
        """The recorded requests with this method whose path starts with ``path_prefix``."""
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    def fail_next(
        self,
        method: str,
        path_prefix: str,
        status: int,
        message: str,
        *,
        times: int = 1,
        retry_after: int | None = None,
    ) -> None:
        """Makes the next ``times`` matching requests fail with ``status`` and ``message``; no state changes.

        ``retry_after`` adds a ``Retry-After`` header (seconds), as a 429 or 503 may carry.
        """
        with self._lock:
            self._failures.append(_Failure(method, path_prefix, status, message, times, retry_after))

    def stall_next(self, method: str, path_prefix: str, seconds: float, *, times: int = 1) -> None:
        """Makes the next ``times`` matching requests wait ``seconds`` before they are handled."""
        with self._lock:
            self._stalls.append(_Stall(method, path_prefix, seconds, times))

    # -- dispatch ----------------------------------------------------------------------------

    def _dispatch(self, method: str, path: str, query: dict[str, str], body: Any, headers: dict[str, str]) -> Any:
        time.sleep(self._stall_for(method, path))  # outside the lock: other requests go on meanwhile
        with self._lock:
            self._requests.append(RecordedRequest(method, path, query, body, headers))
            self._authenticate(headers)
            for failure in self._failures:
                if failure.method == method and path.startswith(failure.path_prefix):
                    failure.times -= 1
                    if failure.times == 0:
                        self._failures.remove(failure)
                    extra = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
                    raise ApiError(failure.status, failure.message, extra)
            for route_method, pattern, handler in self._routes:
                match = pattern.fullmatch(path)
                if match and route_method == method:
                    return handler(*match.groups(), query=query, body=body)
            raise ApiError(404, f"the KFP API stand-in does not implement {method} {path}")

    def _stall_for(self, method: str, path: str) -> float:
        with self._lock:
            for stall in self._stalls:
                if stall.method == method and path.startswith(stall.path_prefix):
                    stall.times -= 1
                    if stall.times == 0:
                        self._stalls.remove(stall)
                    return stall.seconds
        return 0.0

    def _authenticate(self, headers: dict[str, str]) -> None:
        """Lets a request through when it carries the token or the cookie (or none is required)."""
        if self.token is None and self.cookie is None:
            return
        bearer = headers.get("authorization", "")
        cookies = [c.strip() for c in headers.get("cookie", "").split(";")]
        if (self.token is not None and bearer == f"Bearer {self.token}") or (self.cookie in cookies):
            return
        if self.login_redirect:
            raise ApiError(302, "login required", {"Location": "/dex/auth?client_id=kubeflow-oidc-authservice"})
        raise ApiError(401, "Unauthorized")

    # -- endpoints (called with the lock held) -------------------------------------------------

    def _healthz(self, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        return {"multi_user": False}

    def _create_experiment(self, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        name = _required(body, "display_name", "experiment")
        if any(e["display_name"] == name for e in self.experiments.values()):
            raise ApiError(409, f"experiment {name!r} already exists")
        experiment = {
            "experiment_id": str(uuid.uuid4()),
            "display_name": name,
            "description": body.get("description") or "",
            "created_at": _now(),
            "namespace": body.get("namespace") or "",
            "storage_state": "AVAILABLE",
        }
        self.experiments[experiment["experiment_id"]] = experiment
        return _without_empty(experiment)

    def _list_experiments(self, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        return _page(list(self.experiments.values()), query, "experiments", self.max_page_size)

    def _get_experiment(self, experiment_id: str, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        return _without_empty(_lookup(self.experiments, experiment_id, "experiment"))

    def _create_run(self, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        name = _required(body, "display_name", "run")
        experiment = _lookup(self.experiments, _required(body, "experiment_id", "run"), "experiment")
        _require_pipeline(body, "run")
        now = _now()
        run = {
            **body,
            "run_id": str(uuid.uuid4()),
            "display_name": name,
            "experiment_id": experiment["experiment_id"],
            "storage_state": "AVAILABLE",
            "created_at": now,
            "scheduled_at": now,
            "state": self.run_states[0],
            "state_history": [{"update_time": now, "state": self.run_states[0]}],
        }
        self.runs[run["run_id"]] = run
        return _without_empty(run)

    def _list_runs(self, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        runs = [r for r in self.runs.values() if query.get("experiment_id") in (None, r["experiment_id"])]
        return _page(runs, query, "runs", self.max_page_size)

    def _get_run(self, run_id: str, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        run = _lookup(self.runs, run_id, "run")
        step = len(run["state_history"])
        if step < len(self.run_states):
            state = self.run_states[step]
            now = _now()
            run["state"] = state
            run["state_history"].append({"update_time": now, "state": state})
            if state in ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED"):
                run["finished_at"] = now
            if state == "FAILED":
                run["error"] = {"code": 2, "message": self.run_error}
        return _without_empty(run)

    def _create_recurring_run(self, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        name = _required(body, "display_name", "recurring run")
        experiment = _lookup(self.experiments, _required(body, "experiment_id", "recurring run"), "experiment")
        _require_pipeline(body, "recurring run")
        trigger = body.get("trigger") or {}
        if not (trigger.get("cron_schedule") or trigger.get("periodic_schedule")):
            raise ApiError(400, "recurring run needs a trigger: cron_schedule or periodic_schedule")
        max_concurrency = int(body.get("max_concurrency") or 1)
        if not 1 <= max_concurrency <= 10:
            raise ApiError(400, f"max concurrency {max_concurrency} is out of range; support 1-10")
        now = _now()
        mode = body.get("mode") or "ENABLE"
        recurring_run = {
            **body,
            "recurring_run_id": str(uuid.uuid4()),
            "display_name": name,
            "experiment_id": experiment["experiment_id"],
            "namespace": experiment["namespace"],
            "max_concurrency": str(max_concurrency),  # int64 travels as a JSON string
            "mode": mode,
            "status": "ENABLED" if mode == "ENABLE" else "DISABLED",
            "created_at": now,
            "updated_at": now,
        }
        self.recurring_runs[recurring_run["recurring_run_id"]] = recurring_run
        return _without_empty(recurring_run)

    def _list_recurring_runs(self, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        recurring_runs = [
            r for r in self.recurring_runs.values() if query.get("experiment_id") in (None, r["experiment_id"])
        ]
        # The proto field really is named recurringRuns (kfp_server_api maps it back).
        return _page(recurring_runs, query, "recurringRuns", self.max_page_size)

    def _get_recurring_run(self, recurring_run_id: str, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        return _without_empty(_lookup(self.recurring_runs, recurring_run_id, "recurring run"))

    def _delete_recurring_run(self, recurring_run_id: str, *, query: dict[str, str], body: Any) -> dict[str, Any]:
        _lookup(self.recurring_runs, recurring_run_id, "recurring run")
        del self.recurring_runs[recurring_run_id]
        return {}


class _Handler(JsonHandler):
    owner: KfpApiStandIn

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        path, query, raw = self.read_request()
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            self.send_json(400, {"code": 3, "message": "request body is not JSON"})
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            self.send_json(200, self.owner._dispatch(self.command, path, query, body, headers))
        except ApiError as err:
            error = {"code": _GRPC_CODE.get(err.status, 2), "message": err.message, "details": []}
            self._send_error(err.status, error, err.headers)
        except BrokenPipeError:
            pass  # the client gave up on a stalled request (its timeout), as tests make it

    def _send_error(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
        """Like ``send_json``, with extra headers (``Retry-After``, ``Location``)."""
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


# -- helpers ------------------------------------------------------------------------------------


def _required(body: Any, field: str, kind: str) -> str:
    if not isinstance(body, dict) or not body.get(field):
        raise ApiError(400, f"{kind} needs a non-empty {field}")
    return body[field]


def _require_pipeline(body: dict[str, Any], kind: str) -> None:
    if not (body.get("pipeline_spec") or body.get("pipeline_version_reference")):
        raise ApiError(400, f"{kind} needs pipeline_spec or pipeline_version_reference")


def _lookup(table: dict[str, dict[str, Any]], key: str, kind: str) -> dict[str, Any]:
    if key not in table:
        raise ApiError(404, f"{kind} {key} not found")
    return table[key]


def _without_empty(resource: dict[str, Any]) -> dict[str, Any]:
    """Drops empty fields, as grpc-gateway does when it marshals a response."""
    return {k: v for k, v in resource.items() if v not in (None, "", [], {})}


def _page(items: list[dict[str, Any]], query: dict[str, str], key: str, max_page_size: int) -> dict[str, Any]:
    """Filters ``items`` by the query's ``filter`` and returns the page its token points at."""
    items = [i for i in items if _matches(i, query.get("filter"))]
    size = min(int(query.get("page_size") or max_page_size), max_page_size)
    token = query.get("page_token")
    try:
        start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    except ValueError:
        raise ApiError(400, f"invalid page token {token!r}") from None
    page = items[start : start + size]
    response: dict[str, Any] = {key: [_without_empty(i) for i in page], "total_size": len(items)}
    if start + size < len(items):
        response["next_page_token"] = base64.urlsafe_b64encode(str(start + size).encode()).decode()
    return _without_empty(response)


def _matches(item: dict[str, Any], filter_json: str | None) -> bool:
    """Applies a JSON ``Filter``; only EQUALS on string fields is implemented."""
    if not filter_json:
        return True
    for predicate in json.loads(filter_json).get("predicates", []):
        if predicate.get("operation") not in (1, "EQUALS"):
            raise ApiError(400, f"the KFP API stand-in does not implement filter {predicate}")
        value = predicate.get("string_value", predicate.get("stringValue"))
        if item.get(predicate["key"]) != value:
            return False
    return True


KfpApiStandIn.handler = _Handler
