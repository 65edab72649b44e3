"""How long a local (kfp.local) run of the training pipeline takes on this machine, and where the time goes.

Usage::

    python bench/bench_local_run.py [--repeat N] [--json PATH] [--keep]

Measures, in one invocation:

  (a) the wall time of the whole training pipeline on Iris (``run_pipeline``, in this process), N times,
      each in a fresh working folder and model store so every repeat does the same work; and the same
      end to end in a fresh interpreter (imports + compile + run + summary, what ``kfp-mlops run
      training`` does, compiled into the temp folder rather than the repository);
  (b) kfp.local's own cost per task: a pipeline of 5 chained no-op lightweight components
      (``install_kfp_package=False``, run without compiling), wall time / 5;
  (c) the time of each training task, from the timestamps in the kfp.local log: process start
      (until the executor logs "Looking for component"), body (until "Wrote executor output file":
      the component's imports, its work and its W&B run) and exit (until kfp.local logs the task as
      finished: interpreter shutdown and output collection);
  (d) the import cost of pandas + scikit-learn, wandb and kfp in a fresh interpreter.

Everything runs in a temporary folder (KFP_MLOPS_HOME, model store, W&B offline files) that is
deleted afterwards unless ``--keep``. W&B is forced offline. Nothing here asserts a time: the numbers
are printed, with one target check for the pipeline's median.
"""

# No `from __future__ import annotations`: kfp reads the no-op component's annotations as types.
import argparse
import contextlib
import io
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime
from pathlib import Path
from typing import Any

TARGET_S = 15.0
NOOP_TASKS = 5
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# kfp.local's own lines: "00:34:28.750 - INFO - Executing task 'ingest'" (local time of day).
_LOCAL_LINE = re.compile(r"^(?P<t>\d\d:\d\d:\d\d\.\d{3}) - \w+ - (?P<msg>.*)$")
_EXECUTING = re.compile(r"^Executing task '(?P<task>[^']+)'")
_FINISHED = re.compile(r"^Task '(?P<task>[^']+)' finished with status")
# The task process's own lines: "[KFP Executor 2026-11-26 00:34:28,786 INFO]: Looking for component ...".
_EXECUTOR_LINE = re.compile(r"\[KFP Executor (?P<t>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+\]: (?P<msg>.*)$")


# --------------------------------------------------------------------------------------------------
# environment


def _isolate(root: Path) -> None:
    """Points every setting at ``root`` and keeps W&B offline."""
    for var in ("KFP_MLOPS_STORE", "WANDB_SERVICE", "STORAGE_EMULATOR_HOST"):
        os.environ.pop(var, None)
    os.environ["KFP_MLOPS_HOME"] = str(root / "home")
    os.environ["WANDB_MODE"] = "offline"  # never online, even with WANDB_API_KEY set
    for var, sub in [
        ("WANDB_DIR", "wandb"),
        ("WANDB_DATA_DIR", "wandb-data"),
        ("WANDB_CACHE_DIR", "wandb-cache"),
        ("WANDB_CONFIG_DIR", "wandb-config"),
    ]:
        (root / sub).mkdir(parents=True, exist_ok=True)
        os.environ[var] = str(root / sub)


def _machine() -> dict[str, Any]:
    import kfp

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "kfp": kfp.__version__,
        "loadavg_at_start": [round(x, 2) for x in load] if load else None,
        "date": datetime.now().isoformat(timespec="seconds"),
    }


# --------------------------------------------------------------------------------------------------
# log parsing (c)


def _seconds_of_day(stamp: str, fmt: str) -> float:
    moment = datetime.strptime(stamp, fmt)
    return moment.hour * 3600 + moment.minute * 60 + moment.second + moment.microsecond / 1e6


def _elapsed(start: float, end: float) -> float:
    """``end - start`` in seconds of day, across midnight."""
    return (end - start) % 86400


def task_times(log_text: str) -> dict[str, dict[str, float]]:
    """Per task: total, start, body and exit seconds, from a kfp.local log.

    Tasks are assumed to run one after the other (true of a linear pipeline), so executor lines
    belong to the task whose "Executing task" line came last.
    """
    times: dict[str, dict[str, float]] = {}
    marks: dict[str, dict[str, float]] = {}
    current = None
    for raw in _ANSI.sub("", log_text).splitlines():
        line = raw.strip()
        local = _LOCAL_LINE.match(line)
        if local:
            t = _seconds_of_day(local["t"], "%H:%M:%S.%f")
            if m := _EXECUTING.match(local["msg"]):
                current = m["task"]
                marks[current] = {"executing": t}
            elif (m := _FINISHED.match(local["msg"])) and m["task"] in marks:
                marks[m["task"]]["finished"] = t
            continue
        executor = _EXECUTOR_LINE.search(line)
        if executor and current:
            t = _seconds_of_day(executor["t"], "%Y-%m-%d %H:%M:%S,%f")
            if executor["msg"].startswith("Looking for component"):
                marks[current].setdefault("looking", t)
            elif executor["msg"].startswith("Wrote executor output file"):
                marks[current]["wrote"] = t
    for task, m in marks.items():
        if "finished" not in m:
            continue
        entry = {"total": _elapsed(m["executing"], m["finished"])}
        if "looking" in m and "wrote" in m:
            entry["start"] = _elapsed(m["executing"], m["looking"])
            entry["body"] = _elapsed(m["looking"], m["wrote"])
            entry["exit"] = _elapsed(m["wrote"], m["finished"])
        times[task] = entry
    return times


