"""Progress of local runs (kfp_mlops.app.local_run.watch_tasks), on real kfp.local pipelines.

Each pipeline here is two tiny lightweight components run by kfp.local's SubprocessRunner as
``kfp-mlops run`` runs them; the progress comes from kfp.local's own log records.
"""

# No `from __future__ import annotations`: kfp reads component signatures' real types.
import time
from pathlib import Path

import pytest
from kfp import dsl, local

from kfp_mlops.app.local_run import TaskProgress, watch_tasks


@dsl.component(base_image="python:3.11-slim", install_kfp_package=False)
def pause(seconds: float) -> float:
    """Waits, then answers how long."""
    import time

    time.sleep(seconds)
    return seconds


@dsl.component(base_image="python:3.11-slim", install_kfp_package=False)
def refuse(seconds: float) -> float:
    """Fails, as a task whose input is unfit does."""
    raise ValueError(f"refusing {seconds}")


@dsl.pipeline(name="two-steps")
def two_steps(first: float = 0.0, second: float = 1.0) -> None:
    """A short task, then a longer one after it."""
    short = pause(seconds=first)
    pause(seconds=second).after(short)


@dsl.pipeline(name="fails-second")
def fails_second() -> None:
    """A task that ends well, then one that fails."""
    short = pause(seconds=0.0)
    refuse(seconds=1.0).after(short)


@pytest.fixture(autouse=True)
def local_runner(tmp_path: Path) -> None:
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "runs"), raise_on_error=True)


def test_each_task_is_reported_as_it_ends() -> None:
    reports: list[tuple[float, TaskProgress]] = []
    with watch_tasks(lambda progress: reports.append((time.monotonic(), progress))):
        two_steps(first=0.0, second=1.5)
    finished = time.monotonic()

    assert [(p.task, p.state) for _, p in reports] == [("pause", "SUCCESS"), ("pause-2", "SUCCESS")]
    (first_at, first), (_, second) = reports
    assert finished - first_at >= 1.5  # reported while the second task still ran, not at the end
    assert second.seconds >= 1.5 and 0 < first.seconds < second.seconds


def test_a_failed_task_is_reported_failed() -> None:
    reports: list[TaskProgress] = []
    with pytest.raises(RuntimeError, match="refuse"), watch_tasks(reports.append):
        fails_second()

    assert [(p.task, p.state) for p in reports] == [("pause", "SUCCESS"), ("refuse", "FAILURE")]
    assert reports[1].seconds > 0


def test_the_watch_ends_with_its_block() -> None:
    reports: list[TaskProgress] = []
    with watch_tasks(reports.append):
        pass
    two_steps(first=0.0, second=0.0)
    assert reports == []
