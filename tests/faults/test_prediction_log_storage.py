"""Fault: the prediction log's storage goes down, or fills up, while a v2 server answers 16 busy clients.

* **Down briefly**: the GCS emulator holding the log is killed and restarted 8 s later, within the
  storage client's retry deadline: every answer is served without delay and every answered
  request ends up in the log, none dropped.
* **Full**: the log is on a 1 MiB tmpfs that another file fills up, for longer than the writer's
  retries (5 attempts, backoff 1-8 s): answers are still served without delay; what could not be
  written is dropped and counted (``kfp_mlops_prediction_log_dropped_total`` and a warning in the
  server's log), so logged + dropped = answered exactly; once there is space again, new answers
  are logged.

The tmpfs needs root (``mount``); without it that case is skipped, saying so.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kfp_mlops.core import storage
from kfp_mlops.serving.local.servers import PredictorServer, start_predictor
from kfp_mlops.serving.prediction_log import read_predictions
from tests.faults.traffic import DEPLOYMENT, Traffic
from tests.serving.support import scrape, total
from tests.support.gcs_emulator import GcsEmulator
from tests.support.models import crown, iris_model

pytestmark = pytest.mark.slow
DROPPED = "kfp_mlops_prediction_log_dropped_total"
DOWN_S = 8.0  # how long the storage is down
SLOW_ANSWER_S = 5.0  # an answer that waited for the storage would wait until it is back (8 s), on a busy machine too


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A local model store with a champion Iris version: (store root, version folder)."""
    folder = tmp_path_factory.mktemp("store")
    root = str(folder / "store")
    version = crown(root, iris_model(folder / "model"))
    return root, f"{root}/models/iris/versions/{version}"


def _server(store: tuple[str, str], workdir: Path, log: str, env: dict[str, str] | None = None) -> PredictorServer:
    return start_predictor(
        protocol="v2",
        model_uri=store[1],
        predictor="main",
        deployment=DEPLOYMENT,
        workdir=workdir,
        prediction_log=log,
        store_root=store[0],
        env={"PREDICTION_LOG_FLUSH_SECONDS": "0.2", **(env or {})},
    )


def _logged(log: str) -> set[str]:
    return set(read_predictions(log)["request_id"])


def _wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout} s")
        time.sleep(0.2)


def test_storage_down_briefly_loses_nothing_and_delays_no_answer(
    store: tuple[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = GcsEmulator().start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    log = f"gs://log-{uuid.uuid4().hex[:12]}/prediction-log"
    storage.ensure_bucket(log)
    server = _server(store, tmp_path / "server", log, {"STORAGE_EMULATOR_HOST": emulator.url})
    try:
        with Traffic(server.url) as traffic:
            traffic.wait_for(300)  # the log is written to while the storage is up
            emulator.kill()
            down_at = time.monotonic()
            traffic.wait_for(len(traffic.outcomes) + 300)
            time.sleep(max(0.0, DOWN_S - (time.monotonic() - down_at)))
            emulator.start()
            traffic.wait_for(len(traffic.outcomes) + 300)
        answered = {o.request_id for o in traffic.outcomes if o.status == 200}
        _wait(lambda: _logged(log) >= answered, 60, "every answered request in the log")
        slowest = max(o.seconds for o in traffic.outcomes)
        dropped = total(scrape(server.metrics_url), DROPPED)
        print(
            f"\n{len(answered)} answered ({len(traffic.outcomes)} sent), storage down {DOWN_S:.0f} s: "
            f"slowest answer {slowest * 1000:.0f} ms, logged {len(_logged(log) & answered)}, dropped {dropped:.0f}"
        )
        assert traffic.statuses() == {200: len(traffic.outcomes)}
        assert slowest < SLOW_ANSWER_S
        assert dropped == 0
    finally:
        server.stop()
        emulator.stop()


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, unmounted afterwards."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    """Fills ``disk`` up with one file; returns it."""
    filler = disk / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:  # ENOSPC: full
            pass
    return filler


def test_storage_full_serves_every_answer_and_counts_every_lost_record(
    store: tuple[str, str], small_disk: Path, tmp_path: Path
) -> None:
    log = str(small_disk / "prediction-log")
    server = _server(store, tmp_path / "server", log)
    try:
        with Traffic(server.url) as traffic:
            traffic.wait_for(200)
        before = {o.request_id for o in traffic.outcomes}
        _wait(lambda: _logged(log) >= before, 30, "the first answers in the log")

        filler = _fill(small_disk)
        with Traffic(server.url) as during:
            during.wait_for(600)
        lost = {o.request_id for o in during.outcomes}
        _wait(lambda: total(scrape(server.metrics_url), DROPPED) >= len(lost), 60, "the lost records counted")

        filler.unlink()
        with Traffic(server.url) as after:
            after.wait_for(200)
        later = {o.request_id for o in after.outcomes}
        _wait(lambda: _logged(log) >= later, 30, "the answers after the outage in the log")

        outcomes = [*traffic.outcomes, *during.outcomes, *after.outcomes]
        logged, dropped = _logged(log), total(scrape(server.metrics_url), DROPPED)
        slowest = max(o.seconds for o in during.outcomes)
        print(
            f"\nanswered {len(outcomes)} (before {len(before)}, disk full {len(lost)}, after {len(later)}); "
            f"logged {len(logged)}, dropped {dropped:.0f}; slowest answer while full {slowest * 1000:.0f} ms"
        )
        assert {o.status for o in outcomes} == {200}
        assert slowest < SLOW_ANSWER_S
        assert logged.isdisjoint(lost) and dropped == len(lost)  # every loss counted, none silent
        assert logged == before | later
        assert "record(s) dropped" in server.log_path.read_text()
    finally:
        server.stop()
