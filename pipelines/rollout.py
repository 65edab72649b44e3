"""The rollout pipeline: one controller step of a safe rollout (schedule it, e.g. hourly)."""

from collections.abc import Callable, Mapping
from typing import Any

from kfp import dsl

from kfp_mlops.components.rollout.component import rollout_step
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.pipelines.arguments import with_defaults
from kfp_mlops.pipelines.platform import attach_wandb_secret


def build_rollout_pipeline(*, kubernetes: bool = True) -> Callable:
    """Builds the rollout pipeline.

    Args:
        kubernetes: add kfp-kubernetes settings (the W&B Secret as an env var); Vertex AI rejects them.
    """

    @dsl.pipeline(
        name="rollout",
        description=(
            "One step of a safe rollout: compare the challenger with the legacy model on live traffic and "
            "labels, then promote it to the next stage, hold, or roll it back."
        ),
    )
    def rollout(
        state_uri: str,
        log_root: str,
        deployment_name: str = "fraud",
        namespace: str = "models",
        protocol: str = "v2",
        target: str = "cluster",
        as_of: str = "",
        live_config: dict = {},
        timeout_seconds: int = 600,
        wandb_project: str = "kfp-mlops",
    ):
        step = (
            rollout_step(
                state_uri=state_uri,
                log_root=log_root,
                deployment_name=deployment_name,
                namespace=namespace,
                protocol=protocol,
                target=target,
                as_of=as_of,
                live_config=live_config,
                timeout_seconds=timeout_seconds,
                pipeline_job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                wandb_project=wandb_project,
            )
            .set_display_name("rollout-step")
            .set_caching_options(False)
        )  # the log and the state change
        if kubernetes:
            attach_wandb_secret(step)

    return rollout


rollout = build_rollout_pipeline()


def check_arguments(arguments: Mapping[str, Any]) -> None:
    """Refuses arguments that would fail the step, before anything runs or is submitted.

    Raises:
        ConfigError: naming the parameter and what is wrong with it.
    """
    import dataclasses

    from kfp_mlops.components.rollout.logic import TARGETS
    from kfp_mlops.rollout.controller import base_spec
    from kfp_mlops.rollout.decisions import LiveConfig

    values = with_defaults(rollout, arguments)
    for name in ("state_uri", "log_root"):
        if not values.get(name):
            raise ConfigError(f"pipeline rollout: {name} is required (a local path or gs://bucket/prefix)")
    if values["target"] not in TARGETS:
        raise ConfigError(f"target {values['target']!r}: unknown; choose one of {', '.join(TARGETS)}")
    if not isinstance(values["live_config"], dict):
        raise ConfigError(f"live_config: must be a JSON object, got {values['live_config']!r}")
    known = {f.name for f in dataclasses.fields(LiveConfig)}
    unknown = sorted(set(values["live_config"]) - known)
    if unknown:
        raise ConfigError(f"live_config: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    problems = LiveConfig(**values["live_config"]).problems()
    if problems:
        raise ConfigError(f"live_config: {'; '.join(problems)}")
    base_spec(values["deployment_name"], namespace=values["namespace"], protocol=values["protocol"]).validate()
