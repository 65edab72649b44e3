"""The rollout pipeline: (late labels imported, if given) then one controller step of a safe rollout.

Schedule it, e.g. hourly. It owns promotion: the step moves the rollout from shadow through the
canary stages; when it promotes a rollout of registered models to 100 %, it moves the model store's
champion pointer to the challenger, and when it rolls one back, it marks the challenger rejected
(:mod:`kfp_mlops.rollout.controller`). The state document says which store and versions those are,
and the prediction log it reads unless ``log_root`` names another.

Labels that arrive days after the predictions (a warehouse export) are appended to that log first
when ``labels_uri`` names a file (``components/labels_import``), so the step decides on them. The
import sits in a small sub-pipeline, ``import-late-labels``, whose ``dsl.If`` skips it for an empty
``labels_uri``: KFP lets a task wait for a sub-pipeline, not for a task inside another task's
condition. On a cluster every stage is rendered with the serving parameters (platform, images,
service account, KServe's logger) and the prediction log as the servers' ``PREDICTION_LOG_URI``.
"""

from collections.abc import Callable, Mapping
from typing import Any

from kfp import dsl

from kfp_mlops.components.labels_import.component import labels_import
from kfp_mlops.components.rollout.component import rollout_step
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.pipelines.parameters import ROLLOUT, check_addresses, check_serving
from kfp_mlops.pipelines.platform import attach_wandb_secret
from kfp_mlops.pipelines.retries import retry_io
from kfp_mlops.rollout.controller import base_spec
from kfp_mlops.rollout.live import LiveConfig
from kfp_mlops.rollout.targets import TARGETS

DESCRIPTION = (
    "One step of a safe rollout: import late labels (if given), compare the challenger with the legacy model on "
    "live traffic and labels, then promote it to the next stage, hold, or roll it back."
)
LABEL_SUFFIXES = (".csv", ".parquet", ".pq")


def build_label_import_pipeline(*, kubernetes: bool = True, retries: bool = True) -> Callable:
    """The ``import-late-labels`` sub-pipeline: ``labels_import`` when ``labels_uri`` is not empty.

    Args:
        kubernetes: add kfp-kubernetes settings (the W&B Secret as an env var); Vertex AI rejects them.
        retries: give the tasks that do I/O their retry policy (:mod:`~kfp_mlops.pipelines.retries`);
            local runs leave it out.
    """

    @dsl.pipeline(name="import-late-labels")
    def import_late_labels(
        labels_uri: str, log_root: str, state_uri: str, wandb_project: str, kfp_ui_host: str
    ) -> None:
        """Appends the labels of ``labels_uri`` to the rollout's prediction log; skipped when it is empty.

        Args:
            labels_uri: the labels file (.csv or .parquet of request_id,label[,labelled_at]); empty: skipped.
            log_root: the prediction log's root (empty: the one the rollout at state_uri recorded).
            state_uri: the rollout state document.
            wandb_project: the W&B project of the task's run.
            kfp_ui_host: the KFP UI's address, for the KFP run's page in the task's W&B run (empty: no link).
        """
        with dsl.If(labels_uri != "", name="labels-given"):
            task = labels_import(
                labels_uri=labels_uri,
                log_root=log_root,
                state_uri=state_uri,
                pipeline_job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                wandb_project=wandb_project,
                kfp_ui_host=kfp_ui_host,
            )
            retry_io(task.set_display_name("labels-import").set_caching_options(False), retries)  # the file may change
            if kubernetes:
                attach_wandb_secret(task)

    return import_late_labels


def build_rollout_pipeline(*, kubernetes: bool = True, retries: bool = True) -> Callable:
    """Builds the rollout pipeline; its parameters are :data:`~kfp_mlops.pipelines.parameters.ROLLOUT`.

    Args:
        kubernetes: add kfp-kubernetes settings (the W&B Secret as an env var); Vertex AI rejects them.
        retries: give the tasks that do I/O their retry policy (:mod:`~kfp_mlops.pipelines.retries`);
            local runs leave it out.
    """
    import_late_labels = build_label_import_pipeline(kubernetes=kubernetes, retries=retries)

    def steps(p: dict[str, Any]) -> None:
        imported = import_late_labels(
            labels_uri=p["labels_uri"],
            log_root=p["log_root"],
            state_uri=p["state_uri"],
            wandb_project=p["wandb_project"],
            kfp_ui_host=p["kfp_ui_host"],
        ).set_display_name("import-late-labels")
        imported.set_caching_options(False)  # the labels file may change in place
        step_arguments = {name: p[name] for name in p if name not in ("labels_uri", "serving_service_account")}
        step = (
            rollout_step(
                **step_arguments,
                service_account=p["serving_service_account"],
                pipeline_job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            )
            .set_display_name("rollout-step")
            .set_caching_options(False)
            .after(imported)
        )  # the log and the state change
        retry_io(step, retries)
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
    labels_uri = str(values["labels_uri"])
    if labels_uri and not labels_uri.lower().endswith(LABEL_SUFFIXES):
        raise ConfigError(f"labels_uri {labels_uri!r}: give a .csv or .parquet file of request_id,label[,labelled_at]")
    LiveConfig.from_dict(values["live_config"])
    check_serving(values)
    check_addresses(values)
    base_spec(values["deployment_name"], namespace=values["namespace"], protocol=values["protocol"]).validate()
    if values["platform"] == "kserve" and values["protocol"] != "v2":
        raise ConfigError(f"protocol {values['protocol']!r}: platform kserve serves protocol v2 only")
