"""A readable account of a local pipeline run: the drift verdict, metrics, the gate, where everything is.

The monitoring pipeline runs the training pipeline as a sub-pipeline, and kfp.local writes a
sub-pipeline's task outputs beside the outer ones (``<run>/evaluate``, ``<run>/register``), so one
set of readers serves both summaries. A registered model is a candidate; the summary says what the
deploy step made of it: champion (deployed single), a rollout started beside the champion (and how
to step it), or served beside the champion.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kfp_mlops.app.compiling import cluster_options
from kfp_mlops.app.local_run import LocalRun
from kfp_mlops.core.config import Settings


def task_outputs(run: LocalRun, task: str) -> dict[str, Any]:
    """A task's executor output: parameter values and artifacts (uri, metadata) by output name."""
    path = run.run_dir / task / "executor_output.json"
    if not path.exists():
        return {"parameters": {}, "artifacts": {}}
    data = json.loads(path.read_text())
    artifacts = {name: entry["artifacts"][0] for name, entry in data.get("artifacts", {}).items()}
    return {"parameters": data.get("parameterValues", {}), "artifacts": artifacts}


def retrain_outcome(run: LocalRun) -> dict[str, Any] | None:
    """What the monitoring run's retrain did, from the training sub-pipeline's outputs.

    Returns:
        None when no retrain ran (no drift); else ``source`` (the window trained on), ``passed``
        (the gate), ``metrics`` and ``champion_metrics`` (on the same test rows), ``reasons``,
        ``previous_champion`` (the champion it was compared with), ``version`` and ``uri`` of the
        registered candidate (``None`` when the gate refused it), and from the deploy step:
        ``deploy_mode`` (as deployed), ``status`` (``candidate`` or ``champion``), ``champion``
        (afterwards), and for a rollout its ``rollout_state_uri``, ``prediction_log_root`` and
        ``stage`` (all ``None`` when nothing was deployed).
    """
    if not run.ran("evaluate"):
        return None
    evaluation = json.loads(run.artifact("evaluate", "evaluation").read_text())
    registered = _registered(run) if run.ran("register") else {}
    deployment = _deployment(run)
    deployed = {
        key: deployment.get(key) for key in ("status", "champion", "rollout_state_uri", "prediction_log_root", "stage")
    }
    return {
        "source": task_outputs(run, "ingest")["artifacts"]["train"]["metadata"]["source"],
        "passed": bool(evaluation["passed"]),
        "metrics": evaluation["metrics"],
        "champion_metrics": evaluation.get("champion_metrics"),
        "reasons": evaluation["reasons"],
        "version": registered.get("version"),
        "uri": registered.get("uri"),
        "previous_champion": evaluation.get("champion_version"),
        "deploy_mode": deployment.get("mode"),
        **deployed,
    }


def summarize(run: LocalRun, settings: Settings, compiled: list[Path] | None = None) -> str:
    """The text ``kfp-mlops run`` prints after a successful run of ``run.pipeline``.

    Args:
        run: The finished run.
        settings: Where W&B runs went.
        compiled: The pipeline's compiled files, shown with how to run them on a cluster.
    """
    if run.pipeline == "monitoring":
        return render_monitoring_summary(run, settings, compiled)
    return render_summary(run, settings, compiled)


def render_summary(run: LocalRun, settings: Settings, compiled: list[Path] | None = None) -> str:
    """The text ``kfp-mlops run training`` prints after a successful run."""
    lines = [_header(run), ""]
    ingest = task_outputs(run, "ingest")["artifacts"]
    if ingest:
        train_meta, test_meta = ingest["train"]["metadata"], ingest["test"]["metadata"]
        lines.append(
            f"Data      {train_meta['source']}: {train_meta['rows']} train / {test_meta['rows']} test rows, "
            f"label {train_meta['label']!r}"
        )
    model = task_outputs(run, "train")["artifacts"].get("model")
    if model:
        meta = model["metadata"]
        lines.append(
            f"Model     {meta['estimator']} on {len(meta['feature_names'])} features, classes "
            f"{', '.join(meta['classes'])}; train accuracy {meta['metrics']['train_accuracy']:.3f}"
        )
    evaluate = task_outputs(run, "evaluate")
    metrics = evaluate["artifacts"].get("metrics", {}).get("metadata", {})
    if metrics:
        shown = ", ".join(f"{k} {metrics[k]:.4f}" for k in ("accuracy", "f1_macro", "roc_auc", "log_loss"))
        lines.append(f"Test      {shown}")
        passed = evaluate["parameters"].get("Output")
        reasons = evaluate["artifacts"]["evaluation"]["metadata"].get("reasons", [])
        lines.append(f"Gate      {'PASSED' if passed else 'FAILED'}: {'; '.join(reasons)}")
    if run.ran("register"):
        registered = _registered(run)
        lines.append(f"Registered {registered['name']} {registered['version']} as a candidate")
        lines.append(f"          {registered['uri']}")
    else:
        lines.append("Registered nothing: the gate did not pass, so register was skipped")
    lines += _deployment_lines(run)
    return "\n".join(lines + _footer(run, settings, compiled))


