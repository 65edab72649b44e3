"""The rollout controller on a fabricated prediction log: decisions, artifacts, state, targets, errors.

A rollout of registered models owns promotion: its promotion to 100 % moves the model store's
champion pointer (with the decision's reasons), its rollback rejects the challenger and leaves the
champion.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import AlreadyExistsError
from kfp_mlops.modeling.model_store import CANDIDATE, CHAMPION, REJECTED, RETIRED, ModelStore
from kfp_mlops.rollout import InvalidPlan, LiveConfig, StagePlan, load_rollout, save_rollout
from kfp_mlops.rollout import controller as rc
from kfp_mlops.rollout.records import Tracking
from kfp_mlops.rollout.state import StoredModels
from kfp_mlops.serving.prediction_log import PredictionLogWriter, PredictionRecord, record_labels
from kfp_mlops.serving.prediction_log.partitions import write_segment
from kfp_mlops.serving.prediction_log.records import LABEL_SCHEMA
from kfp_mlops.serving.spec import DeploymentSpec
from tests.support.models import iris_model, register

T0 = datetime(2026, 11, 2, tzinfo=timezone.utc)
PLAN = StagePlan(
    shadow=True,
    steps=(5, 100),
    min_labelled=150,
    min_positives=10,
    max_labelled=5000,
    max_p99_latency_ms=1000.0,
    auc_pr_tolerance=0.02,
)
CONFIG = LiveConfig(bootstrap=200)
BASE = DeploymentSpec.single("fraud", "unused")


class Recorder:
    """A target that records every spec (or, when told to, fails to start the challenger)."""

    def __init__(self) -> None:
        self.specs: list[DeploymentSpec] = []
        self.fail = False

    def apply(self, spec: DeploymentSpec) -> None:
        if self.fail and any(p.name == "challenger" for p in spec.predictors):
            raise RuntimeError("challenger server exited with code 1")
        self.specs.append(spec)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Legacy and challenger model folders, as train writes them."""
    root = tmp_path_factory.mktemp("models")
    return {"legacy": iris_model(root / "legacy"), "challenger": iris_model(root / "challenger", seed=1)}


@pytest.fixture()
def models(folders: dict[str, Path]) -> dict[str, str]:
    """Both models as versions of the settings' store, the only folders a server (and the controller) loads."""
    store = Settings.from_env().store_root
    return {name: register(store, folder, name="fraud").uri for name, folder in folders.items()}


