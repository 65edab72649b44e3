"""KFP component: append a file of late labels (request_id, label[, labelled_at]) to the prediction log."""

from kfp import dsl
from kfp.dsl import Artifact, Markdown, Output

from kfp_mlops.components.common import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def labels_import(
    imported: Output[Artifact],
    wandb_page: Output[Markdown],
    wandb_files: Output[Artifact],
    labels_uri: str,
    log_root: str = "",
    state_uri: str = "",
    labelled_at_column: str = "",
    pipeline_job_id: str = "local",
    wandb_project: str = "",
    kfp_ui_host: str = "",
) -> int:
    """Checks every row of the labels file and appends the labels to the prediction log in one batch.

    A file with any bad row, or a batch the log refuses (unknown request id, labelled twice, labelled
    before its prediction), fails the task with the reasons, and nothing is written.

    Args:
        imported: JSON: source, log_root, labels, positives, first/last labelled_at, the segment written.
        wandb_page: the task's W&B run: its link, or where its offline files are.
        wandb_files: the offline W&B run's folder (for ``wandb sync``), or a note with the link.
        labels_uri: a .csv or .parquet file (local or gs://) with request_id, label (1/0) and, optionally,
            labelled_at.
        log_root: the prediction log's root (what the model servers write with PREDICTION_LOG_URI); empty:
            the one the rollout at state_uri recorded.
        state_uri: a rollout state document, whose prediction log is used when log_root is empty.
        labelled_at_column: the column saying when each label became known (empty: labelled_at if the
            file has it, else the time of the import).
        pipeline_job_id: groups this task's W&B run with the rest of the pipeline run.
        wandb_project: the W&B project (empty: WANDB_PROJECT or kfp-mlops).
        kfp_ui_host: the KFP UI's address, for the KFP run's page in the W&B run's config (empty: no link).

    Returns:
        How many labels were appended.
    """
    from kfp_mlops.components.labels_import.logic import run_labels_import
    from kfp_mlops.core.run_outputs import RunOutputs

    record = run_labels_import(
        imported.path,
        labels_uri=labels_uri,
        log_root=log_root,
        state_uri=state_uri,
        labelled_at_column=labelled_at_column,
        pipeline_job_id=pipeline_job_id,
        wandb_project=wandb_project,
        outputs=RunOutputs(wandb_page.path, wandb_files.path, kfp_ui_host=kfp_ui_host),
    )
    imported.metadata.update(record)
    return record["labels"]
