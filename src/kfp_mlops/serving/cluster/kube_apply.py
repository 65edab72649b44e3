"""Apply a deployment to a cluster and wait: server-side apply, wait until it is ready, restore on failure.

:func:`apply_and_wait` takes a ``SeldonDeployment`` or a KServe ``InferenceService`` (:data:`KINDS`
says how each reports readiness), reads what is there, applies the new object with server-side
apply (field manager ``kfp-mlops``, conflicts forced: the pipeline is the source of truth for its
deployments), then polls its status until the controller reports it ready: Seldon's
``status.state: Available``, KServe's ``Ready`` condition. If the controller reports a failure
(Seldon's ``Failed`` with ``status.description``; KServe's ``PredictorReady`` false with reason
``RevisionFailed``, or a model that failed to load) or the timeout passes, the previous state is
restored: the previous spec is applied again, or the object is deleted when there was none, and
:class:`ApplyFailed` says what happened. :func:`apply` applies an object that has no readiness
(our KServe ``ServingRuntime``) and returns at once.

Seldon Core v1 does not report ``status.observedGeneration``, so right after an update the status
may still be the previous generation's. A status is trusted once it changed after the apply, once
``settle_s`` passed, or at once when the object is new or the apply changed nothing; a controller
that does report ``observedGeneration`` (KServe's does) is trusted when it has caught up.

The apply goes through ``ApiClient.call_api`` with the ``application/apply-patch+yaml`` content
type: ``CustomObjectsApi.patch_namespaced_custom_object`` in kubernetes 30 always sends a merge
patch, and the dynamic client's apply needs API discovery (more requests, more RBAC, a cache file).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from kfp_mlops.core.errors import ConfigError, MlopsError
from kfp_mlops.serving.cluster import seldon_deployment
from kfp_mlops.serving.cluster.kinds import FAILED, Kind, kind_of

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

FIELD_MANAGER = "kfp-mlops"
_REQUEST_TIMEOUT_S = 30
# Polls start this fast and double up to poll_s: quick applies are seen at once, slow ones cheaply.
_FIRST_POLL_S = 0.25
# Set by the API server: an apply body must not carry managedFields, and a stale resourceVersion
# would make the restore fail as a conflict.
_SERVER_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


class ClusterError(MlopsError):
    """The Kubernetes API refused a request or could not be reached."""


@dataclass(frozen=True)
class ApplyResult:
    """What an apply-and-wait did.

    Attributes:
        name, namespace: the object.
        available: the controller reported it ready for the applied spec.
        state, description: the last state (``Available``/``Failed``/Seldon's others; ``Ready``/
            ``NotReady``/``Failed`` for KServe) and its description seen ("" if none).
        created: there was no object of that name before.
        generation: ``metadata.generation`` after the apply.
        previous_generation: the generation before the apply (None when created).
        restored: None, ``"reapplied"`` (the previous spec is back) or ``"deleted"`` (it was new).
        seconds: from the first request to the outcome.
    """

    name: str
    namespace: str
    available: bool
    state: str
    description: str
    created: bool
    generation: int | None
    previous_generation: int | None
    restored: str | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ApplyFailed(MlopsError):
    """The applied object failed or timed out; ``result`` says what was restored."""

    def __init__(self, message: str, result: ApplyResult) -> None:
        super().__init__(message)
        self.result = result


def in_pod() -> bool:
    """Whether this process runs in a Kubernetes pod (the kubelet sets ``KUBERNETES_SERVICE_HOST`` in every one)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def api_client(context: str | None = None) -> ApiClient:
    """A client for the cluster this process is configured for.

    In a pod (``KUBERNETES_SERVICE_HOST`` set) the pod's service account; elsewhere the kubeconfig
    named by ``KUBECONFIG`` (default ``~/.kube/config``) and its current context, or ``context``.

    Raises:
        ConfigError: no usable configuration.
    """
    from kubernetes import client, config

    try:
        if in_pod():
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)
        # Read KUBECONFIG now: the kubernetes package reads it once, at import.
        kubeconfig = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        return config.new_client_from_config(config_file=kubeconfig, context=context, persist_config=False)
    except (config.ConfigException, OSError) as exc:
        raise ConfigError(
            f"no Kubernetes cluster configured ({exc}): run in a pod, or set KUBECONFIG / ~/.kube/config"
        ) from None


