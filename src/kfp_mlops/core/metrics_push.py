"""Batch-job metrics for Prometheus: drift checks and rollout steps push theirs to a Pushgateway.

A drift check or a rollout step is a short KFP task, gone before Prometheus could scrape it; the
convention for batch jobs is to push the last result to a Pushgateway, which Prometheus scrapes
(``manifests/base/pushgateway.yaml``, scraped with ``honor_labels`` by ``manifests/base/monitoring.yaml``).
The gateway is the pipelines' ``pushgateway_url`` parameter, given to the task: a pipeline
parameter, never the pod's environment. Empty means nothing is pushed (laptops, tests that do not
start one).

Each push replaces its group (HTTP PUT): job ``kfp-mlops-drift`` grouped by ``model``, job
``kfp-mlops-rollout`` grouped by ``deployment``, so a gauge always shows the latest check or step.
A failed push is logged, never raised: the verdict or the decision is already recorded, and
monitoring must not undo it. Grafana panels and alerts on these series:
``manifests/base/dashboards/kfp-mlops-monitoring.json`` and ``manifests/base/alerts.yaml``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

DRIFT_JOB = "kfp-mlops-drift"
ROLLOUT_JOB = "kfp-mlops-rollout"
# The rollout's status as a number, so one gauge can be charted and alerted on.
ROLLOUT_STATUS_CODES = {"running": 0, "promoted": 1, "rolled_back": -1}


def push_drift(gateway: str, verdict: Mapping[str, Any], *, job: str, model: str) -> bool:
    """Pushes a drift verdict: drift found, drifted share, per-feature PSI, prediction PSI, the retrain decision.

    Args:
        gateway: The Pushgateway's URL, ``http://host:9091`` (empty: nothing is pushed).
        verdict: :func:`kfp_mlops.drift.run_drift`'s verdict.
        job: The KFP pipeline job id (label ``pipeline_job_id``).
        model: The registered model checked (the group).

    Returns:
        Whether the metrics were pushed.
    """
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, ("pipeline_job_id", *labels), registry=registry)

    gauge("kfp_mlops_drift_detected", "1 when the last drift check found drift").labels(job).set(
        float(verdict["drift"])
    )
    gauge("kfp_mlops_drift_share", "Share of features that drifted in the last check").labels(job).set(
        float(verdict["drift_share"])
    )
    psi = gauge("kfp_mlops_drift_feature_psi", "PSI of each feature in the last check", ("feature",))
    drifted = gauge("kfp_mlops_drift_feature_drifted", "1 when the feature drifted in the last check", ("feature",))
    for feature, scores in verdict["features"].items():
        psi.labels(job, feature).set(float(scores["psi"]))
        drifted.labels(job, feature).set(float(scores["drifted"]))
    if verdict.get("prediction") is not None:
        gauge("kfp_mlops_drift_prediction_psi", "PSI of the model's predictions").labels(job).set(
            float(verdict["prediction"]["psi"])
        )
    decision = verdict["retrain"]
    gauge("kfp_mlops_retrain_decision", "1 when the retrain policy asked for a retrain, by kind", ("kind",)).labels(
        job, str(decision["kind"] or "none")
    ).set(float(decision["retrain"]))
    gauge("kfp_mlops_drift_last_check_timestamp_seconds", "When the last drift check ran").labels(job).set(time.time())
    return _push(gateway, DRIFT_JOB, {"model": model}, registry)


def push_rollout(
    gateway: str, record: Mapping[str, Any], *, job: str, deployment: str, stage_started_at: float | None = None
) -> bool:
    """Pushes a rollout decision: the challenger's share, the stage, the status, the action and when the stage began.

    Args:
        gateway: The Pushgateway's URL, ``http://host:9091`` (empty: nothing is pushed).
        record: The decision record (:mod:`kfp_mlops.rollout.records`).
        job: The KFP pipeline job id (label ``pipeline_job_id``).
        deployment: The deployment rolled out (the group).
        stage_started_at: When the current stage began (epoch seconds), for the "stuck" alert (None: not pushed).

    Returns:
        Whether the metrics were pushed.
    """
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()

    def gauge(name: str, doc: str, value: float, **labels: str) -> None:
        Gauge(name, doc, ("pipeline_job_id", *labels), registry=registry).labels(job, *labels.values()).set(value)

    gauge(
        "kfp_mlops_rollout_challenger_share", "Challenger's percent of live traffic", float(record["challenger_share"])
    )
    gauge(
        "kfp_mlops_rollout_status",
        "Rollout status: 0 running, 1 promoted, -1 rolled back",
        float(ROLLOUT_STATUS_CODES.get(str(record["status"]), 0)),
    )
    gauge(
        "kfp_mlops_rollout_last_action",
        "The last step's action: 1 promote, 0 hold, -1 rollback",
        {"promote": 1.0, "rollback": -1.0}.get(str(record["action"]), 0.0),
    )
    gauge("kfp_mlops_rollout_stage", "1 for the rollout's current stage", 1.0, stage=str(record["next_stage"]))
    gauge("kfp_mlops_rollout_last_step_timestamp_seconds", "When the last rollout step ran", time.time())
    if stage_started_at is not None:
        gauge("kfp_mlops_rollout_stage_started_timestamp_seconds", "When the current stage began", stage_started_at)
    return _push(gateway, ROLLOUT_JOB, {"deployment": deployment}, registry)


def _push(gateway: str, job: str, grouping: Mapping[str, str], registry: Any) -> bool:
    from prometheus_client import push_to_gateway

    gateway = gateway.strip().rstrip("/")
    if not gateway:
        return False
    try:
        push_to_gateway(gateway, job=job, grouping_key=dict(grouping), registry=registry, timeout=10)
    except OSError as exc:  # URLError, connection refused, timeout
        log.warning("metrics not pushed to %s (job %s): %s", gateway, job, exc)
        return False
    return True
