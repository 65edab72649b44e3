"""Render a :class:`DeploymentSpec` as a KServe ``InferenceService``, our MLServer runtime as a ``ServingRuntime``.

KServe (``serving.kserve.io``, Apache-2.0) is Kubeflow's own model serving. Rendering fills
``manifests/templates/kserve/``: ``inferenceservice.yaml`` (v1beta1) and ``servingruntime.yaml``
(v1alpha1; :func:`serving_runtime` renders it namespaced, or as a ``ClusterServingRuntime``). The
InferenceService's predictor names our runtime (``kfp-mlops-mlserver``, model format
``kfp-mlops``) and gives the model server the same environment as on Seldon: ``MODEL_URI`` (the
server reads ``gs://`` itself; no ``storageUri``, so no storage-initializer), ``PREDICTOR_NAME``,
``DEPLOYMENT_NAME`` and, when the options name one, ``PREDICTION_LOG_URI``. Request logging is
chosen per deployment: our prediction log (what a rollout reads), KServe's ``logger`` (every
request and response as CloudEvents to ``request_logger_url``), both, or neither.

**Traffic.** KServe has one predictor per InferenceService and splits traffic only between
revisions: ``canaryTrafficPercent: k`` gives the revision just rendered ``k`` % and leaves the rest
on the revision rolled out before (Knative, so the deployment mode is pinned to ``Serverless``).
A spec with one live predictor renders as that predictor alone; a spec with two live predictors
(``ab``, a rollout's canary stages) renders the *second* as the new revision with its traffic as
``canaryTrafficPercent``, and records the first (the one already serving) in the annotations
``kfp-mlops/stable-predictor`` and ``kfp-mlops/stable-model-uri``. KServe cannot be told which
revision that is: :func:`kfp_mlops.serving.cluster.platform.deploy` rolls the first predictor out
alone beforehand when the cluster does not already serve it (:func:`rolled_out`).

**No shadow.** KServe has no shadow predictor (an InferenceGraph can fan out, but its answers are
not dropped, and a copy through a relay of ours is not available on a cluster), and a canary at 0 %
would give the challenger no requests, so a rollout would hold for ever waiting for its data. A
spec with a shadow is refused with an error saying what to do instead: ``ab`` for a deployment, and
for a rollout a plan without the shadow stage (``{"shadow": false}``), which starts at its first
canary step.

:func:`problems` checks an InferenceService against the vendored CRD schema (undeclared fields
reported, not pruned) and the rules KServe's validating webhook enforces: the name format
(DNS-1035), one implementation per predictor, ``canaryTrafficPercent`` within 0..100 and only in
Serverless mode, canary shares summing to at most 100, supported ``storageUri`` schemes, replica
bounds; plus Knative's revision-name length and our runtime's contract. :func:`runtime_problems`
checks a runtime; :func:`pod_problems` the pod KServe builds from the two (the "restricted" Pod
Security Standard, :mod:`.pod_security`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kfp_mlops.serving.cluster import pod_security
from kfp_mlops.serving.cluster.resources import (
    DNS1123_LABEL,
    ServingOptions,
    label_problems,
    require_filled,
    schema_problems,
    set_env,
    template,
    where,
)
from kfp_mlops.serving.runtimes.environment import (
    DEPLOYMENT_ENV,
    MODEL_URI_ENV,
    PREDICTION_LOG_ENV,
    PREDICTOR_ENV,
    STORE_ENV,
)
from kfp_mlops.serving.spec import DeploymentSpec, InvalidSpec, PredictorSpec

GROUP = "serving.kserve.io"
API_VERSION, KIND = f"{GROUP}/v1beta1", "InferenceService"
RUNTIME_API_VERSION = f"{GROUP}/v1alpha1"
RUNTIME_KIND, CLUSTER_RUNTIME_KIND = "ServingRuntime", "ClusterServingRuntime"
RUNTIME_NAME, MODEL_FORMAT = "kfp-mlops-mlserver", "kfp-mlops"
# The container KServe merges an InferenceService's model fields into.
CONTAINER_NAME = "kserve-container"
DEPLOYMENT_MODE = f"{GROUP}/deploymentMode"
STABLE_PREDICTOR = "kfp-mlops/stable-predictor"
STABLE_MODEL_URI = "kfp-mlops/stable-model-uri"
# What a predictor may be implemented by; KServe's webhook wants exactly one.
IMPLEMENTATIONS = (
    "model",
    "sklearn",
    "xgboost",
    "tensorflow",
    "pytorch",
    "triton",
    "onnx",
    "huggingface",
    "pmml",
    "lightgbm",
    "paddle",
    "containers",
)
STORAGE_SCHEMES = (
    "gs://",
    "s3://",
    "pvc://",
    "file://",
    "https://",
    "http://",
    "hdfs://",
    "webhdfs://",
    "oci://",
    "hf://",
)
# KServe's webhook: an InferenceService name is a DNS-1035 label.
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# Knative names the predictor's revisions <name>-predictor-00001, which must be a DNS-1123 label.
_REVISION_SUFFIX = "-predictor-00001"
_MAX_NAME = 63 - len(_REVISION_SUFFIX)
_RAW_MODES = ("RawDeployment", "Standard")
_INFERENCE_SCHEMA, _RUNTIME_SCHEMA = "inferenceservice_v1beta1.json", "servingruntime_v1alpha1.json"


def render(spec: DeploymentSpec, *, serving: ServingOptions) -> dict[str, Any]:
    """The InferenceService for ``spec`` (see the module docstring for how traffic maps), checked.

    Args:
        spec: what to deploy; validated first. Protocol ``v2`` only, no shadow, at most two live
            predictors (the first already serving, the second the canary).
        serving: the model-server image (for the pod check), service account, prediction log and
            KServe logger.

    Raises:
        InvalidSpec: the spec cannot be served by KServe, or the object breaks a rule; lists every problem.
        ConfigError: invalid options; a template is unreadable or leaves a value unfilled.
    """
    spec.validate()
    serving.validate()
    found = []
    if spec.protocol != "v2":
        found.append(
            f"protocol {spec.protocol!r}: KServe serves the Open Inference Protocol (v2) through our MLServer "
            "runtime; use protocol v2, or target seldon for the Seldon protocol"
        )
    if spec.shadow is not None:
        found.append(
            f"predictor {spec.shadow.name!r} is a shadow: KServe has no shadow predictor; deploy ab instead, "
            'or roll out with a plan without the shadow stage ({"shadow": false})'
        )
    if len(spec.live) > 2:
        found.append(f"{len(spec.live)} live predictors: KServe splits traffic between two revisions at most")
    if found:
        raise InvalidSpec(f"deployment {spec.name!r} cannot run on KServe: {'; '.join(found)}")
    latest = spec.live[-1]
    doc = template("kserve/inferenceservice.yaml")
    doc["metadata"].update(name=spec.name, namespace=spec.namespace)
    doc["metadata"]["labels"].update(spec.labels)
    predictor = doc["spec"]["predictor"]
    predictor["minReplicas"] = latest.replicas
    predictor["labels"].update({"kfp-mlops/deployment": spec.name, "kfp-mlops/predictor": latest.name})
    model = predictor["model"]
    for name, value in ((MODEL_URI_ENV, latest.model_uri), (PREDICTOR_ENV, latest.name), (DEPLOYMENT_ENV, spec.name)):
        set_env(model, name, value)
    if serving.prediction_log_uri:
        set_env(model, PREDICTION_LOG_ENV, serving.prediction_log_uri)
    if serving.store_root:  # the servers load versions of this store only
        set_env(model, STORE_ENV, serving.store_root)
    if serving.service_account:
        predictor["serviceAccountName"] = serving.service_account
    if serving.request_logger_url:
        predictor["logger"] = {"mode": "all", "url": serving.request_logger_url}
    if len(spec.live) == 2:
        stable = spec.live[0]
        predictor["canaryTrafficPercent"] = latest.traffic
        doc["metadata"]["annotations"].update({STABLE_PREDICTOR: stable.name, STABLE_MODEL_URI: stable.model_uri})
    require_filled(doc, "kserve/inferenceservice.yaml")
    found = problems(doc) + pod_problems(doc, serving_runtime(serving=serving, namespace=spec.namespace))
    if found:
        raise InvalidSpec(f"InferenceService {where(doc)} is invalid: {'; '.join(found)}")
    return doc


def serving_runtime(*, serving: ServingOptions, namespace: str | None) -> dict[str, Any]:
    """Our MLServer runtime: a ``ServingRuntime`` in ``namespace``, or a ``ClusterServingRuntime`` (None).

    Raises:
        InvalidSpec: the rendered runtime breaks a rule (an image with whitespace, say).
        ConfigError: a template is unreadable or leaves a value unfilled.
    """
    doc = template("kserve/servingruntime.yaml")
    if namespace is None:
        doc["kind"] = CLUSTER_RUNTIME_KIND
    else:
        doc["metadata"]["namespace"] = namespace
    [container] = doc["spec"]["containers"]
    container["image"] = serving.image_v2
    require_filled(doc, "kserve/servingruntime.yaml")
    return validate_runtime(doc)


def validate(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Returns the InferenceService ``doc`` (as a plain dict) if :func:`problems` finds nothing.

    Raises:
        InvalidSpec: naming it and listing every problem.
    """
    found = problems(doc)
    if found:
        raise InvalidSpec(f"{KIND} {where(doc)} is invalid: {'; '.join(found)}")
    return dict(doc)


