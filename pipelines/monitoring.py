"""The monitoring pipeline: import a data window -> drift check against the champion -> (if drift) retrain."""

from collections.abc import Callable, Mapping
from typing import Any

from kfp import dsl

from kfp_mlops.components.drift_check.component import drift_check
from kfp_mlops.components.retrain.component import retrain
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.pipelines.arguments import with_defaults
from kfp_mlops.pipelines.platform import attach_wandb_secret

WINDOW_SUFFIXES = (".csv", ".parquet", ".pq")


def build_monitoring_pipeline(*, kubernetes: bool = True) -> Callable:
    """Builds the monitoring pipeline.

    The window is imported as a Dataset artifact (``dsl.importer``, reimported on every run, never
    cached): drift_check reads ``.csv``/``.parquet`` by suffix, and on a cluster KFP copies a
    ``gs://`` window to the task. Locally the window must be a local path.

    Args:
        kubernetes: add kfp-kubernetes settings (the W&B Secret as an env var); Vertex AI rejects them.
    """

    @dsl.pipeline(
        name="monitoring",
        description=(
            "Check a window of new data for drift against the champion; if it drifted, retrain on the window "
            "(submit the training pipeline on a cluster, run it locally otherwise)."
        ),
    )
    def monitoring(
        store_root: str,
        source: str,
        label: str = "species",
        model_name: str = "iris-classifier",
        drift_config: dict = {},
        estimator: str = "logistic_regression",
        hyperparameters: dict = {},
        test_size: float = 0.2,
        seed: int = 42,
        schema_uri: str = "",
        gate_metric: str = "accuracy",
        threshold: float = 0.9,
        max_regression: float = 0.0,
        wandb_project: str = "kfp-mlops",
        deployment_name: str = "iris",
        deploy_target: str = "local",
        namespace: str = "models",
        protocol: str = "v2",
        kfp_host: str = "",
        kfp_namespace: str = "",
        experiment: str = "kfp-mlops",
    ):
        tracking = {"pipeline_job_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER, "wandb_project": wandb_project}
        window_task = dsl.importer(artifact_uri=source, artifact_class=dsl.Dataset, reimport=True)
        window_task.set_display_name("ingest-window").set_caching_options(False)  # the window changes in place
        drift_task = (
            drift_check(
                current_data=window_task.output,
                store_root=store_root,
                model_name=model_name,
                config=drift_config,
                **tracking,
            )
            .set_display_name("drift-check")
            .set_caching_options(False)
        )  # the champion it compares with changes
        tasks = [drift_task]
        with dsl.If(drift_task.outputs["Output"] == True, name="drift-found"):  # noqa: E712
            retrain_task = (
                retrain(
                    source=source,
                    store_root=store_root,
                    drift_verdict=drift_task.outputs["verdict"],
                    label=label,
                    model_name=model_name,
                    estimator=estimator,
                    hyperparameters=hyperparameters,
                    test_size=test_size,
                    seed=seed,
                    schema_uri=schema_uri,
                    gate_metric=gate_metric,
                    threshold=threshold,
                    max_regression=max_regression,
                    deployment_name=deployment_name,
                    deploy_target=deploy_target,
                    namespace=namespace,
                    protocol=protocol,
                    kfp_host=kfp_host,
                    kfp_namespace=kfp_namespace,
                    experiment=experiment,
                    **tracking,
                )
                .set_display_name("retrain")
                .set_caching_options(False)
            )  # trains on the store's current state
            tasks.append(retrain_task)
        if kubernetes:
            for task in tasks:
                attach_wandb_secret(task)

    return monitoring


monitoring = build_monitoring_pipeline()


def check_arguments(arguments: Mapping[str, Any]) -> None:
    """Refuses arguments that would fail a task, before anything runs or is submitted.

    The training parameters are checked as the training pipeline checks them (a retrain runs it).

    Raises:
        ConfigError: naming the parameter and what is wrong with it.
    """
    from pathlib import Path

    from kfp_mlops.components.retrain.logic import PASSED_THROUGH
    from kfp_mlops.drift.check import DriftConfig
    from kfp_mlops.pipelines import training

    values = with_defaults(monitoring, arguments)
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
    host = values["kfp_host"]
    if host and not str(host).startswith(("http://", "https://")):
        raise ConfigError(f"kfp_host {host!r} has no scheme: use http://{host} or https://{host}")
    training.check_arguments(
        {"store_root": values["store_root"], "source": source, **{name: values[name] for name in PASSED_THROUGH}}
    )


def summarize(run: Any) -> str:
    """What ``kfp-mlops run monitoring`` prints: the drift verdict and what the retrain did."""
    import json

    lines = [f"Pipeline {run.pipeline} finished in {run.seconds:.1f} s ({len(run.tasks)} tasks ran)", ""]
    verdict_path = run.artifact("drift-check", "verdict")
    if verdict_path.exists():
        verdict = json.loads(verdict_path.read_text())
        state = "DRIFT" if verdict["drift"] else "no drift"
        lines.append(
            f"Drift     {state} on {verdict['rows']} rows: share {verdict['drift_share']:.3f} of features "
            f"({', '.join(verdict['drifted_features']) or 'none'})"
        )
        lines += [f"          {reason}" for reason in verdict["reasons"]]
    if run.ran("retrain"):
        outcome = json.loads(run.artifact("retrain", "outcome").read_text())
        if outcome["mode"] == "cluster":
            lines.append(f"Retrain   submitted training run {outcome['run_id']}: {outcome['url']}")
        elif outcome["version"]:
            lines.append(
                f"Retrain   registered {outcome['version']} as champion "
                f"(accuracy {outcome['metrics'].get('accuracy', float('nan')):.4f})"
            )
        else:
            lines.append(f"Retrain   the gate refused the new model: {'; '.join(outcome['reasons'])}")
    else:
        lines.append("Retrain   skipped: no drift")
    lines += ["", f"Task log   {run.log_path}"]
    return "\n".join(lines)
