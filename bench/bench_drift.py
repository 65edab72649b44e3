"""How fast and how lean the drift check is: on a million rows next to Evidently, and from Parquet files.

Usage::

    python bench/bench_drift.py [--rows N] [--repeat N] [--json PATH] [--parts evidently,cli,scale]
        [--scale-rows N] [--scale-distinct N]

Three parts (``--parts``, default all of them), sharing the data below; that is why they are one
file of more than 400 lines.

Data: ``--rows`` (default 1,000,000) reference rows and as many current rows, 20 numeric columns
(normal, log-normal, exponential, Poisson counts, uniform) and 2 categorical ones (5 and 50
categories), in three scenarios:

* ``no-drift``: the current rows come from the same distributions (another seed);
* ``some-shifted``: 4 numeric columns and 1 categorical column clearly shifted, 1 numeric column
  shifted slightly (0.1 sd: neither check should care), the rest unchanged;
* ``all-shifted``: every column shifted.

For each scenario, in separate processes (so peak memory is each one's own):

* **ours**: :func:`kfp_mlops.drift.check_drift` against a profile built beforehand from the
  reference rows (the profile build is timed apart); median of ``--repeat`` runs;
* **Evidently** 0.7: ``Report([DataDriftPreset(num_method="psi", cat_method="psi", threshold=0.2)])``
  on the reference and current rows, once (it takes about a minute).

Printed: time of each (and the ratio), peak RSS of each process (ours: plus the tracemalloc peak
of one check; Evidently: plus the rise of the peak over the RSS once the data was loaded), and per
column the drifted / not-drifted decision of ours (PSI or KS/JS, and PSI alone) and Evidently's,
with their PSI values. Evidently's PSI bins both samples into equal-width
(Sturges) bins, ours the reference's quantile bins: the numbers differ; compare decisions. Data is
written once as Parquet into a temporary folder, deleted at the end. Nothing is asserted.

**cli**: ``kfp-mlops drift --reference profile.json --current some-shifted.parquet`` (1M x 22,
streamed), its wall time as a command (interpreter start and imports included; median of
``--repeat``) and peak RSS, beside an empty interpreter, the command's imports alone, pyarrow alone
reading the same file (batches of the same columns, in a fresh interpreter: its floor) and the
loaded path it replaced (``pandas.read_parquet`` + ``check_drift``, a fresh interpreter). The
printed verdict is compared with the loaded path's.

**scale**: ``--scale-rows`` (default 100M) rows of the ``some-shifted`` current data written as one
Parquet file (row groups of 1M rows, strings dictionary-encoded, snappy), through the same command:
its wall time and peak RSS next to pyarrow alone reading the same columns of the same file (before
and after ours: the page cache favours whichever reads second). The file is written by cycling
through ``--scale-distinct`` (default 10) generated 1M-row chunks, so generating it takes a minute,
not ten; reading and counting costs the same as for unique rows. The free space under the
temporary folder is checked first; when it cannot hold the file (plus 10%), the rows are scaled down
and a note says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

SCENARIOS = ("no-drift", "some-shifted", "all-shifted")
NUMERIC = [f"n{i:02d}" for i in range(20)]
CATEGORICAL = ["c_small", "c_large"]
LABEL = "y"
SMALL = ["a", "b", "c", "d", "e"]
LARGE = [f"k{j:02d}" for j in range(50)]
THRESHOLD = 0.2  # PSI threshold for both (Evidently's own default for PSI is 0.1)
TARGET_SECONDS, TARGET_RATIO = 1.0, 50.0
CLI_TARGET_SECONDS = 1.0
SCALE_TARGET_SECONDS, SCALE_TARGET_MB = 60.0, 1024.0
CHUNK_ROWS = 1_000_000
PARTS = ("evidently", "cli", "scale")


# --------------------------------------------------------------------------------------------------
# data


def _columns(rows: int, seed: int, shifted: set[str], *, as_codes: bool = False) -> dict[str, Any]:
    """One side's columns; ``shifted`` columns get their scenario's change; categories as their codes
    in ``SMALL``/``LARGE`` when ``as_codes``."""
    import numpy as np

    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for i, name in enumerate(NUMERIC):
        moved = name in shifted
        if i < 8:
            columns[name] = rng.normal(0.5 if moved else 0.0, 1.0, rows)
        elif i < 12:
            columns[name] = rng.lognormal(0.3 if moved else 0.0, 0.5, rows)
        elif i < 16:
            columns[name] = rng.exponential(1.6 if moved else 1.0, rows)
        elif i < 18:
            columns[name] = rng.poisson(4.0 if moved else 3.0, rows)
        else:
            columns[name] = rng.uniform(0.2 if moved else 0.0, 1.2 if moved else 1.0, rows)
    if "n01:slight" in shifted:
        columns["n01"] = columns["n01"] + 0.1
    shares = [0.2, 0.2, 0.2, 0.2, 0.2] if "c_small" in shifted else [0.4, 0.25, 0.15, 0.12, 0.08]
    weights = np.linspace(2.0, 1.0, 50) if "c_large" not in shifted else np.linspace(1.0, 2.0, 50)
    # Codes, then values: the same draws as rng.choice(values, rows, p=...), and Arrow can take them as they are.
    for name, values, p in (("c_small", SMALL, shares), ("c_large", LARGE, weights / weights.sum())):
        columns[name] = rng.choice(len(values), rows, p=p)
        if not as_codes:
            columns[name] = np.array(values, dtype=object)[columns[name]]
    columns[LABEL] = rng.integers(0, 2, rows)
    return columns


def _shifted(scenario: str) -> set[str]:
    if scenario == "no-drift":
        return set()
    if scenario == "some-shifted":
        return {"n00", "n08", "n12", "n16", "c_small", "n01:slight"}
    return {*NUMERIC, *CATEGORICAL}


def write_data(folder: Path, rows: int) -> dict[str, float]:
    """Writes reference.parquet, <scenario>.parquet and profile.json; returns timings."""
    import pandas as pd

    from kfp_mlops.modeling.profile import build_profile

    started = time.perf_counter()
    reference = pd.DataFrame(_columns(rows, 0, set()))
    reference.to_parquet(folder / "reference.parquet")
    for i, scenario in enumerate(SCENARIOS):
        pd.DataFrame(_columns(rows, 100 + i, _shifted(scenario))).to_parquet(folder / f"{scenario}.parquet")
    generated = time.perf_counter() - started
    started = time.perf_counter()
    kinds = {**dict.fromkeys(NUMERIC, "numeric"), **dict.fromkeys(CATEGORICAL, "categorical")}
    profile = build_profile(reference, kinds, LABEL)
    profile_seconds = time.perf_counter() - started
    (folder / "profile.json").write_text(json.dumps(profile))
    return {"generate_and_write_s": generated, "profile_s": profile_seconds}


# --------------------------------------------------------------------------------------------------
# workers (one process each)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker_ours(folder: Path, scenario: str, repeat: int) -> dict[str, Any]:
    import pandas as pd

    from kfp_mlops.drift import check_drift

    profile = json.loads((folder / "profile.json").read_text())
    current = pd.read_parquet(folder / f"{scenario}.parquet")
    loaded = _rss_mb()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        verdict = check_drift(profile, current)
        times.append(time.perf_counter() - started)
    peak_rss = _rss_mb()
    # The Parquet read's transient peak hides the check's own memory in ru_maxrss; numpy reports its
    # allocations to tracemalloc, so one more (untimed) run measures them.
    tracemalloc.start()
    check_drift(profile, current)
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return {
        "seconds": times,
        "rss_loaded_mb": loaded,
        "rss_peak_mb": peak_rss,
        "traced_peak_mb": traced_peak,
        "columns": {
            name: {
                "psi": f["psi"],
                "distance": f.get("ks", f.get("js")),
                "drifted": f["drifted"],
                "drifted_psi": f["psi"] >= THRESHOLD,
            }
            for name, f in verdict["features"].items()
        },
    }


def worker_evidently(folder: Path, scenario: str) -> dict[str, Any]:
    import pandas as pd

    started = time.perf_counter()
    from evidently import DataDefinition, Dataset, Report, __version__
    from evidently.presets import DataDriftPreset

    import_seconds = time.perf_counter() - started
    columns = NUMERIC + CATEGORICAL
    reference = pd.read_parquet(folder / "reference.parquet", columns=columns)
    current = pd.read_parquet(folder / f"{scenario}.parquet", columns=columns)
    loaded = _rss_mb()
    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    started = time.perf_counter()
    snapshot = Report([DataDriftPreset(num_method="psi", cat_method="psi", threshold=THRESHOLD)]).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    seconds = time.perf_counter() - started
    values = {
        metric["config"]["column"]: float(metric["value"])
        for metric in snapshot.dict()["metrics"]
        if metric["config"]["type"].endswith(":ValueDrift")
    }
    return {
        "version": __version__,
        "import_seconds": import_seconds,
        "seconds": [seconds],
        "rss_loaded_mb": loaded,
        "rss_peak_mb": _rss_mb(),
        # Evidently's PSI test: drift when psi >= threshold (legacy/calculations/stattests/psi.py).
        "columns": {name: {"psi": value, "drifted": value >= THRESHOLD} for name, value in values.items()},
    }


def worker_floor(path: Path) -> dict[str, Any]:
    """pyarrow alone: the file's feature columns in batches as the check reads them (its decoding threads), nothing
    done with them."""
    started = time.perf_counter()
    import pyarrow.parquet as pq

    from kfp_mlops.drift.window import BATCH_ROWS, READ_BUFFER_BYTES

    imported = time.perf_counter()
    # The check's read options (pages streamed): pyarrow's defaults pre-buffer every row group of the file.
    parquet = pq.ParquetFile(path, read_dictionary=CATEGORICAL, pre_buffer=False, buffer_size=READ_BUFFER_BYTES)
    rows = sum(b.num_rows for b in parquet.iter_batches(batch_size=BATCH_ROWS, columns=NUMERIC + CATEGORICAL))
    return {"read_seconds": time.perf_counter() - imported, "import_seconds": imported - started, "rows": rows}


def worker_loaded(folder: Path, scenario: str) -> dict[str, Any]:
    """The path the streamed command replaced: the whole window loaded with pandas, then checked."""
    started = time.perf_counter()
    from kfp_mlops.drift.check import check_drift
    from kfp_mlops.drift.inputs import load_data

    path, profile_path = folder / f"{scenario}.parquet", folder / "profile.json"
    profile = json.loads(profile_path.read_text())
    frame = load_data(str(path), "current data")
    verdict = check_drift(profile, frame, where=f"current data {path}", profile_where=str(profile_path))
    return {"seconds_in_process": time.perf_counter() - started, "verdict": verdict}


# Launches one command from a fresh, small interpreter and reports its wall time and peak RSS (wait4). Not
# from the benchmark's own process: a forked child's ru_maxrss starts at its parent's RSS (the parent
# holds generated data), and wait4 would report that.
_LAUNCHER = """
import json, os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[1:])
_, status, usage = os.wait4(child.pid, 0)
facts = {"seconds": time.perf_counter() - started, "rss_peak_mb": usage.ru_maxrss / 1024,
         "cpu_s": usage.ru_utime + usage.ru_stime, "code": os.waitstatus_to_exitcode(status)}
