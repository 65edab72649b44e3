"""The model store's lifecycle: candidates, one champion pointer moved by compare-and-swap with its reasons, statuses;
provenance (checksums recorded apart from the model, confined URIs, version ids) and writes whose responses are lost.

Publishing versions, their immutability and failure modes are tested with the register component
(components/register/tests), which is where they are written from.
"""

from __future__ import annotations

import itertools
import json
import uuid
from pathlib import Path

import pytest

from kfp_mlops.core import storage
from kfp_mlops.core.config import OUTSIDE_STORE_ENV
from kfp_mlops.core.errors import AlreadyExistsError, ConfigError, DataError, MlopsError
from kfp_mlops.modeling.model_bundle import METADATA_FILE, MODEL_FILE
from kfp_mlops.modeling.model_store import (
    CANDIDATE,
    CHAMPION,
    CHAMPION_FILE,
    REJECTED,
    RETIRED,
    ModelStore,
    RegisteredVersion,
    load_model,
)
from tests.support.gcs_emulator import GcsEmulator
from tests.support.lossy_proxy import LossyProxy
from tests.support.models import iris_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return iris_model(tmp_path_factory.mktemp("iris") / "model")


def _sha256(model_dir: Path) -> str:
    """The checksum train hands on in its artifact's metadata."""
    return str(json.loads((model_dir / METADATA_FILE).read_text())["model_sha256"])


def _publish(store: ModelStore, model_dir: Path) -> RegisteredVersion:
    return store.publish("iris", model_dir, profile_path=None, evaluation={"passed": True}, sha256=_sha256(model_dir))


def _candidate(store: ModelStore, model_dir: Path) -> RegisteredVersion:
    registered = _publish(store, model_dir)
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
    old = _publish(store, model_dir)
    assert store.status("iris", old.version) is None  # published, no status recorded yet
    # An old pointer: written by a register that made every model champion, without why.
    pointer = {"version": old.version, "uri": old.uri, "previous": None, "promoted_at": "2026-01-01T00:00:00+00:00"}
    storage.write_json(storage.join(store.model_uri("iris"), CHAMPION_FILE), pointer)
    assert (store.status("iris", old.version).status, store.status("iris", old.version).by) == (CHAMPION, "")

    new = _publish(store, model_dir)
    store.record_status("iris", new.version, CHAMPION, by="rollout", reasons=["promoted"])  # the pointer never moved
    assert store.status("iris", new.version).status == RETIRED
    assert store.status("iris", old.version).status == CHAMPION


def test_a_version_and_a_history_that_are_not_there_are_named(tmp_path: Path, model_dir: Path) -> None:
    store = ModelStore(str(tmp_path / "store"))
    registered = _publish(store, model_dir)
    assert store.registered("iris", registered.version) == registered
    with pytest.raises(MlopsError, match="model iris: no stored version 'v-gone'"):
        store.registered("iris", "v-gone")
    status_file = tmp_path / "store" / "models" / "iris" / "statuses" / f"{registered.version}.json"
    status_file.write_text(json.dumps({"status": "candidate"}))
    with pytest.raises(DataError, match="not a status history"):
        store.status("iris", registered.version)


def test_the_checksum_is_recorded_apart_from_the_model_and_checked_at_every_load(
    store_root: str, model_dir: Path
) -> None:
    store = ModelStore(store_root)
    registered = _candidate(store, model_dir)
    store.promote(registered, expected_champion=None, by="deploy single", reasons=["first"])
    sha256 = _sha256(model_dir)

    assert store.checksum("iris", registered.version) == sha256
    assert store.champion_pointer("iris")["sha256"] == sha256
    assert store.load("iris", registered.version, sha256=sha256).feature_names
    assert load_model(registered.uri, store_root=store_root).classes == ["setosa", "versicolor", "virginica"]
    with pytest.raises(MlopsError, match=f"the expected sha256 {'0' * 64} differs from the one recorded"):
        store.load("iris", registered.version, sha256="0" * 64)

    # Whoever can write the version folder cannot make the store load another pickle.
    other = iris_model(Path(storage.join(str(model_dir.parent), "other")), estimator="knn")
    storage.delete(storage.join(registered.uri, MODEL_FILE))
    storage.write_bytes(storage.join(registered.uri, MODEL_FILE), (other / MODEL_FILE).read_bytes())
    with pytest.raises(MlopsError, match=f"has sha256 [0-9a-f]{{64}}, not the recorded {sha256}"):
        load_model(registered.uri, store_root=store_root)


