"""KFP component: ingest a data source into stratified train/test Dataset artifacts."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from kfp_mlops.components.common import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def ingest(
    source: str,
    train: Output[Dataset],
    test: Output[Dataset],
    label: str = "species",
    test_size: float = 0.2,
    seed: int = 42,
    pipeline_job_id: str = "local",
    wandb_project: str = "",
):
    """Loads ``source`` (``iris``, or a CSV/Parquet path or gs:// URI) and splits it.

    Args:
        source: the data source.
        train: the training rows, Parquet; metadata holds rows, schema and class counts.
        test: the held-out rows, Parquet, same metadata.
        label: the label column, used to stratify.
        test_size: the share of rows held out.
        seed: the split's random seed.
        pipeline_job_id: groups this task's W&B run with the rest of the pipeline run.
        wandb_project: the W&B project (empty: WANDB_PROJECT or kfp-mlops).
    """
    from kfp_mlops.components.ingest.logic import run_ingest

    metadata = run_ingest(
        source,
        label,
        train.path,
        test.path,
        test_size=test_size,
        seed=seed,
        pipeline_job_id=pipeline_job_id,
        wandb_project=wandb_project,
    )
    train.metadata.update(metadata["train"])
    test.metadata.update(metadata["test"])
