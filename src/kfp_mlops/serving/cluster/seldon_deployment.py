"""Render a :class:`DeploymentSpec` as a Seldon Core v1 ``SeldonDeployment``, and check it before use.

Rendering fills the YAML templates in ``manifests/templates/`` (package data of
``kfp_mlops.manifests``): ``seldondeployment.yaml`` for the object, ``predictor.yaml`` once per
predictor, and ``runtimes/<protocol>.yaml`` for the model-server container, whose image comes from
the :class:`~kfp_mlops.serving.cluster.resources.ServingOptions`. Every predictor runs one custom
container with ``MODEL_URI``, ``PREDICTOR_NAME`` and ``DEPLOYMENT_NAME`` in its environment, and
``PREDICTION_LOG_URI`` when the options name a prediction log (both runtimes append every answered
request to it, which is what a rollout reads); its pods run under the options' service account when
one is named. The container and its one graph node are named after the deployment (clients address
a v2 model by that name, and the server serves the model under the deployment's name). Predictors
run without Seldon's executor (``seldon.io/no-engine``), so Seldon's own request ``logger`` (sent
by the executor) is not available: KServe's ``request_logger_url`` is refused here. Their pods meet
the "restricted" Pod Security Standard.

:func:`problems` checks a SeldonDeployment document (rendered here, or built by kustomize) three
ways: against the CRD schema vendored in ``manifests/schemas/`` (with undeclared fields reported
rather than silently pruned), against the rules Seldon's admission webhook enforces (traffic,
shadows, graph nodes matching containers, modelUri for prepackaged servers), against the runtime
contract (named ports, probes on declared ports, a model URI), and against the "restricted" Pod
Security Standard the serving namespace enforces (:mod:`.pod_security`), whose refusal would
otherwise leave the deployment without pods and without an error.

Run ``python -m kfp_mlops.serving.cluster.seldon_deployment SPEC.json [-o OUT.yaml]`` to render a spec file
(such as the one the deploy component writes for the local stack) for ``kubectl apply``; the
images come from the environment (:class:`~kfp_mlops.core.config.Settings`), the service account and
the prediction log from its options.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import ConfigError, MlopsError
from kfp_mlops.serving.cluster import pod_security
from kfp_mlops.serving.cluster.resources import (
    DNS1123_LABEL,
    ServingOptions,
    label_problems,
    require_filled,
    set_env,
    template,
    to_yaml,
)
from kfp_mlops.serving.cluster.resources import schema_problems as _schema_problems
from kfp_mlops.serving.cluster.resources import where as _where
from kfp_mlops.serving.runtimes.environment import (
    DEPLOYMENT_ENV,
    MODEL_URI_ENV,
    PREDICTION_LOG_ENV,
    PREDICTOR_ENV,
    STORE_ENV,
)
from kfp_mlops.serving.spec import DeploymentSpec, InvalidSpec, PredictorSpec

API_VERSION = "machinelearning.seldon.io/v1"
KIND = "SeldonDeployment"
# Pod labels (from predictor.yaml) the metrics Services select by.
DEPLOYMENT_LABEL = "kfp-mlops/deployment"
PREDICTOR_LABEL = "kfp-mlops/predictor"
PROTOCOL_LABEL = "kfp-mlops/protocol"
# What Seldon Core 1.18's webhook accepts for spec.protocol ("" means its default, seldon).
SELDON_PROTOCOLS = ("", "seldon", "tensorflow", "v2", "kfserving")

_SCHEMA = "seldondeployment_v1.json"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def render(spec: DeploymentSpec, *, serving: ServingOptions) -> dict[str, Any]:
    """The SeldonDeployment for ``spec``, checked by :func:`problems`.

    Args:
        spec: what to deploy; validated first.
        serving: the model-server images, the pods' service account, the prediction log.

    Raises:
        InvalidSpec: the spec, or the object rendered from it, breaks a rule; lists every problem.
        ConfigError: invalid options (a KServe logger URL among them); a template is unreadable or
            leaves a value unfilled.
    """
    spec.validate()
    serving.validate()
    if serving.request_logger_url:
        raise ConfigError(
            f"request_logger_url={serving.request_logger_url!r}: KServe's request logger has no Seldon "
            "counterpart here (predictors run without Seldon's executor, which sends Seldon's logger events); "
            "log predictions with prediction_log_uri"
        )
    doc = template("seldondeployment.yaml")
    doc["metadata"].update(name=spec.name, namespace=spec.namespace)
    doc["metadata"]["labels"].update(spec.labels)
    doc["spec"]["protocol"] = spec.protocol
    doc["spec"]["predictors"] = [_predictor(spec, p, serving) for p in spec.predictors]
    require_filled(doc, "seldondeployment.yaml")
    return validate(doc)


def validate(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Returns ``doc`` (as a plain dict) if :func:`problems` finds nothing.

    Raises:
        InvalidSpec: naming the SeldonDeployment and listing every problem.
    """
    found = problems(doc)
    if found:
        raise InvalidSpec(f"SeldonDeployment {_where(doc)} is invalid: {'; '.join(found)}")
    return dict(doc)