def apply_and_wait(
    manifest: Mapping[str, Any],
    *,
    client: ApiClient | None = None,
    timeout_s: float = 600.0,
    poll_s: float = 5.0,
    settle_s: float = 15.0,
    field_manager: str = FIELD_MANAGER,
) -> ApplyResult:
    """Applies ``manifest`` and waits until it is ready; restores the previous state if not.

    Args:
        manifest: a SeldonDeployment or InferenceService (from the renderers); checked again here,
            before any request.
        client: the API client (default: :func:`api_client`).
        timeout_s: how long the controller has to report it ready.
        poll_s: the longest wait between status reads (they start at a quarter second and double).
        settle_s: after an update, how long an unchanged status counts as the previous spec's.
        field_manager: the server-side apply field manager.

    Returns:
        The result of an apply that became Available.

    Raises:
        InvalidSpec: the manifest breaks a rule; nothing was sent.
        ConfigError: a kind without readiness (use :func:`apply`), or one not in :data:`KINDS`.
        ClusterError: the apply was refused (nothing changed) or the cluster is unreachable.
        ApplyFailed: failed or timed out; the previous state was restored (see ``result``).
    """
    kind = kind_of(manifest)
    if kind.status is None:
        raise ConfigError(f"{kind.kind} reports no readiness to wait for: apply it with kube_apply.apply")
    manifest = kind.validate(manifest)
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    api = _CustomObjects(client or api_client(), kind, namespace)
    started = time.monotonic()
    previous = api.get(name)
    applied = api.apply(manifest, field_manager)
    generation = applied["metadata"].get("generation")
    previous_generation = previous["metadata"].get("generation") if previous else None
    state, description, available = _wait(
        api,
        name,
        started_at=time.monotonic(),
        deadline=started + timeout_s,
        poll_s=poll_s,
        settle_s=settle_s,
        trusted=previous is None or previous_generation == generation,
        before=kind.status(previous)[:2],
    )

    def result(restored: str | None) -> ApplyResult:
        return ApplyResult(
            name,
            namespace,
            available,
            state,
            description,
            previous is None,
            generation,
            previous_generation,
            restored,
            round(time.monotonic() - started, 3),
        )

    if available:
        return result(None)
    what = (
        f"failed: {description or 'no description'}"
        if state == FAILED
        else f"did not become {kind.ready_state} within {timeout_s:g} s (state {state or 'not reported'}"
        f"{': ' + description if description else ''})"
    )
    message = f"{kind.kind} {namespace}/{name} (generation {generation}) {what}"
    try:
        if previous is None:
            api.delete(name)
            restored, outcome = "deleted", "deleted it (there was none before)"
        else:
            api.apply(_reapplicable(previous), field_manager)
            restored, outcome = "reapplied", f"restored the previous spec (generation {previous_generation})"
    except ClusterError as exc:
        raise ApplyFailed(f"{message}; restoring the previous state failed too: {exc}", result(None)) from None
    raise ApplyFailed(f"{message}; {outcome}", result(restored))


def apply(
    manifest: Mapping[str, Any], *, client: ApiClient | None = None, field_manager: str = FIELD_MANAGER
) -> dict[str, Any]:
    """Server-side applies ``manifest`` (validated first) and returns the stored object, without waiting.

    Raises:
        InvalidSpec: the manifest breaks a rule; nothing was sent.
        ClusterError: the apply was refused or the cluster is unreachable.
    """
    kind = kind_of(manifest)
    manifest = kind.validate(manifest)
    api = _CustomObjects(client or api_client(), kind, manifest["metadata"]["namespace"])
    return api.apply(manifest, field_manager)


def read(manifest: Mapping[str, Any], *, client: ApiClient | None = None) -> dict[str, Any] | None:
    """The object of ``manifest``'s kind, namespace and name on the cluster, or None.

    Raises:
        ClusterError: the read was refused or the cluster is unreachable.
    """
    kind = kind_of(manifest)
    metadata = manifest["metadata"]
    result: dict[str, Any] | None = _CustomObjects(client or api_client(), kind, metadata["namespace"]).get(
        metadata["name"]
    )
    return result


