"""Cluster settings shared by the pipelines (kfp-kubernetes); left out of Vertex AI variants."""

from kfp import dsl, kubernetes

from kfp_mlops.core.config import WANDB_SECRET_NAME


def attach_wandb_secret(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Exposes the W&B API key from the cluster's Secret as ``WANDB_API_KEY``.

    Optional: without the Secret the task still runs, and W&B logs offline in the pod.
    """
    return kubernetes.use_secret_as_env(
        task, secret_name=WANDB_SECRET_NAME, secret_key_to_env={"api-key": "WANDB_API_KEY"}, optional=True
    )
