"""KFP component: validate the split data against its schema; fails the task on unfit data."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from kfp_mlops.components.common import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def validate(
    train: Input[Dataset],
    test: Input[Dataset],
    report: Output[Markdown],
    source: str,
    label: str = "species",
    schema_uri: str = "",
    pipeline_job_id: str = "local",
    wandb_project: str = "",
):
    """Checks schema, dtypes, ranges, nulls, label and class balance; writes a Markdown report.

    Args:
        train: training rows from ingest.
        test: held-out rows from ingest.
        report: the Markdown report the KFP UI shows.
        source: the data source (selects the built-in Iris schema when no schema is given).
        label: the label column.
        schema_uri: a schema JSON document (path or gs://); empty: built-in for iris, else inferred.
        pipeline_job_id: groups this task's W&B run with the rest of the pipeline run.
        wandb_project: the W&B project (empty: WANDB_PROJECT or kfp-mlops).
    """
    from kfp_mlops.components.validate.logic import run_validate

    outcome = run_validate(
        train.path,
        test.path,
        report.path,
        source=source,
        label=label,
        schema_uri=schema_uri,
        pipeline_job_id=pipeline_job_id,
        wandb_project=wandb_project,
    )
    report.metadata.update({"passed": outcome["passed"], "rows": outcome["rows"]})