print(json.dumps(facts), file=sys.stderr)
"""


def _measured(command: list[str]) -> dict[str, Any]:
    """One command's wall time, its own peak RSS and its stdout (exit status 0, or 3: drift found)."""
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, *command], capture_output=True, text=True, check=False)
    facts = json.loads(done.stderr.strip().splitlines()[-1])
    if facts["code"] not in (0, 3):
        raise SystemExit(f"{command[:3]} failed ({facts['code']}):\n{done.stderr[-3000:]}")
    return {**facts, "stdout": done.stdout}


def _drift_command(folder: Path, current: Path) -> list[str]:
    script = Path(sys.executable).with_name("kfp-mlops")
    prefix = [str(script)] if script.exists() else [sys.executable, "-m", "kfp_mlops.cli"]
    return [*prefix, "drift", "--reference", str(folder / "profile.json"), "--current", str(current)]


def _worker_command(*arguments: str) -> list[str]:
    return [sys.executable, __file__, *arguments]


def _last_json(measured: dict[str, Any]) -> dict[str, Any]:
    return json.loads(measured["stdout"].strip().splitlines()[-1])


def measure_cli(folder: Path, repeat: int) -> dict[str, Any]:
    """The command on the 1M-row some-shifted file, and what it is measured against."""
    current = folder / "some-shifted.parquet"
    empty = [_measured([sys.executable, "-c", "pass"]) for _ in range(repeat)]
    imports = "import kfp_mlops.cli, kfp_mlops.app.drift_command, kfp_mlops.drift.streaming, pyarrow.parquet"
    imported = [_measured([sys.executable, "-c", imports]) for _ in range(repeat)]
    floor = [_measured(_worker_command("--worker", "floor", "--file", str(current))) for _ in range(repeat)]
    ours = [_measured(_drift_command(folder, current)) for _ in range(repeat)]
    loaded = _measured(_worker_command("--worker", "loaded", "--folder", str(folder), "--scenario", "some-shifted"))
    streamed_verdict, loaded_verdict = json.loads(ours[0]["stdout"]), _last_json(loaded)["verdict"]
    return {
        "python_s": [m["seconds"] for m in empty],
        "python_cpu_s": [m["cpu_s"] for m in empty],
        "imports_s": [m["seconds"] for m in imported],
        "imports_cpu_s": [m["cpu_s"] for m in imported],
        "floor_s": [m["seconds"] for m in floor],
        "floor_cpu_s": [m["cpu_s"] for m in floor],
        "floor_read_s": [_last_json(m)["read_seconds"] for m in floor],
        "floor_rss_mb": max(m["rss_peak_mb"] for m in floor),
        "ours_s": [m["seconds"] for m in ours],
        "ours_cpu_s": [m["cpu_s"] for m in ours],
        "ours_rss_mb": max(m["rss_peak_mb"] for m in ours),
        "loaded_s": loaded["seconds"],
        "loaded_cpu_s": loaded["cpu_s"],
        "loaded_rss_mb": loaded["rss_peak_mb"],
        "same_verdict": {k: streamed_verdict[k] for k in loaded_verdict} == loaded_verdict,
        "drift": streamed_verdict["drift"],
    }


