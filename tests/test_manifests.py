"""manifests/ and the SeldonDeployment renderer: every kustomize overlay builds, and every resource is valid.

SeldonDeployments are checked against the vendored CRD schema and Seldon's webhook rules
(``seldon_deployment.problems``), KServe's InferenceServices and ServingRuntimes against theirs and
KServe's webhook rules (``kserve.problems``), core kinds with kubernetes-validate, the Prometheus
Operator kinds structurally and against the metric names the serving runtimes export.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.serving.cluster import kserve, kube_apply, platform, pod_security, resources
from kfp_mlops.serving.cluster import seldon_deployment as sd
from kfp_mlops.serving.cluster.kinds import KINDS
from kfp_mlops.serving.cluster.resources import ServingOptions
from kfp_mlops.serving.spec import DeploymentSpec, InvalidSpec, PredictorSpec

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"
OVERLAYS = ("single", "ab", "shadow")
# The predictors each overlay must end up with: (name, traffic, shadow).
PREDICTORS = {
    "single": [("main", 100, False)],
    "ab": [("a", 90, False), ("b", 10, False)],
    "shadow": [("main", 100, False), ("shadow", 0, True)],
}
# The KServe overlays (on manifests/overlays/kserve, the base without Seldon) and their InferenceService's
# canaryTrafficPercent (None: the predictor alone).
KSERVE_OVERLAYS = {"kserve-single": None, "kserve-canary": 10}
# Core kinds are validated against these Kubernetes versions' schemas.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
CORE_API_VERSIONS = ("v1", "rbac.authorization.k8s.io/v1", "apps/v1")
# Rendered files and the spec documents they come from.
RENDERED = ["base", "overlays/ab", "overlays/shadow"]


def _kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail(
            "kubectl (with kustomize v5 built in) is needed to build manifests/ and is not on PATH; "
            "install it, e.g. `apt-get install kubectl` or from your cloud SDK"
        )
    return kubectl


def _build(overlays: Any) -> dict[str, list[dict[str, Any]]]:
    """Each overlay's resources, as `kubectl kustomize` builds them."""
    kubectl = _kubectl()
    result = {}
    for overlay in overlays:
        done = subprocess.run(
            [kubectl, "kustomize", str(MANIFESTS / "overlays" / overlay)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"kubectl kustomize overlays/{overlay} failed: {done.stderr}"
        result[overlay] = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    return result


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict[str, Any]]]:
    """Each Seldon overlay's resources."""
    return _build(OVERLAYS)


@pytest.fixture(scope="module")
def kserve_built() -> dict[str, list[dict[str, Any]]]:
    """Each KServe overlay's resources."""
    return _build(KSERVE_OVERLAYS)


