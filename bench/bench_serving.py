"""How fast the model servers answer on this machine: our runtimes next to stock MLServer, one load generator.

Usage::

    python bench/bench_serving.py [--duration 15] [--rounds 3] [--connections 16] [--threads 2]
                                  [--batch-rows 1000] [--skip-seldon] [--json PATH] [--keep]

Measures, in one invocation, with the same load generator for every server (``wrk`` with a Lua script
that POSTs one fixed JSON body; ``--connections`` connections, ``--threads`` threads, ``--duration``
seconds per measurement, after a short warm-up run):

  (1) our default runtime (``v2``: the MLServer custom runtime of :mod:`kfp_mlops.serving.runtimes.mlserver`,
      started by :func:`~kfp_mlops.serving.local.servers.start_predictor`): single-row predictions, one V2
      input ``input-0`` FP64 ``[1, 4]``: throughput, p50 / p99 latency, non-2xx answers;
  (2) stock MLServer 1.7 (``python -m mlserver.cli.main start DIR``, the ``mlserver start`` command) with
      ``mlserver_sklearn.SKLearnModel`` and the same settings (``parallel_workers: 0``, ``debug: false``,
      127.0.0.1), the same V2 request, answering ``predict_proba`` (``predict_fn`` in its model settings).
      SKLearnModel decodes the request to a numpy array, which our pipeline (a ColumnTransformer that
      selects columns by name) refuses, so the stock server gets an equivalent pipeline: the same steps
      and hyper-parameters with the columns given by position, fitted on the same training rows as a
      numpy array (its probabilities are checked against ours);
  (3) the ``seldon`` runtime (Seldon Core's wrapper, Seldon protocol, ``.venv-seldon``), same load;
  (4) the in-process floor per single row: ``ServedModel.predict`` (validation + DataFrame + model),
      bare ``model.predict_proba`` on a one-row DataFrame, and the numpy pipeline on a [1, 4] array;
  (5) rows/s for a ``--batch-rows`` request (default 1,000 rows) to each server, with wrk at 2 connections.

All servers run at once and each ``--duration`` is split into ``--rounds`` interleaved rounds (the order
rotating), so load from elsewhere on the machine spreads over all of them. Also the servers' CPU time per
request (user + system of every process in the server's session, from /proc) and wrk's own CPU, since wrk
and the server share the machine's cores. Nothing asserts a time: the last lines are the target checks
(ours vs stock MLServer: single-row req/s and p99, batch rows/s and p99, server CPU per request).

Both MLServer servers run one process each (``parallel_workers: 0``, no adaptive batching of MLServer's own):
ours micro-batches concurrent small requests inside the runtime (``BATCH_WAIT_MS``, default 2 ms; see
:mod:`kfp_mlops.serving.runtimes.mlserver.batching`), which is part of what is measured.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.support.models: the serving tests' Iris model folder

TARGET_RATIO = 1.5  # single row, 16 connections: our req/s over stock MLServer's
TARGET_P99_MS = 50.0
TARGET_BATCH_RATIO = 1.2  # --batch-rows rows per request: our rows/s over stock MLServer's
TARGET_BATCH_P99_MS = 10.0
DEPLOYMENT = "iris"
WARMUP_S = 3
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
TICKS = os.sysconf("SC_CLK_TCK")

# Printed by wrk's done() hook: one JSON line with the summary and the latency percentiles (µs).
WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open("%(body)s", "rb"))
wrk.body = f:read("*a")
f:close()

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %%d, "duration_us": %%d, "bytes": %%d, "non2xx": %%d, "connect": %%d, ' ..
    '"read": %%d, "write": %%d, "timeout": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, ' ..
    '"max_us": %%d, "mean_us": %%.1f}\\n',
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


# --------------------------------------------------------------------------------------------------
# helpers


def _machine() -> dict[str, Any]:
    import mlserver
    import sklearn

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "mlserver": mlserver.__version__,
        "scikit-learn": sklearn.__version__,
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split(" [")[0].strip(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.now().isoformat(timespec="seconds"),
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, body: Any) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _session_cpu(sid: int) -> float:
    """CPU seconds (user + system) of every live process in session ``sid`` (a server and its helpers)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid:  # fields[0] is the state: session is field 6 of stat, utime 14, stime 15
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------------------------------
# models


