"""Evaluate, the component's side: load the candidate, the test split and the champion; log the gate to W&B.

The scores and the gate are :func:`kfp_mlops.modeling.evaluation.evaluate`, shared with demos and tests.
"""

from __future__ import annotations

from kfp_mlops.components.common import tracked_task
from kfp_mlops.core.run_outputs import RunOutputs
from kfp_mlops.modeling.datasets import read_parquet
from kfp_mlops.modeling.evaluation import Evaluation, evaluate, load_champion
from kfp_mlops.modeling.model_bundle import load_bundle


def run_evaluate(
    model_dir: str,
    test_path: str,
    *,
    model_sha256: str,
    store_root: str,
    model_name: str,
    gate_metric: str = "accuracy",
    threshold: float = 0.9,
    max_regression: float = 0.0,
    pipeline_job_id: str = "local",
    wandb_project: str = "",
    outputs: RunOutputs | None = None,
) -> Evaluation:
    """Loads the candidate and the champion, evaluates, and logs metrics and plots to W&B.

    Args:
        model_dir: the candidate's model folder.
        model_sha256: its model file's sha256 as train recorded it (the Model artifact's
            ``model_sha256`` metadata, kept apart from the folder); the candidate loads only if it matches.
        test_path: the held-out rows (Parquet).
        store_root: the model store holding the champion.
        model_name: the registered model's name.
        gate_metric: the metric the gate decides on.
        threshold: its required value.
        max_regression: how much worse than the champion the candidate may be.
        pipeline_job_id: the W&B group.
        wandb_project: the W&B project (empty: the ``WANDB_PROJECT`` setting).
        outputs: the task's outputs the finished W&B run is published to (None: none).

    Returns:
        The evaluation; a champion that could not be loaded fails it, and its reasons say why.
    """
    params = {
        "gate_metric": gate_metric,
        "threshold": threshold,
        "max_regression": max_regression,
        "model_name": model_name,
        "store_root": store_root,
    }
    with tracked_task(
        "evaluate", params, pipeline_job_id=pipeline_job_id, wandb_project=wandb_project, outputs=outputs
    ) as run:
        candidate = load_bundle(model_dir, sha256=model_sha256)
        test = read_parquet(test_path)
        champion, champion_version, champion_error = load_champion(store_root, model_name)
        result = evaluate(
            candidate,
            test,
            gate_metric=gate_metric,
            threshold=threshold,
            max_regression=max_regression,
            champion=champion,
            champion_version=champion_version,
            champion_error=champion_error,
        )
        run.log_metrics({**result.metrics, "passed": float(result.passed)})
        run.log_confusion_matrix(result.truth, result.predicted, candidate.classes)
        run.log_roc_curve(result.truth, result.proba, candidate.classes)
        run.run.summary["gate_reasons"] = "; ".join(result.reasons)
        if not result.passed:
            run.alert(f"Quality gate failed: {model_name}", "; ".join(result.reasons), level="WARN")
    return result
