"""KFP component: serve the registered model, locally or as a SeldonDeployment on a cluster."""

from kfp import dsl
from kfp.dsl import Artifact, Input, Output

from kfp_mlops.components.common import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def deploy(
    registered: Input[Artifact],
    deployment: Output[Artifact],
    manifest: Output[Artifact],
    store_root: str,
    deployment_name: str = "iris",
    namespace: str = "models",
    protocol: str = "v2",
    mode: str = "single",
    other_model_uri: str = "",
    ab_traffic: int = 10,
    target: str = "local",
    timeout_seconds: int = 600,
    pipeline_job_id: str = "local",
    wandb_project: str = "",
):
    """Renders, checks and deploys the deployment; nothing is written or applied if it is invalid.

    Args:
        registered: register's record (name, version, uri, previous champion).
        deployment: JSON describing the deployment (predictors, traffic, model URIs, target, state).
        manifest: the rendered SeldonDeployment YAML (for a local target too: what a cluster would run).
        store_root: the model store, to find the previous champion for modes ab and shadow.
        deployment_name: the SeldonDeployment's name (a DNS-1123 label).
        namespace: its Kubernetes namespace.
        protocol: v2 (Open Inference Protocol, MLServer) or seldon.
        mode: single, ab (the new model gets ab_traffic percent) or shadow (the new model is mirrored).
        other_model_uri: the other model for ab / shadow (default: the champion the new model replaced).
        ab_traffic: percent of live traffic for the new model in mode ab.
        target: local (writes $KFP_MLOPS_HOME/deployments/<name>.json for `kfp-mlops serve`) or
            cluster (server-side apply, wait until Available, restore the previous spec on failure).
        timeout_seconds: how long a cluster rollout may take to become Available.
        pipeline_job_id: groups this task's W&B run with the rest of the pipeline run.
        wandb_project: the W&B project (empty: WANDB_PROJECT or kfp-mlops).
    """
    import json

    from kfp_mlops.components.common import json_safe
    from kfp_mlops.components.deploy.logic import run_deploy
    from kfp_mlops.core.config import Settings

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
        target=target,
        timeout_seconds=timeout_seconds,
        pipeline_job_id=pipeline_job_id,
        wandb_project=wandb_project,
    )
    with open(deployment.path, "w") as out:
        json.dump(record, out, indent=2, sort_keys=True)
    deployment.metadata.update(json_safe(record))
    manifest.metadata.update({"kind": "SeldonDeployment", "name": record["name"], "namespace": record["namespace"]})
