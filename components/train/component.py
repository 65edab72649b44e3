"""KFP component: train a scikit-learn pipeline; output the model and a reference profile."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Model, Output

from kfp_mlops.components.common import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def train(
    train_data: Input[Dataset],
    model: Output[Model],
    reference_profile: Output[Artifact],
    summary: Output[Markdown],
    wandb_page: Output[Markdown],
    wandb_files: Output[Artifact],
    label: str = "species",
    estimator: str = "logistic_regression",
    hyperparameters: dict = {},
    seed: int = 42,
    retrain_kind: str = "",
    store_root: str = "",
    model_name: str = "",
    pipeline_job_id: str = "local",
    wandb_project: str = "",
    kfp_ui_host: str = "",
):
    """Fits preprocessing + ``estimator`` on the training split, or retrains the champion on it.

    Args:
        train_data: training rows from ingest (validated).
        model: a folder with model.joblib and metadata.json (versions, features, classes, metrics).
        reference_profile: JSON quantile edges and category frequencies of the training features.
        summary: Markdown: estimator, training metrics and, for a retrain, its record (kind,
            mechanism, cost, sources, fallback).
        wandb_page: the task's W&B run: its link, or where its offline files are.
        wandb_files: the offline W&B run's folder (for ``wandb sync``), or a note with the link.
        label: the label column.
        estimator: logistic_regression, random_forest, gradient_boosting, decision_tree or knn.
        hyperparameters: constructor arguments of the estimator.
        seed: random_state of the estimator.
        retrain_kind: empty for a training run; incremental (update a copy of the champion) or full
            (from scratch) for a retrain; metadata["retraining"] records kind, mechanism and cost.
        store_root: the model store holding the champion (a retrain).
        model_name: the registered model's name (a retrain).
        pipeline_job_id: groups this task's W&B run with the rest of the pipeline run.
        wandb_project: the W&B project (empty: WANDB_PROJECT or kfp-mlops).
        kfp_ui_host: the KFP UI's address, for the KFP run's page in the W&B run's config (empty: no link).
    """
    from kfp_mlops.components.common import json_safe
    from kfp_mlops.components.train.logic import render_summary, run_train
    from kfp_mlops.core.run_outputs import RunOutputs
    from kfp_mlops.core.tracking import artifact_refs

    metadata = run_train(
        train_data.path,
        model.path,
        reference_profile.path,
        label=label,
        estimator=estimator,
        hyperparameters=hyperparameters,
        seed=seed,
        training_data_uri=train_data.uri,
        retrain_kind=retrain_kind,
        store_root=store_root,
        model_name=model_name,
        sources=train_data.metadata.get("sources", []),
        pipeline_job_id=pipeline_job_id,
        wandb_project=wandb_project,
        uses=artifact_refs(train_data.metadata),
        outputs=RunOutputs(wandb_page.path, wandb_files.path, kfp_ui_host=kfp_ui_host),
    )
    with open(summary.path, "w") as out:
        out.write(render_summary(metadata))
    model.metadata.update(json_safe(metadata))
    reference_profile.metadata.update({"features": metadata["feature_names"], "label": label})
