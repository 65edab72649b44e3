"""Labels import: a file of late labels appended to the prediction log, recorded in W&B.

The reading, checking and appending is :func:`kfp_mlops.serving.label_import.import_labels`; this
is the task's side: its W&B run and the JSON record of what was appended.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kfp_mlops.components.common import tracked_task
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.core.run_outputs import RunOutputs
from kfp_mlops.rollout.task import rollout_log_root
from kfp_mlops.serving.label_import import import_labels


def run_labels_import(
    imported_path: str,
    *,
    labels_uri: str,
    log_root: str = "",
    state_uri: str = "",
    labelled_at_column: str = "",
    pipeline_job_id: str = "local",
    wandb_project: str = "",
    outputs: RunOutputs | None = None,
) -> dict[str, Any]:
    """Appends the labels of ``labels_uri`` to the log and writes what was appended to ``imported_path``.

    The log is ``log_root``, else the one the rollout at ``state_uri`` recorded (what its steps read).
    The task's W&B run (its summary: what was appended) is published to ``outputs`` (None: none).

    Returns:
        source, log_root, labels, positives, first_labelled_at, last_labelled_at, segment.

    Raises:
        ConfigError: no ``log_root``, and no rollout at ``state_uri`` that recorded one.
        DataError: the file is unreadable or has bad rows, or the log refuses the batch; nothing
            is written to the log.
    """
    if not log_root and state_uri:
        log_root = rollout_log_root(state_uri)
    if not log_root:
        raise ConfigError(
            f"labels {labels_uri}: no prediction log to append to; give log_root"
            + (f" (the rollout at {state_uri} recorded none)" if state_uri else " or a rollout's state_uri")
        )
    params = {"labels_uri": labels_uri, "log_root": log_root, "labelled_at_column": labelled_at_column}
    with tracked_task(
        "labels_import", params, pipeline_job_id=pipeline_job_id, wandb_project=wandb_project, outputs=outputs
    ) as run:
        record = import_labels(labels_uri, log_root, labelled_at_column=labelled_at_column or None).to_dict()
        run.run.summary.update(record)
    Path(imported_path).parent.mkdir(parents=True, exist_ok=True)
    Path(imported_path).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record
