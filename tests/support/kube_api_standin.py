"""A local stand-in for the part of the Kubernetes API our deployments use, for tests.

No Kubernetes API server (nor Seldon's or KServe's controllers) can run on this machine, so the
tests point the real ``kubernetes`` client at this instead: a real HTTP server on 127.0.0.1 serving
three namespaced custom resources, ``seldondeployments`` (machinelearning.seldon.io/v1),
``inferenceservices`` (serving.kserve.io/v1beta1) and ``servingruntimes`` (serving.kserve.io/v1alpha1),
at ``/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}``, with Kubernetes-shaped
``Status`` error bodies.

What it imitates, because our code depends on it:

* **CRD schemas, structurally**: every write is pruned of the fields the kind's CRD schema does not
  declare (recursively; ``x-kubernetes-preserve-unknown-fields`` keeps a subtree; an object declared
  without properties, such as an embedded ``metadata``, is kept whole, where the API server empties
  all but metadata), as the API server does for structural schemas, then validated against it
  (types, enums, required fields): 422 ``Invalid`` listing what is wrong. The schemas are the ones
  vendored in ``manifests/schemas/``.
* **writes**: server-side apply (PATCH, ``application/apply-patch+yaml``; anything else 415,
  ``fieldManager`` required 422; name, namespace, apiVersion or kind disagreeing with the URL 400;
  ``managedFields`` in the body 400; another manager's object a 409 conflict unless
  ``force=true``), create (POST) and update (PUT). Creating answers **201**, updating **200**;
  POST of an existing name is 409 ``AlreadyExists``. A body carrying ``metadata.resourceVersion``
  other than the stored one is a **409 conflict** ("the object has been modified"); PUT requires it.
  Simplification: one applier's object replaces spec, labels and annotations wholesale (the real
  server merges per field owner); the project always applies whole objects.
* ``metadata.generation`` goes up only when the spec changes; ``resourceVersion`` on every write;
  ``status`` survives writes (it is a subresource) and starts empty on create.
* **scripted controllers**, for SeldonDeployments and InferenceServices: after a write that changed
  the spec, the status is left as it was (the controller has not reacted yet); each later GET
  advances a :class:`Plan` -- reacting from the ``react_after``-th GET, settling on ready or failed
  from the ``settle_after``-th, or never. Plans are queued per name with :meth:`plan`; a write with
  no queued plan gets :data:`WORKS` (ready on the second GET). The statuses are shaped like the
  controllers' own: Seldon's operator sets ``state`` (``Creating``, ``Available``, ``Failed``),
  ``description`` and conditions ``DeploymentsReady``, ``ServicesReady``, ``Ready`` (no
  ``observedGeneration`` unless ``observed_generation``); KServe's sets ``observedGeneration``,
  conditions ``IngressReady``, ``PredictorReady``, ``Ready`` (a failure: ``PredictorReady`` False
  with reason ``RevisionFailed`` and ``modelStatus.transitionStatus: BlockedByFailedLoad``), and
  ``components.predictor`` with Knative revisions (``<name>-predictor-0000N``, a new one for every
  change of the predictor other than ``canaryTrafficPercent``) and the traffic split between the
  latest ready revision and the one rolled out before.
* an optional admission check (``admission``, for every kind) that refuses a write with 422.

What it still does not model: watches, list calls, label selectors, the status subresource's own
endpoint, per-field ownership and merging of server-side apply, defaulting (a real server fills
defaults the schemas declare), CEL rules (``x-kubernetes-validations``) and formats, finalizers and
deletion grace, RBAC (use :meth:`refuse_next` for a 403), ClusterServingRuntimes (cluster-scoped),
the pods, Knative routes and Istio behind the statuses, KServe's mutating webhook (which would
merge the runtime into the pod), and any time-based behaviour (the controllers advance per GET).

Every request is recorded (method, path, query, content type, parsed body); :meth:`refuse_next`
makes the next request of a method fail with a given status (403 from RBAC, 500...).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.support.loopback import JsonHandler, LoopbackServer

_SCHEMAS = Path(__file__).resolve().parents[2] / "manifests" / "schemas"
_PATH = re.compile(r"/apis/([^/]+)/([^/]+)/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?")
_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    415: "UnsupportedMediaType",
    422: "Invalid",
    500: "InternalError",
}


@dataclass(frozen=True)
class _Kind:
    group: str
    version: str
    plural: str
    kind: str
    schema: str
    controller: str | None  # "seldon", "kserve", or None (no status)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


_KINDS = {
    kind.plural: kind
    for kind in (
        _Kind(
            "machinelearning.seldon.io", "v1", "seldondeployments", "SeldonDeployment", "seldondeployment_v1", "seldon"
        ),
        _Kind(
            "serving.kserve.io",
            "v1beta1",
            "inferenceservices",
            "InferenceService",
            "inferenceservice_v1beta1",
            "kserve",
        ),
        _Kind("serving.kserve.io", "v1alpha1", "servingruntimes", "ServingRuntime", "servingruntime_v1alpha1", None),
    )
}


@dataclass(frozen=True)
class Plan:
    """How the scripted controller answers one change of spec.

    Attributes:
        outcome: ``"Available"`` (ready: Seldon's Available, KServe's Ready), ``"Failed"``, or
            ``"never"`` (stays not ready).
        react_after: the GET from which the status shows the controller working (1 = the first after the write).
        settle_after: the GET from which the outcome shows.
        description: why it failed (Seldon's ``status.description``, KServe's condition message).
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
    revisions: int = 0  # KServe: Knative revisions created so far
    rolled_out: str | None = None  # KServe: the revision taking the traffic the canary does not


