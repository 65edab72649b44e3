"""The soak benchmark's one-minute version: no error, no lost prediction, bounded memory growth.

Runs ``bench/bench_soak.py --minutes 1`` as a process (the router, a shadow, prediction logging on,
16 connections) and checks its figures; the 10-minute run and its numbers are in bench/README.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_soak.py"
GROWTH_MIB = 40.0  # per process over the minute after warm-up


def test_one_minute_soak_has_no_error_no_lost_prediction_and_bounded_memory(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    run = subprocess.run(
        [sys.executable, str(BENCH), "--minutes", "1", "--window", "15", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(run.stdout)
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["requests"] > 500 and figures["errors"] == 0
    assert figures["answered"] == figures["requests"] and figures["lost"] == 0
    assert figures["logged_main"] == figures["answered"]
    assert set(figures["log_dropped"].values()) == {0}
    names = set(figures["processes"])
    assert {"nginx master", "server main", "server shadow", "shadow relay"} <= names
    grown = {name: memory["growth_mib"] for name, memory in figures["processes"].items()}
    assert max(grown.values()) < GROWTH_MIB, grown
