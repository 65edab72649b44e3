"""KFP component: one step of a safe rollout (promote, hold or roll back the challenger)."""

from kfp import dsl
from kfp.dsl import Artifact, Markdown, Metrics, Output

from kfp_mlops.components.common import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def rollout_step(
    decision: Output[Artifact],
    summary: Output[Markdown],
    metrics: Output[Metrics],
    wandb_page: Output[Markdown],
    wandb_files: Output[Artifact],
    state_uri: str,
    log_root: str = "",
    deployment_name: str = "fraud",
    namespace: str = "models",
    protocol: str = "v2",
    target: str = "local",
    as_of: str = "",
    live_config: dict = {},
    timeout_seconds: int = 600,
    platform: str = "seldon",
    serving_image_v2: str = "",
    serving_image_seldon: str = "",
    service_account: str = "",
    request_logger_url: str = "",
    pipeline_job_id: str = "local",
    wandb_project: str = "",
    kfp_ui_host: str = "",
    pushgateway_url: str = "",
) -> str:
    """Joins the prediction log, compares the predictors live, decides, records and applies the stage.

    A promotion to 100 % of registered models moves the champion pointer; a rollback rejects the challenger.

    Args:
        decision: JSON: action, stage, next stage, reasons, challenger share, applied spec, comparison.
        summary: Markdown: the action, the stages, why, and the live differences with their intervals.
        metrics: action (1 promote, 0 hold, -1 rollback), challenger_share, promoted, rolled_back and each
            difference's value, for the KFP UI (stage, share and status also pushed to pushgateway_url).
        wandb_page: the decision's W&B run: its link, or where its offline files are (or why there is none).
        wandb_files: the offline W&B run's folder (for ``wandb sync``), or a note with the link.
        state_uri: the rollout state document (started with `kfp-mlops rollout start`).
        log_root: the prediction log's root (empty: the one the rollout was started with).
        deployment_name: the deployment every stage keeps.
        namespace: its Kubernetes namespace.
        protocol: v2 or seldon.
        target: local (the spec file `kfp-mlops serve` watches; refused in a Kubernetes pod), cluster (the
            platform's resources, rendered with the serving options below) or none.
        as_of: ISO time the step looks from (empty: now).
        live_config: LiveConfig fields, e.g. {"bootstrap": 2000, "target_fpr": 0.01}.
        timeout_seconds: how long a cluster rollout may take to become Available.
        platform: the cluster's serving platform: seldon (SeldonDeployment) or kserve (InferenceService).
        serving_image_v2: the protocol-v2 model-server image (the pipeline passes its parameter of that name).
        serving_image_seldon: the Seldon-protocol model-server image (likewise).
        service_account: the model-server pods' service account (empty: the namespace's default).
        request_logger_url: kserve only: where KServe's request logger sends requests and responses.
        pipeline_job_id: groups this task's W&B run with the rest of the pipeline run.
        wandb_project: the W&B project (empty: WANDB_PROJECT or kfp-mlops).
        kfp_ui_host: the KFP UI's address, for the KFP run's page in the W&B run's config (empty: no link).
        pushgateway_url: the Prometheus Pushgateway the stage, share and status are pushed to
            (http://host:9091; empty: not pushed).

    Returns:
        The action taken: promote, hold, rollback or none (the rollout was already over).
    """
    from kfp_mlops.components.common import from_struct, json_safe
    from kfp_mlops.components.rollout.logic import rollout_metrics, rollout_summary
    from kfp_mlops.core.config import Settings
    from kfp_mlops.core.metrics_push import push_rollout
    from kfp_mlops.core.run_outputs import RunOutputs
    from kfp_mlops.rollout.task import run_rollout_step

    settings = Settings.from_env()  # read once, here at the task's entry
    outputs = RunOutputs(wandb_page.path, wandb_files.path, kfp_ui_host=kfp_ui_host)
    record = run_rollout_step(
        decision.path,
        settings=settings,
        state_uri=state_uri,
        log_root=log_root,
        deployment_name=deployment_name,
        namespace=namespace,
        protocol=protocol,
        target=target,
        as_of=as_of,
        live_config=from_struct(live_config),
        timeout_seconds=timeout_seconds,
        platform=platform,
        serving_image_v2=serving_image_v2,
        serving_image_seldon=serving_image_seldon,
        service_account=service_account,
        request_logger_url=request_logger_url,
        pipeline_job_id=pipeline_job_id,
        wandb_project=wandb_project,
        outputs=outputs,
    )
    with open(summary.path, "w") as out:
        out.write(rollout_summary(record))
    for name, value in rollout_metrics(record).items():
        metrics.log_metric(name, value)
    if record["action"] == "none":
        outputs.publish_no_run(f"the rollout was already {record['status']}, so nothing was decided")
    else:
        from kfp_mlops.rollout.state import load_rollout

        state, _ = load_rollout(state_uri)
        started = state.stage_started_at.timestamp()
        push_rollout(pushgateway_url, record, job=pipeline_job_id, deployment=deployment_name, stage_started_at=started)
    decision.metadata.update(
        json_safe({k: record[k] for k in ("action", "stage", "next_stage", "status", "challenger_share", "reasons")})
    )
    return record["action"]
