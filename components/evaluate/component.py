"""KFP component: the model quality gate; its bool output decides whether register runs."""

from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from kfp_mlops.components.common import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def evaluate(
    model: Input[Model],
    test_data: Input[Dataset],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    evaluation: Output[Artifact],
    wandb_page: Output[Markdown],
    wandb_files: Output[Artifact],
    store_root: str,
    model_name: str,
    gate_metric: str = "accuracy",
    threshold: float = 0.9,
    max_regression: float = 0.0,
    pipeline_job_id: str = "local",
    wandb_project: str = "",
    kfp_ui_host: str = "",
) -> bool:
    """Scores the model on the test split, compares it with the champion, and gates it.

    Args:
        model: the candidate from train; it loads only if its file matches the ``model_sha256`` train recorded.
        test_data: the held-out rows from ingest.
        metrics: accuracy, f1_macro, roc_auc, log_loss (and the champion's, as champion_*).
        classification: confusion matrix and micro-averaged ROC curve for the KFP UI.
        evaluation: JSON record of scores, decision and reasons (kept with the registered version).
        wandb_page: the task's W&B run: its link, or where its offline files are.
        wandb_files: the offline W&B run's folder (for ``wandb sync``), or a note with the link.
        store_root: the model store holding the champion (local path or gs://).
        model_name: the registered model's name.
        gate_metric: accuracy, f1_macro, roc_auc or log_loss.
        threshold: the gate metric's required value (a minimum; a maximum for log_loss).
        max_regression: how much worse than the champion the candidate may be.
        pipeline_job_id: groups this task's W&B run with the rest of the pipeline run.
        wandb_project: the W&B project (empty: WANDB_PROJECT or kfp-mlops).
        kfp_ui_host: the KFP UI's address, for the KFP run's page in the W&B run's config (empty: no link).

    Returns:
        Whether the candidate passed the gate.
    """
    import json

    from kfp_mlops.components.evaluate.logic import run_evaluate
    from kfp_mlops.core.run_outputs import RunOutputs

    result = run_evaluate(
        model.path,
        test_data.path,
        model_sha256=model.metadata["model_sha256"],
        store_root=store_root,
        model_name=model_name,
        gate_metric=gate_metric,
        threshold=threshold,
        max_regression=max_regression,
        pipeline_job_id=pipeline_job_id,
        wandb_project=wandb_project,
        outputs=RunOutputs(wandb_page.path, wandb_files.path, kfp_ui_host=kfp_ui_host),
    )
    for name, value in result.metrics.items():
        metrics.log_metric(name, value)
    for name, value in (result.champion_metrics or {}).items():
        metrics.log_metric(f"champion_{name}", value)
    metrics.log_metric("passed", float(result.passed))
    classification.log_confusion_matrix(result.classes, result.confusion_matrix)
    classification.log_roc_curve(result.roc["fpr"], result.roc["tpr"], result.roc["thresholds"])
    with open(evaluation.path, "w") as out:
        json.dump(result.record(), out, indent=2, sort_keys=True)
    evaluation.metadata.update({"passed": result.passed, "reasons": result.reasons})
    return result.passed