def write_scale_file(folder: Path, rows: int, distinct: int) -> dict[str, Any]:
    """Writes scale.parquet: ``rows`` rows of the some-shifted data, scaled down to the free disk space."""
    import shutil

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    def chunk(seed: int) -> pa.Table:
        columns = _columns(CHUNK_ROWS, seed, _shifted("some-shifted"), as_codes=True)
        for name, values in (("c_small", SMALL), ("c_large", LARGE)):
            columns[name] = pa.DictionaryArray.from_arrays(columns[name].astype(np.int32), pa.array(values))
        return pa.table(columns)

    started = time.perf_counter()
    chunks = [chunk(1_000 + i) for i in range(max(1, min(distinct, -(-rows // CHUNK_ROWS))))]
    sink = pa.BufferOutputStream()
    pq.write_table(chunks[0], sink, use_dictionary=CATEGORICAL)
    bytes_per_row = sink.getvalue().size / CHUNK_ROWS
    free = shutil.disk_usage(folder).free
    note = ""
    if rows * bytes_per_row * 1.1 > free:
        fitting = max(CHUNK_ROWS, int(free / (bytes_per_row * 1.1)) // CHUNK_ROWS * CHUNK_ROWS)
        note = (
            f"NOTE: {rows:,} rows need ~{rows * bytes_per_row * 1.1 / 1e9:.1f} GB and {folder} has "
            f"{free / 1e9:.1f} GB free: scaled down to {fitting:,} rows"
        )
        print(note, flush=True)
        rows = fitting
    path = folder / "scale.parquet"
    with pq.ParquetWriter(path, chunks[0].schema, use_dictionary=CATEGORICAL) as writer:
        for start in range(0, rows, CHUNK_ROWS):
            part = chunks[(start // CHUNK_ROWS) % len(chunks)]
            writer.write_table(part.slice(0, min(CHUNK_ROWS, rows - start)), row_group_size=CHUNK_ROWS)
    return {
        "path": str(path),
        "rows": rows,
        "distinct_chunks": len(chunks),
        "bytes": path.stat().st_size,
        "write_s": time.perf_counter() - started,
        "note": note,
    }


def measure_scale(folder: Path, rows: int, distinct: int) -> dict[str, Any]:
    """The command on the large file, between two reads of pyarrow alone."""
    written = write_scale_file(folder, rows, distinct)
    path = Path(written["path"])
    print(f"scale: {written['rows']:,} rows, {written['bytes'] / 1e9:.1f} GB written in {written['write_s']:.0f} s")
    floor_command = _worker_command("--worker", "floor", "--file", str(path))
    floors = [_measured(floor_command)]
    print("scale: ours ...", flush=True)
    ours = _measured(_drift_command(folder, path))
    floors.append(_measured(floor_command))
    verdict = json.loads(ours["stdout"])
    path.unlink()
    return {
        **written,
        "floor_s": [m["seconds"] for m in floors],
        "floor_cpu_s": [m["cpu_s"] for m in floors],
        "floor_read_s": [_last_json(m)["read_seconds"] for m in floors],
        "floor_rss_mb": [m["rss_peak_mb"] for m in floors],
        "ours_s": ours["seconds"],
        "ours_cpu_s": ours["cpu_s"],
        "ours_rss_mb": ours["rss_peak_mb"],
        "verdict_rows": verdict["rows"],
        "drifted_features": verdict["drifted_features"],
        "drift": verdict["drift"],
    }


def _run_worker(kind: str, folder: Path, scenario: str, repeat: int) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--folder",
        str(folder),
        "--scenario",
        scenario,
        "--repeat",
        str(repeat),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} worker failed on {scenario}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------------------
# report


def _print_results(rows: int, setup: dict[str, float], results: dict[str, dict[str, Any]]) -> None:
    print(
        f"\n{rows:,} reference rows vs {rows:,} current rows; {len(NUMERIC)} numeric + {len(CATEGORICAL)} "
        f"categorical columns. Data generation + Parquet: {setup['generate_and_write_s']:.1f} s; "
        f"profile of the reference (ours, once): {setup['profile_s']:.2f} s\n"
    )
    print(
        "| scenario | ours: check (median) | Evidently: Report.run | ratio | ours: peak RSS (traced peak of "
        "the check) | Evidently: peak RSS (rise over loaded data) | decisions agree (ours PSI-or-KS/JS) "
        "| agree (ours PSI only) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for scenario in SCENARIOS:
        ours, theirs = results[scenario]["ours"], results[scenario]["evidently"]
        ours_s, theirs_s = statistics.median(ours["seconds"]), theirs["seconds"][0]
        agree = sum(ours["columns"][c]["drifted"] == theirs["columns"][c]["drifted"] for c in theirs["columns"])
        agree_psi = sum(ours["columns"][c]["drifted_psi"] == theirs["columns"][c]["drifted"] for c in theirs["columns"])
        print(
            f"| {scenario} | {ours_s:.2f} s | {theirs_s:.1f} s | {theirs_s / ours_s:.0f}x "
            f"| {ours['rss_peak_mb']:.0f} MB ({ours['traced_peak_mb']:.0f} MB) "
            f"| {theirs['rss_peak_mb']:.0f} MB (+{theirs['rss_peak_mb'] - theirs['rss_loaded_mb']:.0f}) "
            f"| {agree}/{len(theirs['columns'])} | {agree_psi}/{len(theirs['columns'])} |"
        )
    print(
        f"\nEvidently {results[SCENARIOS[0]]['evidently']['version']}: `import evidently` took "
        f"{results[SCENARIOS[0]]['evidently']['import_seconds']:.1f} s (not in the times above)."
    )
    for scenario in SCENARIOS[1:]:
        ours, theirs = results[scenario]["ours"], results[scenario]["evidently"]
        print(f"\n{scenario}: per column (PSI values differ by construction; D = KS or JS distance)\n")
        print("| column | ours PSI | ours D | ours drifted | Evidently PSI | Evidently drifted |")
        print("| --- | ---: | ---: | :---: | ---: | :---: |")
        for column in NUMERIC + CATEGORICAL:
            mine, other = ours["columns"][column], theirs["columns"][column]
            mark = "" if mine["drifted"] == other["drifted"] else " ≠"
            print(
                f"| {column} | {mine['psi']:.3f} | {mine['distance']:.3f} | {'yes' if mine['drifted'] else 'no'} "
                f"| {other['psi']:.3f} | {'yes' if other['drifted'] else 'no'}{mark} |"
            )
    # Medians over every scenario: one Evidently run per scenario is noisy on a shared machine.
    ours_s = statistics.median(t for r in results.values() for t in r["ours"]["seconds"])
    theirs_s = statistics.median(r["evidently"]["seconds"][0] for r in results.values())
    ratio = theirs_s / ours_s
    verdict = "OK" if ours_s <= TARGET_SECONDS and ratio >= TARGET_RATIO else "MISSED"
    print(
        f"\ndrift check on {rows:,} rows: {ours_s:.2f} s (target <= {TARGET_SECONDS:.0f} s), "
        f"{ratio:.0f}x faster than Evidently's {theirs_s:.0f} s (target >= {TARGET_RATIO:.0f}x): {verdict}"
    )


def _met(seconds: float, target: float, unit: str = "s") -> str:
    return (
        "OK" if seconds <= target else f"MISSED by {seconds - target:.2f} {unit} ({seconds / target:.2f}x the target)"
    )


def _print_cli(rows: int, cli: dict[str, Any]) -> None:
    med = statistics.median
    print(f"\nFrom Parquet through the command: {rows:,} rows x 22 features, some-shifted, against profile.json")
    print(f"(median of {len(cli['ours_s'])} runs each; wall time of the whole command)\n")
    print("| what | wall time | CPU (user + sys) | peak RSS |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| `python -c pass` | {med(cli['python_s']):.2f} s | {med(cli['python_cpu_s']):.2f} s | |")
    print(
        f"| the command's imports (kfp_mlops.cli, drift, pyarrow.parquet) | {med(cli['imports_s']):.2f} s "
        f"| {med(cli['imports_cpu_s']):.2f} s | |"
    )
    print(
        f"| pyarrow alone reads the 22 feature columns (fresh interpreter; the read itself) "
        f"| {med(cli['floor_s']):.2f} s ({med(cli['floor_read_s']):.2f} s) | {med(cli['floor_cpu_s']):.2f} s "
        f"| {cli['floor_rss_mb']:.0f} MB |"
    )
    print(
        f"| **`kfp-mlops drift`** (streamed) | **{med(cli['ours_s']):.2f} s** | {med(cli['ours_cpu_s']):.2f} s "
        f"| {cli['ours_rss_mb']:.0f} MB |"
    )
    print(
        f"| loaded path it replaced: `load_data` + `check_drift` (fresh interpreter) "
        f"| {cli['loaded_s']:.2f} s | {cli['loaded_cpu_s']:.2f} s | {cli['loaded_rss_mb']:.0f} MB |"
    )
    print(f"\nverdict printed by the command == the loaded path's verdict: {cli['same_verdict']}")
    ours = med(cli["ours_s"])
    print(
        f"kfp-mlops drift on {rows:,} rows from Parquet: {ours:.2f} s end to end (target <= "
        f"{CLI_TARGET_SECONDS:.0f} s): {_met(ours, CLI_TARGET_SECONDS)}"
    )


def _print_scale(scale: dict[str, Any]) -> None:
    if scale["note"]:
        print(f"\n{scale['note']}")
    floor = min(scale["floor_read_s"])
    print(
        f"\nFrom Parquet at scale: {scale['rows']:,} rows x 22 features (+ label), one file of "
        f"{scale['bytes'] / 1e9:.1f} GB ({scale['rows'] // CHUNK_ROWS} row groups cycling through "
        f"{scale['distinct_chunks']} generated ones), written in {scale['write_s']:.0f} s\n"
    )
    print("| what | wall time | CPU (user + sys) | peak RSS |")
    print("| --- | ---: | ---: | ---: |")
    for label, index in (("before", 0), ("after", 1)):
        print(
            f"| pyarrow alone reads the 22 feature columns ({label} ours; the read itself) "
            f"| {scale['floor_s'][index]:.1f} s ({scale['floor_read_s'][index]:.1f} s) "
            f"| {scale['floor_cpu_s'][index]:.1f} s | {scale['floor_rss_mb'][index]:.0f} MB |"
        )
    print(
        f"| **`kfp-mlops drift`** (streamed) | **{scale['ours_s']:.1f} s** | {scale['ours_cpu_s']:.1f} s "
        f"| **{scale['ours_rss_mb']:.0f} MB** |"
    )
    print(
        f"\nverdict: {scale['verdict_rows']:,} rows, drift {scale['drift']}, drifted "
        f"{', '.join(scale['drifted_features'])}; ours / pyarrow's faster read: {scale['ours_s'] / floor:.1f}x"
    )
    print(
        f"kfp-mlops drift on {scale['rows']:,} rows: {scale['ours_s']:.1f} s (target <= {SCALE_TARGET_SECONDS:.0f} s): "
        f"{_met(scale['ours_s'], SCALE_TARGET_SECONDS)}; peak RSS {scale['ours_rss_mb']:.0f} MB (target <= "
        f"{SCALE_TARGET_MB:.0f} MB): {_met(scale['ours_rss_mb'], SCALE_TARGET_MB, 'MB')}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per side (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of our check per scenario (median shown)")
    parser.add_argument("--json", type=Path, default=None, help="also write every sample to this file")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--scale-rows", type=int, default=100_000_000, help="rows of the scale file (default 100M)")
    parser.add_argument("--scale-distinct", type=int, default=10, help="distinct 1M-row chunks it cycles through")
    parser.add_argument("--worker", choices=["ours", "evidently", "floor", "loaded"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scenario", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker == "ours":
        print(json.dumps(worker_ours(args.folder, args.scenario, args.repeat)))
        return
    if args.worker == "evidently":
        print(json.dumps(worker_evidently(args.folder, args.scenario)))
        return
    if args.worker == "floor":
        print(json.dumps(worker_floor(args.file)))
        return
    if args.worker == "loaded":
        print(json.dumps(worker_loaded(args.folder, args.scenario)))
        return
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--parts: unknown {', '.join(unknown)}; known: {', '.join(PARTS)}")

    started = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average {load:.2f}")
    report: dict[str, Any] = {"rows": args.rows}
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        folder = Path(tmp)
        report["setup"] = setup = write_data(folder, args.rows)
        if "evidently" in parts:
            results: dict[str, dict[str, Any]] = {}
            for scenario in SCENARIOS:
                print(f"{scenario}: ours ...", flush=True)
                ours = _run_worker("ours", folder, scenario, args.repeat)
                print(f"{scenario}: Evidently ...", flush=True)
                results[scenario] = {"ours": ours, "evidently": _run_worker("evidently", folder, scenario, 1)}
            report["results"] = results
            _print_results(args.rows, setup, results)
        if "cli" in parts:
            print("cli: measuring ...", flush=True)
            report["cli"] = measure_cli(folder, args.repeat)
            _print_cli(args.rows, report["cli"])
        if "scale" in parts:
            report["scale"] = measure_scale(folder, args.scale_rows, args.scale_distinct)
            _print_scale(report["scale"])
    print(
        f"\nload average at the end {os.getloadavg()[0]:.2f}; "
        f"benchmark wall time: {time.perf_counter() - started:.0f} s"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