def make_models(root: Path) -> dict[str, Any]:
    """Our model folder (as the serving tests write it) and the stock server's numpy-fitted equivalent."""
    import joblib
    import numpy as np
    from sklearn.base import clone

    from kfp_mlops.core.config import OUTSIDE_STORE_ENV
    from kfp_mlops.modeling.splitting import split_source
    from kfp_mlops.serving.model import MODEL_SHA256_ENV
    from tests.support.models import iris_model

    folder = iris_model(root / "model")
    # The benchmark serves a model folder outside any model store: the servers take it with the
    # opt-out and its checksum (the environment every server started here inherits).
    os.environ[OUTSIDE_STORE_ENV] = "1"
    os.environ[MODEL_SHA256_ENV] = hashlib.sha256((folder / "model.joblib").read_bytes()).hexdigest()
    ours = joblib.load(folder / "model.joblib")
    train = split_source("iris", "species", seed=0).train
    x = train[FEATURES].to_numpy(dtype=float)
    y = train["species"].to_numpy()
    # The same steps and hyper-parameters; the ColumnTransformer selects the columns by position.
    numpy_pipeline = clone(ours)
    preprocess = numpy_pipeline.named_steps["preprocess"]
    preprocess.set_params(
        transformers=[
            (name, transformer, [FEATURES.index(c) for c in columns])
            for name, transformer, columns in preprocess.transformers
        ]
    )
    numpy_pipeline.fit(x, y)
    import pandas as pd

    diff = float(np.abs(numpy_pipeline.predict_proba(x) - ours.predict_proba(pd.DataFrame(x, columns=FEATURES))).max())
    stock_dir = root / "stock"
    stock_dir.mkdir()
    joblib.dump(numpy_pipeline, stock_dir / "model.joblib")
    return {
        "folder": folder,
        "ours": ours,
        "numpy": numpy_pipeline,
        "rows": x.tolist(),
        "classes": [str(c) for c in numpy_pipeline.classes_],
        "train_proba_max_diff": diff,
    }


# --------------------------------------------------------------------------------------------------
# servers


class StockServer:
    """``mlserver start DIR`` with SKLearnModel, the same settings our runtime forces, in its own session."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        port = _free_port()
        settings = {
            "debug": False,
            "parallel_workers": 0,
            "host": "127.0.0.1",
            "http_port": port,
            "grpc_port": _free_port(),
            "metrics_port": _free_port(),
        }
        model = {
            "name": DEPLOYMENT,
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib", "extra": {"predict_fn": "predict_proba"}},
        }
        (folder / "settings.json").write_text(json.dumps(settings, indent=2))
        (folder / "model-settings.json").write_text(json.dumps(model, indent=2))
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVER_")}
        self.log_path = folder / "server.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mlserver.cli.main", "start", str(folder)],
                cwd=folder,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"stock MLServer exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/v2/models/{DEPLOYMENT}/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"stock MLServer not ready: {self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)

    def predict_path(self) -> str:
        return f"/v2/models/{DEPLOYMENT}/infer"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()


# --------------------------------------------------------------------------------------------------
# load


def v2_body(rows: list[list[float]]) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": [len(rows), len(rows[0])],
                "datatype": "FP64",
                "data": [v for row in rows for v in row],
            }
        ]
    }


def seldon_body(rows: list[list[float]]) -> dict[str, Any]:
    return {"data": {"ndarray": rows}}


def _probabilities(answer: dict[str, Any], seldon: bool) -> Any:
    """The ``[rows, classes]`` probabilities of a server's answer (Seldon protocol, or V2 with either output name)."""
    import numpy as np

    if seldon:
        return np.array(answer["jsonData"]["probabilities"])
    out = next(o for o in answer["outputs"] if o["name"] in ("probabilities", "predict_proba"))
    return np.array(out["data"]).reshape(out["shape"])