def task_times_from_mtimes(run_dir: Path, started: float) -> dict[str, dict[str, float]]:
    """Fallback when the log format changes: each task ends when its executor_output.json is written."""
    ends = sorted((p.stat().st_mtime, p.parent.name) for p in run_dir.glob("*/executor_output.json"))
    times, previous = {}, started
    for end, task in ends:
        times[task] = {"total": end - previous}
        previous = end
    return times


# --------------------------------------------------------------------------------------------------
# (a) + (c) the training pipeline


def bench_training(root: Path, repeat: int) -> tuple[list[float], list[float], list[dict[str, dict[str, float]]]]:
    """Runs the training pipeline ``repeat`` times in fresh folders: wall times, run.seconds, task times."""
    from kfp import local  # noqa: F401 - imported before timing, like the CLI does

    from kfp_mlops.app.compiling import pipeline_builders
    from kfp_mlops.app.local_run import run_pipeline
    from kfp_mlops.core.config import Settings

    pipeline_builders()  # imports the components: not part of a run
    walls, reported, tasks = [], [], []
    for i in range(repeat):
        home = root / f"training-{i}"
        settings = Settings.from_env({"KFP_MLOPS_HOME": str(home)})
        started_epoch = time.time()
        started = time.perf_counter()
        run = run_pipeline("training", {"store_root": settings.store_root}, settings=settings)
        walls.append(time.perf_counter() - started)
        reported.append(run.seconds)
        per_task = task_times(run.log_path.read_text(errors="replace"))
        if not per_task:
            per_task = task_times_from_mtimes(run.run_dir, started_epoch)
        tasks.append(per_task)
        print(f"  training run {i + 1}/{repeat}: {walls[-1]:.2f} s ({len(run.tasks)} tasks)", flush=True)
    return walls, reported, tasks


_END_TO_END = textwrap.dedent("""
    import sys, time
    t0 = time.perf_counter()
    from kfp_mlops.app.compiling import compile_pipeline
    from kfp_mlops.core.config import Settings
    from kfp_mlops.app.local_run import run_pipeline
    from kfp_mlops.app.summary import render_summary
    settings = Settings.from_env()
    compiled = compile_pipeline("training", settings.home / "compiled")
    run = run_pipeline("training", {"store_root": settings.store_root}, settings=settings)
    render_summary(run, settings, compiled=[compiled.kfp_path, compiled.vertex_path])
    print(time.perf_counter() - t0)
""")


def bench_end_to_end(root: Path, repeat: int) -> list[float]:
    """The whole ``kfp-mlops run training`` path in a fresh interpreter, wall time seen from outside."""
    walls = []
    for i in range(repeat):
        env = dict(os.environ, KFP_MLOPS_HOME=str(root / f"end-to-end-{i}"))
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _END_TO_END], env=env, capture_output=True, text=True)
        walls.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"end-to-end run failed:\n{done.stderr[-3000:]}")
        print(f"  end-to-end run {i + 1}/{repeat}: {walls[-1]:.2f} s", flush=True)
    return walls


# --------------------------------------------------------------------------------------------------
# (b) kfp.local's per-task overhead


def _noop_pipeline():
    from kfp import dsl

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def noop(text: str) -> str:
        return text

    @dsl.pipeline(name="noop-chain")
    def noop_chain(text: str = "x"):
        task = noop(text=text)
        for _ in range(NOOP_TASKS - 1):
            task = noop(text=task.output)

    return noop_chain


def bench_noop(root: Path, repeat: int) -> tuple[list[float], list[dict[str, dict[str, float]]]]:
    """Runs 5 chained no-op components ``repeat`` times with kfp.local (no compile step)."""
    from kfp import local

    pipeline = _noop_pipeline()
    walls, tasks = [], []
    for i in range(repeat):
        local.init(
            runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root / "noop-runs"), raise_on_error=True
        )
        log = io.StringIO()
        started = time.perf_counter()
        with contextlib.redirect_stdout(log):
            pipeline()
        walls.append(time.perf_counter() - started)
        tasks.append(task_times(log.getvalue()))
        (root / f"noop-{i}.log").write_text(log.getvalue())
    print(f"  no-op chain: {', '.join(f'{w:.2f}' for w in walls)} s", flush=True)
    return walls, tasks


# --------------------------------------------------------------------------------------------------
# (d) import costs


IMPORTS = {
    "interpreter start (python -c pass)": ("", None),
    "pandas + sklearn.linear_model": ("import pandas, sklearn.linear_model", None),
    "wandb": ("import wandb", None),
    "kfp (full, as in the notebook/CLI)": ("import kfp", None),
    "kfp executor (in a task, _KFP_RUNTIME=true)": ("import kfp.dsl.executor_main", {"_KFP_RUNTIME": "true"}),
}


