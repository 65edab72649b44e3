"""KFP component: publish an approved model to the model store as a candidate for champion."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Model, Output

from kfp_mlops.components.common import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def register(
    model: Input[Model],
    reference_profile: Input[Artifact],
    evaluation: Input[Artifact],
    registered: Output[Artifact],
    summary: Output[Markdown],
    wandb_page: Output[Markdown],
    wandb_files: Output[Artifact],
    store_root: str,
    model_name: str,
    pipeline_job_id: str = "local",
    wandb_project: str = "",
    kfp_ui_host: str = "",
):
    """Writes ``models/<model_name>/versions/<version>/`` (never overwritten), its status ``candidate``.

    Args:
        model: the approved model from train; the store records the ``model_sha256`` train recorded.
        reference_profile: the training features' profile, stored beside the model for drift checks.
        evaluation: the gate's record from evaluate.
        registered: JSON naming the stored version (name, version, uri, status, the champion it was compared with).
        summary: Markdown: the version, its status and the champion it was compared with.
        wandb_page: the task's W&B run: its link, or where its offline files are.
        wandb_files: the offline W&B run's folder (for ``wandb sync``), or a note with the link.
        store_root: the model store (local path, or gs:// on GCS or its emulator).
        model_name: the registered model's name.
        pipeline_job_id: groups this task's W&B run with the rest of the pipeline run.
        wandb_project: the W&B project (empty: WANDB_PROJECT or kfp-mlops).
        kfp_ui_host: the KFP UI's address, for the KFP run's page in the W&B run's config (empty: no link).
    """
    import json

    from kfp_mlops.components.register.logic import render_summary, run_register
    from kfp_mlops.core.run_outputs import RunOutputs
    from kfp_mlops.core.tracking import artifact_refs

    record = run_register(
        model.path,
        reference_profile.path,
        evaluation.path,
        model_sha256=model.metadata["model_sha256"],
        store_root=store_root,
        model_name=model_name,
        pipeline_job_id=pipeline_job_id,
        wandb_project=wandb_project,
        uses=artifact_refs(model.metadata),
        outputs=RunOutputs(wandb_page.path, wandb_files.path, kfp_ui_host=kfp_ui_host),
    )
    with open(summary.path, "w") as out:
        out.write(render_summary(record))
    with open(registered.path, "w") as out:
        json.dump(record, out, indent=2, sort_keys=True)
    registered.metadata.update(record)
