"""A readable account of a local pipeline run: metrics, the gate, where everything is."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

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


def render_summary(run: LocalRun, settings: Settings, compiled: list[Path] | None = None) -> str:
    """The text ``kfp-mlops run`` prints after a successful run."""
    lines = [f"Pipeline {run.pipeline} finished in {run.seconds:.1f} s ({len(run.tasks)} tasks ran)", ""]
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
        registered = json.loads((run.artifact("register", "registered")).read_text())
        lines.append(f"Registered {registered['name']} {registered['version']} as champion")
        lines.append(f"          {registered['uri']}")
    else:
        lines.append("Registered nothing: the gate did not pass, so register was skipped")
    deployment = task_outputs(run, "deploy")["artifacts"].get("deployment")
    if deployment:
        meta = deployment["metadata"]
        where = meta.get("spec_path") or f"namespace {meta.get('namespace')}"
        lines.append(
            f"Deployed  {meta['name']} ({meta['protocol']}, {meta['mode']}, {meta['target']}): {meta['state']}, {where}"
        )
        if meta.get("target") == "local":
            lines.append("          serve it with: kfp-mlops serve")
    lines += ["", "Artifacts"]
    for task in run.tasks:
        for name, artifact in task_outputs(run, task)["artifacts"].items():
            lines.append(f"  {task}/{name}: {artifact['uri']}")
    lines += ["", f"Task log   {run.log_path}", f"W&B        {_wandb_location(settings)}"]
    if compiled:
        lines += ["", "Compiled pipeline (same components, for a cluster):"]
        lines += [f"  {path}" for path in compiled]
        lines += [
            "  KFP:     kfp-mlops submit training --host $KFP_HOST --store gs://BUCKET/kfp-mlops",
            "           (or upload the .yaml in the KFP UI)",
            "  Vertex:  submit the .vertex.yaml with google-cloud-aiplatform's PipelineJob",
        ]
    return "\n".join(lines)


def _wandb_location(settings: Settings) -> str:
    from kfp_mlops.core.tracking import resolve_mode

    mode = resolve_mode()
    if mode == "online":
        return f"online, project {settings.wandb_project} (runs grouped by the pipeline job id)"
    if mode == "disabled":
        return "disabled (WANDB_MODE=disabled)"
    wandb_dir = Path(os.environ.get("WANDB_DIR", str(settings.home))) / "wandb"
    return f"offline runs in {wandb_dir} (upload later with `wandb sync {wandb_dir}/offline-run-*`)"
