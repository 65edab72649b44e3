"""KFP component: serve the registered candidate (single, A/B, shadow, or a safe rollout), locally or on a cluster."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Markdown, Output

from kfp_mlops.components.common import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def deploy(
    registered: Input[Artifact],
    deployment: Output[Artifact],
    manifest: Output[Artifact],
    summary: Output[Markdown],
    wandb_page: Output[Markdown],
    wandb_files: Output[Artifact],
    store_root: str,
    deployment_name: str = "iris",
    namespace: str = "models",
    protocol: str = "v2",
    mode: str = "rollout",
    other_model_uri: str = "",
    ab_traffic: int = 10,
    rollout_plan: dict = {},
    rollout_state_uri: str = "",
    prediction_log_root: str = "",
    target: str = "local",
    platform: str = "seldon",
    serving_image_v2: str = "",
    serving_image_seldon: str = "",
    service_account: str = "",
    request_logger_url: str = "",
    timeout_seconds: int = 600,
    pipeline_job_id: str = "local",
    wandb_project: str = "",
    kfp_ui_host: str = "",
):
    """Renders, checks and deploys the deployment; nothing is written, applied or moved if it is invalid.

    Args:
        registered: register's record (name, version, uri, status, the champion it was compared with).
        deployment: JSON describing the deployment (mode, predictors, traffic, model URIs, target,
            state, the champion afterwards and why, the rollout's state document and stage).
        manifest: the rendered cluster objects' YAML: the SeldonDeployment, or KServe's ServingRuntime and
            InferenceService (for a local target too: what a cluster would run).
        summary: Markdown: mode, target, state, the champion afterwards and why, the predictors.
        wandb_page: the task's W&B run: its link, or where its offline files are.
        wandb_files: the offline W&B run's folder (for ``wandb sync``), or a note with the link.
        store_root: the model store (the champion pointer, the versions' folders).
        deployment_name: the deployment's name (a DNS-1123 label).
        namespace: its Kubernetes namespace.
        protocol: v2 (Open Inference Protocol, MLServer) or seldon.
        mode: single (serve it alone, make it champion), ab (it gets ab_traffic percent), shadow (it
            is mirrored) or rollout (a safe rollout against the champion, from shadow); the first
            model of a name is deployed single.
        other_model_uri: the other model for ab / shadow (default: the champion it was compared with).
        ab_traffic: percent of live traffic for the new model in mode ab.
        rollout_plan: StagePlan fields of the rollout, e.g. {"steps": [5, 25, 100]} (empty: defaults).
        rollout_state_uri: the rollout state document (empty: <store_root>/rollouts/<deployment_name>.json).
        prediction_log_root: the log the rollout's steps read (empty:
            <store_root>/prediction-log/<deployment_name>).
        target: local (writes $KFP_MLOPS_HOME/deployments/<name>.json for `kfp-mlops serve`; refused in
            a Kubernetes pod), cluster (server-side apply, wait until ready, restore the previous spec on
            failure) or none (apply nothing; the champion still moves for single, a rollout is still recorded).
        platform: the cluster's serving platform: seldon (SeldonDeployment) or kserve (InferenceService).
        serving_image_v2: the protocol-v2 model-server image (the pipelines pass their parameter of that name,
            by default this version's ghcr.io/kfp-mlops/mlserver image).
        serving_image_seldon: the Seldon-protocol model-server image (likewise: ghcr.io/kfp-mlops/seldon).
        service_account: the model-server pods' service account (empty: the namespace's default).
        request_logger_url: kserve only: where KServe's request logger sends requests and responses.
        timeout_seconds: how long a cluster rollout may take to become Available.
        pipeline_job_id: groups this task's W&B run with the rest of the pipeline run.
        wandb_project: the W&B project (empty: WANDB_PROJECT or kfp-mlops).
        kfp_ui_host: the KFP UI's address, for the KFP run's page in the W&B run's config (empty: no link).
    """
    import json

    import yaml

    from kfp_mlops.components.common import from_struct, json_safe
    from kfp_mlops.components.deploy.logic import render_summary, run_deploy
    from kfp_mlops.core.config import Settings
    from kfp_mlops.core.run_outputs import RunOutputs
    from kfp_mlops.core.tracking import artifact_refs

    record = run_deploy(
        registered.path,
        manifest.path,
        settings=Settings.from_env(),  # read once, here at the task's entry
        store_root=store_root,
        deployment_name=deployment_name,
        namespace=namespace,
        protocol=protocol,
        mode=mode,
        other_model_uri=other_model_uri,
        ab_traffic=ab_traffic,
        rollout_plan=from_struct(rollout_plan),
        rollout_state_uri=rollout_state_uri,
        prediction_log_root=prediction_log_root,
        target=target,
        platform_name=platform,
        serving_image_v2=serving_image_v2,
        serving_image_seldon=serving_image_seldon,
        service_account=service_account,
        request_logger_url=request_logger_url,
        timeout_seconds=timeout_seconds,
        pipeline_job_id=pipeline_job_id,
        wandb_project=wandb_project,
        uses=tuple(artifact_refs(registered.metadata)),
        outputs=RunOutputs(wandb_page.path, wandb_files.path, kfp_ui_host=kfp_ui_host),
    )
    with open(summary.path, "w") as out:
        out.write(render_summary(record))
    with open(deployment.path, "w") as out:
        json.dump(record, out, indent=2, sort_keys=True)
    deployment.metadata.update(json_safe(record))
    with open(manifest.path) as rendered:
        *_, deployed = yaml.safe_load_all(rendered)  # the deployment comes last (a ServingRuntime before it)
    manifest.metadata.update(
        {"kind": deployed["kind"], "platform": platform, "name": record["name"], "namespace": record["namespace"]}
    )
