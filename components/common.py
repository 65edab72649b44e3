"""What every component shares: the image it runs in, JSON-safe artifact metadata, and the task's W&B run."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from kfp_mlops.core.config import DEFAULT_IMAGE, Settings
from kfp_mlops.core.run_outputs import RunOutputs
from kfp_mlops.core.tracking import TrackedRun, tracked_run

# The release image every component declares; compiling pins the image chosen with `--image` on the
# compiled spec (kfp_mlops.app.compiling), never one a shell happens to export. kfp.local ignores it.
COMPONENT_IMAGE = DEFAULT_IMAGE


def json_safe(value: Any) -> Any:
    """Converts numpy scalars and tuples so KFP can store ``value`` as artifact metadata."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        return value.item()
    return value


def from_struct(value: Any) -> Any:
    """A STRUCT (dict) parameter as the pipeline's caller wrote it.

    KFP carries STRUCT parameters in protobuf's ``Struct``, whose only number type is a double, so a
    whole number arrives as a float (``{"steps": [5, 100]}`` as ``[5.0, 100.0]``); configs that
    count (steps, replicates, rows) want it back as an int.
    """
    if isinstance(value, dict):
        return {k: from_struct(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_struct(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def tracked_task(
    component: str,
    config: Mapping[str, Any],
    *,
    pipeline_job_id: str,
    wandb_project: str,
    outputs: RunOutputs | None = None,
) -> AbstractContextManager[TrackedRun]:
    """The W&B run of one component task, with the settings of the task's environment.

    A component's logic opens it where the task starts: a task is a process of its own (a pod, or
    a kfp.local subprocess), so its environment is where the settings come from.

    Args:
        component: the component's name (the run's ``job_type``).
        config: the task's parameters.
        pipeline_job_id: the KFP pipeline job id (the run's group).
        wandb_project: the pipeline's W&B project (empty: the ``WANDB_PROJECT`` setting).
        outputs: the task's ``wandb_page`` (Markdown) and ``wandb_files`` outputs the finished run
            is published to (None: none, e.g. a logic function called outside KFP).

    The run is named ``<component>-<pipeline_job_id>``; its config holds the KFP run's id and page.
    """
    return tracked_run(
        component,
        group=pipeline_job_id,
        config=config,
        settings=Settings.from_env(),
        project=wandb_project,
        outputs=outputs,
    )


def dataset_name(model_name: str, source: str) -> str:
    """The W&B name stem of a data set's artifacts: the model's name, else the source's file stem.

    ``iris`` for the Iris source, ``fraud`` for ``gs://bucket/data/fraud.parquet``; artifact names
    then are ``<stem>-train-data``, ``<stem>-model``..., one collection per data set.
    """
    if model_name:
        return model_name
    stem = source.rstrip("/").rsplit("/", 1)[-1].split(".", 1)[0]
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in stem) or "data"