@dataclass
class KubeApiStandIn(LoopbackServer):
    """In-memory SeldonDeployment, InferenceService and ServingRuntime APIs on a loopback port; a context manager.

    Args:
        admission: returns the problems that make a write fail with 422 (a validating webhook).
        observed_generation: the Seldon controller reports ``status.observedGeneration``
            (Seldon Core v1 does not; KServe's always does).
    """

    admission: Callable[[dict[str, Any]], list[str]] | None = None
    observed_generation: bool = False
    _objects: dict[tuple[str, str, str], _Entry] = field(default_factory=dict)
    _plans: dict[tuple[str, str], list[Plan]] = field(default_factory=dict)
    _requests: list[RecordedRequest] = field(default_factory=list)
    _refusals: list[list[Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _version: int = 0

    def write_kubeconfig(self, path: Path) -> Path:
        """A kubeconfig whose current context is this server."""
        return write_kubeconfig(path, self.url)

    # -- test helpers ------------------------------------------------------------------------

    def plan(self, namespace: str, name: str, *plans: Plan) -> None:
        """Queues how the controller answers the next spec changes of ``namespace/name``, in order."""
        with self._lock:
            self._plans.setdefault((namespace, name), []).extend(plans)

    def seed(self, obj: dict[str, Any], *, manager: str = "kubectl", state: str = "Available") -> dict[str, Any]:
        """Stores ``obj`` as if ``manager`` had applied it and the controller had settled on ``state``."""
        with self._lock:
            kind = _kind_of(obj)
            entry = self._store(kind, _prune_and_check(kind, _copy(obj)), manager, previous=None)
            entry.revisions = 1 if kind.controller == "kserve" else 0
            entry.plan = Plan(state, 0, 0, "") if state in ("Available", "Failed") else None
            if entry.plan is not None:
                entry.gets = -1
                self._advance(kind, entry)
            entry.plan = None
            return _copy(entry.obj)

    def refuse_next(self, method: str, code: int, message: str, *, after: int = 0) -> None:
        """Makes a ``method`` request fail with ``code`` and ``message`` (nothing changes).

        Args:
            after: how many ``method`` requests to answer normally first.
        """
        with self._lock:
            self._refusals.append([method, code, message, after])

    def object(self, namespace: str, name: str, kind: str = "SeldonDeployment") -> dict[str, Any] | None:
        """A copy of the stored object of ``kind``, or None."""
        plural = next(k.plural for k in _KINDS.values() if k.kind == kind)
        with self._lock:
            entry = self._objects.get((plural, namespace, name))
            return _copy(entry.obj) if entry else None

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_with(self, method: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method]

    # -- dispatch (called with the lock held) ------------------------------------------------

    def _dispatch(
        self, method: str, path: str, query: dict[str, str], content_type: str, raw: bytes
    ) -> tuple[int, Any]:
        body: Any = None
        if raw:
            try:
                body = yaml.safe_load(raw)  # JSON is YAML: covers both patch encodings
            except yaml.YAMLError:
                body = raw.decode(errors="replace")
        self._requests.append(RecordedRequest(method, path, query, content_type, _copy(body)))
        refusal = next((r for r in self._refusals if r[0] == method), None)
        if refusal is not None:
            if refusal[3] > 0:
                refusal[3] -= 1
            else:
                self._refusals.remove(refusal)
                raise _Refused(refusal[1], refusal[2])
        match = _PATH.fullmatch(path)
        kind = _KINDS.get(match.group(4)) if match else None
        if match is None or kind is None or (match.group(1), match.group(2)) != (kind.group, kind.version):
            raise _Refused(404, "the server could not find the requested resource")
        namespace, name = match.group(3), match.group(5)
        if name is None:
            if method != "POST":
                raise _Refused(405, f"the stand-in does not implement {method} on a collection")
            return self._write(kind, namespace, _name_of(body), query, body, create_only=True)
        key = (kind.plural, namespace, name)
        if method == "GET":
            entry = self._found(kind, key)
            self._advance(kind, entry)
            return 200, entry.obj
        if method == "DELETE":
            self._found(kind, key)
            del self._objects[key]
            details = {"name": name, "group": kind.group, "kind": kind.plural}
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
        if method == "PATCH":
            if content_type != "application/apply-patch+yaml":
                raise _Refused(415, f"the stand-in implements server-side apply only, not {content_type!r}")
            if not query.get("fieldManager"):
                raise _Refused(
                    422,
                    'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
                )
            return self._write(kind, namespace, name, query, body)
        if method == "PUT":
            self._found(kind, key)
            if not ((body or {}).get("metadata") or {}).get("resourceVersion"):
                raise _Refused(
                    422,
                    f'{kind.plural}.{kind.group} "{name}" is invalid: metadata.resourceVersion: '
                    "Invalid value: 0: must be specified for an update",
                )
            return self._write(kind, namespace, name, query, body)
        raise _Refused(405, f"the stand-in does not implement {method}")

    def _found(self, kind: _Kind, key: tuple[str, str, str]) -> _Entry:
        entry = self._objects.get(key)
        if entry is None:
            raise _Refused(404, f'{kind.plural}.{kind.group} "{key[2]}" not found')
        return entry

    def _write(
        self, kind: _Kind, namespace: str, name: str, query: dict[str, str], body: Any, create_only: bool = False
    ) -> tuple[int, dict[str, Any]]:
        if not isinstance(body, dict):
            raise _Refused(400, "the body is not an object")
        metadata = body.get("metadata") or {}
        if (body.get("apiVersion"), body.get("kind")) != (kind.api_version, kind.kind):
            raise _Refused(
                400, f"body is {body.get('apiVersion')} {body.get('kind')}, not {kind.api_version} {kind.kind}"
            )
        if metadata.get("name") != name or metadata.get("namespace", namespace) != namespace:
            raise _Refused(
                400,
                f"the name/namespace of the object ({metadata.get('namespace')}/{metadata.get('name')})"
                f" does not match the URL ({namespace}/{name})",
            )
        if "managedFields" in metadata:
            raise _Refused(400, "metadata.managedFields must be nil")
        key = (kind.plural, namespace, name)
        previous = self._objects.get(key)
        if create_only and previous is not None:
            raise _Refused(409, f'{kind.plural}.{kind.group} "{name}" already exists')
        version = metadata.get("resourceVersion")
        if version is not None and (previous is None or version != previous.obj["metadata"]["resourceVersion"]):
            raise _Refused(
                409,
                f'Operation cannot be fulfilled on {kind.plural}.{kind.group} "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
            )
        manager = query.get("fieldManager") or "kubectl"
        if previous is not None and previous.manager != manager and query.get("force") != "true" and not create_only:
            raise _Refused(409, f'Apply failed with 1 conflict: conflict with "{previous.manager}": .spec')
        pruned = _prune_and_check(kind, body)
        if self.admission is not None:
            problems = self.admission(pruned)
            if problems:
                raise _Refused(422, f"admission webhook denied the request: {'; '.join(problems)}")
        entry = self._store(kind, pruned, manager, previous)
        if kind.controller and (
            previous is None or entry.obj["metadata"]["generation"] != previous.obj["metadata"]["generation"]
        ):
            queued = self._plans.get((namespace, name)) or []
            entry.plan, entry.gets = (queued.pop(0) if queued else WORKS), 0
            if kind.controller == "kserve" and (previous is None or _template(previous.obj) != _template(entry.obj)):
                entry.revisions += 1
        return (201 if previous is None else 200), entry.obj

    def _store(self, kind: _Kind, body: dict[str, Any], manager: str, previous: _Entry | None) -> _Entry:
        """Writes ``body`` as the object; the controller's plan carries over (the caller sets a new one)."""
        metadata = body.setdefault("metadata", {})
        key = (kind.plural, metadata.setdefault("namespace", "default"), metadata["name"])
        self._version += 1
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        changed = previous is None or previous.obj.get("spec") != body.get("spec")
        old = previous.obj["metadata"] if previous else {}
        metadata.update(
            uid=old.get("uid", f"uid-{self._version}"),
            creationTimestamp=old.get("creationTimestamp", now),
            generation=old.get("generation", 0) + 1 if changed else old["generation"],
            resourceVersion=str(self._version),
            managedFields=[{"manager": manager, "operation": "Apply", "apiVersion": kind.api_version, "time": now}],
        )
        if kind.controller:
            body["status"] = previous.obj.get("status", {}) if previous else {}
        entry = _Entry(body, manager)
        if previous is not None:
            entry.plan, entry.gets = previous.plan, previous.gets
            entry.revisions, entry.rolled_out = previous.revisions, previous.rolled_out
        self._objects[key] = entry
        return entry

    def _advance(self, kind: _Kind, entry: _Entry) -> None:
        """One GET's worth of the scripted controller."""
        if entry.plan is None or kind.controller is None:
            return
        entry.gets += 1
        plan = entry.plan
        if entry.gets >= plan.settle_after and plan.outcome != "never":
            outcome = plan.outcome
        elif entry.gets >= plan.react_after:
            outcome = "Creating"
        else:
            return
        if kind.controller == "seldon":
            entry.obj["status"] = _seldon_status(entry.obj, outcome, plan.description)
            if self.observed_generation:
                entry.obj["status"]["observedGeneration"] = entry.obj["metadata"]["generation"]
        else:
            if outcome == "Available":
                latest = _revision(entry.obj, entry.revisions)
                canary = entry.obj["spec"]["predictor"].get("canaryTrafficPercent")
                if canary is None or entry.rolled_out in (None, latest):
                    entry.rolled_out = latest
            entry.obj["status"] = _kserve_status(entry, outcome, plan.description)


def _kind_of(obj: dict[str, Any]) -> _Kind:
    return next(k for k in _KINDS.values() if (k.api_version, k.kind) == (obj.get("apiVersion"), obj.get("kind")))


def _name_of(body: Any) -> str:
    return str(((body or {}).get("metadata") or {}).get("name") or "") if isinstance(body, dict) else ""


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


@cache
def _schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((_SCHEMAS / f"{name}.json").read_text())
    return loaded


def _prune(value: Any, schema: dict[str, Any]) -> Any:
    """``value`` without the fields ``schema`` does not declare (structural pruning)."""
    if schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("x-kubernetes-int-or-string"):
        return value
    if isinstance(value, dict):
        if "properties" in schema:
            declared = schema["properties"]
            return {k: _prune(v, declared[k]) for k, v in value.items() if k in declared}
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            return {k: _prune(v, extra) for k, v in value.items()}
        return value
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_prune(v, schema["items"]) for v in value]
    return value


def _prune_and_check(kind: _Kind, body: dict[str, Any]) -> dict[str, Any]:
    schema = _schema(kind.schema)
    pruned = {
        **_prune({k: v for k, v in body.items() if k != "metadata"}, schema),
        "metadata": body.get("metadata") or {},
    }
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(pruned), key=lambda e: list(map(str, e.path)))
    if errors:
        details = "; ".join(f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message[:150]}" for e in errors[:10])
        raise _Refused(422, f'{kind.kind}.{kind.group} "{_name_of(body)}" is invalid: {details}')
    return pruned


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, ok: bool | None, reason: str = "", message: str = "") -> dict[str, Any]:
    condition = {
        "type": kind,
        "status": {True: "True", False: "False", None: "Unknown"}[ok],
        "lastTransitionTime": _now(),
    }
    return {**condition, **({"reason": reason} if reason else {}), **({"message": message} if message else {})}