def bench_imports(repeat: int) -> dict[str, list[float]]:
    """Seconds each import takes in a fresh interpreter (measured inside it; the first row: process wall)."""
    results: dict[str, list[float]] = {}
    for label, (statement, extra_env) in IMPORTS.items():
        env = dict(os.environ, **(extra_env or {}))
        samples = []
        for _ in range(repeat):
            if not statement:
                started = time.perf_counter()
                subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
                samples.append(time.perf_counter() - started)
                continue
            code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
            done = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
            samples.append(float(done.stdout.strip().splitlines()[-1]))
        results[label] = samples
    print("  imports measured", flush=True)
    return results


# --------------------------------------------------------------------------------------------------
# report


def _stats(samples: list[float]) -> dict[str, float]:
    return {"min": min(samples), "median": statistics.median(samples), "max": max(samples), "n": len(samples)}


def _row(label: str, samples: list[float], width: int = 52) -> str:
    s = _stats(samples)
    return f"  {label:<{width}} {s['min']:7.2f} {s['median']:7.2f} {s['max']:7.2f}   (n={s['n']})"


def _header(title: str, width: int = 52) -> str:
    return f"\n{title}\n  {'':<{width}} {'min':>7} {'median':>7} {'max':>7}"


def _task_table(runs: list[dict[str, dict[str, float]]]) -> list[str]:
    """Median per task over the runs: total, start, body, exit."""
    order = list(runs[0]) if runs else []
    lines = [f"  {'task':<12} {'total':>7} {'start':>7} {'body':>7} {'exit':>7}   (median seconds)"]
    for task in order:
        cols = []
        for part in ("total", "start", "body", "exit"):
            values = [run[task][part] for run in runs if task in run and part in run[task]]
            cols.append(f"{statistics.median(values):7.2f}" if values else f"{'-':>7}")
        lines.append(f"  {task:<12} {' '.join(cols)}")
    sums = [sum(t["total"] for t in run.values()) for run in runs]
    if sums:
        lines.append(f"  {'sum':<12} {statistics.median(sums):7.2f}")
    return lines


def report(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"kfp.local benchmark: Python {m['python']}, kfp {m['kfp']}, {m['cpus']} CPUs, {m['platform']}",
        f"load average at start: {m['loadavg_at_start']}; repeats: {results['repeat']}",
    ]
    lines.append(_header("(a) training pipeline on Iris, wall seconds"))
    lines.append(_row("run_pipeline (in process, as the notebook)", results["training_wall"]))
    lines.append(_row("  of which LocalRun.seconds", results["training_reported"]))
    lines.append(_row("end to end in a fresh interpreter (like the CLI)", results["end_to_end_wall"]))

    noop = results["noop_wall"]
    lines.append(_header(f"(b) kfp.local overhead: {NOOP_TASKS} chained no-op components, seconds"))
    lines.append(_row("pipeline wall", noop))
    lines.append(_row("per task (wall / 5)", [w / NOOP_TASKS for w in noop]))
    starts = [t["start"] for run in results["noop_tasks"] for t in run.values() if "start" in t]
    if starts:
        lines.append(_row("  process start + kfp import, per task (from log)", starts))

    lines.append("\n(c) training tasks, from the kfp.local log timestamps")
    lines.append("    start: launch -> executor running; body: component imports + work + W&B run;")
    lines.append("    exit: output written -> kfp.local saw the task finish")
    lines += _task_table(results["training_tasks"])
    sums = [sum(t["total"] for t in run.values()) for run in results["training_tasks"]]
    gaps = [w - s for w, s in zip(results["training_wall"], sums)]
    lines.append(f"  {'outside':<12} {statistics.median(gaps):7.2f}   (wall - sum: W&B service start, orchestration)")

    lines.append(_header("(d) import cost in a fresh interpreter, seconds"))
    for label, samples in results["imports"].items():
        lines.append(_row(label, samples))

    median = statistics.median(results["training_wall"])
    verdict = "OK" if median <= TARGET_S else "OVER"
    lines.append(f"\ntraining pipeline on Iris: {median:.1f} s (target <= {TARGET_S:.0f} s): {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="repeats of each measurement (default 3)")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw numbers to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, runs)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    root = Path(tempfile.mkdtemp(prefix="kfp-mlops-bench-"))
    try:
        _isolate(root)
        results: dict[str, Any] = {"machine": _machine(), "repeat": args.repeat}
        print(f"working in {root}", flush=True)
        results["imports"] = bench_imports(args.repeat)
        results["noop_wall"], results["noop_tasks"] = bench_noop(root, args.repeat)
        results["training_wall"], results["training_reported"], results["training_tasks"] = bench_training(
            root, args.repeat
        )
        results["end_to_end_wall"] = bench_end_to_end(root, args.repeat)
        print()
        print(report(results))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=2) + "\n")
            print(f"raw numbers: {args.json}")
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
