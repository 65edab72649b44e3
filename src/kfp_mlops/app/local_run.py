"""Run a pipeline on this machine with ``kfp.local`` — the same compiled components as on a cluster.

Each task runs as a subprocess of the current Python (``SubprocessRunner(use_venv=False)``), so
the package must be installed here; nothing is pip-installed per task. Task output is written to
a log file (and echoed when asked); a failed task's one-line reason is read back from that log.

Progress comes from kfp.local's own log records ("Executing task 'x'", "Task 'x' finished with
status SUCCESS"), logged in this process between the task subprocesses: :func:`watch_tasks`
observes them with a filter on the root logger (kfp.local replaces the root logger's handlers for
each task, but leaves its filters alone) and reports each task's state and seconds as it ends.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kfp_mlops.app.compiling import pipeline_builders
from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import MlopsError

# The last line of a task's traceback for errors raised on purpose by this package (MlopsError and
# its subclasses, which live in core.errors and beside their domain, e.g. rollout.plan.InvalidPlan).
_TASK_ERROR = re.compile(r"kfp_mlops\.[\w.]+\.\w+: (?P<message>.+)$")
_FAILED_TASK = re.compile(r"Task '?(?P<task>[\w-]+)'? finished with status .*FAILURE")
_ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")  # kfp.local colours task names and states
_TASK_STARTED = re.compile(r"Executing task '(?P<task>[^']+)'")
_TASK_ENDED = re.compile(r"Task '(?P<task>[^']+)' finished with status (?P<state>\w+)")


@dataclass(frozen=True)
class TaskProgress:
    """One task of a local run that has ended."""

    task: str
    state: str  # kfp.local's status: SUCCESS or FAILURE
    seconds: float


class _TaskWatcher(logging.Filter):
    """Reads kfp.local's task records as they are logged, and lets every record through."""

    def __init__(self, report: Callable[[TaskProgress], None]) -> None:
        super().__init__()
        self._report = report
        self._started: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        text = _ANSI_COLOUR.sub("", str(record.msg))
        if started := _TASK_STARTED.match(text):
            self._started[started["task"]] = time.perf_counter()
        elif ended := _TASK_ENDED.match(text):
            self._end(ended["task"], ended["state"])
        return True

    def fail_running(self) -> None:
        """Reports the tasks that started and never ended (kfp.local raises instead of logging a failure)."""
        for task in list(self._started):
            self._end(task, "FAILURE")

    def _end(self, task: str, state: str) -> None:
        started = self._started.pop(task, None)
        self._report(TaskProgress(task, state, 0.0 if started is None else time.perf_counter() - started))


@contextlib.contextmanager
def watch_tasks(report: Callable[[TaskProgress], None]) -> Iterator[None]:
    """Calls ``report`` as each task of the kfp.local pipelines run meanwhile ends, failed ones included."""
    watcher = _TaskWatcher(report)
    root = logging.getLogger()
    root.addFilter(watcher)
    try:
        yield
    except BaseException:
        watcher.fail_running()
        raise
    finally:
        root.removeFilter(watcher)


@dataclass
class LocalRun:
    """Where a local pipeline run put its outputs.

    kfp.local writes each task's outputs to ``<run_dir>/<task>/``, a sub-pipeline's tasks too (the
    monitoring pipeline's training tasks sit beside its drift check), so task names are unique
    across a pipeline and its sub-pipelines.
    """

    pipeline: str
    run_dir: Path
    log_path: Path
    seconds: float
    arguments: dict[str, Any]
    tasks: list[str] = field(default_factory=list)

    def artifact(self, task: str, output: str) -> Path:
        """The file or folder of one task output."""
        return self.run_dir / task / output

    def ran(self, task: str) -> bool:
        """Whether ``task`` ran (a skipped branch leaves no folder)."""
        return task in self.tasks


class _Tee(io.TextIOBase):
    """Writes to a log file, and to the terminal too when ``echo``."""

    def __init__(self, log: io.TextIOBase, echo: bool) -> None:
        self._log, self._echo = log, echo

    def write(self, text: str) -> int:
        self._log.write(text)
        if self._echo and sys.__stdout__ is not None:
            sys.__stdout__.write(text)
        return len(text)

    def flush(self) -> None:
        self._log.flush()


def run_pipeline(
    name: str,
    arguments: Mapping[str, Any],
    *,
    settings: Settings,
    echo: bool = False,
    progress: Callable[[TaskProgress], None] | None = None,
) -> LocalRun:
    """Runs pipeline ``name`` locally with ``arguments``.

    Args:
        name: The pipeline.
        arguments: Its parameters (the rest take their defaults).
        settings: Where runs (``<home>/runs``) and task logs (``<home>/logs``) go.
        echo: Also show the tasks' output on the terminal.
        progress: Called as each task ends (while the terminal's output goes to the log: write
            to a stream taken before the call).

    Raises:
        MlopsError: the pipeline failed; the message names the failed task and its reason.
    """
    from kfp import local

    builders = pipeline_builders()
    if name not in builders:
        raise MlopsError(f"pipeline {name!r}: unknown; choose one of {', '.join(builders)}")
    pipeline = builders[name](kubernetes=False, retries=False)  # kfp.local would wait out every retry
    runs_root = settings.home / "runs"
    runs_root.mkdir(parents=True, exist_ok=True)
    before = set(runs_root.iterdir())
    log_path = settings.home / "logs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)

    # Tasks inherit the environment: their offline W&B runs land beside the run outputs.
    os.environ.setdefault("WANDB_DIR", str(settings.home))
    # A task attached to this process's wandb service (set by any wandb.init here) could exit
    # before the service wrote its run; with a service of its own, a task exits only once flushed.
    inherited_service = os.environ.pop("WANDB_SERVICE", None)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(runs_root), raise_on_error=True)
    started = time.perf_counter()
    with (
        open(log_path, "w") as log,
        contextlib.redirect_stdout(_Tee(log, echo)),
        warnings.catch_warnings(),
        watch_tasks(progress) if progress else contextlib.nullcontext(),
    ):
        # Expected locally: the component image and resource limits only matter on a cluster.
        warnings.filterwarnings("ignore", message=".*custom or non-Python base image", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner")
        try:
            pipeline(**arguments)
        except RuntimeError as exc:
            log.flush()
            raise MlopsError(_failure_reason(name, log_path, exc)) from None
        finally:
            if inherited_service:
                os.environ["WANDB_SERVICE"] = inherited_service
    seconds = time.perf_counter() - started
    created = sorted(set(runs_root.iterdir()) - before)
    if not created:
        raise MlopsError(f"pipeline {name}: finished but wrote no run folder under {runs_root}")
    run_dir = created[-1]
    # In the order they ran: each task folder is created when its task starts.
    tasks = [p.name for p in sorted((p for p in run_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)]
    return LocalRun(name, run_dir, log_path, seconds, dict(arguments), tasks)


def _failure_reason(pipeline: str, log_path: Path, exc: Exception) -> str:
    text = log_path.read_text(errors="replace")
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)  # kfp.local colours its log lines
    task = next((m["task"] for m in _FAILED_TASK.finditer(plain)), None)
    reasons = [m["message"].strip() for m in map(_TASK_ERROR.search, plain.splitlines()) if m]
    where = f" at task {task}" if task else ""
    reason = reasons[-1] if reasons else str(exc).splitlines()[0]
    return f"pipeline {pipeline} failed{where}: {reason} (log: {log_path})"


def read_json_output(run: LocalRun, task: str, output: str) -> Any:
    """Parses a task's JSON output file (e.g. register's ``registered``)."""
    return json.loads(run.artifact(task, output).read_text())
