"""The monitoring pipeline: import a data window -> drift check -> (if the policy says so) retrain.

The drift check's retrain policy (:mod:`kfp_mlops.drift.policy`) decides: a performance drop beyond
a tolerance (realized, or estimated without labels) or severe drift warrants a retrain, of kind
``incremental`` or ``full``; mild drift alone is logged. The retrain is the training pipeline
itself, embedded as a sub-pipeline (a KFP v2 pipeline is a component) with ``retrain_kind`` set: it
retrains the champion on the window and its recent history (``history_root``), and the model passes
the same gate and is registered as a *candidate*. Its deployment follows ``deploy_mode``,
``rollout`` by default: a safe rollout starts in shadow beside the champion, and only the
rollout's promotion (the scheduled rollout pipeline) makes the candidate champion. One DAG in the
KFP UI and one local run; nothing submits a second run, so the pods need no KFP credentials.

A failed run changes neither the champion nor a running rollout: a window the drift check cannot
compare (without the model's features, say) fails the first task, before anything is trained; a
deployment while a rollout runs for it is refused by the deploy step, before anything is applied.
"""

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kfp import dsl

from kfp_mlops.components.drift_check.component import drift_check
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.drift import DriftConfig
from kfp_mlops.pipelines import training
from kfp_mlops.pipelines.parameters import MONITORING, TRAINING, check_addresses
from kfp_mlops.pipelines.platform import attach_wandb_secret
from kfp_mlops.pipelines.retries import retry_io

WINDOW_SUFFIXES = (".csv", ".parquet", ".pq")
DESCRIPTION = (
    "Check a window of new data for drift against the champion; when the retrain policy warrants it (a "
    "performance drop or severe drift), retrain the champion on the window and its history (gate, register a "
    "candidate, and by default start a safe rollout in shadow beside the champion)."
)


def build_monitoring_pipeline(*, kubernetes: bool = True, retries: bool = True) -> Callable:
    """Builds the monitoring pipeline; its parameters are :data:`~kfp_mlops.pipelines.parameters.MONITORING`.

    The window is imported as a Dataset artifact (``dsl.importer``, reimported on every run, never
    cached): drift_check reads ``.csv``/``.parquet`` by suffix, and on a cluster KFP copies a
    ``gs://`` window to the task. Locally the window must be a local path. On drift, the training
    sub-pipeline reads the window by its URI (its ``source``), as a training run would.

    Args:
        kubernetes: add kfp-kubernetes settings (the W&B Secret as an env var); Vertex AI rejects them.
        retries: give the tasks that do I/O their retry policy (:mod:`~kfp_mlops.pipelines.retries`);
            local runs leave it out.
    """
    retrain = training.build_training_pipeline(kubernetes=kubernetes, retries=retries)

    def steps(p: dict[str, Any]) -> None:
        window_task = dsl.importer(artifact_uri=p["source"], artifact_class=dsl.Dataset, reimport=True)
        window_task.set_display_name("ingest-window").set_caching_options(False)  # the window changes in place
        drift_task = (
            drift_check(
                current_data=window_task.output,
                store_root=p["store_root"],
                model_name=p["model_name"],
                config=p["drift_config"],
                retrain_policy=p["retrain_policy"],
                pipeline_job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                wandb_project=p["wandb_project"],
                kfp_ui_host=p["kfp_ui_host"],
                pushgateway_url=p["pushgateway_url"],
            )
            .set_display_name("drift-check")
            .set_caching_options(False)
        )  # the champion it compares with changes
        retry_io(drift_task, retries)
        if kubernetes:
            attach_wandb_secret(drift_task)
        with dsl.If(drift_task.outputs["Output"] != "none", name="retrain-warranted"):
            arguments = {name: p[name] for name in TRAINING.names() if name != "retrain_kind"}
            retrain(**arguments, retrain_kind=drift_task.outputs["Output"]).set_display_name("retrain")

    return dsl.pipeline(name="monitoring", description=DESCRIPTION)(
        MONITORING.pipeline_function("monitoring", DESCRIPTION, steps)
    )


monitoring = build_monitoring_pipeline()


def check_arguments(arguments: Mapping[str, Any]) -> None:
    """Refuses arguments that would fail a task, before anything runs or is submitted.

    The training parameters are checked as the training pipeline checks them (a retrain runs it).

    Raises:
        ConfigError: naming the parameter and what is wrong with it.
    """
    values = MONITORING.with_defaults(arguments)
    if not values.get("store_root"):
        raise ConfigError("pipeline monitoring: store_root is required (a local path or gs://bucket/prefix)")
    source = values.get("source") or ""
    if Path(str(source).split("?", 1)[0]).suffix.lower() not in WINDOW_SUFFIXES:
        raise ConfigError(
            f"pipeline monitoring: source {source!r}: give the data window as a .csv or .parquet "
            "file (local path or gs:// URI)"
        )
    if not isinstance(values["drift_config"], dict):
        raise ConfigError(f"drift_config: must be a JSON object, got {values['drift_config']!r}")
    DriftConfig.from_dict(values["drift_config"])
    check_addresses(values)
    training.check_arguments({name: values[name] for name in TRAINING.names() if name != "retrain_kind"})