@pytest.fixture()
def default_images(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings with the default (versioned) model-server images, as the committed files use."""
    monkeypatch.delenv("KFP_MLOPS_SERVING_IMAGE", raising=False)
    monkeypatch.delenv("KFP_MLOPS_SELDON_IMAGE", raising=False)
    return Settings.from_env()


@pytest.fixture(scope="module")
def exported_metrics() -> set[str]:
    """Every sample name the serving runtimes export (kfp_mlops.serving.metrics), once each is used."""
    from prometheus_client import CollectorRegistry

    from kfp_mlops.serving.metrics import FEEDBACK, PREDICT, ServingMetrics

    registry = CollectorRegistry()
    metrics = ServingMetrics(deployment="iris", predictor="main", model_version="v1", registry=registry)
    metrics.observe_request(PREDICT, 200, 0.01)
    metrics.observe_request(FEEDBACK, 200, 0.01)
    metrics.observe_predictions(["setosa"])
    metrics.observe_feedback(1, 1)
    return {sample.name for family in registry.collect() for sample in family.samples}


def _one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    return doc


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bkfp_mlops_[a-z_]+\b", expr))


# -- the kustomize build -------------------------------------------------------------------------


def test_every_overlay_builds_the_same_kinds(built: dict[str, list[dict[str, Any]]]) -> None:
    for overlay, docs in built.items():
        kinds = sorted(d["kind"] for d in docs)
        assert kinds == sorted(
            [
                "Namespace",
                "SeldonDeployment",
                "ServiceAccount",
                "Role",
                "RoleBinding",
                "Service",
                "Service",
                "ServiceMonitor",
                "Deployment",  # the Pushgateway, its Service and ServiceMonitor
                "Service",
                "ServiceMonitor",
                "PrometheusRule",
                "ConfigMap",
            ]
        ), overlay
        for doc in docs:
            if doc["kind"] != "Namespace":  # cluster-scoped
                assert doc["metadata"]["namespace"] in ("models", "kubeflow"), (overlay, doc["kind"])


def test_seldon_deployments_pass_the_schema_and_the_webhook_rules(built: dict[str, list[dict[str, Any]]]) -> None:
    for overlay, docs in built.items():
        sdep = _one(docs, "SeldonDeployment")
        assert sd.problems(sdep) == [], overlay
        predictors = [(p["name"], p["traffic"], p["shadow"]) for p in sdep["spec"]["predictors"]]
        assert predictors == PREDICTORS[overlay], overlay
        assert sdep["spec"]["protocol"] == "v2"


def test_core_kinds_validate_against_kubernetes_schemas(built: dict[str, list[dict[str, Any]]]) -> None:
    checked = set()
    for docs in built.values():
        for doc in docs:
            if doc["apiVersion"] in CORE_API_VERSIONS:
                for version in K8S_VERSIONS:
                    kubernetes_validate.validate(doc, version, strict=True)  # raises on any problem
                checked.add(doc["kind"])
    assert checked == {"Namespace", "ServiceAccount", "Role", "RoleBinding", "Service", "ConfigMap", "Deployment"}


def test_the_serving_namespace_enforces_the_restricted_pod_security_standard(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    for overlay, docs in built.items():
        namespace = _one(docs, "Namespace")
        assert namespace["metadata"]["name"] == _one(docs, "SeldonDeployment")["metadata"]["namespace"], overlay
        labels = namespace["metadata"]["labels"]
        for mode in ("enforce", "audit", "warn"):
            assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted", (overlay, mode)
        assert re.fullmatch(r"v1\.\d+", labels["pod-security.kubernetes.io/enforce-version"]), overlay


def test_model_server_pods_meet_the_restricted_standard_with_a_read_only_root(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    """Every predictor's pod, as kustomize builds it: what the namespace admits, and no token, no writable root."""
    for overlay, docs in built.items():
        for predictor in _one(docs, "SeldonDeployment")["spec"]["predictors"]:
            # No executor: Seldon would inject one the restricted standard refuses.
            assert predictor["annotations"] == {"seldon.io/no-engine": "true"}, overlay
            [component] = predictor["componentSpecs"]
            pod = component["spec"]
            assert pod_security.problems(pod) == [], (overlay, predictor["name"])
            assert pod["automountServiceAccountToken"] is False
            assert pod["securityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
            [container] = pod["containers"]
            assert container["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "runAsNonRoot": True,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            }
            [volume] = pod["volumes"]
            assert volume["emptyDir"] and container["volumeMounts"] == [{"name": volume["name"], "mountPath": "/tmp"}]


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (lambda pod, c: c["securityContext"].pop("allowPrivilegeEscalation"), "allowPrivilegeEscalation must be false"),
        (lambda pod, c: c["securityContext"].update(capabilities={}), "capabilities must drop ALL"),
        (
            lambda pod, c: c["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
            "capabilities may add only NET_BIND_SERVICE, not NET_ADMIN",
        ),
        (lambda pod, c: c["securityContext"].update(runAsUser=0), "must run as non-root"),
        (lambda pod, c: c["securityContext"].update(privileged=True), "privileged containers are not allowed"),
        (lambda pod, c: c["securityContext"].pop("readOnlyRootFilesystem"), "readOnlyRootFilesystem must be true"),
        (
            lambda pod, c: [pod["securityContext"].pop("seccompProfile"), c["securityContext"].pop("seccompProfile")],
            "seccompProfile.type must be RuntimeDefault or Localhost",
        ),
        (lambda pod, c: pod.pop("automountServiceAccountToken"), "automountServiceAccountToken must be false"),
        (lambda pod, c: pod.update(hostNetwork=True), "hostNetwork is not allowed"),
        (
            lambda pod, c: pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
            "volume 'host': hostPath volumes are not allowed",
        ),
        (lambda pod, c: c["ports"][0].update(hostPort=80), "hostPort is not allowed"),
    ],
    ids=[
        "escalation",
        "capabilities kept",
        "capability added",
        "root",
        "privileged",
        "writable root",
        "seccomp",
        "token",
        "host network",
        "hostPath",
        "hostPort",
    ],
)
def test_a_pod_the_namespace_would_refuse_is_refused_before_it_is_applied(tamper: Any, expected: str) -> None:
    """The API server's refusal would leave the deployment without pods and say nothing to the deploy task."""
    doc = sd.render(MODES["single"], serving=ServingOptions.from_settings(Settings.from_env()))
    pod = doc["spec"]["predictors"][0]["componentSpecs"][0]["spec"]
    tamper(pod, pod["containers"][0])
    found = sd.problems(doc)
    assert len(found) == 1 and found[0].startswith("spec.predictors[0] (main): ") and expected in found[0], found


def test_rbac_allows_only_seldondeployments_in_the_serving_namespace(built: dict[str, list[dict[str, Any]]]) -> None:
    docs = built["single"]
    role, binding, account = _one(docs, "Role"), _one(docs, "RoleBinding"), _one(docs, "ServiceAccount")
    sdep = _one(docs, "SeldonDeployment")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == sdep["metadata"]["namespace"]
    assert role["rules"] == [
        {
            "apiGroups": ["machinelearning.seldon.io"],
            "resources": ["seldondeployments"],
            "verbs": ["get", "create", "patch", "delete"],
        }
    ]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": account["metadata"]["namespace"]}
    ]


@pytest.mark.parametrize("protocol", ["v2", "seldon"])
def test_metrics_are_scraped_where_each_runtime_serves_them(
    built: dict[str, list[dict[str, Any]]], protocol: str
) -> None:
    """ServiceMonitor -> the protocol's metrics Service -> the container port that serves /prometheus."""
    from kfp_mlops.serving.metrics import METRICS_PATH

    docs = built["single"]
    monitor = _one(docs, "ServiceMonitor", "kfp-mlops-models")
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] == METRICS_PATH
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == ["models"]
    doc = sd.render(
        DeploymentSpec.with_shadow("iris", "gs://b/1", "gs://b/2", protocol=protocol),
        serving=ServingOptions.from_settings(Settings.from_env()),
    )
    for predictor in doc["spec"]["predictors"]:
        [component] = predictor["componentSpecs"]
        pod_labels = component["metadata"]["labels"]
        [service] = [s for s in docs if s["kind"] == "Service" and s["spec"]["selector"].items() <= pod_labels.items()]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        [port] = service["spec"]["ports"]
        assert port["name"] == endpoint["port"]
        [container] = component["spec"]["containers"]
        target = next(p for p in container["ports"] if p["name"] == port["targetPort"])
        assert target["containerPort"] == port["port"]
        env = {e["name"]: e["value"] for e in container["env"]}
        if protocol == "v2":  # MLServer's metrics server
            assert port["targetPort"] == "metrics"
            assert (env["MLSERVER_METRICS_PORT"], env["MLSERVER_METRICS_ENDPOINT"]) == (str(port["port"]), METRICS_PATH)
        else:  # Seldon's wrapper: kfp_mlops_* on the HTTP port
            assert port["targetPort"] == "http"


