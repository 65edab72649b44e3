"""The pipelines' parameters, written once: name, type, default and help of each.

Each pipeline's signature is generated from its :class:`ParameterSpec`: KFP reads a pipeline's
parameters (names, annotations, defaults) from ``inspect.signature`` of the decorated function,
which honours ``__signature__``, and their descriptions from the function's docstring ``Args:``
section. The same spec checks arguments before anything runs (:meth:`ParameterSpec.with_defaults`)
and gives the ``kfp-mlops run/submit/schedule`` command one option per parameter, with its default
in ``--help``.

The training parameters are also the monitoring pipeline's (it runs the training pipeline on the
window when its retrain policy warrants a retrain), which adds the window as ``source`` and its own
``drift_config``, and sets ``retrain_kind`` from the drift check's decision.
``deploy_mode`` defaults to ``rollout`` in both: a retrained model becomes champion only through a
safe rollout's promotion, unless a run asks for ``single`` explicitly.

The serving parameters (:data:`SERVING`: the cluster's platform, the model-server images and service
account, KServe's request logger) are the training, monitoring and rollout pipelines': a task on a
cluster gets them as parameters, never from its pod's environment, and :func:`check_serving`
checks them before anything runs. So are the addresses a task links and pushes to
(:data:`ADDRESSES`, checked by :func:`check_addresses`): ``kfp_ui_host`` (every pipeline) and
``pushgateway_url`` (monitoring and rollout, whose drift check and rollout step push metrics).

Nothing here imports kfp: the command line reads these specs before it decides whether it needs kfp.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kfp_mlops.core.config import DEFAULT_SERVING_IMAGE_SELDON, DEFAULT_SERVING_IMAGE_V2
from kfp_mlops.core.configs import refuse_unknown
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.modeling.estimators import ESTIMATORS
from kfp_mlops.modeling.evaluation import GATE_METRICS
from kfp_mlops.serving.cluster.platform import check_platform
from kfp_mlops.serving.cluster.resources import ServingOptions

REQUIRED: Any = inspect.Parameter.empty
"""The default of a parameter every run must set."""


@dataclass(frozen=True)
class Parameter:
    """One pipeline parameter.

    Attributes:
        name: The parameter's name (a Python identifier; the CLI option is ``--name-with-dashes``).
        type: ``str``, ``int``, ``float`` or ``dict`` (a JSON object; KFP's STRUCT).
        help: One line for the KFP parameter description and ``--help``.
        default: The value when a run does not set it; :data:`REQUIRED` when it must.
    """

    name: str
    type: type
    help: str
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        """Whether every run must set the parameter."""
        return self.default is REQUIRED


@dataclass(frozen=True)
class ParameterSpec:
    """The parameters of one pipeline, in signature order.

    Attributes:
        pipeline: The pipeline's name (in messages).
        parameters: Its parameters; required ones first (a Python signature's rule).
    """

    pipeline: str
    parameters: tuple[Parameter, ...]

    def __post_init__(self) -> None:
        names = self.names()
        if len(set(names)) != len(names):
            raise ValueError(f"pipeline {self.pipeline}: a parameter is listed twice in {names}")

    def names(self) -> list[str]:
        """The parameter names, in signature order."""
        return [p.name for p in self.parameters]

    def defaults(self) -> dict[str, Any]:
        """Parameter name -> default (a fresh copy); ``None`` for a required parameter."""
        return {p.name: None if p.required else copy.deepcopy(p.default) for p in self.parameters}

    def with_defaults(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The defaults overridden by ``arguments``: what a run with ``arguments`` receives.

        Raises:
            ConfigError: an argument the pipeline does not take, listing the ones it does.
        """
        refuse_unknown(arguments, self.names(), f"pipeline {self.pipeline}")
        return self.defaults() | dict(arguments)

    def signature(self) -> inspect.Signature:
        """The Python signature KFP builds the pipeline's inputs from."""
        return inspect.Signature(
            [
                inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=p.type, default=p.default)
                for p in self.parameters
            ]
        )

    def docstring(self, summary: str) -> str:
        """``summary`` and a Google-style ``Args:`` section: KFP's parameter descriptions."""
        return "\n".join([summary, "", "Args:", *(f"    {p.name}: {p.help}" for p in self.parameters), ""])

    def pipeline_function(self, name: str, summary: str, steps: Callable[[dict[str, Any]], None]) -> Callable:
        """A function with this spec's signature that calls ``steps`` with the values by name.

        Decorate it with ``dsl.pipeline``; KFP calls it once, positionally, with a pipeline channel
        per parameter, and ``steps`` wires the tasks from those channels.
        """
        signature = self.signature()

        def pipeline(*args: Any, **kwargs: Any) -> None:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            steps(dict(bound.arguments))

        pipeline.__name__ = pipeline.__qualname__ = name
        pipeline.__doc__ = self.docstring(summary)
        pipeline.__signature__ = signature  # type: ignore[attr-defined]
        return pipeline


# Options not spelled --<parameter-name>: --store and --schema, as the command has always had them, and
# the deployment's namespace (--namespace is the KFP namespace of submit and schedule).
OPTION_NAMES = {"store_root": "--store", "schema_uri": "--schema", "namespace": "--deployment-namespace"}


def option_name(parameter: str) -> str:
    """The command-line option of a pipeline parameter (``kfp-mlops run``, ``submit``, ``schedule``)."""
    return OPTION_NAMES.get(parameter, "--" + parameter.replace("_", "-"))


def _choices(values: Iterable[str]) -> str:
    return ", ".join(values)


DEPLOY_MODES = ("rollout", "single", "ab", "shadow")
"""How a registered candidate reaches traffic (``components/deploy``), the safe default first."""

STORE_ROOT = Parameter("store_root", str, "model store root: a local path or gs://bucket/prefix")
WANDB_PROJECT = Parameter("wandb_project", str, "W&B project of the tasks' runs", "kfp-mlops")
# Where a cluster's tasks link and push to, given as parameters: the compiled pipelines set no pod environment.
KFP_UI_HOST = Parameter(
    "kfp_ui_host",
    str,
    "the KFP UI's address (http:// or https://, e.g. https://kubeflow.example.com/pipeline): each W&B run's "
    "config links to the KFP run's page there; empty: no link",
    "",
)
PUSHGATEWAY_URL = Parameter(
    "pushgateway_url",
    str,
    "a Prometheus Pushgateway (http:// or https://, e.g. http://kfp-mlops-pushgateway.models.svc:9091 from "
    "manifests/base/pushgateway.yaml) the drift check and the rollout step push their metrics to; empty: not pushed",
    "",
)
ADDRESSES = (KFP_UI_HOST.name, PUSHGATEWAY_URL.name)
NAMESPACE = Parameter("namespace", str, "Kubernetes namespace of the deployment", "models")
PROTOCOL = Parameter("protocol", str, "serving protocol: v2 or seldon", "v2")
# What a cluster deployment runs, given to the task as parameters: a pod's environment sets none of it.
SERVING = (
    Parameter(
        "platform",
        str,
        "the cluster's serving platform: seldon (a SeldonDeployment) or kserve (an InferenceService; no shadow: "
        'a rollout there needs rollout_plan {"shadow": false})',
        "seldon",
    ),
    Parameter(
        "serving_image_v2",
        str,
        "model-server image for protocol v2 (images/mlserver; `make push-images` pushes it)",
        DEFAULT_SERVING_IMAGE_V2,
    ),
    Parameter(
        "serving_image_seldon",
        str,
        "model-server image for protocol seldon (images/seldon; `make push-images` pushes it)",
        DEFAULT_SERVING_IMAGE_SELDON,
    ),
    Parameter(
        "serving_service_account",
        str,
        "the model-server pods' service account (reads the models, writes the prediction log); empty: the "
        "namespace's default",
        "",
    ),
    Parameter(
        "request_logger_url",
        str,
        "kserve only: where KServe's request logger sends every request and response (http:// or https://); "
        "empty: none (the prediction log is written either way)",
        "",
    ),
)


def check_addresses(values: Mapping[str, Any]) -> None:
    """Refuses a KFP UI or Pushgateway address (:data:`ADDRESSES`) that is not an http(s) URL.

    Raises:
        ConfigError: naming the parameter and the value.
    """
    for name in ADDRESSES:
        value = str(values.get(name) or "")
        if value and not value.startswith(("http://", "https://")):
            raise ConfigError(f"{name} {value!r}: give an http:// or https:// URL, or leave it empty")


def check_serving(values: Mapping[str, Any]) -> None:
    """Refuses serving parameters (:data:`SERVING`) a cluster deployment could not run with.

    Raises:
        ConfigError: an unknown platform, an empty image, a logger for Seldon, or what
            :class:`~kfp_mlops.serving.cluster.resources.ServingOptions` refuses (listing every problem).
    """
    check_platform(values["platform"])
    for name in ("serving_image_v2", "serving_image_seldon"):
        if not values[name]:
            raise ConfigError(f"{name}: empty; name the model-server image (default: this version's)")
    if values["request_logger_url"] and values["platform"] != "kserve":
        raise ConfigError(
            f"request_logger_url {values['request_logger_url']!r}: KServe's request logger needs platform kserve "
            f"(platform is {values['platform']}; the prediction log is written on either platform)"
        )
    ServingOptions(
        image_v2=values["serving_image_v2"],
        image_seldon=values["serving_image_seldon"],
        service_account=values["serving_service_account"],
        request_logger_url=values["request_logger_url"],
    ).validate()


TRAINING = ParameterSpec(
    "training",
    (
        STORE_ROOT,
        Parameter("source", str, "training data: iris, or a .csv/.parquet path or gs:// URI", "iris"),
        Parameter("label", str, "label column", "species"),
        Parameter("model_name", str, "registered model name", "iris-classifier"),
        Parameter("estimator", str, f"estimator: {_choices(ESTIMATORS)}", "logistic_regression"),
        Parameter("hyperparameters", dict, 'estimator arguments, a JSON object, e.g. {"C": 0.5}', {}),
        Parameter("test_size", float, "fraction of the rows held out for evaluation", 0.2),
        Parameter("seed", int, "seed of the split and the estimator", 42),
        Parameter("schema_uri", str, "data schema JSON (path or gs://); empty: built in or inferred", ""),
        Parameter(
            "retrain_kind",
            str,
            "empty: train on source from scratch; incremental or full: retrain the champion on source and its "
            "recent history (the monitoring pipeline sets it from its retrain policy's decision)",
            "",
        ),
        Parameter(
            "history_root",
            str,
            "a retrain's earlier windows: a folder or gs:// prefix whose .csv/.parquet files sort by time "
            "(e.g. week-07.parquet); empty: the window alone",
            "",
        ),
        Parameter(
            "retrain_policy",
            dict,
            'RetrainPolicy fields, a JSON object, e.g. {"tolerance": 0.03, "history_windows": 8}: when a '
            "verdict warrants a retrain, which kind, and how many history windows it reads",
            {},
        ),
        Parameter("gate_metric", str, f"gate metric: {_choices(GATE_METRICS)}", "accuracy"),
        Parameter("threshold", float, "gate: required value of the gate metric", 0.9),
        Parameter(
            "max_regression", float, "gate: how much worse than the champion on the same test rows it may be", 0.0
        ),
        WANDB_PROJECT,
        KFP_UI_HOST,
        Parameter("deployment_name", str, "deployment name (a DNS-1123 label)", "iris"),
        Parameter(
            "deploy_target",
            str,
            "local (the spec file `kfp-mlops serve` watches; refused in a cluster's pods), cluster (platform's "
            "resources, gs:// store) or none (nothing applied; the champion pointer and a rollout's state still move)",
            "local",
        ),
        Parameter(
            "deploy_mode",
            str,
            f"how the registered candidate reaches traffic: {_choices(DEPLOY_MODES)}. rollout: a safe rollout "
            "against the champion, from shadow, whose promotion makes it champion; single: served alone, it "
            "becomes champion at once; ab: ab_traffic percent beside the champion; shadow: mirrored. The first "
            "model of a name is deployed single",
            "rollout",
        ),
        Parameter("ab_traffic", int, "percent of live traffic for the new model in deploy_mode ab", 10),
        Parameter(
            "rollout_plan", dict, 'the rollout\'s StagePlan fields, a JSON object, e.g. {"steps": [5, 25, 100]}', {}
        ),
        Parameter(
            "rollout_state_uri",
            str,
            "the rollout state document (path or gs://); empty: <store_root>/rollouts/<deployment_name>.json",
            "",
        ),
        Parameter(
            "prediction_log_root",
            str,
            "the prediction log the rollout reads (path or gs://; the model servers' PREDICTION_LOG_URI); "
            "empty: <store_root>/prediction-log/<deployment_name>",
            "",
        ),
        NAMESPACE,
        PROTOCOL,
        *SERVING,
    ),
)
"""The training pipeline's parameters; the monitoring pipeline passes them to it."""

MONITORING = ParameterSpec(
    "monitoring",
    (
        STORE_ROOT,
        Parameter("source", str, "the data window: a .csv/.parquet path or gs:// URI (also what a retrain trains on)"),
        Parameter("drift_config", dict, 'DriftConfig fields, a JSON object, e.g. {"psi_threshold": 0.25}', {}),
        *(p for p in TRAINING.parameters if p.name not in ("store_root", "source", "retrain_kind")),
        PUSHGATEWAY_URL,
    ),
)
"""The monitoring pipeline's parameters: the window, the drift check's config, the training ones but
``retrain_kind`` (its drift check decides it)."""

ROLLOUT = ParameterSpec(
    "rollout",
    (
        Parameter("state_uri", str, "the rollout state document (path or gs://)"),
        Parameter(
            "log_root", str, "the prediction log root (path or gs://); empty: the one the rollout was started with", ""
        ),
        Parameter(
            "labels_uri",
            str,
            "late labels to import before the step decides: a .csv/.parquet file (path or gs://) of "
            "request_id,label[,labelled_at]; empty: no import",
            "",
        ),
        Parameter("deployment_name", str, "deployment name (a DNS-1123 label)", "fraud"),
        NAMESPACE,
        PROTOCOL,
        Parameter(
            "target",
            str,
            "where stages are applied: local (the local stack's spec file; refused in a cluster's pods), cluster "
            "or none",
            "cluster",
        ),
        *SERVING,
        Parameter("as_of", str, "ISO date-time the step looks from (empty: now)", ""),
        Parameter("live_config", dict, 'LiveConfig fields, a JSON object, e.g. {"bootstrap": 2000}', {}),
        Parameter("timeout_seconds", int, "how long applying a stage may take", 600),
        WANDB_PROJECT,
        KFP_UI_HOST,
        PUSHGATEWAY_URL,
    ),
)
"""The rollout pipeline's parameters."""

SPECS = {spec.pipeline: spec for spec in (TRAINING, MONITORING, ROLLOUT)}
"""Pipeline name -> its parameters."""