def run_wrk(
    url: str, body: Any, *, seconds: int, connections: int, threads: int, workdir: Path, name: str, sid: int
) -> dict[str, Any]:
    """One wrk run posting ``body``; returns its summary, percentiles, and the server's and wrk's CPU."""
    body_path = workdir / f"{name}.json"
    body_path.write_text(json.dumps(body))
    script = workdir / f"{name}.lua"
    script.write_text(WRK_LUA % {"body": body_path})
    command = [
        "wrk",
        "--latency",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    server_cpu, wrk_cpu = _session_cpu(sid), _children_cpu()
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    server_cpu, wrk_cpu = _session_cpu(sid) - server_cpu, _children_cpu() - wrk_cpu
    line = next(line for line in out.splitlines() if line.startswith("BENCH_JSON "))
    result = json.loads(line.removeprefix("BENCH_JSON "))
    seconds_run = result["duration_us"] / 1e6
    result.update(
        rps=result["requests"] / seconds_run,
        p50_ms=result["p50_us"] / 1000,
        p90_ms=result["p90_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        max_ms=result["max_us"] / 1000,
        socket_errors=result["connect"] + result["read"] + result["write"] + result["timeout"],
        server_cpu_s=round(server_cpu, 2),
        wrk_cpu_s=round(wrk_cpu, 2),
        server_cpu_ms_per_request=1000 * server_cpu / max(result["requests"], 1),
        wrk_output=out,
    )
    return result


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds of one server and request kind as one measurement.

    Throughput and CPU are pooled (all requests / all seconds); latency percentiles are the median
    over the rounds (wrk reports percentiles per run only), with the worst round's p99 beside them.
    """
    requests = sum(r["requests"] for r in runs)
    seconds = sum(r["duration_us"] for r in runs) / 1e6
    server_cpu = sum(r["server_cpu_s"] for r in runs)
    return {
        "rounds": runs,
        "requests": requests,
        "seconds": seconds,
        "rps": requests / seconds,
        "rps_rounds": [r["rps"] for r in runs],
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p90_ms": statistics.median(r["p90_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "p99_worst_ms": max(r["p99_ms"] for r in runs),
        "max_ms": max(r["max_ms"] for r in runs),
        "non2xx": sum(r["non2xx"] for r in runs),
        "socket_errors": sum(r["socket_errors"] for r in runs),
        "server_cpu_s": server_cpu,
        "wrk_cpu_s": sum(r["wrk_cpu_s"] for r in runs),
        "server_cpu_ms_per_request": 1000 * server_cpu / max(requests, 1),
    }


def bench_servers(targets: dict[str, dict[str, Any]], args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Every server warmed up, then ``--rounds`` interleaved rounds (rotating the order) per request kind.

    All servers are up for the whole measurement, so a burst of load from elsewhere on the machine
    spreads over all of them instead of landing on whichever server happened to be measured then.
    """
    labels = list(targets)
    share = max(1, round(args.duration / args.rounds))
    print(
        f"  warm-up {WARMUP_S} s each; then {args.rounds} rounds of {share} s per server: single row at "
        f"{args.connections} connections, then {args.batch_rows}-row batches at 2 connections",
        flush=True,
    )
    for t in targets.values():
        run_wrk(
            t["url"],
            t["single"],
            seconds=WARMUP_S,
            connections=args.connections,
            threads=args.threads,
            workdir=workdir,
            name="warm",
            sid=t["sid"],
        )
    results: dict[str, Any] = {label: {} for label in labels}
    for kind, connections in (("single", args.connections), ("batch", 2)):
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
        for round_ in range(args.rounds):
            for label in labels[round_ % len(labels) :] + labels[: round_ % len(labels)]:
                t = targets[label]
                runs[label].append(
                    run_wrk(
                        t["url"],
                        t[kind],
                        seconds=share,
                        connections=connections,
                        threads=min(args.threads, connections),
                        workdir=workdir,
                        name=f"{kind}",
                        sid=t["sid"],
                    )
                )
        for label in labels:
            results[label][kind] = combine(runs[label])
    for label in labels:
        results[label]["batch"]["rows_per_s"] = results[label]["batch"]["rps"] * args.batch_rows
    return results


# --------------------------------------------------------------------------------------------------
# (4) in process


def _per_call(fn: Any, calls: int = 300, repeat: int = 7) -> float:
    fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - started) / calls)
    return statistics.median(samples)


def in_process(models: dict[str, Any], batch_rows: list[list[float]]) -> dict[str, float]:
    import numpy as np
    import pandas as pd

    from kfp_mlops.serving.model import ServedModel

    served = ServedModel.load(str(models["folder"]))
    row = models["rows"][0]
    frame = pd.DataFrame([row], columns=FEATURES)
    array = np.array([row])
    batch = np.array(batch_rows)
    return {
        "served_predict_ms": 1000 * _per_call(lambda: served.predict([row])),
        "predict_proba_frame_ms": 1000 * _per_call(lambda: models["ours"].predict_proba(frame)),
        "predict_proba_numpy_ms": 1000 * _per_call(lambda: models["numpy"].predict_proba(array)),
        "served_predict_batch_ms": 1000 * _per_call(lambda: served.predict(batch_rows), calls=10),
        "predict_proba_numpy_batch_ms": 1000 * _per_call(lambda: models["numpy"].predict_proba(batch), calls=20),
    }


