"""The register component's logic: immutable candidate versions, never a champion move, on a local folder and GCS."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from kfp_mlops.components.register.logic import run_register
from kfp_mlops.core import storage
from kfp_mlops.core.errors import AlreadyExistsError, ConfigError, MlopsError, StorageError
from kfp_mlops.modeling.evaluation import evaluate, load_champion
from kfp_mlops.modeling.model_bundle import METADATA_FILE, MODEL_FILE, PROFILE_FILE, load_bundle, save_bundle
from kfp_mlops.modeling.model_store import (
    CANDIDATE,
    CHAMPION,
    CHAMPION_FILE,
    EVALUATION_FILE,
    ModelStore,
    RegisteredVersion,
)
from kfp_mlops.modeling.profile import build_profile
from kfp_mlops.modeling.splitting import split_source
from kfp_mlops.modeling.training import fit_model
from tests.support.models import crown
from tests.support.wandb_offline import find_offline_runs, read_offline_run

VERSION_FILES = sorted([EVALUATION_FILE, METADATA_FILE, MODEL_FILE, PROFILE_FILE])
VERSION = re.compile(r"^v\d{8}T\d{12}Z-[0-9a-f]{8}$")


class Candidate:
    """A trained Iris model folder and its reference profile, as train leaves them."""

    def __init__(self, root: Path, drop: tuple[str, ...] = ()) -> None:
        split = split_source("iris", "species", test_size=0.2, seed=42)
        self.train, self.test = split.train.drop(columns=list(drop)), split.test
        model, metadata = fit_model(self.train, "species", "logistic_regression", {}, seed=0)
        self.model_dir = root / "model"
        self.metadata = save_bundle(self.model_dir, model, {**metadata, "training_data_uri": "memory"})
        self.profile_path = root / "profile.json"
        profile = build_profile(self.train, metadata["feature_kinds"], "species")
        self.profile_path.write_text(json.dumps(profile, indent=2, sort_keys=True) + "\n")


@pytest.fixture(scope="module")
def candidate(tmp_path_factory: pytest.TempPathFactory) -> Candidate:
    """The model every registration in this module stores."""
    return Candidate(tmp_path_factory.mktemp("candidate"))


def _evaluation(tmp_path: Path, *, passed: bool = True, champion: str | None = None) -> Path:
    path = tmp_path / f"evaluation-{passed}-{champion}.json"
    path.write_text(
        json.dumps(
            {
                "passed": passed,
                "metrics": {"accuracy": 0.93},
                "reasons": ["test"],
                "champion_version": champion,
                "champion_metrics": None,
            }
        )
    )
    return path


def _register(candidate: Candidate, evaluation: Path, store_root: str, name: str = "iris") -> dict[str, Any]:
    return run_register(
        str(candidate.model_dir),
        str(candidate.profile_path),
        str(evaluation),
        model_sha256=candidate.metadata["model_sha256"],
        store_root=store_root,
        model_name=name,
        pipeline_job_id="job-1",
    )


def store_checksum(store_root: str, version: str) -> str:
    return str(storage.read_json(storage.join(store_root, "models", "iris", "statuses", f"{version}.json"))["sha256"])


def _champion(store_root: str, name: str = "iris") -> dict[str, Any]:
    return storage.read_json(storage.join(store_root, "models", name, CHAMPION_FILE))


def test_first_registration_writes_the_version_as_a_candidate(
    store_root: str, candidate: Candidate, tmp_path: Path
) -> None:
    """models/<name>/versions/<v>/ gets all four files and the status candidate; no champion is chosen."""
    evaluation = _evaluation(tmp_path)

    record = _register(candidate, evaluation, store_root)

    version = record["version"]
    uri = storage.join(store_root, "models", "iris", "versions", version)
    assert VERSION.match(version) and version.endswith(candidate.metadata["model_sha256"][:8])
    sha256 = candidate.metadata["model_sha256"]
    logged_ref = record.pop("wandb_artifact")  # the exact W&B version, for the KFP artifact's metadata
    assert (logged_ref["name"], logged_ref["type"], logged_ref["version"]) == ("iris-registered", "model", None)
    assert record == {
        "name": "iris",
        "version": version,
        "uri": uri,
        "sha256": sha256,
        "status": CANDIDATE,
        "champion": None,
    }
    assert store_checksum(store_root, version) == sha256  # recorded apart from the version folder
    assert storage.list_uris(uri) == [storage.join(uri, f) for f in VERSION_FILES]
    assert storage.read_bytes(storage.join(uri, MODEL_FILE)) == (candidate.model_dir / MODEL_FILE).read_bytes()
    assert storage.read_json(storage.join(uri, METADATA_FILE)) == candidate.metadata
    assert storage.read_bytes(storage.join(uri, PROFILE_FILE)) == candidate.profile_path.read_bytes()
    assert storage.read_json(storage.join(uri, EVALUATION_FILE)) == json.loads(evaluation.read_text())
    store = ModelStore(store_root)
    assert store.champion("iris") is None  # the deploy step chooses the first champion, not register
    assert not storage.exists(storage.join(store_root, "models", "iris", CHAMPION_FILE))
    status = store.status("iris", version)
    assert (status.status, status.by, status.reasons) == (CANDIDATE, "register", ("test",))
    assert store.versions("iris") == [version]
    assert store.load("iris", version).metadata == candidate.metadata  # the stored version loads back

    [run_dir] = find_offline_runs(Path(os.environ["WANDB_DIR"]))
    logged = read_offline_run(run_dir)
    assert (logged.job_type, logged.group, logged.exit_code) == ("register", "job-1", 0)
    assert {k: logged.summary[k] for k in ("name", "version", "uri", "status")} == {
        "name": "iris",
        "version": version,
        "uri": uri,
        "status": CANDIDATE,
    }
    artifact = logged.artifact("iris-registered")  # one collection per model name
    assert (artifact["type"], artifact["digest"]) == ("model", logged_ref["digest"])
    assert sorted(artifact["aliases"]) == ["candidate", "latest"]
    # Offline the Registry link cannot be made: its intended path and aliases are kept on the version.
    registry = {"path": "wandb-registry-model/iris", "aliases": ["candidate"], "linked": False}
    assert artifact["metadata"] == {**record, "registry": registry}


def test_a_registration_beside_a_champion_stays_a_candidate(
    store_root: str, candidate: Candidate, tmp_path: Path
) -> None:
    """A passed evaluation against the champion registers a candidate; the champion pointer does not move."""
    first = crown(store_root, candidate.model_dir, profile_path=candidate.profile_path)
    before = _champion(store_root)

    record = _register(candidate, _evaluation(tmp_path, champion=first), store_root)

    assert record["champion"] == first and record["version"] != first
    assert _champion(store_root) == before
    store = ModelStore(store_root)
    assert store.versions("iris") == [first, record["version"]]
    assert store.champion("iris").version == first
    assert store.status("iris", first).status == CHAMPION
    assert store.status("iris", record["version"]).status == CANDIDATE


def test_a_version_is_never_overwritten(store_root: str, candidate: Candidate) -> None:
    """Every file of a stored version refuses a create_only write and keeps its content."""
    uri = ModelStore(store_root).version_uri(
        "iris", crown(store_root, candidate.model_dir, profile_path=candidate.profile_path)
    )
    for name in VERSION_FILES:
        target = storage.join(uri, name)
        before = storage.read_bytes(target)
        with pytest.raises(
            AlreadyExistsError, match=f"{re.escape(target)}: already exists and must not be overwritten"
        ):
            storage.write_bytes(target, b"replacement", create_only=True)
        assert storage.read_bytes(target) == before


def test_a_failed_evaluation_is_not_registered(tmp_path: Path, candidate: Candidate) -> None:
    """register behind a failed gate refuses before touching the store or W&B."""
    store_root = tmp_path / "store"
    with pytest.raises(MlopsError, match=r"its evaluation did not pass the gate; not registered$"):
        _register(candidate, _evaluation(tmp_path, passed=False), str(store_root))
    assert not store_root.exists()
    assert find_offline_runs(Path(os.environ["WANDB_DIR"])) == []


def test_a_stale_champion_is_left_alone(store_root: str, candidate: Candidate, tmp_path: Path) -> None:
    """Evaluated against an older champion: the candidate is stored, the pointer stays (deploy refuses to move it)."""
    crown(store_root, candidate.model_dir, profile_path=candidate.profile_path)
    crown(store_root, candidate.model_dir, profile_path=candidate.profile_path)
    before = storage.read_bytes(storage.join(store_root, "models", "iris", CHAMPION_FILE))

    record = _register(candidate, _evaluation(tmp_path, champion="v-stale"), store_root)

    assert record["champion"] == "v-stale"
    assert storage.read_bytes(storage.join(store_root, "models", "iris", CHAMPION_FILE)) == before
    assert len(ModelStore(store_root).versions("iris")) == 3  # registered, a candidate
    [run_dir] = find_offline_runs(Path(os.environ["WANDB_DIR"]))
    assert read_offline_run(run_dir).exit_code == 0


def test_an_incomplete_model_folder_writes_nothing(tmp_path: Path, candidate: Candidate) -> None:
    """A model folder without model.joblib is refused before the first write."""
    incomplete = tmp_path / "model"
    incomplete.mkdir()
    shutil.copy(candidate.model_dir / METADATA_FILE, incomplete / METADATA_FILE)
    store_root = tmp_path / "store"

    with pytest.raises(
        MlopsError, match=rf"^model {re.escape(str(incomplete))}: missing model\.joblib; not registered$"
    ):
        run_register(
            str(incomplete),
            str(candidate.profile_path),
            str(_evaluation(tmp_path)),
            model_sha256=candidate.metadata["model_sha256"],
            store_root=str(store_root),
            model_name="iris",
        )

    assert storage.list_uris(str(store_root)) == []


def test_an_unreachable_store_fails_fast_and_writes_nothing(
    gcs_bucket: str, gcs_emulator: Any, candidate: Candidate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the emulator out of reach, register fails with a StorageError; the bucket stays empty."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    store_root = f"{gcs_bucket}/store"

    with pytest.raises(StorageError, match=f"127.0.0.1:{port} does not answer"):
        _register(candidate, _evaluation(tmp_path), store_root)

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)
    assert storage.list_uris(gcs_bucket) == []


@contextmanager
def _max_file_size(limit: int) -> Iterator[None]:
    """Makes any write past ``limit`` bytes fail with EFBIG in this process (a full disk, in effect)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def test_a_write_failing_mid_publish_leaves_no_partial_version(tmp_path: Path, candidate: Candidate) -> None:
    """model.joblib is written, then the profile hits a file-size limit: the written files are removed."""
    big_profile = tmp_path / "profile.json"
    big_profile.write_text(json.dumps({"padding": "x" * 2_000_000}))
    assert (candidate.model_dir / MODEL_FILE).stat().st_size < 200_000  # written before the limit bites
    store_root = str(tmp_path / "store")

    with _max_file_size(500_000), pytest.raises(StorageError, match=f"{PROFILE_FILE}: cannot write: File too large"):
        ModelStore(store_root).publish(
            "iris",
            candidate.model_dir,
            profile_path=big_profile,
            evaluation={"passed": True},
            sha256=candidate.metadata["model_sha256"],
        )

    assert storage.list_uris(store_root) == []
    [started] = (Path(store_root) / "models" / "iris" / "versions").iterdir()  # the write did begin...
    assert list(started.iterdir()) == []  # ...and model.joblib, written first, was removed again
    assert ModelStore(store_root).versions("iris") == []
    assert ModelStore(store_root).champion("iris") is None


