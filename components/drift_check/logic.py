"""Drift check: compare a window of current data with the model's reference; log and decide.

The verdict itself is :func:`kfp_mlops.drift.run_drift`'s; this module is a thin adapter over it:
it resolves where the reference and the model come from (artifacts, URIs, or the champion in the
model store), runs the check inside a W&B run and shapes the per-feature scores for W&B and the
KFP UI.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kfp_mlops.components.common import tracked_task
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.core.metrics_push import push_drift
from kfp_mlops.core.run_outputs import RunOutputs
from kfp_mlops.drift import DriftConfig, RetrainPolicy, run_drift
from kfp_mlops.modeling.model_store import ModelStore

if TYPE_CHECKING:
    import pandas as pd

TABLE_COLUMNS = ("feature", "kind", "psi", "ks", "js", "missing_share", "out_of_range_share", "drifted")


def resolve_sources(
    *,
    reference_profile_path: str = "",
    reference_uri: str = "",
    model_path: str = "",
    model_uri: str = "",
    store_root: str = "",
    model_name: str = "",
) -> tuple[str, str | None]:
    """Where the reference and the model come from.

    An explicit reference (the profile artifact, or ``reference_uri``) and model (the model
    artifact, or ``model_uri``) win; ``store_root`` + ``model_name`` name the champion, whose store
    version provides both the reference profile and the model otherwise.

    Returns:
        The reference location and the model location (None: no model).

    Raises:
        ConfigError: two sources for the reference or the model, only one of store_root and
            model_name, no reference at all, or no champion in the store.
    """
    if reference_profile_path and reference_uri:
        raise ConfigError(
            "drift_check: give the reference as the reference_profile artifact or as reference_uri, not both"
        )
    if model_path and model_uri:
        raise ConfigError("drift_check: give the model as the model artifact or as model_uri, not both")
    if bool(store_root) != bool(model_name):
        raise ConfigError("drift_check: store_root and model_name name the champion together; give both or neither")
    reference = reference_profile_path or reference_uri
    model = model_path or model_uri or None
    if store_root:
        champion = ModelStore(store_root).champion(model_name)
        if champion is None:
            raise ConfigError(f"drift_check: model {model_name!r} has no champion in {store_root}")
        reference = reference or champion.uri  # the version folder holds reference_profile.json
        model = model or champion.uri
    if not reference:
        raise ConfigError(
            "drift_check: no reference: give reference_profile, reference_uri, or store_root and model_name"
        )
    return reference, model


def features_table(verdict: Mapping[str, Any]) -> pd.DataFrame:
    """One row per feature: its scores and whether it drifted (for W&B and notebooks)."""
    import pandas as pd

    rows = [
        {"feature": name, **{k: scores.get(k) for k in TABLE_COLUMNS[1:]}}
        for name, scores in verdict["features"].items()
    ]
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def kfp_metrics(verdict: Mapping[str, Any]) -> dict[str, float]:
    """Scalars for the KFP Metrics artifact and the W&B summary: drift, drift_share, psi_<feature>,
    accuracy and its label-free estimate estimated_accuracy..., and retrain (1 when the policy asked for one)."""
    metrics = {
        "drift": float(verdict["drift"]),
        "drift_share": float(verdict["drift_share"]),
        "drifted_features": float(len(verdict["drifted_features"])),
        **{f"psi_{name}": float(scores["psi"]) for name, scores in verdict["features"].items()},
    }
    if verdict["prediction"] is not None:
        metrics["prediction_psi"] = float(verdict["prediction"]["psi"])
    if verdict["performance"] is not None:
        metrics.update(
            {k: float(verdict["performance"][k]) for k in ("accuracy", "roc_auc") if k in verdict["performance"]}
        )
    metrics["retrain"] = float(verdict["retrain"]["retrain"])
    estimate = verdict["performance_estimate"]
    if estimate is not None and estimate["available"]:
        metrics.update(
            {f"estimated_{k}": float(estimate[k]["estimate"]) for k in ("accuracy", "roc_auc") if k in estimate}
        )
    return metrics


def run_drift_check(
    current_path: str,
    verdict_path: str,
    report_path: str,
    *,
    reference_profile_path: str = "",
    reference_uri: str = "",
    model_path: str = "",
    model_sha256: str = "",
    model_uri: str = "",
    store_root: str = "",
    model_name: str = "",
    label: str = "",
    config: Mapping[str, Any] | None = None,
    retrain_policy: Mapping[str, Any] | None = None,
    pipeline_job_id: str = "local",
    wandb_project: str = "",
    snapshot_path: str = "",
    pushgateway_url: str = "",
    outputs: RunOutputs | None = None,
) -> dict[str, Any]:
    """Checks drift, writes the verdict JSON and the HTML report, logs scores to W&B.

    The W&B run also gets Evidently's report (HTML) and an alert when drift is found; the scores and
    the retrain decision are pushed to the Pushgateway at ``pushgateway_url`` (empty: not pushed).
    ``snapshot_path`` (empty: none) receives the report's Evidently snapshot, for trends.

    Inputs are resolved by :func:`resolve_sources`; ``config`` is :class:`DriftConfig` and
    ``retrain_policy`` :class:`RetrainPolicy` as a dict (both checked before anything is read).
    The model loads only as a version of the store ``store_root`` (empty: the ``KFP_MLOPS_STORE``
    setting), or with the opt-out ``KFP_MLOPS_ALLOW_MODELS_OUTSIDE_STORE=1`` as a folder matching
    ``model_sha256`` (train's artifact metadata, for the model artifact).

    Returns:
        The verdict (also written to ``verdict_path``).

    Raises:
        ConfigError, DataError, StorageError: bad inputs (named); no verdict is written.
    """
    drift_config = DriftConfig.from_dict(config or {})
    policy = RetrainPolicy.from_dict(retrain_policy or {})
    reference, model = resolve_sources(
        reference_profile_path=reference_profile_path,
        reference_uri=reference_uri,
        model_path=model_path,
        model_uri=model_uri,
        store_root=store_root,
        model_name=model_name,
    )
    params = {
        "reference": reference,
        "model": model,
        "label": label,
        "config": drift_config.to_dict(),
        "retrain_policy": policy.to_dict(),
    }
    with tracked_task(
        "drift_check", params, pipeline_job_id=pipeline_job_id, wandb_project=wandb_project, outputs=outputs
    ) as run:
        verdict = run_drift(
            reference,
            current_path,
            model=model,
            model_sha256=model_sha256 or None,
            store_root=store_root or None,
            label=label or None,
            config=drift_config,
            policy=policy,
            verdict_path=verdict_path,
            report_path=report_path,
            snapshot_path=snapshot_path or None,
        )
        run.log_metrics(kfp_metrics(verdict))
        run.log_html("evidently_report", report_path)
        if verdict["drift"]:
            run.alert(
                f"Drift found: {model_name or current_path}",
                "; ".join(verdict["reasons"]) + f". Retrain: {verdict['retrain']['reason']}",
                level="WARN",
            )
        run.log_table("drift_features", features_table(verdict))
        run.run.summary["drift_reasons"] = "; ".join(verdict["reasons"]) or "no drift"
        run.run.summary["retrain_decision"] = verdict["retrain"]["reason"]
    push_drift(pushgateway_url, verdict, job=pipeline_job_id, model=model_name or "unnamed")
    return verdict


def render_verdict(verdict: Mapping[str, Any]) -> str:
    """The KFP UI's Markdown of the verdict: the decision, then per feature our scores and why it drifted."""
    decision = verdict["retrain"]
    lines = [
        f"# Drift: {'found' if verdict['drift'] else 'none'}",
        "",
        f"{len(verdict['drifted_features'])} of {len(verdict['features'])} features drifted "
        f"(share {verdict['drift_share']:.2f}). Retrain: **{decision['kind'] if decision['retrain'] else 'no'}** "
        f"({decision['reason']})",
        "",
        *(f"- {reason}" for reason in verdict["reasons"]),
        "",
        "| feature | kind | PSI | KS | JS | drifted | why |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, scores in verdict["features"].items():
        cells = [_number(scores.get(k)) for k in ("psi", "ks", "js")]
        why = "; ".join(scores.get("reasons", [])) or "-"
        drifted = "yes" if scores["drifted"] else "no"
        lines.append(f"| `{name}` | {scores['kind']} | {' | '.join(cells)} | {drifted} | {why} |")
    lines += [
        "",
        "These PSI values are the verdict's: bins at the reference's quantiles, from the training profile. "
        "Evidently's report (the HTML beside this) bins both samples into equal-width bins, so its PSI "
        "for the same feature differs, and so may its drift flags; the verdict and the retrain decision "
        "are this table's.",
    ]
    return "\n".join(lines) + "\n"


def _number(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3f}"


def retrain_kind(verdict: Mapping[str, Any]) -> str:
    """The component's output: the retrain kind the policy decided (``incremental``/``full``), or ``none``."""
    decision = verdict["retrain"]
    return str(decision["kind"]) if decision["retrain"] else "none"