def render_monitoring_summary(run: LocalRun, settings: Settings, compiled: list[Path] | None = None) -> str:
    """The text ``kfp-mlops run monitoring`` prints: the drift verdict and what the retrain did."""
    lines = [_header(run), ""]
    verdict_path = run.artifact("drift-check", "verdict")
    decision: dict[str, Any] = {}
    if verdict_path.exists():
        verdict = json.loads(verdict_path.read_text())
        decision = verdict["retrain"]
        state = "DRIFT" if verdict["drift"] else "no drift"
        lines.append(
            f"Drift     {state} on {verdict['rows']} rows: share {verdict['drift_share']:.3f} of features "
            f"({', '.join(verdict['drifted_features']) or 'none'})"
        )
        lines += [f"          {reason}" for reason in verdict["reasons"]]
        lines.append(f"Policy    {decision['action']} ({decision['rule']}): {decision['reason']}")
    outcome = retrain_outcome(run)
    if outcome is None:
        lines.append(f"Retrain   skipped: the retrain policy decided {decision.get('action', 'nothing')}")
    elif outcome["version"]:
        accuracy = outcome["metrics"].get("accuracy", float("nan"))
        kind = decision.get("kind")
        lines.append(f"Retrain   {kind}: registered {outcome['version']} as a candidate (accuracy {accuracy:.4f})")
    else:
        lines.append(f"Retrain   the gate refused the new model: {'; '.join(outcome['reasons'])}")
    lines += _deployment_lines(run)
    return "\n".join(lines + _footer(run, settings, compiled))


def _header(run: LocalRun) -> str:
    return f"Pipeline {run.pipeline} finished in {run.seconds:.1f} s ({len(run.tasks)} tasks ran)"


def _registered(run: LocalRun) -> dict[str, Any]:
    return json.loads(run.artifact("register", "registered").read_text())


def _deployment(run: LocalRun) -> dict[str, Any]:
    """The deploy step's record ({} when it did not run)."""
    return task_outputs(run, "deploy")["artifacts"].get("deployment", {}).get("metadata", {})


def _deployment_lines(run: LocalRun) -> list[str]:
    meta = _deployment(run)
    if not meta:
        return []
    where = {"local": meta.get("spec_path"), "cluster": f"namespace {meta.get('namespace')}"}.get(meta["target"])
    lines = [
        f"Deployed  {meta['name']} ({meta['protocol']}, {meta['mode']}, {meta['target']}): {meta['state']}"
        + (f", {where}" if where else "")
    ]
    if meta.get("target") == "local":
        lines.append("          serve it with: kfp-mlops serve")
    why = "; ".join(meta.get("reasons", []))
    if meta["mode"] == "rollout":
        state, log = meta["rollout_state_uri"], meta["prediction_log_root"]
        lines += [
            f"Rollout   {meta['version']} in {meta['stage']} beside champion {meta['champion']} ({why})",
            f"          state {state}; the model servers log to PREDICTION_LOG_URI={log}",
            f"          step it (or schedule the rollout pipeline): kfp-mlops rollout step --deployment "
            f"{meta['name']} --state {state} --log {log}",
        ]
    elif meta.get("status") == "champion":
        lines.append(f"Champion  {meta['model']} {meta['version']} ({why})")
    else:
        lines.append(f"Champion  stays {meta['champion']} ({why})")
    return lines


def _footer(run: LocalRun, settings: Settings, compiled: list[Path] | None) -> list[str]:
    lines = ["", "Artifacts"]
    for task in run.tasks:
        for name, artifact in task_outputs(run, task)["artifacts"].items():
            lines.append(f"  {task}/{name}: {artifact['uri']}")
    lines += ["", f"Task log   {run.log_path}", f"W&B        {_wandb_location(settings)}"]
    if compiled:
        lines += ["", "Compiled pipeline (same components, for a cluster):"]
        lines += [f"  {path}" for path in compiled]
        lines += [
            f"  KFP:     kfp-mlops submit {' '.join([run.pipeline, *cluster_options(run.pipeline)])} "
            "--host $KFP_HOST --store gs://BUCKET/kfp-mlops",
            "           (or upload the .yaml in the KFP UI)",
            "  Vertex:  submit the .vertex.yaml with google-cloud-aiplatform's PipelineJob",
        ]
    return lines


def _wandb_location(settings: Settings) -> str:
    from kfp_mlops.core.tracking import resolve_mode

    mode = resolve_mode()
    if mode == "online":
        return f"online, project {settings.wandb_project} (runs grouped by the pipeline job id)"
    if mode == "disabled":
        return "disabled (WANDB_MODE=disabled)"
    wandb_dir = Path(os.environ.get("WANDB_DIR", str(settings.home))) / "wandb"
    return f"offline runs in {wandb_dir} (upload later with `wandb sync {wandb_dir}/offline-run-*`)"
