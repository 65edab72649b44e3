"""The training pipeline: ingest -> validate -> (if fit) train -> evaluate -> (if passed) register -> deploy.

With ``retrain_kind`` set (by the monitoring pipeline's retrain policy, or by hand), ingest reads
the window and its recent same-regime history and train retrains the champion (an incremental
update or a full retrain) instead of fitting from scratch; the rest is the same path.

register stores the model as a *candidate*; deploy decides how it reaches traffic (``deploy_mode``):
by default a safe rollout against the champion, starting in shadow, whose promotion makes it
champion; ``single`` (explicitly, or for the first model of a name) serves it alone and makes it
champion at once; ``ab`` and ``shadow`` serve it beside the champion.
"""

from collections.abc import Callable, Mapping
from typing import Any

from kfp import dsl

from kfp_mlops.components.deploy.component import deploy
from kfp_mlops.components.deploy.logic import MODES, TARGETS
from kfp_mlops.components.evaluate.component import evaluate
from kfp_mlops.components.ingest.component import ingest
from kfp_mlops.components.register.component import register
from kfp_mlops.components.train.component import train
from kfp_mlops.components.validate.component import refuse_unfit_data, validate
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.drift import RetrainPolicy
from kfp_mlops.modeling.estimators import make_estimator
from kfp_mlops.modeling.evaluation import check_gate_metric
from kfp_mlops.modeling.model_store import ModelStore
from kfp_mlops.modeling.retraining import RETRAIN_KINDS
from kfp_mlops.modeling.retraining_data import list_windows
from kfp_mlops.pipelines.parameters import TRAINING, check_addresses, check_serving
from kfp_mlops.pipelines.platform import attach_wandb_secret
from kfp_mlops.pipelines.retries import retry_io
from kfp_mlops.rollout.plan import StagePlan
from kfp_mlops.serving.spec import DeploymentSpec

DESCRIPTION = (
    "Ingest, validate, train and evaluate a scikit-learn model; if it passes the gate, register it as a "
    "candidate and deploy it (by default: a safe rollout against the champion)."
)


def build_training_pipeline(*, kubernetes: bool = True, retries: bool = True) -> Callable:
    """Builds the training pipeline; its parameters are :data:`~kfp_mlops.pipelines.parameters.TRAINING`.

    Args:
        kubernetes: add kfp-kubernetes settings (the W&B Secret as an env var). Vertex AI rejects
            the platform document these settings compile into, so its variant leaves them out.
        retries: give the tasks that do I/O their retry policy (:mod:`~kfp_mlops.pipelines.retries`);
            local runs leave it out.
    """

    def steps(p: dict[str, Any]) -> None:
        tracking = {
            "pipeline_job_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            "wandb_project": p["wandb_project"],
            "kfp_ui_host": p["kfp_ui_host"],
        }
        retraining = {"retrain_kind": p["retrain_kind"], "store_root": p["store_root"], "model_name": p["model_name"]}
        ingest_task = ingest(
            source=p["source"],
            label=p["label"],
            test_size=p["test_size"],
            seed=p["seed"],
            history_root=p["history_root"],
            retrain_policy=p["retrain_policy"],
            **retraining,
            **tracking,
        )
        ingest_task.set_display_name("ingest").set_caching_options(False)  # the source may change in place
        retry_io(ingest_task, retries)
        validate_task = validate(
            train=ingest_task.outputs["train"],
            test=ingest_task.outputs["test"],
            source=p["source"],
            label=p["label"],
            schema_uri=p["schema_uri"],
            **tracking,
        ).set_display_name("validate")
        tasks = [ingest_task, validate_task]
        # Unfit data does not fail validate (its report would not be uploaded): it gates the rest.
        with dsl.If(validate_task.outputs["Output"] == True, name="data-valid"):  # noqa: E712
            train_task = (
                train(
                    train_data=ingest_task.outputs["train"],
                    label=p["label"],
                    estimator=p["estimator"],
                    hyperparameters=p["hyperparameters"],
                    seed=p["seed"],
                    **retraining,
                    **tracking,
                )
                .set_display_name("train")
                .after(validate_task)
            )
            train_task.set_cpu_limit("2").set_memory_limit("4G")
            evaluate_task = (
                evaluate(
                    model=train_task.outputs["model"],
                    test_data=ingest_task.outputs["test"],
                    store_root=p["store_root"],
                    model_name=p["model_name"],
                    gate_metric=p["gate_metric"],
                    threshold=p["threshold"],
                    max_regression=p["max_regression"],
                    **tracking,
                )
                .set_display_name("evaluate")
                .set_caching_options(False)
            )  # the champion it compares with changes
            tasks += [train_task, evaluate_task]
            with dsl.If(evaluate_task.outputs["Output"] == True, name="quality-gate-passed"):  # noqa: E712
                register_task = (
                    register(
                        model=train_task.outputs["model"],
                        reference_profile=train_task.outputs["reference_profile"],
                        evaluation=evaluate_task.outputs["evaluation"],
                        store_root=p["store_root"],
                        model_name=p["model_name"],
                        **tracking,
                    )
                    .set_display_name("register")
                    .set_caching_options(False)
                )
                retry_io(register_task, retries)
                deploy_task = (
                    deploy(
                        registered=register_task.outputs["registered"],
                        store_root=p["store_root"],
                        deployment_name=p["deployment_name"],
                        namespace=p["namespace"],
                        protocol=p["protocol"],
                        mode=p["deploy_mode"],
                        ab_traffic=p["ab_traffic"],
                        rollout_plan=p["rollout_plan"],
                        rollout_state_uri=p["rollout_state_uri"],
                        prediction_log_root=p["prediction_log_root"],
                        target=p["deploy_target"],
                        platform=p["platform"],
                        serving_image_v2=p["serving_image_v2"],
                        serving_image_seldon=p["serving_image_seldon"],
                        service_account=p["serving_service_account"],
                        request_logger_url=p["request_logger_url"],
                        **tracking,
                    )
                    .set_display_name("deploy")
                    .set_caching_options(False)
                )  # the cluster's, the champion's and the rollout's state are not inputs
                retry_io(deploy_task, retries)
                tasks += [register_task, deploy_task]
        with dsl.Else(name="data-unfit"):
            refuse_unfit_data(report=validate_task.outputs["report"]).set_display_name("refuse unfit data")
        if kubernetes:
            for task in tasks:
                attach_wandb_secret(task)

    return dsl.pipeline(name="training", description=DESCRIPTION)(
        TRAINING.pipeline_function("training", DESCRIPTION, steps)
    )


