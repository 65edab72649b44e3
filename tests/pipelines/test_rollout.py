"""The rollout pipeline run locally (kfp.local): late labels imported from a file, then the step decides on them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from kfp_mlops.app.local_run import read_json_output, run_pipeline
from kfp_mlops.core.config import Settings
from kfp_mlops.rollout import controller as rc
from kfp_mlops.serving.prediction_log import PredictionLogWriter, PredictionRecord, read_labels
from tests.rollout.test_controller import PLAN, T0
from tests.support.models import iris_model, register


def _unlabelled_traffic(log: str, n: int, seed: int) -> list[tuple[str, int]]:
    """``n`` requests scored by legacy (weak) and challenger (better), logged without labels; their labels."""
    rng = np.random.default_rng(seed)
    truth = (rng.random(n) < 0.1).astype(int)
    with PredictionLogWriter(log) as writer:
        for i in range(n):
            at = T0 + timedelta(minutes=1, seconds=i)
            for name, quality in (("legacy", 0.3), ("challenger", 0.7)):
                score = float(np.clip(quality * truth[i] + rng.random() * (1 - quality), 0, 1))
                decision = "decline" if score > 0.9 else "approve"
                writer.log(PredictionRecord(f"r{i}", name, "v", {"amount": 10.0}, score, decision, 5.0, "ok", at))
    return [(f"r{i}", int(truth[i])) for i in range(n)]


@pytest.mark.slow
def test_late_labels_from_a_file_are_imported_before_the_step_decides(tmp_path: Path) -> None:
    settings = Settings.from_env()
    store = settings.store_root
    legacy = register(store, iris_model(tmp_path / "legacy"), name="fraud").uri
    challenger = register(store, iris_model(tmp_path / "challenger", seed=1), name="fraud").uri
    state, log = str(tmp_path / "rollout.json"), str(tmp_path / "log")
    rc.start(state, PLAN, legacy, challenger, base=rc.base_spec("fraud"), target=None, at=T0, log_root=log)
    labels = _unlabelled_traffic(log, 600, seed=13)
    arguments = {
        "state_uri": state,
        "target": "none",
        "as_of": (T0 + timedelta(hours=2)).isoformat(),
        "live_config": {"bootstrap": 200},
    }

    # Without labels_uri the import is skipped: no labels, so the step holds.
    held = run_pipeline("rollout", arguments, settings=settings)
    assert not held.ran("labels-import") and read_json_output(held, "rollout-step", "decision")["action"] == "hold"

    labelled_at = (T0 + timedelta(hours=1)).isoformat()
    (tmp_path / "labels.csv").write_text(
        "request_id,label,labelled_at\n" + "".join(f"{rid},{label},{labelled_at}\n" for rid, label in labels)
    )
    run = run_pipeline("rollout", {**arguments, "labels_uri": str(tmp_path / "labels.csv")}, settings=settings)

    imported = read_json_output(run, "labels-import", "imported")
    assert (imported["labels"], imported["log_root"]) == (600, log)  # the log the rollout recorded
    assert len(read_labels(log)) == 600
    decision = read_json_output(run, "rollout-step", "decision")
    assert (decision["action"], decision["next_stage"]) == ("promote", "canary-5")