def traffic(
    log: str,
    start: datetime,
    n: int,
    *,
    challenger_quality: float,
    seed: int,
    predictors: tuple[str, ...] = ("legacy", "challenger"),
    errors: float = 0.0,
) -> None:
    """``n`` requests scored by ``predictors`` (labels 10 % fraud) and their labels an hour later."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.1).astype(int)
    quality = {"legacy": 0.3, "challenger": challenger_quality}
    labels = []
    with PredictionLogWriter(log) as writer:
        for i in range(n):
            rid = f"r{seed}-{i}"
            at = start + timedelta(seconds=i)
            for name in predictors:
                score = float(np.clip(quality[name] * y[i] + rng.random() * (1 - quality[name]), 0, 1))
                if rng.random() < (errors if name == "challenger" else 0):
                    record = PredictionRecord(rid, name, "v", {"amount": 10.0}, None, None, 5.0, "error", at, "boom")
                else:
                    record = PredictionRecord(
                        rid, name, "v", {"amount": 10.0}, score, "decline" if score > 0.9 else "approve", 5.0, "ok", at
                    )
                writer.log(record)
            labels.append((rid, int(y[i]), at + timedelta(hours=1)))
    record_labels(log, labels)


def test_a_better_challenger_is_promoted_stage_by_stage(models: dict[str, str], tmp_path: Path) -> None:
    state_uri, log, target = str(tmp_path / "rollout.json"), str(tmp_path / "log"), Recorder()
    started = rc.start(state_uri, PLAN, models["legacy"], models["challenger"], base=BASE, target=target, at=T0)
    assert started.action == "start" and started.stage == "shadow"
    assert [(p.name, p.traffic, p.shadow) for p in target.specs[-1].predictors] == [
        ("legacy", 100, False),
        ("challenger", 0, True),
    ]

    held = rc.step(state_uri, log, base=BASE, target=target, as_of=T0 + timedelta(minutes=1), config=CONFIG)
    assert held.action == "hold" and held.spec is None and len(target.specs) == 1
    assert "waiting for labels" in held.reasons[0]

    traffic(log, T0 + timedelta(minutes=2), 600, challenger_quality=0.7, seed=1)
    promoted = rc.step(state_uri, log, base=BASE, target=target, as_of=T0 + timedelta(hours=2), config=CONFIG)
    assert (promoted.action, promoted.next_stage) == ("promote", "canary-5")
    assert {p.name: p.traffic for p in target.specs[-1].predictors} == {"legacy": 95, "challenger": 5}
    record = json.loads(Path(promoted.artifact).read_text())
    assert record["action"] == "promote" and record["challenger_share"] == 5
    assert record["reasons"] == list(promoted.reasons) and "auc_pr" in record["comparison"]["difference"]

    # canary: each request answered by one predictor (unpaired); the window starts at the promotion.
    canary_start = T0 + timedelta(hours=2, minutes=1)
    traffic(log, canary_start, 700, challenger_quality=0.7, seed=2, predictors=("legacy",))
    traffic(log, canary_start, 700, challenger_quality=0.7, seed=3, predictors=("challenger",))
    final = rc.step(state_uri, log, base=BASE, target=target, as_of=T0 + timedelta(hours=4), config=CONFIG)
    assert (final.action, final.next_stage, final.state.status) == ("promote", "promoted", "promoted")
    assert [(p.name, p.traffic) for p in target.specs[-1].predictors] == [("challenger", 100)]
    after = rc.step(state_uri, log, base=BASE, target=target, as_of=T0 + timedelta(hours=5), config=CONFIG)
    assert after.action == "none" and after.spec is None
    status = rc.status(state_uri)
    assert status["status"] == "promoted" and [d["action"] for d in status["decisions"]] == [
        "hold",
        "promote",
        "promote",
    ]


def test_a_worse_challenger_is_rolled_back_in_shadow(models: dict[str, str], tmp_path: Path) -> None:
    state_uri, log, target = str(tmp_path / "rollout.json"), str(tmp_path / "log"), Recorder()
    rc.start(state_uri, PLAN, models["legacy"], models["challenger"], base=BASE, target=target, at=T0)
    traffic(log, T0 + timedelta(minutes=1), 600, challenger_quality=0.0, seed=4)
    result = rc.step(state_uri, log, base=BASE, target=target, as_of=T0 + timedelta(hours=2), config=CONFIG)
    assert (result.action, result.state.status) == ("rollback", "rolled_back")
    assert "significantly worse" in result.reasons[0]
    assert [(p.name, p.traffic) for p in target.specs[-1].predictors] == [("legacy", 100)]


def test_a_failing_challenger_trips_the_error_guardrail(models: dict[str, str], tmp_path: Path) -> None:
    state_uri, log, target = str(tmp_path / "rollout.json"), str(tmp_path / "log"), Recorder()
    rc.start(state_uri, PLAN, models["legacy"], models["challenger"], base=BASE, target=target, at=T0)
    traffic(log, T0 + timedelta(minutes=1), 300, challenger_quality=0.7, seed=5, errors=0.2)
    result = rc.step(state_uri, log, base=BASE, target=target, as_of=T0 + timedelta(minutes=30), config=CONFIG)
    assert result.action == "rollback" and "guardrail: challenger error rate" in result.reasons[0]


def test_errors_leave_traffic_and_state_alone(models: dict[str, str], tmp_path: Path) -> None:
    state_uri, log, target = str(tmp_path / "rollout.json"), str(tmp_path / "log"), Recorder()
    with pytest.raises(InvalidPlan, match="strictly increasing; nothing started, traffic left as it is"):
        rc.start(
            state_uri, {"steps": [50, 5, 100]}, models["legacy"], models["challenger"], base=BASE, target=target, at=T0
        )
    with pytest.raises(rc.RolloutError, match=r"challenger model at .*nowhere does not load"):
        rc.start(state_uri, PLAN, models["legacy"], str(tmp_path / "nowhere"), base=BASE, target=target, at=T0)
    assert not Path(state_uri).exists() and target.specs == []

    rc.start(state_uri, PLAN, models["legacy"], models["challenger"], base=BASE, target=target, at=T0)
    traffic(log, T0 + timedelta(minutes=1), 50, challenger_quality=0.7, seed=6)
    # A second label for an already labelled request (a second label feed): the join refuses the log.
    extra = {"request_id": ["r6-0"], "label": [1], "labelled_at": [T0 + timedelta(hours=1)], "predicted_at": [T0]}
    write_segment(f"{log}/labels/date=2026-11-02/extra.parquet", pa.Table.from_pydict(extra, schema=LABEL_SCHEMA))
    before = Path(state_uri).read_text()
    with pytest.raises(rc.RolloutError, match=r"labelled twice.*traffic left as it is"):
        rc.step(state_uri, log, base=BASE, target=target, as_of=T0 + timedelta(hours=3), config=CONFIG)
    assert Path(state_uri).read_text() == before and len(target.specs) == 1


def test_a_promotion_that_cannot_be_applied_rolls_back(models: dict[str, str], tmp_path: Path) -> None:
    state_uri, log, target = str(tmp_path / "rollout.json"), str(tmp_path / "log"), Recorder()
    rc.start(state_uri, PLAN, models["legacy"], models["challenger"], base=BASE, target=target, at=T0)
    traffic(log, T0 + timedelta(minutes=1), 600, challenger_quality=0.7, seed=7)
    target.fail = True
    with pytest.raises(rc.RolloutError, match=r"applying canary-5 failed .*exited with code 1.*rolled back"):
        rc.step(state_uri, log, base=BASE, target=target, as_of=T0 + timedelta(hours=2), config=CONFIG)
    state, _ = load_rollout(state_uri)
    assert state.status == "rolled_back" and [h["action"] for h in state.history] == ["promote", "rollback"]


def test_a_concurrent_controller_wins(models: dict[str, str], tmp_path: Path) -> None:
    state_uri, log, target = str(tmp_path / "rollout.json"), str(tmp_path / "log"), Recorder()
    rc.start(state_uri, PLAN, models["legacy"], models["challenger"], base=BASE, target=target, at=T0)
    traffic(log, T0 + timedelta(minutes=1), 600, challenger_quality=0.7, seed=8)
    state, version = load_rollout(state_uri)
    moved = dataclasses.replace(state, stage_started_at=T0 + timedelta(minutes=90))
    save_rollout(state_uri, moved, version)  # another controller wrote meanwhile

    real = rc.load_rollout
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rc, "load_rollout", lambda uri: (state, version))  # this one read the old version
        with pytest.raises(AlreadyExistsError, match="another controller"):
            rc.step(state_uri, log, base=BASE, target=target, as_of=T0 + timedelta(hours=2), config=CONFIG)
    assert len(target.specs) == 1 and real(state_uri)[0] == moved


def test_decisions_are_logged_to_wandb(models: dict[str, str], tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    state_uri, log, target = str(tmp_path / "rollout.json"), str(tmp_path / "log"), Recorder()
    rc.start(state_uri, PLAN, models["legacy"], models["challenger"], base=BASE, target=target, at=T0)
    traffic(log, T0 + timedelta(minutes=1), 600, challenger_quality=0.7, seed=9)
    tracking = Tracking(Settings.from_env(), group="job-1")
    result = rc.step(
        state_uri, log, base=BASE, target=target, as_of=T0 + timedelta(hours=2), config=CONFIG, tracking=tracking
    )
    assert result.action == "promote"
    runs = list((tmp_path / "wandb").rglob("offline-run-*"))
    assert len(runs) == 1


def _registered_models(tmp_path: Path, folders: dict[str, Path]) -> tuple[StoredModels, str, str]:
    """A store where ``legacy`` is champion and ``challenger`` a candidate; their version folders."""
    store = ModelStore(str(tmp_path / "store"))
    legacy = register(store.root, folders["legacy"], name="fraud")
    store.promote(legacy, expected_champion=None, by="deploy single", reasons=["first model of fraud"])
    challenger = register(store.root, folders["challenger"], name="fraud")
    store.record_status("fraud", challenger.version, CANDIDATE, by="register", reasons=["gate passed"])
    return StoredModels(store.root, "fraud", legacy.version, challenger.version), legacy.uri, challenger.uri


def test_the_promotion_moves_the_champion_pointer_and_records_why(folders: dict[str, Path], tmp_path: Path) -> None:
    stored, legacy, challenger = _registered_models(tmp_path, folders)
    store = ModelStore(stored.store_root)
    state_uri, log, target = str(tmp_path / "rollout.json"), str(tmp_path / "log"), Recorder()
    rc.start(state_uri, PLAN, legacy, challenger, base=BASE, target=target, at=T0, stored=stored, log_root=log)

    traffic(log, T0 + timedelta(minutes=2), 600, challenger_quality=0.7, seed=21)
    canary = rc.step(state_uri, "", base=BASE, target=target, as_of=T0 + timedelta(hours=2), config=CONFIG)
    assert (canary.action, canary.next_stage) == ("promote", "canary-5")
    assert store.champion("fraud").version == stored.legacy_version  # 5 % of traffic is no promotion
    assert canary.record["store"] is None

    canary_start = T0 + timedelta(hours=2, minutes=1)
    traffic(log, canary_start, 700, challenger_quality=0.7, seed=22, predictors=("legacy",))
    traffic(log, canary_start, 700, challenger_quality=0.7, seed=23, predictors=("challenger",))
    final = rc.step(state_uri, "", base=BASE, target=target, as_of=T0 + timedelta(hours=4), config=CONFIG)

    assert (final.action, final.state.status) == ("promote", "promoted")
    pointer = store.champion_pointer("fraud")
    assert (pointer["version"], pointer["previous"], pointer["by"]) == (
        stored.challenger_version,
        stored.legacy_version,
        f"rollout {state_uri}",
    )
    assert pointer["reasons"] == list(final.reasons) and "better enough to take all traffic" in final.reasons[0]
    assert store.status("fraud", stored.challenger_version).status == CHAMPION
    assert store.status("fraud", stored.legacy_version).status == RETIRED
    assert final.record["store"] == {
        "model": stored.model_name,  # the W&B Registry collection whose champion alias follows
        "champion": stored.challenger_version,
        "challenger_status": CHAMPION,
    }
    assert json.loads(Path(final.artifact).read_text())["store"] == final.record["store"]


def test_a_rollback_rejects_the_challenger_and_leaves_the_champion(folders: dict[str, Path], tmp_path: Path) -> None:
    stored, legacy, challenger = _registered_models(tmp_path, folders)
    store = ModelStore(stored.store_root)
    before = store.champion_pointer("fraud")
    state_uri, log, target = str(tmp_path / "rollout.json"), str(tmp_path / "log"), Recorder()
    rc.start(state_uri, PLAN, legacy, challenger, base=BASE, target=target, at=T0, stored=stored)
    traffic(log, T0 + timedelta(minutes=1), 600, challenger_quality=0.0, seed=24)

    result = rc.step(state_uri, log, base=BASE, target=target, as_of=T0 + timedelta(hours=2), config=CONFIG)

    assert (result.action, result.state.status) == ("rollback", "rolled_back")
    assert store.champion_pointer("fraud") == before
    rejected = store.status("fraud", stored.challenger_version)
    assert (rejected.status, rejected.by, rejected.reasons) == (REJECTED, f"rollout {state_uri}", result.reasons)
    assert result.record["store"] == {
        "model": stored.model_name,
        "champion": stored.legacy_version,
        "challenger_status": REJECTED,
    }


def test_a_champion_that_moved_meanwhile_turns_the_promotion_into_a_rollback(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    stored, legacy, challenger = _registered_models(tmp_path, folders)
    store = ModelStore(stored.store_root)
    plan = dataclasses.replace(PLAN, shadow=False)  # straight to canary-5, whose promotion is the last
    state_uri, log, target = str(tmp_path / "rollout.json"), str(tmp_path / "log"), Recorder()
    rc.start(state_uri, plan, legacy, challenger, base=BASE, target=target, at=T0, stored=stored)
    # Someone crowned another version while the rollout ran (outside any rollout).
    other = register(store.root, folders["legacy"], name="fraud")
    store.promote(other, expected_champion=stored.legacy_version, by="by hand", reasons=["a hotfix"])
    traffic(log, T0 + timedelta(minutes=1), 700, challenger_quality=0.7, seed=25, predictors=("legacy",))
    traffic(log, T0 + timedelta(minutes=1), 700, challenger_quality=0.7, seed=26, predictors=("challenger",))

    result = rc.step(state_uri, log, base=BASE, target=target, as_of=T0 + timedelta(hours=2), config=CONFIG)

    assert (result.action, result.state.status) == ("rollback", "rolled_back")
    assert f"the champion of fraud is now {other.version}, not {stored.legacy_version}" in result.reasons[0]
    assert store.champion("fraud").version == other.version
    assert store.status("fraud", stored.challenger_version).status == REJECTED
    assert [(p.name, p.traffic) for p in target.specs[-1].predictors] == [("legacy", 100)]


def test_a_rollout_starts_only_against_the_champion_and_rolls_back_a_first_stage_that_fails(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    stored, legacy, challenger = _registered_models(tmp_path, folders)
    store = ModelStore(stored.store_root)
    state_uri, target = str(tmp_path / "rollout.json"), Recorder()
    stale = dataclasses.replace(stored, legacy_version="v-old")
    with pytest.raises(AlreadyExistsError, match=r"is now .*, not v-old, .*; nothing started, traffic left as it is"):
        rc.start(state_uri, PLAN, legacy, challenger, base=BASE, target=target, at=T0, stored=stale)
    assert not Path(state_uri).exists() and target.specs == []

    target.fail = True  # the challenger's server does not start
    with pytest.raises(rc.RolloutError, match=r"applying shadow failed .*exited with code 1.*rolled back"):
        rc.start(state_uri, PLAN, legacy, challenger, base=BASE, target=target, at=T0, stored=stored)
    state, _ = load_rollout(state_uri)
    assert state.status == "rolled_back" and [h["action"] for h in state.history] == ["rollback"]
    assert [(p.name, p.traffic) for p in target.specs[-1].predictors] == [("legacy", 100)]
    assert store.status("fraud", stored.challenger_version).status == REJECTED
    assert store.champion("fraud").version == stored.legacy_version


def test_models_load_only_against_the_checksums_the_rollout_recorded(folders: dict[str, Path], tmp_path: Path) -> None:
    """A registered model whose checksum in the rollout state differs from the store's is not served."""
    stored, legacy, challenger = _registered_models(tmp_path, folders)
    state_uri, log, target = str(tmp_path / "rollout.json"), str(tmp_path / "log"), Recorder()
    started = rc.start(state_uri, PLAN, legacy, challenger, base=BASE, target=target, at=T0, stored=stored)
    store = ModelStore(stored.store_root)
    assert started.state.checksums == {
        legacy: store.checksum("fraud", stored.legacy_version),
        challenger: store.checksum("fraud", stored.challenger_version),
    }
    state, version = load_rollout(state_uri)
    save_rollout(state_uri, dataclasses.replace(state, checksums={**state.checksums, challenger: "0" * 64}), version)
    traffic(log, T0 + timedelta(minutes=1), 600, challenger_quality=0.7, seed=27)
    before = Path(state_uri).read_text()

    with pytest.raises(rc.RolloutError, match=r"challenger model at .* does not load .*differs from the one recorded"):
        rc.step(state_uri, log, base=BASE, target=target, as_of=T0 + timedelta(hours=2), config=CONFIG)
    assert Path(state_uri).read_text() == before and len(target.specs) == 1  # nothing recorded, traffic unchanged


def test_a_folder_outside_the_store_is_refused_without_the_opt_out(folders: dict[str, Path], tmp_path: Path) -> None:
    state_uri, target = str(tmp_path / "rollout.json"), Recorder()
    legacy, challenger = str(folders["legacy"]), str(folders["challenger"])
    with pytest.raises(rc.RolloutError, match=r"legacy model at .* is outside the model store"):
        rc.start(state_uri, PLAN, legacy, challenger, base=BASE, target=target, at=T0)
    assert not Path(state_uri).exists() and target.specs == []
