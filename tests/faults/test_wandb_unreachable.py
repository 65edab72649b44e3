"""Fault: W&B is unreachable while a task runs online; the task falls back to offline and succeeds.

The train task runs in a process of its own, as kfp.local or a pod runs it, with an API key (so
W&B goes online) and ``WANDB_BASE_URL`` pointing at a closed loopback port: no network is ever
used. It must finish with its model, the run logged offline (``wandb sync`` uploads it later),
the reason in the run's config, a warning in the task's log, and within the init timeout
(``WANDB_INIT_TIMEOUT``, set short here; the package's default is 30 s) plus the task's own time.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kfp_mlops.modeling.datasets import write_parquet
from kfp_mlops.modeling.model_bundle import METADATA_FILE, MODEL_FILE
from kfp_mlops.modeling.splitting import split_source
from tests.support.wandb_offline import find_offline_runs, read_offline_run

INIT_TIMEOUT_S = 5
TASK = """
import sys
from kfp_mlops.components.train.logic import run_train
run_train(sys.argv[1], sys.argv[2], sys.argv[3], label="species", estimator="logistic_regression",
          hyperparameters={}, seed=0, training_data_uri="iris", pipeline_job_id="job-offline")
"""


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends: connections are refused


pytestmark = pytest.mark.slow


def test_the_task_falls_back_to_offline_and_succeeds(tmp_path: Path) -> None:
    train = tmp_path / "train.parquet"
    write_parquet(split_source("iris", "species", test_size=0.2, seed=0).train, train)
    env = {
        **os.environ,
        "WANDB_API_KEY": "f" * 40,  # a key: W&B goes online ...
        "WANDB_BASE_URL": f"http://127.0.0.1:{_closed_port()}",  # ... to a server that is not there
        "WANDB_INIT_TIMEOUT": str(INIT_TIMEOUT_S),
    }
    env.pop("WANDB_MODE", None)  # the tests' default (offline) would hide the fault
    started = time.monotonic()
    task = subprocess.run(
        [sys.executable, "-c", TASK, str(train), str(tmp_path / "model"), str(tmp_path / "profile.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    seconds = time.monotonic() - started
    print(f"\ntask exit {task.returncode} in {seconds:.1f} s; its log: {task.stderr.strip().splitlines()[-1:]}")
    assert task.returncode == 0, task.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [METADATA_FILE, MODEL_FILE]
    assert "W&B server unreachable" in task.stderr and "logged offline" in task.stderr

    (run_dir,) = find_offline_runs(Path(os.environ["WANDB_DIR"]))
    run = read_offline_run(run_dir)
    assert (run.job_type, run.name, run.exit_code) == ("train", "train-job-offline", 0)
    assert "connection refused" in run.config["wandb_offline_fallback"]
    assert run.artifacts and run.summary  # what the task logs is all there, offline
    assert seconds < 120, f"the fallback took {seconds:.0f} s"
