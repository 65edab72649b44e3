"""Register: publish an approved model as a new immutable version, a candidate for champion.

Registering never makes a model champion by itself: the champion pointer moves only when the
model is deployed ``single`` (explicitly, or as the first model of its name) or when a rollout
promotes it (components/deploy, kfp_mlops.rollout.controller).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kfp_mlops.components.common import tracked_task
from kfp_mlops.core.errors import MlopsError
from kfp_mlops.core.run_outputs import RunOutputs
from kfp_mlops.core.tracking import ArtifactRef, registered_artifact
from kfp_mlops.modeling.model_store import CANDIDATE, ModelStore


def run_register(
    model_dir: str,
    profile_path: str,
    evaluation_path: str,
    *,
    model_sha256: str,
    store_root: str,
    model_name: str,
    pipeline_job_id: str = "local",
    wandb_project: str = "",
    uses: Sequence[ArtifactRef] = (),
    outputs: RunOutputs | None = None,
) -> dict[str, Any]:
    """Stores the model as a new immutable version with the status ``candidate`` and its checksum.

    Args:
        model_sha256: the model file's sha256 as train recorded it (the Model artifact's
            ``model_sha256`` metadata): the file must match it, and the store records it apart from
            the file, for the champion pointer, the rollout state and every later load.

    Returns:
        name, version, uri, sha256, status (``candidate``) and ``champion``: the champion the
        evaluation compared it with (None: the first model of its name).

    Raises:
        MlopsError: the evaluation did not pass (register must only run behind the gate), or the
            model file does not match ``model_sha256``.
    """
    evaluation = json.loads(Path(evaluation_path).read_text())
    if not evaluation.get("passed"):
        raise MlopsError(f"model {model_dir}: its evaluation did not pass the gate; not registered")
    store = ModelStore(store_root)
    params = {"store_root": store_root, "model_name": model_name}
    with tracked_task(
        "register", params, pipeline_job_id=pipeline_job_id, wandb_project=wandb_project, outputs=outputs
    ) as run:
        registered = store.publish(
            model_name, model_dir, profile_path=profile_path, evaluation=evaluation, sha256=model_sha256
        )
        store.record_status(
            model_name, registered.version, CANDIDATE, by="register", reasons=evaluation.get("reasons", [])
        )
        record = {
            "name": registered.name,
            "version": registered.version,
            "uri": registered.uri,
            "sha256": store.checksum(model_name, registered.version),
            "status": CANDIDATE,
            "champion": evaluation.get("champion_version"),
        }
        run.run.summary.update(record)
        # The stored version, linked to the W&B Registry as a candidate (deploy or a rollout moves
        # ``champion`` to it); ``uses``: train's exact model artifact version.
        ref = run.log_model_version(
            registered_artifact(model_name),
            uri=registered.uri,
            metadata=record,
            registered_model=model_name,
            aliases=[CANDIDATE],
            uses=uses,
        )
    return {**record, "wandb_artifact": ref.to_dict()}


def render_summary(record: Mapping[str, Any]) -> str:
    """The KFP UI's Markdown summary of a registration."""
    champion = record.get("champion")
    against = f"compared with champion `{champion}`" if champion else "the first model of its name"
    return (
        f"# Registered `{record['name']}` version `{record['version']}`\n\n"
        f"Status **{record['status']}** ({against}); the champion moves only when it is deployed single or a "
        f"rollout promotes it.\n\n| field | value |\n|---|---|\n"
        f"| uri | `{record['uri']}` |\n| sha256 | `{record.get('sha256')}` |\n"
    )
