"""The drift check end to end: load the inputs, check, write the report and then the verdict.

:func:`run_drift` is what the ``drift_check`` component, the ``kfp-mlops drift`` command and the
drift demo call. A Parquet window is streamed in record batches, a CSV one loaded
(:func:`~kfp_mlops.drift.streaming.check_window_at`). Every input is read and checked before
anything is written, so bad inputs leave no verdict behind; the verdict is written last, after the
report it records. It carries the retrain policy's decision (:mod:`kfp_mlops.drift.policy`) as
``retrain``, with the champion's facts the policy needs: whether its estimator can be updated
incrementally, and how many incremental updates in a row made it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kfp_mlops.core.config import Settings
from kfp_mlops.drift.config import DriftConfig
from kfp_mlops.drift.inputs import load_model, load_reference, model_training_rows, sample_rows
from kfp_mlops.drift.model_checks import classification_scores, label_strings, predict
from kfp_mlops.drift.policy import RetrainPolicy, decide_retrain
from kfp_mlops.drift.report import build_report, write_skipped_report
from kfp_mlops.drift.streaming import check_window_at
from kfp_mlops.modeling.retraining import incremental_unavailable, incremental_updates

VERDICT_FILE = "verdict.json"


def run_drift(
    reference: str,
    current: str,
    *,
    model: str | None = None,
    model_sha256: str | None = None,
    store_root: str | None = None,
    label: str | None = None,
    config: DriftConfig | None = None,
    policy: RetrainPolicy | None = None,
    verdict_path: str | Path | None = None,
    report_path: str | Path | None = None,
    snapshot_path: str | Path | None = None,
) -> dict[str, Any]:
    """Loads the inputs, checks drift, writes the report and then the verdict.

    Args:
        reference: A profile or reference data (see :func:`load_reference`).
        current: The window to check (``.csv``, ``.parquet`` or a KFP Dataset).
        model: A model, optional: a version of the model store ``store_root``, checked against the
            sha256 recorded at registration; a folder elsewhere only with the user's opt-out
            ``KFP_MLOPS_ALLOW_MODELS_OUTSIDE_STORE=1`` and its ``model_sha256``.
        model_sha256: The model file's sha256, recorded apart from it (required for a folder
            outside the store; for a store version, checked too).
        store_root: The model store (None: the ``KFP_MLOPS_STORE`` setting).
        label: The label column of reference data given without a model.
        config: Thresholds.
        policy: The retrain policy whose decision the verdict carries as ``retrain`` (default
            :class:`~kfp_mlops.drift.policy.RetrainPolicy`).
        verdict_path: Where to write the verdict JSON (None: not written).
        report_path: Where to write the HTML report (None: no report is built).
        snapshot_path: Where to save the report's Evidently snapshot (JSON, for trends across runs:
            :mod:`kfp_mlops.drift.trend`; None: not saved, nor when the report is skipped).

    Returns:
        The verdict (:func:`check_drift`) with ``report`` facts, input locations and the retrain
        policy's decision (``retrain``: :meth:`~kfp_mlops.drift.policy.RetrainDecision.to_dict`) added.

    Raises:
        ConfigError, DataError, StorageError: bad inputs; nothing is written.
        MlopsError: the model is outside the store without the opt-out, or fails its checksum.
    """
    config = config or DriftConfig()
    settings = Settings.from_env()
    bundle, reference_performance = (
        load_model(
            model,
            store_root=store_root or settings.store_root,
            sha256=model_sha256,
            outside_store=settings.allow_models_outside_store,
        )
        if model
        else (None, None)
    )
    ref = load_reference(
        reference,
        label=label or (bundle.metadata.get("label") if bundle else None),
        feature_kinds=bundle.metadata.get("feature_kinds") if bundle else None,
        ignore_columns=config.ignore_columns,
    )
    rows, rows_where = ref.rows, ref.rows_where
    if rows is None:
        rows, rows_where = model_training_rows(bundle) if bundle else (None, "no model was given")
    if ref.explicit_rows:
        reference_performance = None  # performance on the given reference rows is the baseline
    reference_shares = None
    if bundle is not None and rows is not None:
        sample = sample_rows(rows, config.report_rows, config.seed)
        scored, proba = predict(bundle, sample, f"reference rows {rows_where}")
        reference_shares = dict(zip(bundle.classes, proba.mean(axis=0).tolist()))
        label_name = ref.profile["label"]
        if ref.explicit_rows and label_name in scored.columns and scored[label_name].notna().all():
            reference_performance = classification_scores(label_strings(scored[label_name]), proba, bundle.classes)

    checked = check_window_at(  # a Parquet window is streamed in constant memory, a CSV one loaded
        current,
        ref.profile,
        config=config,
        model=bundle,
        reference_prediction_shares=reference_shares,
        reference_performance=reference_performance,
        profile_where=ref.where,
        report_rows=config.report_rows if report_path is not None and rows is not None else 0,
    )
    verdict = checked.verdict
    verdict["inputs"] = {"reference": reference, "current": current, "model": model}
    verdict["retrain"] = decide_retrain(
        verdict,
        policy,
        incremental_unavailable=incremental_unavailable(bundle.model) if bundle else "no model was given",
        incremental_updates=incremental_updates(bundle.metadata) if bundle else 0,
    ).to_dict()
    if report_path is not None:
        if rows is None:
            reason = (
                f"the reference {reference} is a profile without rows and {rows_where}; pass reference "
                "data to get Evidently's report"
            )
            write_skipped_report(report_path, reason)
            verdict["report"] = {"path": str(report_path), "skipped": reason}
        else:
            facts = build_report(
                rows, checked.report_rows, ref.profile, report_path, config=config, snapshot_path=snapshot_path
            )
            verdict["report"] = {**facts, "reference": rows_where}
    if verdict_path is not None:
        Path(verdict_path).parent.mkdir(parents=True, exist_ok=True)
        Path(verdict_path).write_text(json.dumps(verdict, indent=2, sort_keys=True) + "\n")
    return verdict
