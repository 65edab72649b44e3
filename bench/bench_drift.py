"""How fast and how lean the drift check is on a million rows, next to Evidently on the same data.

Usage::

    python bench/bench_drift.py [--rows N] [--repeat N] [--json PATH]

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
THRESHOLD = 0.2  # PSI threshold for both (Evidently's own default for PSI is 0.1)
TARGET_SECONDS, TARGET_RATIO = 1.0, 50.0


# --------------------------------------------------------------------------------------------------
# data


def _columns(rows: int, seed: int, shifted: set[str]) -> dict[str, Any]:
    """One side's columns; ``shifted`` columns get their scenario's change."""
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
    small = np.array(["a", "b", "c", "d", "e"], dtype=object)
    shares = [0.2, 0.2, 0.2, 0.2, 0.2] if "c_small" in shifted else [0.4, 0.25, 0.15, 0.12, 0.08]
    columns["c_small"] = rng.choice(small, rows, p=shares)
    large = np.array([f"k{j:02d}" for j in range(50)], dtype=object)
    weights = np.linspace(2.0, 1.0, 50) if "c_large" not in shifted else np.linspace(1.0, 2.0, 50)
    columns["c_large"] = rng.choice(large, rows, p=weights / weights.sum())
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per side (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of our check per scenario (median shown)")
    parser.add_argument("--json", type=Path, default=None, help="also write every sample to this file")
    parser.add_argument("--worker", choices=["ours", "evidently"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scenario", choices=SCENARIOS, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker == "ours":
        print(json.dumps(worker_ours(args.folder, args.scenario, args.repeat)))
        return
    if args.worker == "evidently":
        print(json.dumps(worker_evidently(args.folder, args.scenario)))
        return

    started = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average {load:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        folder = Path(tmp)
        setup = write_data(folder, args.rows)
        results: dict[str, dict[str, Any]] = {}
        for scenario in SCENARIOS:
            print(f"{scenario}: ours ...", flush=True)
            ours = _run_worker("ours", folder, scenario, args.repeat)
            print(f"{scenario}: Evidently ...", flush=True)
            results[scenario] = {"ours": ours, "evidently": _run_worker("evidently", folder, scenario, 1)}
    _print_results(args.rows, setup, results)
    print(f"\nbenchmark wall time: {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": args.rows, "setup": setup, "results": results}, indent=2))


if __name__ == "__main__":
    main()
