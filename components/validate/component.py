"""KFP components: validate the split data against its schema, and fail the run on unfit data.

``validate`` never fails on unfit data: KFP uploads no output artifact of a failed task, so its
report would not reach the UI. It returns ``passed`` (a single output: kfp.local skips conditions on
NamedTuple fields); the pipeline runs the rest under ``dsl.If(passed)`` and ``refuse_unfit_data``
under ``dsl.Else``, which fails the run naming the problems once the report is uploaded.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from kfp_mlops.components.common import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def validate(
    train: Input[Dataset],
    test: Input[Dataset],
    report: Output[Markdown],
    wandb_page: Output[Markdown],
    wandb_files: Output[Artifact],
    source: str,
    label: str = "species",
    schema_uri: str = "",
    pipeline_job_id: str = "local",
    wandb_project: str = "",
    kfp_ui_host: str = "",
) -> bool:
    """Checks schema, dtypes, ranges, nulls, label and class balance; writes a Markdown report.

    Args:
        train: training rows from ingest.
        test: held-out rows from ingest.
        report: the Markdown report the KFP UI shows (written whether or not the data passed).
        wandb_page: the task's W&B run: its link, or where its offline files are.
        wandb_files: the offline W&B run's folder (for ``wandb sync``), or a note with the link.
        source: the data source (selects the built-in Iris schema when no schema is given).
        label: the label column.
        schema_uri: a schema JSON document (path or gs://); empty: built-in for iris, else inferred.
        pipeline_job_id: groups this task's W&B run with the rest of the pipeline run.
        wandb_project: the W&B project (empty: WANDB_PROJECT or kfp-mlops).
        kfp_ui_host: the KFP UI's address, for the KFP run's page in the W&B run's config (empty: no link).

    Returns:
        Whether the data passed; the pipeline trains only on data that did.
    """
    from kfp_mlops.components.validate.logic import run_validate
    from kfp_mlops.core.run_outputs import RunOutputs

    outcome = run_validate(
        train.path,
        test.path,
        report.path,
        source=source,
        label=label,
        schema_uri=schema_uri,
        pipeline_job_id=pipeline_job_id,
        wandb_project=wandb_project,
        outputs=RunOutputs(wandb_page.path, wandb_files.path, kfp_ui_host=kfp_ui_host),
    )
    report.metadata.update({"passed": outcome["passed"], "rows": outcome["rows"], "problems": outcome["summary"]})
    return outcome["passed"]


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def refuse_unfit_data(report: Input[Markdown]):
    """Fails the pipeline run after a failed validation, naming the problems from validate's report.

    Args:
        report: validate's report.
    """
    from kfp_mlops.components.validate.logic import refuse_unfit_data as refuse

    refuse(report.path)
