"""The W&B helper, against real offline runs read back from their ``.wandb`` files.

Never online: conftest's ``isolated_env`` sets ``WANDB_MODE=offline``, drops ``WANDB_API_KEY``
and points every W&B folder at the test's tmp dir.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import ConfigError
from kfp_mlops.core.run_outputs import RunOutputs
from kfp_mlops.core.tracking import ArtifactRef, artifact_refs, resolve_mode, run_location, tracked_run
from tests.support.wandb_offline import find_offline_runs, read_offline_run

CLASSES = ["setosa", "versicolor", "virginica"]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "offline"),
        ({"WANDB_API_KEY": ""}, "offline"),
        ({"WANDB_API_KEY": "k" * 40}, "online"),
        ({"WANDB_API_KEY": "k" * 40, "WANDB_MODE": "offline"}, "offline"),
        ({"WANDB_API_KEY": "k" * 40, "WANDB_MODE": "disabled"}, "disabled"),
        ({"WANDB_MODE": "online"}, "online"),
        ({"WANDB_MODE": " Offline "}, "offline"),
    ],
)
def test_resolve_mode(environ: dict[str, str], expected: str) -> None:
    assert resolve_mode(environ) == expected


def test_resolve_mode_reads_the_process_environment_and_rejects_unknown_modes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert resolve_mode() == "offline"  # conftest sets WANDB_MODE=offline
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    with pytest.raises(ConfigError, match="WANDB_MODE='dryrun'"):
        resolve_mode()


def test_tracked_run_records_metrics_charts_table_and_artifacts(tmp_path: Path) -> None:
    data_dir = tmp_path / "iris-train"
    (data_dir / "parts").mkdir(parents=True)
    (data_dir / "train.csv").write_text("sepal_length,species\n5.1,setosa\n")
    (data_dir / "parts" / "schema.json").write_text("{}")
    y_true = ["setosa", "virginica", "virginica", "setosa"]  # versicolor absent on purpose
    y_pred = ["setosa", "virginica", "versicolor", "setosa"]
    # Column 2 separates virginica from setosa; column 1 does not.
    y_proba = np.array([[0.6, 0.35, 0.05], [0.1, 0.1, 0.8], [0.1, 0.45, 0.45], [0.7, 0.25, 0.05]])
    config = {"C": 0.5, "features": ["sepal_length"], "split": {"test": 0.25}}

    with tracked_run(
        "train", group="pipeline-job-42", config=config, settings=Settings.from_env(), name="train-42"
    ) as run:
        run.log_metrics({"accuracy": 0.75, "f1_macro": np.float64(2 / 3)})
        run.log_confusion_matrix(y_true, y_pred, CLASSES)
        run.log_roc_curve(y_true, y_proba, CLASSES)
        run.log_table("predictions", pd.DataFrame({"y_true": y_true, "y_pred": y_pred}))
        data = run.log_artifact("iris-train", "dataset", uri=str(data_dir), metadata={"rows": 1, "source": "csv"})
        run.log_artifact(
            "iris-model", "model", uri="gs://models-bucket/iris/v1/", metadata={"framework": "sklearn"}, uses=[data]
        )
        run_dir = run.dir
        assert run.url is None
        assert run_location(run) == str(run_dir)

    assert find_offline_runs(Path(os.environ["WANDB_DIR"])) == [run_dir]
    logged = read_offline_run(run_dir)
    assert logged.exit_code == 0
    assert (logged.job_type, logged.group, logged.name) == ("train", "pipeline-job-42", "train-42")
    assert logged.project == "kfp-mlops"  # Settings default
    assert logged.config == {**config, "kfp_run_id": "pipeline-job-42", "kfp_run_url": ""}
    assert logged.summary["accuracy"] == pytest.approx(0.75)
    assert logged.summary["f1_macro"] == pytest.approx(2 / 3)
    assert logged.history[0]["accuracy"] == pytest.approx(0.75)

    matrix = logged.table("confusion_matrix_table")
    counts = {(actual, predicted): n for actual, predicted, n in matrix["data"]}
    assert counts[("setosa", "setosa")] == 2
    assert counts[("virginica", "versicolor")] == 1
    assert sum(counts.values()) == len(y_true)

    roc = logged.table("roc_curve_table")
    assert {row[0] for row in roc["data"]} == {"setosa", "virginica"}
    # virginica's own probability column separates it perfectly: a point at fpr 0, tpr 1.
    # (wandb alone would have read the versicolor column for it.)
    assert ["virginica", 0.0, 1.0] in roc["data"]

    assert logged.table("predictions")["columns"] == ["y_true", "y_pred"]

    dataset = logged.artifact("iris-train")
    assert dataset["type"] == "dataset"
    assert dataset["metadata"] == {"rows": 1, "source": "csv"}
    assert data == ArtifactRef("iris-train", "dataset", dataset["digest"], None)  # offline: no version yet
    assert sorted(e["path"] for e in dataset["entries"]) == ["parts/schema.json", "train.csv"]
    model = logged.artifact("iris-model")
    assert model["type"] == "model"
    # The exact input: its digest, not ``:latest`` (which names whatever was logged last).
    assert model["metadata"] == {"framework": "sklearn", "inputs": [data.to_dict()]}
    assert [(e["path"], e["ref"]) for e in model["entries"]] == [
        ("iris/v1", "gs://models-bucket/iris/v1/")  # wandb drops the trailing slash
    ]


def test_the_project_and_entity_come_from_the_settings_unless_a_project_is_given() -> None:
    settings = Settings.from_env({"WANDB_PROJECT": "from-settings", "WANDB_ENTITY": "team-a"})
    with tracked_run("train", group="g", config={}, settings=settings) as default:
        pass
    with tracked_run("train", group="g", config={}, settings=settings, project="from-pipeline") as given:
        pass

    assert (read_offline_run(default.dir).project, read_offline_run(given.dir).project) == (
        "from-settings",
        "from-pipeline",
    )
    assert default.run.entity == given.run.entity == "team-a"


def test_a_single_file_artifact_and_bad_uris(tmp_path: Path) -> None:
    model_file = tmp_path / "model.joblib"
    model_file.write_bytes(b"\x00" * 10)
    with tracked_run("register", group="pipeline-job-43", config={}, settings=Settings.from_env()) as run:
        run.log_artifact("iris-model", "model", uri=str(model_file), metadata={})
        with pytest.raises(FileNotFoundError, match="no file or folder"):
            run.log_artifact("x", "model", uri=str(tmp_path / "missing"), metadata={})
        with pytest.raises(ValueError, match="unsupported URI"):
            run.log_artifact("x", "model", uri="s3://bucket/model", metadata={})
        with pytest.raises(ValueError, match="names no object"):
            run.log_artifact("x", "model", uri="gs://bucket", metadata={})
        with pytest.raises(ValueError, match="'daisy' is not one of"):
            run.log_confusion_matrix(["daisy"], ["setosa"], CLASSES)
        with pytest.raises(ValueError, match="3 is not one of"):
            run.log_roc_curve([3], np.ones((1, 3)) / 3, CLASSES)

    entries = read_offline_run(run.dir).artifact("iris-model")["entries"]
    assert [(e["path"], e["size"]) for e in entries] == [("model.joblib", 10)]


def test_a_failing_body_finishes_the_run_as_failed_and_propagates() -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        tracked_run("evaluate", group="pipeline-job-44", config={"k": 1}, settings=Settings.from_env()) as run,
    ):
        run.log_metrics({"accuracy": 0.1})
        raise RuntimeError("boom")

    logged = read_offline_run(run.dir)
    assert logged.exit_code == 1
    assert logged.summary["accuracy"] == pytest.approx(0.1)


def test_runs_in_one_process_follow_a_changed_wandb_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # wandb caches its environment at the first init of a process; earlier tests already ran one.
    other = tmp_path / "other-wandb"
    other.mkdir()
    monkeypatch.setenv("WANDB_DIR", str(other))
    with tracked_run("ingest", group="g", config={}, settings=Settings.from_env()) as run:
        pass
    assert run.dir.parent == other / "wandb"


def test_reader_agrees_with_wandb_leet_on_records_spanning_blocks() -> None:
    # A 100 kB config value spans several 32 KiB blocks of the log.
    with tracked_run("ingest", group="g", config={"blob": "x" * 100_000}, settings=Settings.from_env()) as run:
        run.log_metrics({"rows": 150})
    logged = read_offline_run(run.dir)
    assert logged.config["blob"] == "x" * 100_000

    leet = subprocess.run(
        [str(Path(sys.executable).with_name("wandb")), "leet", "inspect", "--json", str(run.dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    types = [json.loads(line)["type"] for line in leet.stdout.splitlines() if line.strip()]
    assert types == logged.record_types


CHILD_RUN = textwrap.dedent(
    """
    import os, sys
    from kfp_mlops.core.config import Settings
    from kfp_mlops.core.tracking import tracked_run
    from wandb.sdk import wandb_setup

    with tracked_run("train", group="g", config={}, settings=Settings.from_env()) as run:
        run.log_metrics({"accuracy": 1.0})
    print(run.dir)
    print(wandb_setup.singleton().assert_service().owns_service)
    """
)


def _child(env: dict[str, str]) -> tuple[Path, bool]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD_RUN],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    run_dir, owns_service = done.stdout.split()
    return Path(run_dir), owns_service == "True"


def test_a_stale_inherited_service_falls_back_to_a_private_one() -> None:
    env = dict(os.environ, WANDB_SERVICE="3-1-unix-/nonexistent/wandb/socket")
    run_dir, owns_service = _child(env)
    assert owns_service
    assert read_offline_run(run_dir).exit_code == 0


def test_runs_are_named_after_component_and_pipeline_run_and_link_the_kfp_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings.from_env()
    task = RunOutputs(kfp_ui_host="https://kubeflow.example.com/pipeline/")  # the kfp_ui_host parameter
    with tracked_run("ingest", group="3f2a-job", config={"seed": 1}, settings=settings, outputs=task) as run:
        pass
    with tracked_run("ingest", group="local", config={}, settings=settings, outputs=task) as local:
        pass
    # A pod's environment is never where the link comes from: the compiled pipelines set none of it.
    monkeypatch.setenv("KFP_UI_HOST", "https://elsewhere.example.com")
    with tracked_run("ingest", group="3f2a-job", config={}, settings=Settings.from_env()) as unlinked:
        pass
    logged, local_logged = read_offline_run(run.dir), read_offline_run(local.dir)
    assert read_offline_run(unlinked.dir).config["kfp_run_url"] == ""
    assert (logged.name, logged.group, logged.job_type) == ("ingest-3f2a-job", "3f2a-job", "ingest")
    assert logged.config == {
        "seed": 1,
        "kfp_run_id": "3f2a-job",
        "kfp_run_url": "https://kubeflow.example.com/pipeline/#/runs/details/3f2a-job",
    }
    assert (local_logged.name, local_logged.config["kfp_run_url"]) == ("ingest-local", "")  # no KFP run locally


def _store_version(root: Path, version: str, content: bytes) -> Path:
    folder = root / "models" / "iris" / "versions" / version
    folder.mkdir(parents=True)
    (folder / "model.joblib").write_bytes(content)
    (folder / "metadata.json").write_text(json.dumps({"version": version}))
    return folder


def test_registry_aliases_follow_the_champion_across_runs_offline(tmp_path: Path) -> None:
    v1, v2 = _store_version(tmp_path, "v1", b"one"), _store_version(tmp_path, "v2", b"two")
    settings = Settings.from_env()
    with tracked_run("register", group="job-1", config={}, settings=settings) as register:
        first = register.log_model_version(
            "iris-registered", uri=str(v1), metadata={"version": "v1"}, registered_model="iris", aliases=["candidate"]
        )
    with tracked_run("register", group="job-2", config={}, settings=settings) as register_again:
        second = register_again.log_model_version(
            "iris-registered", uri=str(v2), metadata={"version": "v2"}, registered_model="iris", aliases=["candidate"]
        )
    with tracked_run("rollout", group="job-3", config={}, settings=settings) as promote:
        crowned = promote.log_model_version(
            "iris-registered",
            uri=str(v2),
            metadata={"status": "champion"},
            registered_model="iris",
            aliases=["champion"],
        )
        rejected = promote.log_model_version(
            "iris-registered", uri=str(v1), metadata={"status": "rejected"}, registered_model="iris", tags=["rejected"]
        )

    # Offline, link_artifact is impossible: the intended Registry link is in the metadata, the
    # aliases on the version itself.
    logged = read_offline_run(register.dir).artifact("iris-registered")
    assert sorted(logged["aliases"]) == ["candidate", "latest"]
    assert logged["metadata"]["registry"] == {
        "path": "wandb-registry-model/iris",
        "aliases": ["candidate"],
        "linked": False,
    }
    assert logged["digest"] == first.digest
    # The champion alias lands on v2's W&B version: the same files, so the same digest (W&B's
    # dedup on sync makes it the same version, and an alias is unique within its collection).
    champion = read_offline_run(promote.dir).artifacts
    assert crowned.digest == second.digest != first.digest
    assert [(a["digest"], sorted(a["aliases"]), a["tags"]) for a in champion] == [
        (second.digest, ["champion", "latest"], []),
        (first.digest, ["latest"], ["rejected"]),  # a tag: many versions can be rejected
    ]
    assert rejected.digest == first.digest


def test_alerts_are_recorded_offline() -> None:
    with tracked_run("drift_check", group="g", config={}, settings=Settings.from_env()) as run:
        run.alert("Drift found: iris " + "x" * 80, "petal_length: psi 0.41 >= 0.25", level="WARN")
    alerts = read_offline_run(run.dir).alerts
    assert [(len(a["title"]), a["text"], a["level"]) for a in alerts] == [
        (63, "petal_length: psi 0.41 >= 0.25", "WARN")
    ]


def test_records_and_html_are_logged_as_tables_and_media(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text("<html><body><h1>Evidently</h1></body></html>")
    with tracked_run("rollout", group="g", config={}, settings=Settings.from_env()) as run:
        run.log_record("decision", {"action": "hold", "challenger_share": 5, "spec": {"predictors": 2}})
        run.log_html("evidently_report", str(page))
    logged = read_offline_run(run.dir)
    assert logged.table("decision")["data"] == [
        ["action", "hold"],
        ["challenger_share", "5"],
        ["spec", '{"predictors": 2}'],
    ]
    html = logged.path / "files" / logged.summary["evidently_report"]["path"]
    assert "<h1>Evidently</h1>" in html.read_text()


def test_a_finished_run_is_published_to_the_tasks_outputs(tmp_path: Path) -> None:
    outputs = RunOutputs(page=str(tmp_path / "out" / "wandb_page"), files=str(tmp_path / "out" / "wandb_files"))
    with tracked_run("train", group="job-9", config={}, settings=Settings.from_env(), outputs=outputs) as run:
        run.log_metrics({"accuracy": 0.97})
    page = Path(outputs.page).read_text()
    assert "`train-job-9` was logged offline" in page and "wandb sync" in page
    # The copy is a complete run (its exit record included), readable without the original.
    copied = Path(outputs.files) / run.dir.name
    assert read_offline_run(copied, timeout=0.1).summary["accuracy"] == pytest.approx(0.97)


def test_artifact_refs_from_kfp_metadata() -> None:
    ref = ArtifactRef("iris-train-data", "dataset", "abc123", None)
    assert artifact_refs({"wandb_artifact": ref.to_dict()}, {}, None) == [ref]
    with pytest.raises(ConfigError, match="needs name, type and digest"):
        artifact_refs({"wandb_artifact": {"name": "x"}})