def problems(doc: Mapping[str, Any]) -> list[str]:
    """Every rule a SeldonDeployment document breaks (empty when it is fit to apply).

    Schema errors come first; the webhook and runtime rules run only on a document that matches
    the schema, since they assume its types.
    """
    found = schema_problems(doc)
    if not found and not isinstance(doc.get("spec"), Mapping):
        found.append("spec: missing")
    if found:
        return found
    spec = doc["spec"]
    metadata = doc.get("metadata") or {}
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        found.append(f"apiVersion/kind: expected {API_VERSION} {KIND}, got {doc.get('apiVersion')} {doc.get('kind')}")
    for key in ("name", "namespace"):
        value = metadata.get(key)
        if not isinstance(value, str) or not DNS1123_LABEL.match(value) or len(value) > 63:
            found.append(f"metadata.{key}: {value!r} must be a DNS-1123 label")
    found += label_problems("metadata.labels", metadata.get("labels"))
    if spec.get("protocol", "") not in SELDON_PROTOCOLS:
        found.append(f"spec.protocol: {spec['protocol']!r} is not one of {', '.join(p for p in SELDON_PROTOCOLS if p)}")
    found += _traffic_problems(spec["predictors"])
    names = [p["name"] for p in spec["predictors"]]
    for index, predictor in enumerate(spec["predictors"]):
        where = f"spec.predictors[{index}] ({predictor['name']})"
        if names.count(predictor["name"]) > 1:
            found.append(f"{where}: duplicate predictor name")
        if not DNS1123_LABEL.match(predictor["name"]):
            found.append(f"{where}: the name must be a DNS-1123 label")
        found += label_problems(f"{where}.labels", predictor.get("labels"))
        found += _graph_problems(where, predictor)
        for component in predictor.get("componentSpecs") or []:
            found += [f"{where}: {problem}" for problem in pod_security.problems(component.get("spec") or {})]
    return found


def schema_problems(doc: Mapping[str, Any]) -> list[str]:
    """Where ``doc`` departs from the vendored CRD schema, fields it does not declare included."""
    return _schema_problems(doc, _SCHEMA, KIND)


def render_file(spec_path: Path, *, serving: ServingOptions) -> str:
    """The YAML file for the spec document at ``spec_path``, with a header naming its source.

    Args:
        spec_path: A deployment spec document (``DeploymentSpec.to_dict``).
        serving: the model-server images, service account and prediction log.

    Raises:
        MlopsError: the file is unreadable or not JSON; InvalidSpec as :func:`render`.
    """
    try:
        document = json.loads(spec_path.read_text())
    except (OSError, ValueError) as exc:
        raise MlopsError(f"deployment spec {spec_path}: cannot read: {exc}") from None
    spec = DeploymentSpec.from_dict(document)
    header = (
        f"# Rendered from {spec_path.name} by `python -m kfp_mlops.serving.cluster.seldon_deployment`: "
        "edit the spec, then render again.\n"
    )
    return header + to_yaml(render(spec, serving=serving))


def main(argv: Sequence[str] | None = None) -> int:
    """Renders a spec file to a SeldonDeployment YAML file (or stdout), with the images the environment sets."""
    parser = argparse.ArgumentParser(
        prog="python -m kfp_mlops.serving.cluster.seldon_deployment", description=__doc__.split("\n")[0]
    )
    parser.add_argument("spec", type=Path, help="deployment spec JSON (DeploymentSpec.to_dict)")
    parser.add_argument("-o", "--output", type=Path, default=None, help="write here instead of stdout")
    parser.add_argument("--service-account", default="", help="the model-server pods' service account")
    parser.add_argument("--prediction-log-uri", default="", help="the servers' PREDICTION_LOG_URI (gs://...)")
    args = parser.parse_args(argv)
    try:
        serving = ServingOptions.from_settings(
            Settings.from_env(), service_account=args.service_account, prediction_log_uri=args.prediction_log_uri
        )
        text = render_file(args.spec, serving=serving)
    except MlopsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text)
    return 0


# -- rendering ---------------------------------------------------------------------------------