def _well_formed_alerts_metrics(alerts: dict[str, dict[str, Any]]) -> set[str]:
    """Checks each PrometheusRule alert's shape; returns the metric names their expressions use."""
    used: set[str] = set()
    for name, alert in alerts.items():
        assert set(alert) == {"alert", "expr", "for", "labels", "annotations"}, name
        assert re.fullmatch(r"\d+[smh]", alert["for"]), name
        assert alert["labels"]["severity"] in ("warning", "critical"), name
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], name
        assert alert["expr"].count("(") == alert["expr"].count(")"), name
        used |= _metric_names(alert["expr"])
    return used


def test_alerts_are_well_formed_and_use_exported_metrics(
    built: dict[str, list[dict[str, Any]]], exported_metrics: set[str]
) -> None:
    rule = _one(built["single"], "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    groups = {g["name"]: g for g in rule["spec"]["groups"]}
    assert set(groups) == {"kfp-mlops-serving", "kfp-mlops-monitoring"}
    alerts = {r["alert"]: r for r in groups["kfp-mlops-serving"]["rules"]}
    assert set(alerts) == {
        "KfpMlopsHighErrorRate",
        "KfpMlopsHighLatencyP99",
        "KfpMlopsLiveAccuracyDrop",
        "KfpMlopsModelServerDown",
    }
    used = _well_formed_alerts_metrics(alerts)
    assert used <= exported_metrics, f"alerts use metrics no runtime exports: {sorted(used - exported_metrics)}"
    assert {
        "kfp_mlops_requests_total",
        "kfp_mlops_request_duration_seconds_bucket",
        "kfp_mlops_feedback_total",
        "kfp_mlops_feedback_correct_total",
    } <= used


def test_grafana_dashboard_parses_and_queries_exported_metrics(
    built: dict[str, list[dict[str, Any]]], exported_metrics: set[str]
) -> None:
    source = (MANIFESTS / "base" / "dashboards" / "kfp-mlops-serving.json").read_text()
    dashboard = json.loads(source)
    config_map = _one(built["single"], "ConfigMap")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["data"]["kfp-mlops-serving.json"] == source
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    used = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].count("(") == target["expr"].count(")"), panel["title"]
            used |= _metric_names(target["expr"])
    assert used <= exported_metrics, f"the dashboard queries unknown metrics: {sorted(used - exported_metrics)}"


