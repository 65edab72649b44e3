"""Soak: minutes of steady load through the local stack's router, a shadow and the prediction log on.

Usage::

    python bench/bench_soak.py [--minutes 10] [--connections 16] [--window 60] [--json PATH] [--keep]

Serves Iris on the local stack as a rollout's shadow stage does -- the nginx router, the champion
``main`` answering every request, a challenger ``shadow`` receiving a mirrored copy through the
shadow relay, both v2 servers logging every prediction (``PREDICTION_LOG_URI``) -- and sends
single-row predictions through the router from ``--connections`` kept-alive Python client threads,
back to back, for ``--minutes``. It prints, with nothing asserted:

* requests, errors (non-200 answers and connection failures), throughput;
* p50 / p99 latency per ``--window`` seconds (does it drift as the minutes go by?);
* resident memory (VmRSS) of every process -- nginx master and workers, each model server, the
  relay -- after a warm-up, at its peak and at the end: growth over the soak;
* the prediction log once the writers flushed: every request id the router returned must be
  logged by ``main`` (lost = answered but not logged), the shadow's logged rows against what the
  relay forwarded, and each server's ``kfp_mlops_prediction_log_dropped_total``.

``--json PATH`` writes the figures (``tests/serving/test_soak.py`` runs one minute and checks them).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEPLOYMENT = "iris"
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
ROWS = ((5.1, 3.5, 1.4, 0.2), (6.2, 2.9, 4.3, 1.3), (7.7, 3.0, 6.1, 2.3), (5.8, 2.7, 5.1, 1.9))
WARM_UP_S = 10.0
SAMPLE_EVERY_S = 5.0


def _body(row: tuple[float, ...]) -> bytes:
    inputs = [{"name": n, "shape": [1], "datatype": "FP64", "data": [v]} for n, v in zip(FEATURES, row)]
    return json.dumps({"inputs": inputs}).encode()


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except OSError:
                continue
    return sorted(found)


def _processes(stack: Any) -> dict[str, int]:
    """Name -> pid of every process of the stack (nginx workers looked up again: a reload replaces them)."""
    master = stack.router.process.pid
    named = {"nginx master": master}
    named.update({f"nginx worker {i}": pid for i, pid in enumerate(_children(master))})
    named.update({f"server {name}": server.process.pid for name, server in stack.servers.items()})
    if stack.relay is not None:
        named["shadow relay"] = stack.relay.process.pid
    return named


def _dropped(metrics_url: str) -> float:
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("kfp_mlops_prediction_log_dropped_total")
    )


class Load:
    """Client threads posting predictions back to back; each answer's time, latency, status and request id."""

    def __init__(self, url: str, connections: int) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.address = (host, int(port))
        self.samples: list[tuple[float, float, int, str | None]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(connections)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def _client(self, number: int) -> None:
        connection = http.client.HTTPConnection(*self.address, timeout=30)
        bodies = [_body(row) for row in ROWS]
        sent = number
        path = f"/v2/models/{DEPLOYMENT}/infer"
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                connection.request(
                    "POST", path, body=bodies[sent % len(bodies)], headers={"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                response.read()
                sample = (started, time.monotonic() - started, response.status, response.getheader("X-Request-Id"))
            except (OSError, http.client.HTTPException):
                sample = (started, time.monotonic() - started, 0, None)
                connection.close()
                connection = http.client.HTTPConnection(*self.address, timeout=30)
            sent += 1
            with self.lock:
                self.samples.append(sample)
        connection.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def soak(minutes: float, connections: int, window_s: float, workdir: Path) -> dict[str, Any]:
    """Runs the soak in ``workdir``; returns its figures."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["PREDICTION_LOG_FLUSH_SECONDS"] = "0.5"
    from kfp_mlops.modeling.datasets import IRIS_LABEL, load_iris_frame
    from kfp_mlops.modeling.model_bundle import save_bundle
    from kfp_mlops.modeling.model_store import ModelStore
    from kfp_mlops.modeling.training import fit_model
    from kfp_mlops.serving.local.stack import LocalStack
    from kfp_mlops.serving.prediction_log import read_predictions
    from kfp_mlops.serving.spec import DeploymentSpec, PredictorSpec

    root, log = str(workdir / "store"), str(workdir / "prediction-log")
    store = ModelStore(root)
    frame = load_iris_frame()
    uris = {}
    for name, estimator in (("main", "logistic_regression"), ("shadow", "decision_tree")):
        model, metadata = fit_model(frame, IRIS_LABEL, estimator, {}, seed=0)
        saved = save_bundle(workdir / name, model, metadata)
        version = store.publish(
            "iris", workdir / name, profile_path=None, evaluation={"passed": True}, sha256=saved["model_sha256"]
        )
        uris[name] = version.uri
    spec = DeploymentSpec(
        DEPLOYMENT,
        (PredictorSpec("main", uris["main"], 100), PredictorSpec("shadow", uris["shadow"], 0, shadow=True)),
    )
    with LocalStack(workdir / "stack", prediction_log=log, store_root=root) as stack:
        stack.apply(spec)
        load = Load(stack.url, connections)
        started = time.monotonic()
        load.start()
        memory: dict[str, list[float]] = {}
        baseline: dict[str, float] = {}
        end = started + minutes * 60
        while (now := time.monotonic()) < end:
            time.sleep(min(SAMPLE_EVERY_S, max(0.0, end - now)))
            for name, pid in _processes(stack).items():
                rss = _rss_mib(pid)
                if rss is not None:
                    if time.monotonic() - started >= WARM_UP_S:
                        baseline.setdefault(name, rss)
                    memory.setdefault(name, []).append(rss)
        final = {name: _rss_mib(pid) for name, pid in _processes(stack).items()}
        load.finish()
        elapsed = time.monotonic() - started
        deadline = time.monotonic() + 30  # the relay forwards the copies it still holds
        while (relay := stack.relay_stats())["received"] > sum(relay[k] for k in ("forwarded", "dropped", "failed")):
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        time.sleep(2.0)  # the servers' writers flush every 0.5 s
        dropped = {name: _dropped(server.metrics_url) for name, server in stack.servers.items()}
    # The stack stopped: every writer wrote what it held at exit.
    logged = read_predictions(log)
    by_predictor = {p: set(frame["request_id"]) for p, frame in logged.groupby("predictor")}
    answered = {rid for _, _, status, rid in load.samples if status == 200 and rid}
    errors = sum(1 for _, _, status, _ in load.samples if status != 200)
    windows = []
    for start in range(0, int(minutes * 60), int(window_s)):
        latencies = [s[1] for s in load.samples if start <= s[0] - started < start + window_s]
        if latencies:
            windows.append(
                {
                    "from_s": start,
                    "requests": len(latencies),
                    "p50_ms": 1000 * statistics.median(latencies),
                    "p99_ms": 1000 * _percentile(latencies, 0.99),
                }
            )
    processes = {
        name: {
            "after_warm_up_mib": baseline.get(name, values[0]),
            "peak_mib": max(values),
            "end_mib": final.get(name) or values[-1],
            "growth_mib": (final.get(name) or values[-1]) - baseline.get(name, values[0]),
        }
        for name, values in memory.items()
    }
    return {
        "minutes": minutes,
        "connections": connections,
        "seconds": elapsed,
        "requests": len(load.samples),
        "errors": errors,
        "requests_per_s": len(load.samples) / elapsed,
        "windows": windows,
        "processes": processes,
        "answered": len(answered),
        "logged_main": len(by_predictor.get("main", set()) & answered),
        "lost": len(answered - by_predictor.get("main", set())),
        "logged_shadow": len(by_predictor.get("shadow", set())),
        "relay": relay,
        "log_dropped": dropped,
        "load_average": os.getloadavg(),
    }


def report(figures: dict[str, Any]) -> str:
    """The figures as text."""
    lines = [
        f"soak: {figures['seconds'] / 60:.1f} min through the router, {figures['connections']} connections, "
        f"shadow and prediction logging on (load average at the end {figures['load_average'][0]:.1f})",
        f"requests {figures['requests']}, errors {figures['errors']}, {figures['requests_per_s']:.0f} req/s",
        "",
        f"{'window from':>12} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8}",
    ]
    for window in figures["windows"]:
        lines.append(
            f"{window['from_s']:>11}s {window['requests']:>9} {window['p50_ms']:>8.1f} {window['p99_ms']:>8.1f}"
        )
    lines += ["", f"{'process':<16} {'after warm-up':>14} {'peak':>8} {'end':>8} {'growth':>8}  (MiB resident)"]
    for name, memory in figures["processes"].items():
        lines.append(
            f"{name:<16} {memory['after_warm_up_mib']:>14.1f} {memory['peak_mib']:>8.1f} "
            f"{memory['end_mib']:>8.1f} {memory['growth_mib']:>+8.1f}"
        )
    relay = figures["relay"]
    lines += [
        "",
        f"prediction log: answered {figures['answered']}, logged by main {figures['logged_main']}, "
        f"lost {figures['lost']}; shadow logged {figures['logged_shadow']}, the relay received "
        f"{relay.get('received', 0)} copies, forwarded {relay.get('forwarded', 0)}, dropped {relay.get('dropped', 0)}, "
        f"failed {relay.get('failed', 0)}; writers' dropped records {figures['log_dropped']}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the load runs (default 10)")
    parser.add_argument("--connections", type=int, default=16, help="client connections (default 16)")
    parser.add_argument("--window", type=float, default=60.0, help="seconds per latency window (default 60)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (stack logs, prediction log)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    os.environ["KFP_MLOPS_HOME"] = str(workdir / "home")
    try:
        figures = soak(args.minutes, args.connections, args.window, workdir)
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    print(report(figures))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    sys.exit(main())