# --------------------------------------------------------------------------------------------------
# report


def _table(results: dict[str, dict[str, Any]], floor: dict[str, float], batch_rows: int, connections: int) -> str:
    lines = [
        f"single row, {connections} connections (req/s pooled over the rounds; latencies: median of the rounds):",
        f"{'server':<16} {'req/s':>6} {'rounds':>15} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'worst p99':>9}"
        f" {'non-2xx':>7} {'sock err':>8} {'srv CPU ms/req':>14}",
    ]
    for label, r in results.items():
        s = r["single"]
        rounds = "/".join(f"{x:.0f}" for x in s["rps_rounds"])
        lines.append(
            f"{label:<16} {s['rps']:>6.0f} {rounds:>15} {s['p50_ms']:>7.1f} {s['p90_ms']:>7.1f}"
            f" {s['p99_ms']:>7.1f} {s['p99_worst_ms']:>9.1f} {s['non2xx']:>7} {s['socket_errors']:>8}"
            f" {s['server_cpu_ms_per_request']:>14.2f}"
        )
    lines += [
        "",
        f"{batch_rows}-row batch, 2 connections:",
        f"{'server':<16} {'req/s':>6} {'rows/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'non-2xx':>7} {'srv CPU ms/req':>14}",
    ]
    for label, r in results.items():
        b = r["batch"]
        lines.append(
            f"{label:<16} {b['rps']:>6.1f} {b['rows_per_s']:>9,.0f} {b['p50_ms']:>7.1f} {b['p99_ms']:>7.1f}"
            f" {b['non2xx']:>7} {b['server_cpu_ms_per_request']:>14.2f}"
        )
    lines += ["", "in process (median per call):"]
    lines += [
        f"  {what:<68} {floor[key]:.3f} ms"
        for what, key in [
            ("ServedModel.predict, 1 row (validation + DataFrame + predict_proba):", "served_predict_ms"),
            ("model.predict_proba, 1-row DataFrame (our pipeline):", "predict_proba_frame_ms"),
            ("predict_proba, [1, 4] numpy array (stock server's pipeline):", "predict_proba_numpy_ms"),
        ]
    ]
    lines.append(
        f"  ServedModel.predict, {batch_rows} rows: {floor['served_predict_batch_ms']:.2f} ms"
        f" ({batch_rows / floor['served_predict_batch_ms'] * 1000:,.0f} rows/s);"
        f" numpy predict_proba, {batch_rows} rows: {floor['predict_proba_numpy_batch_ms']:.2f} ms"
    )
    return "\n".join(lines)


