"""KFP component: the drift check; its single output is the retrain the policy decided (incremental, full or none)."""

from typing import Optional

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from kfp_mlops.components.common import COMPONENT_IMAGE


@dsl.component(base_image=COMPONENT_IMAGE, install_kfp_package=False)
def drift_check(
    current_data: Input[Dataset],
    verdict: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[HTML],
    summary: Output[Markdown],
    snapshot: Output[Artifact],
    wandb_page: Output[Markdown],
    wandb_files: Output[Artifact],
    reference_profile: Optional[Input[Artifact]] = None,
    model: Optional[Input[Model]] = None,
    reference_uri: str = "",
    model_uri: str = "",
    store_root: str = "",
    model_name: str = "",
    label: str = "",
    config: Optional[dict] = None,
    retrain_policy: Optional[dict] = None,
    pipeline_job_id: str = "local",
    wandb_project: str = "",
    kfp_ui_host: str = "",
    pushgateway_url: str = "",
) -> str:
    """Compares the current window with the reference (profile or data) and the model's predictions.

    Args:
        current_data: the window to check (Parquet).
        verdict: JSON verdict: drift, drift_share, per-feature scores, prediction, performance, reasons,
            and the retrain decision (retrain: action, rule, reason, kind).
        metrics: drift, drift_share, drifted_features, psi_<feature>, prediction_psi, accuracy, roc_auc, retrain.
        report: Evidently's data drift report (or a page saying why it was skipped).
        summary: the verdict as Markdown: the decision, and per feature our PSI, KS/JS and why it
            drifted (with why Evidently's PSI differs).
        snapshot: Evidently's snapshot of the report (JSON; empty when the report was skipped), for
            the drift trend across runs (kfp_mlops.drift.trend).
        wandb_page: the task's W&B run: its link, or where its offline files are.
        wandb_files: the offline W&B run's folder (for ``wandb sync``), or a note with the link.
        reference_profile: the reference profile from train (or give reference_uri).
        model: the model from train (optional; or give model_uri).
        reference_uri: a profile JSON, a model folder, or reference data (.csv/.parquet), local or gs://.
        model_uri: a model folder, e.g. a store version.
        store_root: with model_name: the champion provides the reference profile and model not given otherwise.
        model_name: the registered model's name.
        label: the label column of reference data given without a model.
        config: DriftConfig fields, e.g. {"psi_threshold": 0.25, "ignore_columns": ["week"]}.
        retrain_policy: RetrainPolicy fields, e.g. {"tolerance": 0.03, "history_windows": 8}.
        pipeline_job_id: groups this task's W&B run with the rest of the pipeline run.
        wandb_project: the W&B project (empty: WANDB_PROJECT or kfp-mlops).
        kfp_ui_host: the KFP UI's address, for the KFP run's page in the W&B run's config (empty: no link).
        pushgateway_url: the Prometheus Pushgateway the scores and the retrain decision are pushed to
            (http://host:9091; empty: not pushed).

    Returns:
        ``incremental`` or ``full`` when the retrain policy warrants a retrain, else ``none`` (a
        single output: kfp.local skips conditions on NamedTuple fields). Drift alone is not enough:
        mild drift without a performance drop is logged, not retrained.
    """
    from kfp_mlops.components.drift_check.logic import kfp_metrics, render_verdict, retrain_kind, run_drift_check
    from kfp_mlops.core.run_outputs import RunOutputs

    result = run_drift_check(
        current_data.path,
        verdict.path,
        report.path,
        reference_profile_path=reference_profile.path if reference_profile else "",
        reference_uri=reference_uri,
        model_path=model.path if model else "",
        model_sha256=model.metadata.get("model_sha256", "") if model else "",
        model_uri=model_uri,
        store_root=store_root,
        model_name=model_name,
        label=label,
        config=config,
        retrain_policy=retrain_policy,
        pipeline_job_id=pipeline_job_id,
        wandb_project=wandb_project,
        snapshot_path=snapshot.path,
        pushgateway_url=pushgateway_url,
        outputs=RunOutputs(wandb_page.path, wandb_files.path, kfp_ui_host=kfp_ui_host),
    )
    with open(summary.path, "w") as out:
        out.write(render_verdict(result))
    snapshot.metadata.update({"saved": "snapshot" in result.get("report", {})})
    for name, value in kfp_metrics(result).items():
        metrics.log_metric(name, value)
    verdict.metadata.update(
        {
            "drift": result["drift"],
            "drift_share": result["drift_share"],
            "drifted_features": result["drifted_features"],
            "reasons": result["reasons"],
            "retrain": result["retrain"]["retrain"],
            "retrain_rule": result["retrain"]["rule"],
            "retrain_kind": result["retrain"]["kind"] or "none",
            "retrain_reason": result["retrain"]["reason"],
        }
    )
    return retrain_kind(result)
