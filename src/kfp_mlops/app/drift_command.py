"""``kfp-mlops drift``: check a window against a reference and print the verdict for the terminal.

The drift package returns the verdict (:func:`kfp_mlops.drift.run_drift`); this is the command's
side of it: an output folder holding ``verdict.json`` and ``report.html``, and the verdict printed
as JSON (sorted keys, as in the file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kfp_mlops.drift import REPORT_FILE, VERDICT_FILE, DriftConfig, run_drift


def run_drift_command(
    reference: str,
    current: str,
    out: Path | None,
    *,
    model: str | None = None,
    model_sha256: str | None = None,
    label: str | None = None,
    config: DriftConfig | None = None,
) -> dict[str, Any]:
    """Checks drift and prints the verdict as JSON; with ``out``, writes verdict.json and report.html there.

    Without ``out`` no Evidently report is built (it costs seconds of imports).

    Args:
        reference: A profile or reference data (:func:`kfp_mlops.drift.load_reference`).
        current: The window to check: ``.parquet`` (read in record batches, in constant memory
            without a model) or ``.csv``, local or ``gs://``.
        out: The output folder, or None.
        model: A model, for prediction and performance drift: a version of the ``KFP_MLOPS_STORE``
            store, or with ``KFP_MLOPS_ALLOW_MODELS_OUTSIDE_STORE=1`` a folder matching ``model_sha256``.
        model_sha256: The model file's sha256, recorded apart from it.
        label: The label column of reference data given without a model (None: unlabelled data,
            every column a feature; the verdict then has no performance part).
        config: Thresholds.

    Returns:
        The verdict.

    Raises:
        ConfigError, DataError, StorageError: bad inputs; nothing is printed or written.
    """
    out_dir = Path(out) if out is not None else None
    verdict = run_drift(
        reference,
        current,
        model=model,
        model_sha256=model_sha256,
        label=label,
        config=config,
        verdict_path=out_dir / VERDICT_FILE if out_dir else None,
        report_path=out_dir / REPORT_FILE if out_dir else None,
    )
    print(json.dumps(verdict, indent=2, sort_keys=True))
    return verdict
