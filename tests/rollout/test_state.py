"""Rollout state: moved by compare-and-swap, decisions applied by the rules, a finished rollout replaced,
the store and versions of registered models kept, and older documents still read."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from kfp_mlops import rollout
from kfp_mlops.core import storage
from kfp_mlops.core.errors import AlreadyExistsError, ConfigError, DataError
from kfp_mlops.modeling.model_store import ModelStore
from kfp_mlops.rollout import LiveComparison, StagePlan
from kfp_mlops.rollout import state as state_module
from tests.rollout.simulated import CANARY_5, CANARY_50, SHADOW, T0, TICK, live
from tests.support.gcs_emulator import GcsEmulator
from tests.support.lossy_proxy import LossyProxy
from tests.support.models import crown, iris_model


def test_state_moves_by_compare_and_swap(store_root: str) -> None:
    uri = storage.join(store_root, "rollouts", "fraud.json")
    rollout.start_rollout(uri, StagePlan(), "gs://m/old", "gs://m/new", at=T0)
    with pytest.raises(AlreadyExistsError, match="is running at shadow"):
        rollout.start_rollout(uri, StagePlan(), "gs://m/old", "gs://m/other", at=T0)

    # Two controllers read the same state; only the first one's decision is recorded.
    first, first_version = rollout.load_rollout(uri)
    second, second_version = rollout.load_rollout(uri)
    decision = rollout.decide(first.plan, first.stage, live())
    rollout.save_rollout(uri, first.apply(decision, at=T0 + TICK), first_version)
    with pytest.raises(AlreadyExistsError, match="another controller moved the rollout"):
        rollout.save_rollout(uri, second.apply(decision, at=T0 + TICK), second_version)

    stored, _ = rollout.load_rollout(uri)
    assert stored.stage == CANARY_5 and stored.stage_started_at == T0 + TICK
    assert stored.history[0]["action"] == "promote" and stored.history[0]["stage"] == "shadow"
    assert LiveComparison.from_dict(stored.history[0]["comparison"]) == live()


def test_state_apply_rules_and_restart(tmp_path: Path) -> None:
    uri = str(tmp_path / "rollout.json")
    state = rollout.start_rollout(uri, StagePlan(), "old", "new", at=T0)
    with pytest.raises(ConfigError, match="decision made at stage canary-50, but the rollout is at shadow"):
        state.apply(rollout.decide(StagePlan(), CANARY_50, live()), at=T0)

    rolled_back = state.apply(rollout.decide(StagePlan(), SHADOW, live(auc=(-0.2, -0.3, -0.1))), at=T0)
    assert (rolled_back.status, rolled_back.stage, rolled_back.stage_index) == ("rolled_back", rollout.ROLLED_BACK, 0)
    assert rollout.RolloutState.from_dict(rolled_back.to_dict()) == rolled_back
    with pytest.raises(ConfigError, match="rollout is rolled_back"):
        rolled_back.apply(rollout.decide(StagePlan(), SHADOW, live()), at=T0)

    _, version = rollout.load_rollout(uri)
    rollout.save_rollout(uri, rolled_back, version)
    # A finished rollout may be replaced by the next one.
    assert rollout.start_rollout(uri, StagePlan(), "old", "newer", at=T0 + TICK).challenger_uri == "newer"


def test_a_stored_state_that_is_not_a_rollout_is_refused(tmp_path: Path) -> None:
    uri = tmp_path / "rollout.json"
    state = rollout.start_rollout(str(uri), StagePlan(), "old", "new", at=T0)
    doc = state.to_dict()
    uri.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        rollout.load_rollout(str(uri))
    storage.write_json(str(uri), {**doc, "plan": {**doc["plan"], "stepz": [5]}})
    with pytest.raises(DataError, match=r"rollout state: stage plan: unknown key\(s\) stepz"):
        rollout.load_rollout(str(uri))
    storage.write_json(str(uri), {**doc, "status": "promoted"})
    with pytest.raises(DataError, match="status 'promoted' at stage index 0 is inconsistent"):
        rollout.load_rollout(str(uri))


def test_a_rollout_of_registered_models_knows_its_store_versions_and_checksums(tmp_path: Path) -> None:
    uri = str(tmp_path / "rollout.json")
    store_root = str(tmp_path / "store")
    old, new = (crown(store_root, iris_model(tmp_path / name), name="shop") for name in ("old", "new"))
    stored = state_module.StoredModels(store_root, "shop", old, new)
    state = rollout.start_rollout(uri, StagePlan(), "old", "new", at=T0, stored=stored, log_root="gs://b/log")
    loaded, _ = rollout.load_rollout(uri)
    assert loaded == state and (loaded.stored, loaded.log_root) == (stored, "gs://b/log")
    store = ModelStore(store_root)
    assert loaded.checksums == {"old": store.checksum("shop", old), "new": store.checksum("shop", new)}
    assert state_module.running_rollout(uri) == state
    with pytest.raises(AlreadyExistsError, match=r"rollout\.json: a rollout of new is running at shadow; finish or"):
        state_module.refuse_running(uri, state_module.running_rollout(uri))

    storage.write_json(uri, {**state.to_dict(), "stored": {"store_root": store_root, "model_name": "shop"}})
    with pytest.raises(DataError, match="rollout state: missing key 'legacy_version'"):
        rollout.load_rollout(uri)
    assert state_module.running_rollout(str(tmp_path / "none.json")) is None
    assert state_module.default_state_uri("gs://b/store", "shop") == "gs://b/store/rollouts/shop.json"
    assert state_module.default_log_root("gs://b/store", "shop") == "gs://b/store/prediction-log/shop"


def test_a_state_document_from_before_stored_models_still_loads(tmp_path: Path) -> None:
    """Written by an earlier version: no ``stored``, no ``log_root``; its outcome moves no champion."""
    uri = tmp_path / "rollout.json"
    state = rollout.start_rollout(str(uri), StagePlan(), "old", "new", at=T0)
    old_document = {k: v for k, v in state.to_dict().items() if k not in ("stored", "log_root", "checksums")}
    uri.write_text(json.dumps(old_document))
    loaded, _ = rollout.load_rollout(str(uri))
    assert loaded == state and loaded.stored is None and loaded.log_root == ""
    finished = loaded.apply(rollout.decide(StagePlan(), SHADOW, live(auc=(-0.2, -0.3, -0.1))), at=T0 + TICK)
    assert state_module.running_rollout(str(uri)) == loaded and finished.status == "rolled_back"


def test_a_save_whose_response_was_lost_is_not_a_conflict_with_itself(
    gcs_emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulator stores the new state, the proxy drops its answer, the client retries and gets 412:
    the save succeeds (its own owner token is on the object), and a real second controller still loses."""
    proxy = LossyProxy(gcs_emulator.url).start()
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        bucket = f"gs://lossy-{uuid.uuid4().hex[:12]}"
        storage.ensure_bucket(bucket)
        uri = f"{bucket}/rollouts/fraud.json"
        rollout.start_rollout(uri, StagePlan(), "gs://m/old", "gs://m/new", at=T0)
        first, version = rollout.load_rollout(uri)
        moved = first.apply(rollout.decide(first.plan, first.stage, live()), at=T0 + TICK)
        proxy.lose(lambda method, path: method == "POST" and path.startswith("/upload/"))

        rollout.save_rollout(uri, moved, version)

        assert len(proxy.lost) == 1
        assert rollout.load_rollout(uri)[0] == moved
        with pytest.raises(AlreadyExistsError, match="another controller moved the rollout"):
            rollout.save_rollout(uri, moved, version)
    finally:
        proxy.stop()
