"""KFP component: ingest a data source (or a retrain's window and history) into stratified train/test Datasets."""

from typing import Optional

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Markdown, Output

from kfp_mlops.components.common import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def ingest(
    source: str,
    train: Output[Dataset],
    test: Output[Dataset],
    wandb_page: Output[Markdown],
    wandb_files: Output[Artifact],
    label: str = "species",
    test_size: float = 0.2,
    seed: int = 42,
    retrain_kind: str = "",
    store_root: str = "",
    model_name: str = "",
    history_root: str = "",
    retrain_policy: Optional[dict] = None,
    pipeline_job_id: str = "local",
    wandb_project: str = "",
    kfp_ui_host: str = "",
):
    """Loads ``source`` (``iris``, or a CSV/Parquet path or gs:// URI) and splits it.

    A retrain (``retrain_kind`` incremental or full) splits the window ``source`` and its recent
    same-regime history under ``history_root``, checked against the champion first.

    Args:
        source: the data source.
        train: the training rows, Parquet; metadata holds rows, schema and class counts.
        test: the held-out rows, Parquet, same metadata.
        wandb_page: the task's W&B run: its link, or where its offline files are.
        wandb_files: the offline W&B run's folder (for ``wandb sync``), or a note with the link.
        label: the label column, used to stratify.
        test_size: the share of rows held out.
        seed: the split's random seed.
        retrain_kind: empty for a training run; incremental or full for a retrain.
        store_root: the model store holding the champion (a retrain).
        model_name: the registered model's name (a retrain).
        history_root: folder or gs:// prefix of the earlier windows (a retrain; empty: none).
        retrain_policy: RetrainPolicy fields (a retrain: how many history windows each kind reads).
        pipeline_job_id: groups this task's W&B run with the rest of the pipeline run.
        wandb_project: the W&B project (empty: WANDB_PROJECT or kfp-mlops).
        kfp_ui_host: the KFP UI's address, for the KFP run's page in the W&B run's config (empty: no link).
    """
    from kfp_mlops.components.ingest.logic import run_ingest
    from kfp_mlops.core.run_outputs import RunOutputs

    metadata = run_ingest(
        source,
        label,
        train.path,
        test.path,
        test_size=test_size,
        seed=seed,
        retrain_kind=retrain_kind,
        store_root=store_root,
        model_name=model_name,
        history_root=history_root,
        retrain_policy=retrain_policy,
        pipeline_job_id=pipeline_job_id,
        wandb_project=wandb_project,
        outputs=RunOutputs(wandb_page.path, wandb_files.path, kfp_ui_host=kfp_ui_host),
    )
    train.metadata.update(metadata["train"])
    test.metadata.update(metadata["test"])
