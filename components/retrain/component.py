"""KFP component: retrain on a new data window (submit the training pipeline, or run it locally)."""

from typing import Optional

from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from kfp_mlops.components.common import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def retrain(
    source: str,
    store_root: str,
    outcome: Output[Artifact],
    drift_verdict: Optional[Input[Artifact]] = None,
    label: str = "species",
    model_name: str = "iris-classifier",
    estimator: str = "logistic_regression",
    hyperparameters: Optional[dict] = None,
    test_size: float = 0.2,
    seed: int = 42,
    schema_uri: str = "",
    gate_metric: str = "accuracy",
    threshold: float = 0.9,
    max_regression: float = 0.0,
    deployment_name: str = "iris",
    deploy_target: str = "local",
    namespace: str = "models",
    protocol: str = "v2",
    kfp_host: str = "",
    kfp_namespace: str = "",
    experiment: str = "kfp-mlops",
    pipeline_job_id: str = "local",
    wandb_project: str = "",
) -> str:
    """Runs the training pipeline on ``source``: submitted to KFP on a cluster, with kfp.local otherwise.

    Args:
        source: the data window to train on (.csv/.parquet, local or gs://).
        store_root: the model store.
        outcome: JSON: mode, passed, version, metrics, reasons (local) or run_id, url (cluster).
        drift_verdict: the drift check's verdict (its reasons are kept in the outcome).
        label, model_name, estimator, hyperparameters, test_size, seed, schema_uri, gate_metric,
            threshold, max_regression, deployment_name, deploy_target, namespace, protocol: passed
            to the training pipeline.
        kfp_host: the KFP API to submit to (empty: KFP_HOST; unset too: run locally).
        kfp_namespace: the KFP namespace (empty: KFP_NAMESPACE).
        experiment: the KFP experiment of the submitted run.
        pipeline_job_id: groups this task's W&B run with the rest of the pipeline run.
        wandb_project: the W&B project (empty: WANDB_PROJECT or kfp-mlops).

    Returns:
        The registered version (local; empty when the gate refused the new model), or the
        submitted run's id (cluster).
    """
    from kfp_mlops.components.retrain.logic import run_retrain

    result = run_retrain(
        source,
        store_root,
        outcome.path,
        kfp_host=kfp_host,
        kfp_namespace=kfp_namespace,
        experiment=experiment,
        drift_verdict_path=drift_verdict.path if drift_verdict else "",
        pipeline_job_id=pipeline_job_id,
        label=label,
        model_name=model_name,
        estimator=estimator,
        hyperparameters=hyperparameters,
        test_size=test_size,
        seed=seed,
        schema_uri=schema_uri,
        gate_metric=gate_metric,
        threshold=threshold,
        max_regression=max_regression,
        deployment_name=deployment_name,
        deploy_target=deploy_target,
        namespace=namespace,
        protocol=protocol,
        wandb_project=wandb_project,
    )
    outcome.metadata.update(
        {k: result.get(k) for k in ("mode", "passed", "version", "run_id", "reasons") if result.get(k) is not None}
    )
    return (result.get("version") or "") if result["mode"] == "local" else result["run_id"]