def test_a_version_without_a_recorded_checksum_is_neither_loaded_nor_promoted(tmp_path: Path, model_dir: Path) -> None:
    store = ModelStore(str(tmp_path / "store"))
    registered = _publish(store, model_dir)
    status_file = tmp_path / "store" / "models" / "iris" / "statuses" / f"{registered.version}.json"
    status_file.write_text(json.dumps({"version": registered.version, "history": []}))  # as before checksums

    with pytest.raises(MlopsError, match=f"model iris version {registered.version}: no sha256 of model.joblib"):
        store.promote(registered, expected_champion=None, by="deploy single", reasons=["first"])
    with pytest.raises(MlopsError, match="neither loaded nor promoted"):
        store.load("iris", registered.version)
    assert store.champion("iris") is None


def test_publish_refuses_a_model_that_is_not_the_one_trained(tmp_path: Path, model_dir: Path) -> None:
    store = ModelStore(str(tmp_path / "store"))
    with pytest.raises(MlopsError, match=r"model\.joblib has sha256 [0-9a-f]{64}, not '0{64}' as recorded when it"):
        store.publish("iris", model_dir, profile_path=None, evaluation={}, sha256="0" * 64)
    assert store.versions("iris") == []


@pytest.mark.parametrize("version", ["..", "../../etc", "v1/../../x", "a/b", "", ".hidden", "v1..v2", "v" * 129])
def test_version_ids_cannot_name_a_path(tmp_path: Path, version: str) -> None:
    with pytest.raises(ConfigError, match=r"model version .*: use letters, digits, '\.', '_' or '-'"):
        ModelStore(str(tmp_path / "store")).version_uri("iris", version)


def test_model_uris_are_confined_to_the_store_unless_the_user_opts_out(tmp_path: Path, model_dir: Path) -> None:
    store_root = str(tmp_path / "store")
    elsewhere = ModelStore(str(tmp_path / "another-store"))
    foreign = _candidate(elsewhere, model_dir)
    for uri in (str(model_dir), foreign.uri, f"{store_root}/models/iris/versions/../../../../{model_dir.name}"):
        with pytest.raises(MlopsError, match=rf"is outside the model store .*; set {OUTSIDE_STORE_ENV}=1"):
            load_model(uri, store_root=store_root)

    with pytest.raises(MlopsError, match="no recorded sha256"):
        load_model(str(model_dir), store_root=store_root, outside_store=True)
    bundle = load_model(str(model_dir), store_root=store_root, outside_store=True, sha256=_sha256(model_dir))
    assert bundle.metadata["model_sha256"] == _sha256(model_dir)


def test_a_lost_response_never_makes_publish_or_promote_fail_against_itself(
    gcs_emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch, model_dir: Path
) -> None:
    """Every upload of a publish and a promote has its response lost once (a proxy drops it after the
    emulator stored the object); the client's retry meets its own object, and both succeed."""
    proxy = LossyProxy(gcs_emulator.url).start()
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        bucket = f"gs://lossy-{uuid.uuid4().hex[:12]}"
        storage.ensure_bucket(bucket)
        store = ModelStore(f"{bucket}/store")
        uploads = itertools.count()
        # The first attempt of every upload is lost, its retry answered: uploads alternate.
        proxy.lose(
            lambda method, path: method == "POST" and path.startswith("/upload/") and next(uploads) % 2 == 0, 100
        )

        registered = _candidate(store, model_dir)
        store.promote(registered, expected_champion=None, by="deploy single", reasons=["first"])
    finally:
        proxy.stop()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)

    # model, profile-less evaluation, checksum, marker, candidate status, pointer, champion status
    assert len(proxy.lost) == 7
    assert store.versions("iris") == [registered.version]
    assert store.load("iris", registered.version).classes == ["setosa", "versicolor", "virginica"]
    assert store.champion("iris") == registered
    assert [s.status for s in store.status_history("iris", registered.version)] == [CANDIDATE, CHAMPION]