def test_no_secret_values_anywhere() -> None:
    """No Secret is built, and no file under manifests/ carries a key or token value."""
    texts = {path: path.read_text() for path in MANIFESTS.rglob("*") if path.suffix in (".yaml", ".json", ".md")}
    for path, text in texts.items():
        assert not re.search(r"\b[0-9a-f]{40}\b", text), f"{path}: looks like an API key"
        # A value, not a reference to one ($WANDB_API_KEY in a shell example is fine).
        assert not re.search(r"(?i)(token|password|api-key|apikey)\s*[:=]\s*[\"']?(?!\$)[^\s\"'#]{8,}", text), path
    template = yaml.safe_load(texts[MANIFESTS / "base" / "wandb-secret.template.yaml"])
    assert template["stringData"] == {"api-key": ""}
    assert "wandb-secret" not in (MANIFESTS / "base" / "kustomization.yaml").read_text().split("resources:")[1]


def test_no_secret_kind_is_built(built: dict[str, list[dict[str, Any]]]) -> None:
    assert all(doc["kind"] != "Secret" for docs in built.values() for doc in docs)


# -- the KServe overlays ----------------------------------------------------------------------------


def test_the_kserve_overlays_swap_the_seldondeployment_for_kserve_kinds(
    built: dict[str, list[dict[str, Any]]], kserve_built: dict[str, list[dict[str, Any]]]
) -> None:
    """Everything else of the base (namespace, service account, monitoring, alerts, dashboards) stays."""
    seldon_kinds = sorted(d["kind"] for d in built["single"] if d["kind"] != "SeldonDeployment")
    for overlay, docs in kserve_built.items():
        assert sorted(d["kind"] for d in docs) == sorted([*seldon_kinds, "ServingRuntime", "InferenceService"]), overlay
        for doc in docs:
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] in ("models", "kubeflow"), (overlay, doc["kind"])
        isvc, namespace = _one(docs, "InferenceService"), _one(docs, "Namespace")
        assert isvc["metadata"]["namespace"] == namespace["metadata"]["name"]
        assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_kserve_resources_pass_the_schemas_the_webhook_rules_and_the_restricted_standard(
    kserve_built: dict[str, list[dict[str, Any]]],
) -> None:
    for overlay, docs in kserve_built.items():
        isvc, runtime = _one(docs, "InferenceService"), _one(docs, "ServingRuntime")
        assert kserve.problems(isvc) == [] and kserve.runtime_problems(runtime) == [], overlay
        assert kserve.pod_problems(isvc, runtime) == [], overlay
        predictor = isvc["spec"]["predictor"]
        assert predictor.get("canaryTrafficPercent") == KSERVE_OVERLAYS[overlay], overlay
        assert predictor["model"]["runtime"] == runtime["metadata"]["name"] == kserve.RUNTIME_NAME
        if KSERVE_OVERLAYS[overlay] is not None:  # the champion keeps the rest: named for the deploy's check
            annotations = isvc["metadata"]["annotations"]
            assert annotations[kserve.STABLE_PREDICTOR] == "a" and annotations[kserve.STABLE_MODEL_URI].endswith(
                "/CHAMPION"
            )
            assert kserve.rolled_out(isvc) == ("a", annotations[kserve.STABLE_MODEL_URI])


