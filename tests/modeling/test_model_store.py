"""The model store's lifecycle: candidates, one champion pointer moved by compare-and-swap with its reasons, statuses.

Publishing versions, their immutability and failure modes are tested with the register component
(components/register/tests), which is where they are written from.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kfp_mlops.core import storage
from kfp_mlops.core.errors import AlreadyExistsError, ConfigError, DataError, MlopsError
from kfp_mlops.modeling.model_store import (
    CANDIDATE,
    CHAMPION,
    CHAMPION_FILE,
    REJECTED,
    RETIRED,
    ModelStore,
    RegisteredVersion,
)
from tests.support.models import iris_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return iris_model(tmp_path_factory.mktemp("iris") / "model")


def _candidate(store: ModelStore, model_dir: Path) -> RegisteredVersion:
    registered = store.publish("iris", model_dir, profile_path=None, evaluation={"passed": True})
    store.record_status("iris", registered.version, CANDIDATE, by="register", reasons=["gate passed"])
    return registered


def test_a_version_goes_candidate_champion_retired_and_each_move_says_why(store_root: str, model_dir: Path) -> None:
    store = ModelStore(store_root)
    first, second = _candidate(store, model_dir), _candidate(store, model_dir)
    assert store.champion("iris") is None
    assert store.status("iris", first.version).status == CANDIDATE

    store.promote(first, expected_champion=None, by="deploy single", reasons=["first model of iris"])
    store.promote(second, expected_champion=first.version, by="rollout s.json", reasons=["better: +0.05"])

    pointer = store.champion_pointer("iris")
    assert {k: pointer[k] for k in ("version", "uri", "previous", "by", "reasons")} == {
        "version": second.version,
        "uri": second.uri,
        "previous": first.version,
        "by": "rollout s.json",
        "reasons": ["better: +0.05"],
    }
    assert pointer["promoted_at"].endswith("+00:00")
    assert [s.status for s in store.status_history("iris", first.version)] == [CANDIDATE, CHAMPION, RETIRED]
    retired = store.status("iris", first.version)
    assert (retired.status, retired.by, retired.reasons) == (
        RETIRED,
        "rollout s.json",
        (f"replaced by {second.version}",),
    )
    champion = store.status("iris", second.version)
    assert (champion.status, champion.by, champion.reasons) == (CHAMPION, "rollout s.json", ("better: +0.05",))


def test_the_pointer_moves_only_from_the_champion_it_expects(store_root: str, model_dir: Path) -> None:
    store = ModelStore(store_root)
    first, second = _candidate(store, model_dir), _candidate(store, model_dir)
    store.promote(first, expected_champion=None, by="deploy single", reasons=["first"])
    before = storage.read_bytes(storage.join(store.model_uri("iris"), CHAMPION_FILE))

    with pytest.raises(AlreadyExistsError, match=rf"champion is now '{first.version}', not None as evaluated"):
        store.promote(second, expected_champion=None, by="deploy single", reasons=["stale"])
    with pytest.raises(AlreadyExistsError, match=rf"champion is now '{first.version}', not 'v0' for the rollout"):
        store.check_champion("iris", "v0", expected_as="for the rollout")
    store.check_champion("iris", first.version)

    assert storage.read_bytes(storage.join(store.model_uri("iris"), CHAMPION_FILE)) == before
    assert store.status("iris", second.version).status == CANDIDATE


def test_a_rejected_candidate_leaves_the_champion(tmp_path: Path, model_dir: Path) -> None:
    store = ModelStore(str(tmp_path / "store"))
    champion, candidate = _candidate(store, model_dir), _candidate(store, model_dir)
    store.promote(champion, expected_champion=None, by="deploy single", reasons=["first"])

    store.record_status("iris", candidate.version, REJECTED, by="rollout r.json", reasons=["significantly worse"])

    assert store.champion("iris").version == champion.version
    rejected = store.status("iris", candidate.version)
    assert (rejected.status, rejected.reasons) == (REJECTED, ("significantly worse",))
    with pytest.raises(ConfigError, match="model status 'promoted': unknown; choose one of candidate, champion"):
        store.record_status("iris", candidate.version, "promoted", by="x", reasons=[])


def test_the_pointer_is_the_authority_on_champion_ness(tmp_path: Path, model_dir: Path) -> None:
    """Versions stored before statuses existed, and a history a crash left behind, still read right."""
    store = ModelStore(str(tmp_path / "store"))
    old = store.publish("iris", model_dir, profile_path=None, evaluation={"passed": True})
    assert store.status("iris", old.version) is None  # stored before statuses were recorded
    # An old pointer: written by a register that made every model champion, without why.
    pointer = {"version": old.version, "uri": old.uri, "previous": None, "promoted_at": "2026-01-01T00:00:00+00:00"}
    storage.write_json(storage.join(store.model_uri("iris"), CHAMPION_FILE), pointer)
    assert (store.status("iris", old.version).status, store.status("iris", old.version).by) == (CHAMPION, "")

    new = store.publish("iris", model_dir, profile_path=None, evaluation={"passed": True})
    store.record_status("iris", new.version, CHAMPION, by="rollout", reasons=["promoted"])  # the pointer never moved
    assert store.status("iris", new.version).status == RETIRED
    assert store.status("iris", old.version).status == CHAMPION


def test_a_version_and_a_history_that_are_not_there_are_named(tmp_path: Path, model_dir: Path) -> None:
    store = ModelStore(str(tmp_path / "store"))
    registered = store.publish("iris", model_dir, profile_path=None, evaluation={"passed": True})
    assert store.registered("iris", registered.version) == registered
    with pytest.raises(MlopsError, match="model iris: no stored version 'v-gone'"):
        store.registered("iris", "v-gone")
    status_file = tmp_path / "store" / "models" / "iris" / "statuses" / f"{registered.version}.json"
    status_file.parent.mkdir(parents=True)
    status_file.write_text(json.dumps({"status": "candidate"}))
    with pytest.raises(DataError, match="not a status history"):
        store.status("iris", registered.version)
