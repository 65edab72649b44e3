"""The kinds the cluster code applies, and how each reports readiness.

:data:`KINDS` maps a kind to its API coordinates, its checks (the renderers' ``validate``) and a
status reader returning ``(state, description, outcome)``: outcome True once the controller reports
the object ready for its spec, False once it reports a failure, None meanwhile.

* Seldon Core v1's operator sets ``status.state`` (``Creating``, ``Available``, ``Failed``) with
  ``status.description`` saying why it failed.
* KServe's controller sets conditions; ``Ready`` True means the InferenceService answers. A failure
  shows as ``PredictorReady`` False with reason ``RevisionFailed`` (Knative could not run the
  revision: image, crash, probes), or as ``modelStatus.transitionStatus`` ``BlockedByFailedLoad`` /
  ``InvalidSpec`` with ``lastFailureInfo``. Intermediate states read ``NotReady`` with the
  ``Ready`` condition's message.
* Our ``ServingRuntime`` reports no status: it is applied, never waited for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kfp_mlops.core.errors import ConfigError
from kfp_mlops.serving.cluster import kserve, seldon_deployment
from kfp_mlops.serving.spec import InvalidSpec

AVAILABLE, FAILED = "Available", "Failed"
# KServe's: the InferenceService answers, or not yet.
READY, NOT_READY = "Ready", "NotReady"
# KServe's model status when the model server could not load or serve the model.
_KSERVE_FAILED_TRANSITIONS = ("BlockedByFailedLoad", "InvalidSpec")


def _seldon_status(obj: Mapping[str, Any] | None) -> tuple[str, str, bool | None]:
    status = (obj or {}).get("status") or {}
    state = status.get("state") or ""
    return state, status.get("description") or "", {AVAILABLE: True, FAILED: False}.get(state)


def _kserve_status(obj: Mapping[str, Any] | None) -> tuple[str, str, bool | None]:
    status = (obj or {}).get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    model = status.get("modelStatus") or {}
    if model.get("transitionStatus") in _KSERVE_FAILED_TRANSITIONS:
        failure = model.get("lastFailureInfo") or {}
        return FAILED, failure.get("message") or failure.get("reason") or model["transitionStatus"], False
    predictor = conditions.get("PredictorReady") or {}
    if predictor.get("status") == "False" and predictor.get("reason") == "RevisionFailed":
        return FAILED, predictor.get("message") or "the predictor's revision failed", False
    ready = conditions.get("Ready")
    if ready is None:
        return "", "", None
    if ready.get("status") == "True":
        return READY, "", True
    return NOT_READY, ready.get("message") or ready.get("reason") or "", None


@dataclass(frozen=True)
class Kind:
    """A namespaced kind this module applies, and how to read its readiness.

    Attributes:
        kind, group, version, plural: as in its CustomResourceDefinition.
        validate: returns the document or raises InvalidSpec, before anything is sent.
        status: (state, description, ready: True / failed: False / not yet: None) of an object;
            None for a kind that reports no readiness.
        ready_state: the state that means ready, for messages.
        installs: what provides the kind, for a 404's hint.
    """

    kind: str
    group: str
    version: str
    plural: str
    validate: Callable[[Mapping[str, Any]], dict[str, Any]]
    status: Callable[[Mapping[str, Any] | None], tuple[str, str, bool | None]] | None
    ready_state: str
    installs: str


KINDS = {
    kind.kind: kind
    for kind in (
        Kind(
            seldon_deployment.KIND,
            "machinelearning.seldon.io",
            "v1",
            "seldondeployments",
            seldon_deployment.validate,
            _seldon_status,
            AVAILABLE,
            "Seldon Core",
        ),
        Kind(
            kserve.KIND, kserve.GROUP, "v1beta1", "inferenceservices", kserve.validate, _kserve_status, READY, "KServe"
        ),
        Kind(
            kserve.RUNTIME_KIND,
            kserve.GROUP,
            "v1alpha1",
            "servingruntimes",
            kserve.validate_runtime,
            None,
            "",
            "KServe",
        ),
    )
}


def kind_of(manifest: Mapping[str, Any]) -> Kind:
    """The :class:`Kind` of a manifest.

    Raises:
        ConfigError: a kind this module does not apply.
    """
    kind = KINDS.get(str(manifest.get("kind")))
    if kind is None or manifest.get("apiVersion") != f"{kind.group}/{kind.version}":
        raise ConfigError(
            f"cannot apply {manifest.get('apiVersion')} {manifest.get('kind')}: only "
            f"{', '.join(f'{k.group}/{k.version} {k.kind}' for k in KINDS.values())}"
        )
    return kind


def problems(manifest: Mapping[str, Any]) -> list[str]:
    """Every rule a manifest of one of :data:`KINDS` breaks (what an admission webhook would refuse)."""
    try:
        kind_of(manifest).validate(manifest)
    except InvalidSpec as exc:
        return [str(exc)]
    return []
