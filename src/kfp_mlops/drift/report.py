"""The HTML drift report: Evidently 0.7's ``DataDriftPreset``, for looking at distributions.

The report runs on a sample of at most ``DriftConfig.report_rows`` (100k) rows per side. Evidently
needs reference *rows*, which a profile does not have (:mod:`kfp_mlops.drift.inputs` says where
they come from); without them the report is skipped and the HTML page says why. Evidently's PSI bins
both samples into equal-width (Sturges) bins, so its numbers differ from the verdict's
reference-quantile PSI and its thresholds do not carry over: the verdict is ours
(:func:`kfp_mlops.drift.check.check_drift`); the report is for looking at distributions.
Evidently is imported only here, when a report is built: the import alone takes seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfp_mlops.drift.config import DriftConfig
from kfp_mlops.drift.inputs import sample_rows

if TYPE_CHECKING:
    import pandas as pd

REPORT_FILE = "report.html"


def build_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    profile: Mapping[str, Any],
    path: str | Path,
    *,
    config: DriftConfig | None = None,
    snapshot_path: str | Path | None = None,
) -> dict[str, Any]:
    """Writes Evidently's data drift report (HTML) for the profile's features.

    Both sides are sampled to ``config.report_rows`` rows. Evidently's PSI (equal-width bins over
    both samples) uses the verdict's PSI threshold and drift share, yet its numbers and decisions
    can differ from the verdict's: the verdict is :func:`~kfp_mlops.drift.check.check_drift`'s.

    ``snapshot_path``, when given, receives the run's Evidently snapshot (``Snapshot.dumps``),
    which :mod:`kfp_mlops.drift.trend` and Evidently's workspace read back.

    Returns:
        Facts for the verdict: path, rows per side, Evidently's version and its drift share (and
        the snapshot's path).
    """
    from evidently import DataDefinition, Dataset, Report, __version__
    from evidently.presets import DataDriftPreset

    config = config or DriftConfig()
    names = list(profile["feature_names"])
    kinds = {name: profile["features"][name]["kind"] for name in names}
    definition = DataDefinition(
        numerical_columns=[n for n in names if kinds[n] == "numeric"],
        categorical_columns=[n for n in names if kinds[n] == "categorical"],
    )
    ref = sample_rows(reference[names], config.report_rows, config.seed)
    cur = sample_rows(current[names], config.report_rows, config.seed)
    preset = DataDriftPreset(
        num_method="psi", cat_method="psi", threshold=config.psi_threshold, drift_share=config.drift_share
    )
    snapshot = Report([preset]).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition),
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    if snapshot_path is not None:
        Path(snapshot_path).parent.mkdir(parents=True, exist_ok=True)
        # Snapshot.save_json writes the short dict() form, which Snapshot.load refuses (evidently
        # 0.7.23); dumps() is the full form that load, and a workspace's add_run, read back.
        Path(snapshot_path).write_text(snapshot.dumps())
    share = next(m["value"]["share"] for m in snapshot.dict()["metrics"] if "DriftedColumnsCount" in m["metric_name"])
    return {
        "path": str(path),
        "reference_rows": len(ref),
        "current_rows": len(cur),
        "evidently": __version__,
        "evidently_drift_share": float(share),
        **({"snapshot": str(snapshot_path)} if snapshot_path is not None else {}),
    }


def write_skipped_report(path: str | Path, reason: str) -> None:
    """An HTML page saying why there is no Evidently report (KFP still expects the file)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>Drift report skipped</title></head>"
        f"<body><h1>No Evidently report</h1><p>{escape(reason)}</p>"
        "<p>The drift verdict (verdict.json) was computed from the reference profile.</p></body></html>\n"
    )