def _predictor(spec: DeploymentSpec, predictor: PredictorSpec, serving: ServingOptions) -> dict[str, Any]:
    doc = template("predictor.yaml")
    doc.update(name=predictor.name, traffic=predictor.traffic, shadow=predictor.shadow, replicas=predictor.replicas)
    doc["graph"]["name"] = spec.name
    doc["labels"].update(spec.labels)
    [component] = doc["componentSpecs"]
    component["metadata"]["labels"].update(
        {DEPLOYMENT_LABEL: spec.name, PREDICTOR_LABEL: predictor.name, PROTOCOL_LABEL: spec.protocol}
    )
    runtime = f"runtimes/{spec.protocol}.yaml"
    container = template(runtime)
    container.update(name=doc["graph"]["name"], image=serving.image(spec.protocol))
    values = {MODEL_URI_ENV: predictor.model_uri, PREDICTOR_ENV: predictor.name, DEPLOYMENT_ENV: spec.name}
    present = {entry["name"] for entry in container["env"]}
    if not set(values) <= present:
        raise ConfigError(f"template {runtime}: env must declare {', '.join(sorted(set(values) - present))}")
    for entry in container["env"]:
        if entry["name"] in values:
            entry["value"] = values[entry["name"]]
    if serving.prediction_log_uri:
        set_env(container, PREDICTION_LOG_ENV, serving.prediction_log_uri)
    if serving.store_root:  # the servers load versions of this store only
        set_env(container, STORE_ENV, serving.store_root)
    component["spec"]["containers"] = [container]
    if serving.service_account:
        component["spec"]["serviceAccountName"] = serving.service_account
    require_filled(doc, "predictor.yaml")
    return doc


# -- checks ------------------------------------------------------------------------------------


def _traffic_problems(predictors: list[dict[str, Any]]) -> list[str]:
    """Seldon 1.18's checkTraffic and validateShadow, on the rendered predictors."""
    found = []
    shadows = [p["name"] for p in predictors if p.get("shadow")]
    live = [p for p in predictors if not p.get("shadow")]
    if len(shadows) > 1:
        found.append(f"spec.predictors: at most one shadow, got {', '.join(shadows)}")
    if predictors and not live:
        found.append("spec.predictors: a shadow cannot be the only predictor")
    total = sum(p.get("traffic", 0) for p in predictors)
    if len(live) > 1 and total != 100:
        found.append(f"spec.predictors: traffic sums to {total}, must be 100 with several live predictors")
    if len(predictors) == 1 and 0 < total < 100:
        found.append(f"spec.predictors: a single predictor's traffic must be 100 when set, got {total}")
    return found


def _graph_problems(where: str, predictor: dict[str, Any]) -> list[str]:
    found = []
    containers = {
        c["name"]: c
        for component in predictor.get("componentSpecs") or []
        for c in (component.get("spec") or {}).get("containers") or []
    }
    nodes = list(_graph_nodes(predictor["graph"]))
    node_names = {node["name"] for node in nodes}
    for node in nodes:
        if node.get("implementation"):
            if not node.get("modelUri"):  # a prepackaged server
                found.append(f"{where}: graph node {node['name']!r} uses {node['implementation']} and needs modelUri")
        elif node["name"] not in containers:
            found.append(
                f"{where}: graph node {node['name']!r} has no container of that name "
                f"(containers: {', '.join(sorted(containers)) or 'none'})"
            )
    for name, container in containers.items():
        if name not in node_names:
            found.append(f"{where}: container {name!r} is not a node of the graph ({', '.join(sorted(node_names))})")
        found += _container_problems(f"{where}: container {name!r}", container)
    return found


def _graph_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("children") or []:
        yield from _graph_nodes(child)


def _container_problems(where: str, container: dict[str, Any]) -> list[str]:
    found = []
    if not DNS1123_LABEL.match(container["name"]) or len(container["name"]) > 63:
        found.append(f"{where}: the name must be a DNS-1123 label")
    if not container.get("image"):
        found.append(f"{where}: no image")
    env = {}
    for entry in container.get("env") or []:
        if not _ENV_NAME.match(entry["name"]):
            found.append(f"{where}: env name {entry['name']!r} is not a C identifier")
        env[entry["name"]] = entry.get("value")
    if not env.get(MODEL_URI_ENV):
        found.append(f"{where}: {MODEL_URI_ENV} is missing or empty: the server would have no model to load")
    ports = {port.get("name"): port["containerPort"] for port in container.get("ports") or []}
    if "http" not in ports:
        found.append(f"{where}: no port named 'http': Seldon would assume 9000 without the server being told")
    for probe in ("readinessProbe", "livenessProbe"):
        port = ((container.get(probe) or {}).get("httpGet") or {}).get("port")
        if isinstance(port, str) and port not in ports:
            found.append(f"{where}: {probe} uses port {port!r}, which the container does not declare")
        if container.get(probe) is None:
            found.append(f"{where}: no {probe}")
    return found


if __name__ == "__main__":
    raise SystemExit(main())
