"""A local stand-in for the part of the Kubernetes API a SeldonDeployment rollout uses, for tests.

No Kubernetes API server (nor Seldon's controller) can run on this machine, so the tests point the
real ``kubernetes`` client at this instead: a real HTTP server on 127.0.0.1 answering GET, PATCH
(server-side apply only) and DELETE on
``/apis/machinelearning.seldon.io/v1/namespaces/{namespace}/seldondeployments/{name}``, with
Kubernetes-shaped ``Status`` error bodies.

What it imitates:

* server-side apply: ``Content-Type: application/apply-patch+yaml`` (anything else: 415),
  ``fieldManager`` required (422), a body whose name, namespace, apiVersion or kind disagree with
  the URL refused (400), ``metadata.managedFields`` in the body refused (400); an object last
  applied by another manager is a 409 conflict unless ``force=true``. An apply creates the object
  if it is missing. Simplification: one applier's object replaces spec, labels and annotations
  wholesale (the real server merges per field owner); the project always applies whole objects.
* ``metadata.generation`` goes up only when the spec changes; ``resourceVersion`` on every write;
  ``status`` survives applies (it is a subresource) and starts empty on create.
* a scripted controller: after an apply that changed the spec, the status is left as it was (the
  controller has not reacted yet); each later GET advances a :class:`Plan` — ``Creating`` from the
  ``react_after``-th GET, then ``Available`` or ``Failed`` (with a description) from the
  ``settle_after``-th, or ``Creating`` for ever. Plans are queued per name with :meth:`plan`; an
  apply with no queued plan gets :data:`WORKS` (Available on the second GET).
* an optional admission check (``admission``) that refuses an apply with 422 and its messages.

Every request is recorded (method, path, query, content type, parsed body); :meth:`refuse_next` makes
the next request of a method fail with a given status (403 from RBAC, 500...).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from tests.support.loopback import JsonHandler, LoopbackServer

_PATH = re.compile(r"/apis/machinelearning\.seldon\.io/v1/namespaces/([^/]+)/seldondeployments/([^/]+)")
_API_VERSION, _KIND = "machinelearning.seldon.io/v1", "SeldonDeployment"
_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    500: "InternalError",
}


@dataclass(frozen=True)
class Plan:
    """How the scripted controller answers one apply.

    Attributes:
        outcome: ``"Available"``, ``"Failed"``, or ``"never"`` (stays ``Creating``).
        react_after: the GET from which the status shows ``Creating`` (1 = the first after the apply).
        settle_after: the GET from which the outcome shows.
        description: ``status.description`` for a failure.
    """

    outcome: str = "Available"
    react_after: int = 1
    settle_after: int = 2
    description: str = ""


WORKS = Plan()


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the stand-in received it."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any


class _Refused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class _Entry:
    obj: dict[str, Any]
    manager: str
    plan: Plan | None = None
    gets: int = 0


@dataclass
class KubeApiStandIn(LoopbackServer):
    """An in-memory SeldonDeployment API on a free loopback port; use as a context manager.

    Args:
        admission: returns the problems that make an apply fail with 422 (Seldon's webhook).
        observed_generation: the scripted controller reports ``status.observedGeneration``
            (Seldon Core v1 does not).
    """

    admission: Callable[[dict[str, Any]], list[str]] | None = None
    observed_generation: bool = False
    _objects: dict[tuple[str, str], _Entry] = field(default_factory=dict)
    _plans: dict[tuple[str, str], list[Plan]] = field(default_factory=dict)
    _requests: list[RecordedRequest] = field(default_factory=list)
    _refusals: list[list[Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _version: int = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig whose current context is this server."""
        return write_kubeconfig(path, self.url)

    # -- test helpers ------------------------------------------------------------------------

    def plan(self, namespace: str, name: str, *plans: Plan) -> None:
        """Queues how the controller answers the next applies of ``namespace/name``, in order."""
        with self._lock:
            self._plans.setdefault((namespace, name), []).extend(plans)

    def seed(self, obj: dict[str, Any], *, manager: str = "kubectl", state: str = "Available") -> dict[str, Any]:
        """Stores ``obj`` as if ``manager`` had applied it and the controller had settled on ``state``."""
        with self._lock:
            stored = self._store(json.loads(json.dumps(obj)), manager, previous=None)
            stored["status"] = {"state": state}
            if self.observed_generation:
                stored["status"]["observedGeneration"] = stored["metadata"]["generation"]
            return json.loads(json.dumps(stored))

    def refuse_next(self, method: str, code: int, message: str, *, after: int = 0) -> None:
        """Makes a ``method`` request fail with ``code`` and ``message`` (nothing changes).

        Args:
            after: how many ``method`` requests to answer normally first.
        """
        with self._lock:
            self._refusals.append([method, code, message, after])

    def object(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A copy of the stored object, or None."""
        with self._lock:
            entry = self._objects.get((namespace, name))
            return json.loads(json.dumps(entry.obj)) if entry else None

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_with(self, method: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method]

    # -- dispatch (called with the lock held) ------------------------------------------------

    def _dispatch(self, method: str, path: str, query: dict[str, str], content_type: str, raw: bytes) -> Any:
        body: Any = None
        if raw:
            try:
                body = yaml.safe_load(raw)  # JSON is YAML: covers both patch encodings
            except yaml.YAMLError:
                body = raw.decode(errors="replace")
        self._requests.append(RecordedRequest(method, path, query, content_type, json.loads(json.dumps(body))))
        refusal = next((r for r in self._refusals if r[0] == method), None)
        if refusal is not None:
            if refusal[3] > 0:
                refusal[3] -= 1
            else:
                self._refusals.remove(refusal)
                raise _Refused(refusal[1], refusal[2])
        match = _PATH.fullmatch(path)
        if not match:
            raise _Refused(404, "the server could not find the requested resource")
        namespace, name = match.groups()
        key = (namespace, name)
        if method == "GET":
            entry = self._found(key)
            self._advance(entry)
            return entry.obj
        if method == "DELETE":
            self._found(key)
            del self._objects[key]
            return {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "group": "machinelearning.seldon.io", "kind": "seldondeployments"},
            }
        if method == "PATCH":
            return self._apply(key, query, content_type, body)
        raise _Refused(405, f"the stand-in does not implement {method}")

    def _found(self, key: tuple[str, str]) -> _Entry:
        entry = self._objects.get(key)
        if entry is None:
            raise _Refused(404, f'seldondeployments.machinelearning.seldon.io "{key[1]}" not found')
        return entry

    def _apply(self, key: tuple[str, str], query: dict[str, str], content_type: str, body: Any) -> dict[str, Any]:
        if content_type != "application/apply-patch+yaml":
            raise _Refused(415, f"the stand-in implements server-side apply only, not {content_type!r}")
        manager = query.get("fieldManager")
        if not manager:
            raise _Refused(
                422, 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'
            )
        if not isinstance(body, dict):
            raise _Refused(400, "the apply body is not an object")
        metadata = body.get("metadata") or {}
        if (body.get("apiVersion"), body.get("kind")) != (_API_VERSION, _KIND):
            raise _Refused(
                400, f"apply body is {body.get('apiVersion')} {body.get('kind')}, not {_API_VERSION} {_KIND}"
            )
        if metadata.get("name") != key[1] or metadata.get("namespace", key[0]) != key[0]:
            raise _Refused(
                400,
                f"the name/namespace of the object ({metadata.get('namespace')}/{metadata.get('name')})"
                f" does not match the URL ({key[0]}/{key[1]})",
            )
        if "managedFields" in metadata:
            raise _Refused(400, "metadata.managedFields must be nil")
        previous = self._objects.get(key)
        if previous is not None and previous.manager != manager and query.get("force") != "true":
            raise _Refused(409, f'Apply failed with 1 conflict: conflict with "{previous.manager}": .spec')
        if self.admission is not None:
            problems = self.admission(body)
            if problems:
                raise _Refused(
                    422, f'admission webhook "v1.vseldondeployment.kb.io" denied the request: {"; ".join(problems)}'
                )
        stored = self._store(body, manager, previous)
        entry = self._objects[key]
        if previous is None or entry.obj["metadata"]["generation"] != previous.obj["metadata"]["generation"]:
            queued = self._plans.get(key) or []
            entry.plan, entry.gets = (queued.pop(0) if queued else WORKS), 0
        return stored

    def _store(self, body: dict[str, Any], manager: str, previous: _Entry | None) -> dict[str, Any]:
        """Writes ``body`` as the object; the controller's plan carries over (the caller sets a new one)."""
        metadata = body.setdefault("metadata", {})
        key = (metadata.setdefault("namespace", "default"), metadata["name"])
        self._version += 1
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        changed = previous is None or previous.obj["spec"] != body.get("spec")
        old = previous.obj["metadata"] if previous else {}
        metadata.update(
            uid=old.get("uid", f"uid-{self._version}"),
            creationTimestamp=old.get("creationTimestamp", now),
            generation=old.get("generation", 0) + 1 if changed else old["generation"],
            resourceVersion=str(self._version),
            managedFields=[{"manager": manager, "operation": "Apply", "apiVersion": _API_VERSION, "time": now}],
        )
        body["status"] = previous.obj.get("status", {}) if previous else {}
        self._objects[key] = _Entry(
            body, manager, previous.plan if previous else None, previous.gets if previous else 0
        )
        return body

    def _advance(self, entry: _Entry) -> None:
        """One GET's worth of the scripted controller."""
        if entry.plan is None:
            return
        entry.gets += 1
        plan, status = entry.plan, entry.obj.setdefault("status", {})
        if entry.gets >= plan.settle_after and plan.outcome != "never":
            status.update(state=plan.outcome, description=plan.description if plan.outcome == "Failed" else "")
        elif entry.gets >= plan.react_after:
            status.update(state="Creating", description="")
        else:
            return
        if self.observed_generation:
            status["observedGeneration"] = entry.obj["metadata"]["generation"]


def write_kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig whose current context is ``server`` (plain HTTP, no credentials)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "standin",
        "clusters": [{"name": "standin", "cluster": {"server": server}}],
        "users": [{"name": "standin", "user": {}}],
        "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "standin"}}],
    }
    path.write_text(yaml.safe_dump(config))
    return path


class _Handler(JsonHandler):
    owner: KubeApiStandIn

    def do_GET(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        path, query, raw = self.read_request()
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            with self.owner._lock:
                answer = json.loads(json.dumps(self.owner._dispatch(self.command, path, query, content_type, raw)))
            self.send_json(200, answer)
        except _Refused as refused:
            self.send_json(
                refused.code,
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Failure",
                    "message": refused.message,
                    "reason": _REASONS.get(refused.code, "Unknown"),
                    "code": refused.code,
                },
            )


KubeApiStandIn.handler = _Handler