def _seldon_status(obj: dict[str, Any], outcome: str, description: str) -> dict[str, Any]:
    """What Seldon Core v1's operator reports (state, description, conditions, address)."""
    name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
    ready = outcome == "Available"
    failed = outcome == "Failed"
    return {
        "state": outcome,
        "description": description if failed else "",
        "address": {"url": f"http://{name}-default.{namespace}.svc.cluster.local:8000/api/v1.0/predictions"},
        "conditions": [
            _condition(
                "DeploymentsReady", ready, "" if ready else "Deployments not ready", description if failed else ""
            ),
            _condition("ServicesReady", ready or failed, "" if ready else "Services not ready"),
            _condition("Ready", ready, "" if ready else "Deployments not ready"),
        ],
    }


def _template(obj: dict[str, Any]) -> Any:
    """What makes a new Knative revision: the predictor, its canary share aside."""
    return {k: v for k, v in obj["spec"]["predictor"].items() if k != "canaryTrafficPercent"}


def _revision(obj: dict[str, Any], number: int) -> str:
    return f"{obj['metadata']['name']}-predictor-{number:05d}"


def _kserve_status(entry: _Entry, outcome: str, description: str) -> dict[str, Any]:
    """What KServe's controller reports: observedGeneration, conditions, the predictor's revisions and traffic."""
    obj = entry.obj
    name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
    latest = _revision(obj, entry.revisions)
    ready, failed = outcome == "Available", outcome == "Failed"
    canary = obj["spec"]["predictor"].get("canaryTrafficPercent")
    if ready and canary is not None and entry.rolled_out not in (None, latest):
        traffic = [
            {"revisionName": latest, "percent": canary, "latestRevision": True, "tag": "latest"},
            {"revisionName": entry.rolled_out, "percent": 100 - canary, "latestRevision": False, "tag": "prev"},
        ]
    elif ready or entry.rolled_out is None:
        traffic = [{"revisionName": latest, "percent": 100, "latestRevision": True}] if ready else []
    else:  # the new revision is not ready: the rolled-out one keeps everything
        traffic = [{"revisionName": entry.rolled_out, "percent": 100, "latestRevision": False}]
    status: dict[str, Any] = {
        "observedGeneration": obj["metadata"]["generation"],
        "url": f"http://{name}.{namespace}.example.com",
        "address": {"url": f"http://{name}.{namespace}.svc.cluster.local"},
        "conditions": [
            _condition("IngressReady", ready or None),
            _condition(
                "PredictorReady",
                ready if ready or failed else None,
                "RevisionFailed" if failed else ("" if ready else "RevisionMissing"),
                f'Revision "{latest}" failed with message: {description}' if failed else "",
            ),
            _condition("Ready", ready if ready or failed else None, "" if ready else "RevisionMissing"),
        ],
        "components": {
            "predictor": {
                "latestCreatedRevision": latest,
                **({"latestReadyRevision": latest} if ready else {}),
                **({"latestRolledoutRevision": entry.rolled_out} if entry.rolled_out else {}),
                "traffic": traffic,
            }
        },
        "modelStatus": {
            "transitionStatus": "BlockedByFailedLoad" if failed else ("UpToDate" if ready else "InProgress"),
            "states": {"activeModelState": "Loaded" if ready else "Pending", "targetModelState": "Loaded"},
            **({"lastFailureInfo": {"reason": "ModelLoadFailed", "message": description}} if failed else {}),
        },
    }
    return status


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

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def _handle(self) -> None:
        path, query, raw = self.read_request()
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        try:
            with self.owner._lock:
                code, answer = self.owner._dispatch(self.command, path, query, content_type, raw)
                answer = _copy(answer)
            self.send_json(code, answer)
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