def validate_runtime(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Returns the runtime ``doc`` if :func:`runtime_problems` finds nothing; raises InvalidSpec otherwise."""
    found = runtime_problems(doc)
    if found:
        raise InvalidSpec(f"{doc.get('kind')} {where(doc)} is invalid: {'; '.join(found)}")
    return dict(doc)


def problems(doc: Mapping[str, Any]) -> list[str]:
    """Every rule an InferenceService breaks: the CRD schema first, then KServe's webhook and our contract."""
    found = schema_problems(doc, _INFERENCE_SCHEMA, KIND)
    if not found and not isinstance(doc.get("spec"), Mapping):
        found.append("spec: missing")
    if found:
        return found
    metadata, spec = doc.get("metadata") or {}, doc["spec"]
    annotations = metadata.get("annotations") or {}
    if (doc.get("apiVersion"), doc.get("kind")) != (API_VERSION, KIND):
        found.append(f"apiVersion/kind: expected {API_VERSION} {KIND}, got {doc.get('apiVersion')} {doc.get('kind')}")
    name = metadata.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        found.append(f"metadata.name: {name!r} must be a DNS-1035 label ([a-z]([-a-z0-9]*[a-z0-9])?), KServe's rule")
    elif len(name) > _MAX_NAME:
        found.append(
            f"metadata.name: {name!r} is longer than {_MAX_NAME} characters: Knative's revision name "
            f"{name}{_REVISION_SUFFIX} would exceed a DNS-1123 label's 63"
        )
    namespace = metadata.get("namespace")
    if not isinstance(namespace, str) or not DNS1123_LABEL.match(namespace) or len(namespace) > 63:
        found.append(f"metadata.namespace: {namespace!r} must be a DNS-1123 label")
    found += label_problems("metadata.labels", metadata.get("labels"))
    predictor = spec["predictor"]
    found += _component_problems("spec.predictor", predictor)
    found += label_problems("spec.predictor.labels", predictor.get("labels"))
    canary = predictor.get("canaryTrafficPercent")
    if canary is not None and annotations.get(DEPLOYMENT_MODE) in _RAW_MODES:
        found.append(
            f"spec.predictor.canaryTrafficPercent: needs Serverless mode (Knative revisions), not "
            f"{annotations[DEPLOYMENT_MODE]}"
        )
    canaries = spec.get("canary") or []
    for index, entry in enumerate(canaries):
        found += _percent_problems(f"spec.canary[{index}].trafficPercent", entry.get("trafficPercent"))
        found += _component_problems(f"spec.canary[{index}].predictor", entry.get("predictor") or {})
    total = sum(entry.get("trafficPercent") or 0 for entry in canaries if isinstance(entry.get("trafficPercent"), int))
    if total > 100:
        found.append(f"spec.canary: trafficPercent sums to {total}, must be at most 100")
    found += _contract_problems(predictor, annotations)
    return found


def runtime_problems(doc: Mapping[str, Any]) -> list[str]:
    """Every rule a ServingRuntime or ClusterServingRuntime breaks: schema, then what KServe and we need."""
    found = schema_problems(doc, _RUNTIME_SCHEMA, str(doc.get("kind") or RUNTIME_KIND))
    if found:
        return found
    if (doc.get("apiVersion"), doc.get("kind")) not in (
        (RUNTIME_API_VERSION, RUNTIME_KIND),
        (RUNTIME_API_VERSION, CLUSTER_RUNTIME_KIND),
    ):
        found.append(
            f"apiVersion/kind: expected {RUNTIME_API_VERSION} {RUNTIME_KIND} or {CLUSTER_RUNTIME_KIND}, "
            f"got {doc.get('apiVersion')} {doc.get('kind')}"
        )
    metadata, spec = doc.get("metadata") or {}, doc.get("spec") or {}
    name = metadata.get("name")
    if not isinstance(name, str) or not DNS1123_LABEL.match(name) or len(name) > 63:
        found.append(f"metadata.name: {name!r} must be a DNS-1123 label")
    if doc.get("kind") == CLUSTER_RUNTIME_KIND and "namespace" in metadata:
        found.append("metadata.namespace: a ClusterServingRuntime is cluster-scoped")
    containers = spec.get("containers") or []
    if CONTAINER_NAME not in [c.get("name") for c in containers]:
        found.append(f"spec.containers: none named {CONTAINER_NAME!r}, the one KServe merges the model into")
    for container in containers:
        if not container.get("image"):
            found.append(f"spec.containers ({container.get('name')}): no image")
        if len(container.get("ports") or []) > 1:
            found.append(f"spec.containers ({container.get('name')}): Knative allows one declared port")
    if not any(f.get("name") == MODEL_FORMAT for f in spec.get("supportedModelFormats") or []):
        found.append(f"spec.supportedModelFormats: {MODEL_FORMAT!r} is missing")
    return found


def pod_problems(inference_service: Mapping[str, Any], runtime: Mapping[str, Any]) -> list[str]:
    """The "restricted" Pod Security Standard on the pod KServe builds from the predictor and the runtime."""
    predictor = inference_service["spec"]["predictor"]
    [container] = [dict(c) for c in runtime["spec"]["containers"] if c.get("name") == CONTAINER_NAME]
    model = predictor.get("model") or {}
    for key in ("securityContext", "volumeMounts", "ports"):
        if key in model:  # the model's fields override the runtime container's
            container[key] = model[key]
    pod = {
        "automountServiceAccountToken": predictor.get("automountServiceAccountToken"),
        "securityContext": predictor.get("securityContext"),
        "volumes": [*(runtime["spec"].get("volumes") or []), *(predictor.get("volumes") or [])],
        "containers": [container, *(predictor.get("containers") or [])],
        **{key: predictor[key] for key in ("hostNetwork", "hostPID", "hostIPC") if key in predictor},
    }
    return [f"spec.predictor: {problem}" for problem in pod_security.problems(pod)]


def rolled_out(doc: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """(predictor name, model URI) of the revision a rendered InferenceService rolls out, or None.

    The stable predictor of a canary (its annotations), else the predictor it renders; None when
    ``doc`` is None or was not rendered here.
    """
    if not doc:
        return None
    predictor = (doc.get("spec") or {}).get("predictor") or {}
    annotations = (doc.get("metadata") or {}).get("annotations") or {}
    if predictor.get("canaryTrafficPercent") is not None and STABLE_PREDICTOR in annotations:
        return annotations[STABLE_PREDICTOR], annotations.get(STABLE_MODEL_URI, "")
    env = {e.get("name"): e.get("value") for e in (predictor.get("model") or {}).get("env") or []}
    if not env.get(PREDICTOR_ENV) or not env.get(MODEL_URI_ENV):
        return None
    return env[PREDICTOR_ENV], env[MODEL_URI_ENV]


def stable_spec(spec: DeploymentSpec) -> DeploymentSpec | None:
    """For a two-way split, the spec serving its first (stable) predictor alone; None otherwise."""
    if len(spec.live) != 2:
        return None
    stable = spec.live[0]
    return DeploymentSpec(
        spec.name,
        (PredictorSpec(stable.name, stable.model_uri, 100, replicas=stable.replicas),),
        namespace=spec.namespace,
        protocol=spec.protocol,
        labels=spec.labels,
    )


def _component_problems(at: str, predictor: Mapping[str, Any]) -> list[str]:
    found = []
    implementations = [key for key in IMPLEMENTATIONS if predictor.get(key)]
    if len(implementations) != 1:
        found.append(
            f"{at}: exactly one implementation is needed ({', '.join(IMPLEMENTATIONS)}), got "
            f"{', '.join(implementations) or 'none'}"
        )
    found += _percent_problems(f"{at}.canaryTrafficPercent", predictor.get("canaryTrafficPercent"))
    low, high = predictor.get("minReplicas"), predictor.get("maxReplicas")
    if isinstance(low, int) and low < 0:
        found.append(f"{at}.minReplicas: {low} must not be negative")
    if isinstance(low, int) and isinstance(high, int) and high and low > high:
        found.append(f"{at}: minReplicas {low} is above maxReplicas {high}")
    for key in implementations:
        uri = (predictor.get(key) or {}).get("storageUri") if key != "containers" else None
        if uri and not uri.startswith(STORAGE_SCHEMES):
            found.append(
                f"{at}.{key}.storageUri: {uri!r} has a scheme KServe cannot fetch ({', '.join(STORAGE_SCHEMES)})"
            )
    logger = predictor.get("logger")
    if logger is not None and not re.match(r"^https?://", logger.get("url") or ""):
        found.append(f"{at}.logger.url: {logger.get('url')!r} must be an http:// or https:// URL")
    return found


def _percent_problems(at: str, value: Any) -> list[str]:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100):
        return []
    return [f"{at}: {value!r} must be an integer from 0 to 100"]


def _contract_problems(predictor: Mapping[str, Any], annotations: Mapping[str, str]) -> list[str]:
    """Our runtime's contract: what a model server needs, and a canary's stable revision recorded."""
    model = predictor.get("model")
    if not model:
        return []  # not one of ours (a kustomize user's own predictor): KServe's rules only
    found = []
    if model.get("runtime") != RUNTIME_NAME or (model.get("modelFormat") or {}).get("name") != MODEL_FORMAT:
        found.append(f"spec.predictor.model: must name runtime {RUNTIME_NAME!r} and model format {MODEL_FORMAT!r}")
    env = {e.get("name"): e.get("value") for e in model.get("env") or []}
    for name in (MODEL_URI_ENV, PREDICTOR_ENV, DEPLOYMENT_ENV):
        if not env.get(name):
            found.append(f"spec.predictor.model: {name} is missing or empty")
    canary = predictor.get("canaryTrafficPercent")
    if canary is not None and not (annotations.get(STABLE_PREDICTOR) and annotations.get(STABLE_MODEL_URI)):
        found.append(
            f"metadata.annotations: a canary needs {STABLE_PREDICTOR} and {STABLE_MODEL_URI} "
            "(the revision keeping the rest of the traffic)"
        )
    return found