def test_kserve_rbac_allows_only_what_the_deploy_applies(kserve_built: dict[str, list[dict[str, Any]]]) -> None:
    """The hint of a 403 names manifests/overlays/kserve/rbac.yaml: it must grant exactly the kinds deploy applies."""
    docs = kserve_built["kserve-single"]
    role, binding = _one(docs, "Role"), _one(docs, "RoleBinding")
    assert role["metadata"]["namespace"] == _one(docs, "InferenceService")["metadata"]["namespace"]
    applied = {KINDS[k].plural for k in (kserve.KIND, kserve.RUNTIME_KIND)}
    assert role["rules"] == [
        {"apiGroups": [kserve.GROUP], "resources": sorted(applied), "verbs": ["get", "create", "patch", "delete"]}
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kfp-mlops-deployer", "namespace": "kubeflow"}]
    hint = kube_apply._hint(403, KINDS[kserve.KIND], "models")
    [path] = re.findall(r"manifests/\S+\.yaml", hint)
    assert (ROOT / path).is_file() and path == "manifests/overlays/kserve/rbac.yaml"


def test_kserve_pods_are_scraped_on_mlservers_metrics_port(kserve_built: dict[str, list[dict[str, Any]]]) -> None:
    """A Knative container declares one port (HTTP), so the v2 metrics Service targets the metrics port by number."""
    from kfp_mlops.serving.metrics import METRICS_PATH

    docs = kserve_built["kserve-single"]
    isvc, runtime = _one(docs, "InferenceService"), _one(docs, "ServingRuntime")
    monitor = _one(docs, "ServiceMonitor", "kfp-mlops-models")
    pod_labels = isvc["spec"]["predictor"]["labels"]
    [service] = [s for s in docs if s["kind"] == "Service" and s["spec"]["selector"].items() <= pod_labels.items()]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    [port] = service["spec"]["ports"]
    [endpoint] = monitor["spec"]["endpoints"]
    env = {e["name"]: e["value"] for e in runtime["spec"]["containers"][0]["env"]}
    assert (port["name"], endpoint["path"]) == (endpoint["port"], METRICS_PATH)
    assert port["targetPort"] == int(env["MLSERVER_METRICS_PORT"]) and env["MLSERVER_METRICS_ENDPOINT"] == METRICS_PATH


def test_kserve_core_kinds_validate_against_kubernetes_schemas(kserve_built: dict[str, list[dict[str, Any]]]) -> None:
    for docs in kserve_built.values():
        for doc in docs:
            if doc["apiVersion"] in CORE_API_VERSIONS:
                for version in K8S_VERSIONS:
                    kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("overlay", sorted(KSERVE_OVERLAYS))
def test_rendered_kserve_files_are_current(overlay: str, default_images: Settings) -> None:
    """Each kserve.yaml is what its deployment-spec.json renders to (runtime, then InferenceService)."""
    folder = MANIFESTS / "overlays" / overlay
    serving = ServingOptions.from_settings(default_images)
    expected = platform.render_file(folder / "deployment-spec.json", platform="kserve", serving=serving)
    where = f"manifests/overlays/{overlay}"
    assert (folder / "kserve.yaml").read_text() == expected, (
        f"{where}/kserve.yaml is stale: run `.venv/bin/python -m kfp_mlops.serving.cluster.platform "
        f"{where}/deployment-spec.json --platform kserve -o {where}/kserve.yaml`"
    )


def test_the_platform_render_cli_writes_both_objects_and_refuses_a_shadow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(DeploymentSpec.single("iris", "gs://b/m").to_dict()))
    assert platform.main([str(spec), "--platform", "kserve", "-o", str(tmp_path / "out.yaml")]) == 0
    docs = list(yaml.safe_load_all((tmp_path / "out.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["ServingRuntime", "InferenceService"]

    spec.write_text(json.dumps(DeploymentSpec.with_shadow("iris", "gs://b/1", "gs://b/2").to_dict()))
    assert platform.main([str(spec), "--platform", "kserve"]) == 1
    assert "KServe has no shadow predictor" in capsys.readouterr().err


# -- the rendered files --------------------------------------------------------------------------


@pytest.mark.parametrize("folder", RENDERED)
def test_rendered_seldondeployments_are_current(folder: str, default_images: Settings) -> None:
    """Each seldondeployment.yaml is what its deployment-spec.json renders to."""
    spec_path = MANIFESTS / folder / "deployment-spec.json"
    expected = sd.render_file(spec_path, serving=ServingOptions.from_settings(default_images))
    assert (MANIFESTS / folder / "seldondeployment.yaml").read_text() == expected, (
        f"manifests/{folder}/seldondeployment.yaml is stale: run `.venv/bin/python -m "
        f"kfp_mlops.serving.cluster.seldon_deployment manifests/{folder}/deployment-spec.json "
        f"-o manifests/{folder}/seldondeployment.yaml`"
    )


def test_render_cli_writes_the_file_and_refuses_a_bad_spec(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(DeploymentSpec.single("iris", "gs://b/m").to_dict()))
    assert sd.main([str(spec), "-o", str(tmp_path / "out.yaml")]) == 0
    assert yaml.safe_load((tmp_path / "out.yaml").read_text())["kind"] == "SeldonDeployment"

    spec.write_text(json.dumps(DeploymentSpec.single("Iris", "").to_dict()))
    assert sd.main([str(spec)]) == 1
    error = capsys.readouterr().err
    assert "deployment name 'Iris' must be a DNS-1123 label" in error and "missing model URI" in error


# -- rendering ----------------------------------------------------------------------------------


MODES = {
    "single": DeploymentSpec.single("iris", "gs://b/m/v1"),
    "ab": DeploymentSpec.ab("iris", "gs://b/m/v1", "gs://b/m/v2", 25),
    "shadow": DeploymentSpec.with_shadow("iris", "gs://b/m/v1", "gs://b/m/v2"),
}


@pytest.mark.parametrize("protocol", ["v2", "seldon"])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_rendered_modes_validate_against_the_crd_schema(
    mode: str, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KFP_MLOPS_SERVING_IMAGE", "registry.example/mlserver:7")
    monkeypatch.setenv("KFP_MLOPS_SELDON_IMAGE", "registry.example/seldon:7")
    spec = DeploymentSpec(**{**MODES[mode].__dict__, "protocol": protocol, "labels": {"team": "ml"}})

    doc = sd.render(spec, serving=ServingOptions.from_settings(Settings.from_env()))

    assert sd.schema_problems(doc) == [] and sd.problems(doc) == []
    assert (doc["apiVersion"], doc["kind"]) == ("machinelearning.seldon.io/v1", "SeldonDeployment")
    assert doc["metadata"]["name"] == "iris" and doc["metadata"]["namespace"] == "models"
    assert doc["metadata"]["labels"]["team"] == "ml"
    assert doc["spec"]["protocol"] == protocol
    for predictor, expected in zip(doc["spec"]["predictors"], spec.predictors, strict=True):
        assert (predictor["name"], predictor["traffic"], predictor["shadow"], predictor["replicas"]) == (
            expected.name,
            expected.traffic,
            expected.shadow,
            expected.replicas,
        )
        [component] = predictor["componentSpecs"]
        [container] = component["spec"]["containers"]
        assert container["name"] == predictor["graph"]["name"]  # the webhook's rule for custom containers
        assert predictor["graph"]["name"] == "iris"  # v2: the executor calls /v2/models/<node>/infer
        assert container["image"] == f"registry.example/{'mlserver' if protocol == 'v2' else 'seldon'}:7"
        env = {e["name"]: e["value"] for e in container["env"]}
        assert (env["MODEL_URI"], env["PREDICTOR_NAME"], env["DEPLOYMENT_NAME"]) == (
            expected.model_uri,
            expected.name,
            "iris",
        )
        assert container["readinessProbe"]["httpGet"]["path"] == (
            "/v2/health/ready" if protocol == "v2" else "/health/ping"
        )
        assert component["metadata"]["labels"]["kfp-mlops/predictor"] == expected.name
        assert predictor["labels"] == {"team": "ml"}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            DeploymentSpec("iris", (PredictorSpec("a", "gs://b/1", 60), PredictorSpec("b", "gs://b/2", 60))),
            ["traffic of live predictors sums to 120, must be 100"],
        ),
        (
            DeploymentSpec(
                "iris",
                (
                    PredictorSpec("main", "gs://b/1"),
                    PredictorSpec("s1", "gs://b/2", 0, shadow=True),
                    PredictorSpec("s2", "gs://b/3", 0, shadow=True),
                ),
            ),
            ["at most one shadow predictor, got 2: s1, s2"],
        ),
        (DeploymentSpec.single("iris", ""), ["predictor 'main': missing model URI"]),
        (
            DeploymentSpec("Iris", (PredictorSpec("a", "", 50), PredictorSpec("b", "gs://b/2", 20))),
            [
                "deployment name 'Iris' must be a DNS-1123 label",
                "predictor 'a': missing model URI",
                "traffic of live predictors sums to 70",
            ],
        ),
    ],
)
def test_invalid_specs_are_refused_listing_every_problem(spec: DeploymentSpec, expected: list[str]) -> None:
    with pytest.raises(InvalidSpec) as refused:
        sd.render(spec, serving=ServingOptions.from_settings(Settings.from_env()))
    for problem in expected:
        assert problem in str(refused.value)


def _rendered() -> dict[str, Any]:
    return sd.render(MODES["ab"], serving=ServingOptions.from_settings(Settings.from_env()))


def test_problems_reports_what_the_webhook_and_the_schema_would_refuse() -> None:
    """Tampered documents: each rule names the predictor and what is wrong; nothing is silently pruned."""
    doc = _rendered()
    a, b = doc["spec"]["predictors"]
    a["componentSpecs"][0]["spec"]["containers"][0]["name"] = "server"
    b["traffic"] = 30
    a["protocol"] = "v2"  # belongs on spec, not on a predictor: the API server would drop it
    problems = sd.problems(doc)
    assert problems == [
        "spec.predictors[0]: unknown field(s) protocol: not in the SeldonDeployment schema "
        "(the API server would drop them)"
    ]  # schema first

    del a["protocol"]
    problems = sd.problems(doc)
    assert "spec.predictors: traffic sums to 105, must be 100 with several live predictors" in problems
    assert "spec.predictors[0] (a): graph node 'iris' has no container of that name (containers: server)" in problems
    assert "spec.predictors[0] (a): container 'server' is not a node of the graph (iris)" in problems

    doc = _rendered()
    container = doc["spec"]["predictors"][1]["componentSpecs"][0]["spec"]["containers"][0]
    container["env"] = [e for e in container["env"] if e["name"] != "MODEL_URI"]
    container["ports"] = [p for p in container["ports"] if p["name"] != "http"]
    doc["spec"]["predictors"][1]["shadow"] = True
    doc["spec"]["predictors"][0]["shadow"] = True
    problems = sd.problems(doc)
    assert "spec.predictors: at most one shadow, got a, b" in problems
    assert "spec.predictors: a shadow cannot be the only predictor" in problems
    assert any("container 'iris': MODEL_URI is missing or empty" in p for p in problems)
    assert any("readinessProbe uses port 'http', which the container does not declare" in p for p in problems)

    doc = _rendered()
    doc["spec"]["predictors"][0]["replicas"] = "two"
    doc["metadata"]["labels"]["bad label"] = "x"
    assert sd.problems(doc) == ["spec.predictors[0].replicas: 'two' is not of type 'integer'"]
    doc["spec"]["predictors"][0]["replicas"] = 2
    assert sd.problems(doc) == ["metadata.labels: 'bad label' is not a valid label key"]


def test_validate_names_the_deployment_and_lists_all_problems() -> None:
    doc = _rendered()
    doc["spec"]["predictors"][0]["traffic"] = 10
    doc["spec"]["predictors"][0]["componentSpecs"][0]["spec"]["containers"][0]["image"] = ""
    with pytest.raises(
        InvalidSpec,
        match=r"^SeldonDeployment models/iris is invalid: .*traffic sums to 35.*; "
        r"spec.predictors\[0\] \(a\): container 'iris': no image$",
    ):
        sd.validate(doc)


def test_a_template_left_unfilled_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    text = resources.template_text("runtimes/v2.yaml") + "serviceAccountName: null\n"
    original = resources.template_text
    monkeypatch.setattr(resources, "template_text", lambda name: text if name == "runtimes/v2.yaml" else original(name))
    with pytest.raises(
        ConfigError,
        match=r"^template predictor.yaml: componentSpecs\[0\]\.spec\.containers\[0\]"
        r"\.serviceAccountName has no value after rendering$",
    ):
        sd.render(MODES["single"], serving=ServingOptions.from_settings(Settings.from_env()))


@pytest.fixture(scope="module")
def pushed_metrics(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every series name the pipelines push (kfp_mlops.core.metrics_push), read back from a real Pushgateway."""
    from kfp_mlops.core.metrics_push import push_drift, push_rollout
    from tests.support.pushgateway import running_pushgateway, scrape

    verdict = {
        "drift": True,
        "drift_share": 0.5,
        "features": {"x": {"psi": 0.4, "drifted": True}},
        "prediction": {"psi": 0.3},
        "retrain": {"retrain": True, "kind": "full"},
    }
    record = {"action": "hold", "next_stage": "canary-5", "status": "running", "challenger_share": 5}
    try:
        with running_pushgateway(tmp_path_factory.mktemp("pushgateway")) as url:
            assert push_drift(url, verdict, job="j", model="iris")
            assert push_rollout(url, record, job="j", deployment="iris", stage_started_at=1.0)
            return {name for name, _ in scrape(url)}
    except FileNotFoundError as missing:
        pytest.skip(str(missing))


def test_the_pushgateway_meets_the_restricted_standard_and_writes_only_its_volume(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    docs = built["single"]
    deployment = _one(docs, "Deployment", "kfp-mlops-pushgateway")
    namespace = _one(docs, "Namespace")["metadata"]["name"]
    assert deployment["metadata"]["namespace"] == namespace  # admitted under the "restricted" standard
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod_security.problems(pod) == []
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    [container] = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # The root filesystem is read-only: the persistence file must be on the one (emptyDir) volume.
    [volume] = pod["volumes"]
    [mount] = container["volumeMounts"]
    assert "emptyDir" in volume and mount["name"] == volume["name"]
    [persistence] = [a.split("=", 1)[1] for a in container["args"] if a.startswith("--persistence.file=")]
    assert Path(persistence).parent == Path(mount["mountPath"])
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_prometheus_scrapes_the_pushgateway_keeping_the_pushed_labels(built: dict[str, list[dict[str, Any]]]) -> None:
    """ServiceMonitor -> Service -> the gateway's port, with honorLabels: the pushed job, model, deployment and
    pipeline_job_id survive the scrape; the address the pipelines are told to push to is that Service."""
    from kfp_mlops.pipelines.parameters import PUSHGATEWAY_URL

    docs = built["single"]
    deployment = _one(docs, "Deployment", "kfp-mlops-pushgateway")
    service = _one(docs, "Service", "kfp-mlops-pushgateway")
    monitor = _one(docs, "ServiceMonitor", "kfp-mlops-pushgateway")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True and endpoint["path"] == "/metrics"
    [port] = service["spec"]["ports"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    [listen] = [a.split("=", 1)[1] for a in container["args"] if a.startswith("--web.listen-address=")]
    target = next(p for p in container["ports"] if p["name"] == port["targetPort"])
    assert port["name"] == endpoint["port"] and listen == f":{target['containerPort']}"
    address = f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc:{port['port']}"
    assert address in PUSHGATEWAY_URL.help
    # Each ServiceMonitor scrapes its own Services only: the gateway has no /prometheus, the models no pushes.
    models = _one(docs, "ServiceMonitor", "kfp-mlops-models")["spec"]["selector"]["matchLabels"]
    assert not models.items() <= service["metadata"]["labels"].items()
    model_services = [s for s in docs if s["kind"] == "Service" and s is not service]
    assert model_services and not any(
        monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items() for s in model_services
    )


def test_drift_and_rollout_alerts_are_well_formed_and_use_pushed_metrics(
    built: dict[str, list[dict[str, Any]]], pushed_metrics: set[str]
) -> None:
    rule = _one(built["single"], "PrometheusRule")
    [group] = [g for g in rule["spec"]["groups"] if g["name"] == "kfp-mlops-monitoring"]
    alerts = {r["alert"]: r for r in group["rules"]}
    assert set(alerts) == {
        "KfpMlopsDriftFound",
        "KfpMlopsRetrainDecided",
        "KfpMlopsDriftChecksStopped",
        "KfpMlopsRolloutRolledBack",
        "KfpMlopsRolloutStuck",
    }
    used = _well_formed_alerts_metrics(alerts)
    assert used <= pushed_metrics, f"alerts use metrics nothing pushes: {sorted(used - pushed_metrics)}"
    assert {
        "kfp_mlops_drift_detected",
        "kfp_mlops_rollout_status",
        "kfp_mlops_rollout_stage_started_timestamp_seconds",
    } <= used


def test_drift_and_rollout_dashboard_parses_and_queries_pushed_metrics(
    built: dict[str, list[dict[str, Any]]], pushed_metrics: set[str]
) -> None:
    source = (MANIFESTS / "base" / "dashboards" / "kfp-mlops-monitoring.json").read_text()
    dashboard = json.loads(source)
    assert _one(built["single"], "ConfigMap")["data"]["kfp-mlops-monitoring.json"] == source
    assert dashboard["uid"] == "kfp-mlops-monitoring" and dashboard["panels"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    used = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].count("(") == target["expr"].count(")"), panel["title"]
            used |= _metric_names(target["expr"])
    assert used <= pushed_metrics, f"the dashboard queries metrics nothing pushes: {sorted(used - pushed_metrics)}"
    assert used == pushed_metrics  # every pushed series has a panel