@pytest.mark.parametrize("name", ["Iris", "../x", "iris/v2", "-iris", "iris-", "", "a" * 64])
def test_invalid_model_names(tmp_path: Path, name: str) -> None:
    """Model names are lowercase path-safe words; anything else is a ConfigError naming it."""
    with pytest.raises(ConfigError, match=rf"^model name {re.escape(repr(name))}: use lowercase letters"):
        ModelStore(str(tmp_path / "store")).model_uri(name)


@pytest.mark.parametrize("name", ["Iris", "../x"])
def test_run_register_refuses_an_invalid_name_and_writes_nothing(
    tmp_path: Path, candidate: Candidate, name: str
) -> None:
    """An invalid name fails the task before anything lands in (or next to) the store."""
    store_root = tmp_path / "store"
    with pytest.raises(ConfigError, match=rf"^model name {re.escape(repr(name))}: "):
        _register(candidate, _evaluation(tmp_path), str(store_root), name=name)
    assert not store_root.exists()
    assert not (tmp_path / "x").exists()


def test_empty_store_root_is_a_config_error(candidate: Candidate, tmp_path: Path) -> None:
    """An unset store root is named as such instead of writing relative to the working folder."""
    with pytest.raises(ConfigError, match="the storage root is empty"):
        _register(candidate, _evaluation(tmp_path), "")


def test_a_champion_that_was_not_compared_can_still_be_replaced(
    store_root: str, tmp_path: Path, candidate: Candidate
) -> None:
    """evaluate leaves a champion with other features out of its decision; the candidate may then replace it."""
    old = Candidate(tmp_path / "old", drop=("petal_width",))
    first = crown(store_root, old.model_dir, profile_path=old.profile_path)
    champion, champion_version, _ = load_champion(store_root, "iris")
    result = evaluate(
        load_bundle(str(candidate.model_dir), sha256=candidate.metadata["model_sha256"]),
        candidate.test,
        champion=champion,
        champion_version=champion_version,
    )
    assert result.passed and f"champion {first} has other features or classes: not compared" in result.reasons
    evaluation = tmp_path / "evaluation.json"
    evaluation.write_text(json.dumps(result.record()))

    record = _register(candidate, evaluation, store_root)

    assert record["champion"] == first and _champion(store_root)["version"] == first
    store = ModelStore(store_root)
    registered = RegisteredVersion(record["name"], record["version"], record["uri"])
    store.promote(registered, expected_champion=record["champion"], by="deploy single", reasons=["on request"])
    assert _champion(store_root)["version"] == record["version"]