def _wait(
    api: _CustomObjects,
    name: str,
    *,
    started_at: float,
    deadline: float,
    poll_s: float,
    settle_s: float,
    trusted: bool,
    before: tuple[str, str],
) -> tuple[str, str, bool]:
    """Polls until a trusted Available (True) or Failed (False), or the deadline; returns the last status."""
    state = description = ""
    polls = 0
    while True:
        try:
            current = api.get(name)
        except ClusterError as exc:  # a blip while polling: keep trying until the deadline
            current, description = {}, str(exc)
        if current is None:
            return "", "deleted by someone else while waiting", False
        if current:
            status = current.get("status") or {}
            state, description, outcome = api.kind.status(current)  # type: ignore[misc]
            observed = status.get("observedGeneration")
            if observed is not None:
                trusted = observed >= (current["metadata"].get("generation") or 0)
            else:
                trusted = trusted or (state, description) != before or time.monotonic() - started_at >= settle_s
            if trusted and outcome is not None:
                return state, description, outcome
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return state, description, False
        time.sleep(min(poll_s, _FIRST_POLL_S * 2**polls, remaining))
        polls += 1


def _reapplicable(previous: Mapping[str, Any]) -> dict[str, Any]:
    """The previous object as an apply body: its spec, labels and annotations; no server fields."""
    metadata = {k: v for k, v in previous["metadata"].items() if k not in _SERVER_METADATA}
    return {
        "apiVersion": previous["apiVersion"],
        "kind": previous["kind"],
        "metadata": metadata,
        "spec": previous["spec"],
    }


class _CustomObjects:
    """The three calls an apply makes on one kind, with Kubernetes errors turned into :class:`ClusterError`."""

    def __init__(self, client: ApiClient, kind: Kind, namespace: str) -> None:
        from kubernetes.client import CustomObjectsApi

        self._client = client
        self._custom = CustomObjectsApi(client)
        self.kind = kind
        self.namespace = namespace

    def get(self, name: str) -> dict[str, Any] | None:
        """The object, or None if there is none."""
        return self._call(
            "read",
            name,
            lambda: self._custom.get_namespaced_custom_object(
                self.kind.group,
                self.kind.version,
                self.namespace,
                self.kind.plural,
                name,
                _request_timeout=_REQUEST_TIMEOUT_S,
            ),
            missing_ok=True,
        )

    def apply(self, body: Mapping[str, Any], field_manager: str) -> dict[str, Any]:
        """Server-side apply; creates the object if there is none."""
        name = body["metadata"]["name"]
        path = f"/apis/{self.kind.group}/{self.kind.version}/namespaces/{self.namespace}/{self.kind.plural}/{name}"
        return self._call(
            "apply",
            name,
            lambda: self._client.call_api(
                path,
                "PATCH",
                query_params=[("fieldManager", field_manager), ("force", "true")],
                header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
                body=dict(body),
                response_type="object",
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _request_timeout=_REQUEST_TIMEOUT_S,
            ),
        )

    def delete(self, name: str) -> None:
        self._call(
            "delete",
            name,
            lambda: self._custom.delete_namespaced_custom_object(
                self.kind.group,
                self.kind.version,
                self.namespace,
                self.kind.plural,
                name,
                _request_timeout=_REQUEST_TIMEOUT_S,
            ),
            missing_ok=True,
        )

    def _call(self, verb: str, name: str, request: Callable[[], Any], missing_ok: bool = False) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        where = f"{self.kind.kind} {self.namespace}/{name}"
        try:
            return request()
        except ApiException as exc:
            if exc.status == 404 and missing_ok:
                return None
            raise ClusterError(
                f"{where}: {verb} refused ({exc.status} {exc.reason}): "
                f"{_api_message(exc)}{_hint(exc.status, self.kind, self.namespace)}"
            ) from None
        except (HTTPError, OSError) as exc:
            host = self._client.configuration.host
            raise ClusterError(f"{where}: {verb}: the Kubernetes API at {host} does not answer: {exc}") from None


def _api_message(exc: Any) -> str:
    import json

    try:
        return json.loads(exc.body).get("message") or exc.body
    except (TypeError, ValueError, AttributeError):
        return str(exc.body or exc.reason)


def _hint(status: int | None, kind: Kind, namespace: str) -> str:
    resource = f"{kind.plural}.{kind.group}"
    if status in (401, 403):
        rbac = (
            "manifests/base/rbac.yaml" if kind.kind == seldon_deployment.KIND else "manifests/overlays/kserve/rbac.yaml"
        )
        return (
            f" (the service account needs get, create, patch and delete on {resource} in namespace {namespace}: {rbac})"
        )
    if status == 404:
        return f" (is {kind.installs} installed? the {resource} resource was not found)"
    return ""