training = build_training_pipeline()


def check_arguments(arguments: Mapping[str, Any]) -> None:
    """Refuses arguments that would fail a task, before anything runs or is submitted.

    Raises:
        ConfigError: naming the parameter and what is wrong with it.
    """
    values = TRAINING.with_defaults(arguments)
    if not values.get("store_root"):
        raise ConfigError("pipeline training: store_root is required (a local path or gs://bucket/prefix)")
    if not isinstance(values["hyperparameters"], dict):
        raise ConfigError(f"hyperparameters: must be a JSON object, got {values['hyperparameters']!r}")
    make_estimator(values["estimator"], values["hyperparameters"], int(values["seed"]))
    check_gate_metric(values["gate_metric"])
    if values["retrain_kind"] not in ("", *RETRAIN_KINDS):
        raise ConfigError(
            f"retrain_kind {values['retrain_kind']!r}: unknown; choose one of {', '.join(RETRAIN_KINDS)} "
            "or leave it empty"
        )
    if not isinstance(values["retrain_policy"], dict):
        raise ConfigError(f"retrain_policy: must be a JSON object, got {values['retrain_policy']!r}")
    RetrainPolicy.from_dict(values["retrain_policy"])
    history_root = str(values["history_root"])
    if history_root and not history_root.startswith("gs://") and not list_windows(history_root):
        raise ConfigError(
            f"history_root {history_root!r}: no .csv or .parquet window there; give the folder the earlier "
            "windows are written to, or leave history_root empty"
        )  # a gs:// history is checked by ingest, where the pipeline's credentials are
    if not 0.0 < float(values["test_size"]) < 1.0:
        raise ConfigError(f"test_size={values['test_size']}: must be a fraction between 0 and 1")
    ModelStore(values["store_root"]).model_uri(values["model_name"])  # checks the name
    if values["deploy_target"] not in TARGETS:
        raise ConfigError(f"deploy_target {values['deploy_target']!r}: unknown; choose one of {', '.join(TARGETS)}")
    if values["deploy_target"] == "cluster":
        if not str(values["store_root"]).startswith("gs://"):
            raise ConfigError(
                f"deploy_target cluster: model servers cannot read store_root {values['store_root']!r}; "
                "use a gs:// store"
            )
        for name in ("rollout_state_uri", "prediction_log_root"):
            if values[name] and not str(values[name]).startswith("gs://"):
                raise ConfigError(f"deploy_target cluster: {name} {values[name]!r} would stay in a pod; use gs://")
    if values["deploy_mode"] not in MODES:
        raise ConfigError(f"deploy_mode {values['deploy_mode']!r}: unknown; choose one of {', '.join(MODES)}")
    if not isinstance(values["rollout_plan"], dict):
        raise ConfigError(f"rollout_plan: must be a JSON object, got {values['rollout_plan']!r}")
    plan = StagePlan.from_dict(values["rollout_plan"])
    check_serving(values)
    check_addresses(values)
    if values["platform"] == "kserve":
        _check_kserve(values, plan)
    # Name, namespace, protocol and traffic rules, on stand-in model URIs (the real ones exist only after register).
    options = {"namespace": values["namespace"], "protocol": values["protocol"]}
    DeploymentSpec.single(values["deployment_name"], "pending", **options).validate()
    if values["deploy_mode"] == "ab":
        DeploymentSpec.ab(values["deployment_name"], "champion", "pending", values["ab_traffic"], **options).validate()


def _check_kserve(values: Mapping[str, Any], plan: StagePlan) -> None:
    """What KServe cannot serve (no Seldon protocol, no shadow predictor), refused before anything runs.

    Raises:
        ConfigError: naming the parameter and what to use instead.
    """
    if values["protocol"] != "v2":
        raise ConfigError(f"protocol {values['protocol']!r}: platform kserve serves protocol v2 only")
    if values["deploy_mode"] == "shadow":
        raise ConfigError("deploy_mode shadow: KServe has no shadow predictor; use ab, or platform seldon")
    if values["deploy_mode"] == "rollout" and plan.shadow:
        raise ConfigError(
            'deploy_mode rollout on platform kserve: KServe has no shadow predictor; set rollout_plan {"shadow": '
            "false} to start at the first canary step"
        )
