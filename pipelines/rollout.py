"""The rollout pipeline: one controller step of a safe rollout (schedule it, e.g. hourly).

It owns promotion: the step moves the rollout from shadow through the canary stages; when it
promotes a rollout of registered models to 100 %, it moves the model store's champion pointer to
the challenger, and when it rolls one back, it marks the challenger rejected
(:mod:`kfp_mlops.rollout.controller`). The state document says which store and versions those are,
and the prediction log it reads unless ``log_root`` names another.
"""

from collections.abc import Callable, Mapping
from typing import Any

from kfp import dsl

from kfp_mlops.components.rollout.component import rollout_step
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.pipelines.parameters import ROLLOUT
from kfp_mlops.pipelines.platform import attach_wandb_secret
from kfp_mlops.rollout.controller import base_spec
from kfp_mlops.rollout.live import LiveConfig
from kfp_mlops.rollout.targets import TARGETS

DESCRIPTION = (
    "One step of a safe rollout: compare the challenger with the legacy model on live traffic and "
    "labels, then promote it to the next stage, hold, or roll it back."
)


def build_rollout_pipeline(*, kubernetes: bool = True) -> Callable:
    """Builds the rollout pipeline; its parameters are :data:`~kfp_mlops.pipelines.parameters.ROLLOUT`.

    Args:
        kubernetes: add kfp-kubernetes settings (the W&B Secret as an env var); Vertex AI rejects them.
    """

    def steps(p: dict[str, Any]) -> None:
        step = (
            rollout_step(**p, pipeline_job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
            .set_display_name("rollout-step")
            .set_caching_options(False)
        )  # the log and the state change
        if kubernetes:
            attach_wandb_secret(step)

    return dsl.pipeline(name="rollout", description=DESCRIPTION)(
        ROLLOUT.pipeline_function("rollout", DESCRIPTION, steps)
    )


rollout = build_rollout_pipeline()


def check_arguments(arguments: Mapping[str, Any]) -> None:
    """Refuses arguments that would fail the step, before anything runs or is submitted.

    Raises:
        ConfigError: naming the parameter and what is wrong with it.
    """
    values = ROLLOUT.with_defaults(arguments)
    if not values.get("state_uri"):
        raise ConfigError("pipeline rollout: state_uri is required (a local path or gs://bucket/prefix)")
    if values["target"] not in TARGETS:
        raise ConfigError(f"target {values['target']!r}: unknown; choose one of {', '.join(TARGETS)}")
    LiveConfig.from_dict(values["live_config"])
    base_spec(values["deployment_name"], namespace=values["namespace"], protocol=values["protocol"]).validate()