def _verdicts(results: dict[str, dict[str, Any]], batch_rows: int) -> str:
    """The target checks: ours (v2) against stock MLServer, single rows and batches, with CPU per request."""
    lines = []
    for kind, unit, ratio_target, p99_target in (
        ("single", "req/s", TARGET_RATIO, TARGET_P99_MS),
        ("batch", "rows/s", TARGET_BATCH_RATIO, TARGET_BATCH_P99_MS),
    ):
        ours, stock = results["ours (v2)"][kind], results["stock MLServer"][kind]
        rate = "rows_per_s" if kind == "batch" else "rps"
        ratio = ours[rate] / stock[rate]
        what = "single row" if kind == "single" else f"{batch_rows}-row batch"
        ours_cpu, stock_cpu = ours["server_cpu_ms_per_request"], stock["server_cpu_ms_per_request"]
        lines += [
            f"{what}: server CPU per request ours {ours_cpu:.2f} ms, stock MLServer {stock_cpu:.2f} ms"
            f" (capacity ratio {stock_cpu / ours_cpu:.2f}, less sensitive to other load)",
            f"{what}: ours {ours[rate]:,.0f} {unit} vs stock MLServer {stock[rate]:,.0f} {unit} (ratio {ratio:.2f},"
            f" rounds {'/'.join(f'{a / b:.2f}' for a, b in zip(ours['rps_rounds'], stock['rps_rounds']))})"
            f" — target >= {ratio_target:.1f}: {'OK' if ratio >= ratio_target else 'UNDER'};"
            f" p99 {ours['p99_ms']:.1f} ms (stock {stock['p99_ms']:.1f}) — target <= {p99_target:.0f} ms:"
            f" {'OK' if ours['p99_ms'] <= p99_target else 'OVER'}",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=15, help="seconds per wrk measurement (default 15)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections, single-row runs (default 16)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="split each --duration into this many interleaved rounds across the servers (default 3)",
    )
    parser.add_argument("--batch-rows", type=int, default=1000, help="rows in the batch request (default 1000)")
    parser.add_argument("--skip-seldon", action="store_true", help="leave out the seldon runtime")
    parser.add_argument("--json", type=Path, help="also write every number (and wrk's raw output) here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (models, server logs)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("error: wrk is not installed (make tools, or apt-get install wrk)", file=sys.stderr)
        return 2

    import numpy as np

    from kfp_mlops.serving.local.servers import start_predictor

    machine = _machine()
    print(
        f"machine: {machine['cpus']} cores, Python {machine['python']}, MLServer {machine['mlserver']}, "
        f"scikit-learn {machine['scikit-learn']}, {machine['wrk']}; load average {machine['loadavg_at_start']}"
    )
    root = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    started = time.monotonic()
    servers: list[Any] = []
    try:
        models = make_models(root)
        print(
            f"numpy pipeline for stock MLServer: max |Δ probability| vs ours on the training rows "
            f"{models['train_proba_max_diff']:.2e}"
        )
        row = models["rows"][0]
        batch_rows = [models["rows"][i % len(models["rows"])] for i in range(args.batch_rows)]
        floor = in_process(models, batch_rows)

        plan: list[tuple[str, Any]] = [
            (
                "ours (v2)",
                lambda: start_predictor(
                    protocol="v2",
                    model_uri=str(models["folder"]),
                    predictor="main",
                    deployment=DEPLOYMENT,
                    workdir=root / "v2",
                ),
            ),
            ("stock MLServer", lambda: StockServer(root / "stock")),
        ]
        if not args.skip_seldon:
            plan.append(
                (
                    "ours (seldon)",
                    lambda: start_predictor(
                        protocol="seldon",
                        model_uri=str(models["folder"]),
                        predictor="main",
                        deployment=DEPLOYMENT,
                        workdir=root / "seldon",
                    ),
                )
            )
        agreement: dict[str, float] = {}
        targets: dict[str, dict[str, Any]] = {}
        for label, start in plan:
            server = start()
            servers.append(server)
            seldon = getattr(server, "protocol", "v2") == "seldon"
            make_body = seldon_body if seldon else v2_body
            # The single row and the batch, each against the in-process numpy pipeline.
            agreement[label] = max(
                float(
                    np.abs(
                        _probabilities(_post(server.url + server.predict_path(), make_body(rows)), seldon)
                        - models["numpy"].predict_proba(np.array(rows))
                    ).max()
                )
                for rows in ([row], batch_rows)
            )
            targets[label] = {
                "url": server.url + server.predict_path(),
                "sid": server.process.pid,
                "single": make_body([row]),
                "batch": make_body(batch_rows),
            }
        idle = {label: _session_cpu(t["sid"]) for label, t in targets.items()}
        time.sleep(2)
        idle = {label: (_session_cpu(t["sid"]) - idle[label]) / 2 for label, t in targets.items()}
        print("  idle CPU of each server (s/s): " + ", ".join(f"{k} {v:.3f}" for k, v in idle.items()), flush=True)
        results = bench_servers(targets, args, root)
    finally:
        for server in servers:
            server.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    print()
    print(_table(results, floor, args.batch_rows, args.connections))
    print(
        "probabilities (single row and batch) vs the in-process numpy pipeline, max |Δ|: "
        + ", ".join(f"{k} {v:.1e}" for k, v in agreement.items())
    )
    print(
        f"whole benchmark: {time.monotonic() - started:.0f} s; load average at the end "
        f"{[round(x, 2) for x in os.getloadavg()]}" + (f"; kept {root}" if args.keep else "")
    )
    print()
    print(_verdicts(results, args.batch_rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine,
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "in_process": floor,
                    "servers": results,
                    "agreement": agreement,
                },
                indent=2,
            )
            + "\n"
        )
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
