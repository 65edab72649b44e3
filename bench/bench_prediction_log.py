"""The prediction log at scale: a rollout step's reading and a label import, Parquet vs the old JSON Lines log.

Usage::

    python bench/bench_prediction_log.py [--predictions 10000000] [--reference 1000000] [--days 10]
                                         [--window-hours 2] [--labels 1000000] [--batch 100000]

Data (seeded, generated into a temporary folder, deleted at the end): a shadow rollout -- every
request scored by ``legacy`` and ``challenger`` -- evenly over ``--days`` days (10M predictions:
~21k requests an hour), with an amount among the inputs, fraud labels (2 %) and scores that
separate them; a request is labelled 1 h to 3 days after its prediction, in time order.

* **new** (``--predictions``): written in the layout the writer and compaction leave (one segment
  per predictor and hour, through the package's own partition and segment functions); ``--labels``
  labels recorded through :func:`record_labels` in batches of ``--batch`` (each timed), then
  one more batch is measured;
* **old** (``--reference``, the same generator at a scale the old log handles): JSON Lines
  segments as the old writer named them, labels as one JSON Lines segment, read by a copy of the
  old module's readers kept here as the reference (:class:`OldLog`). The new log is measured at
  that scale too (``new@reference``), on the same data.

Measured, each in its own process (peak resident memory is that process's own):

* ``step``: what a rollout step does with the log -- ``join(root, as_of, since=stage start)`` over
  the last ``--window-hours`` hours, then :func:`compare_live` (default :class:`LiveConfig`:
  1000 bootstrap replicates) -- with the join's and the comparison's times apart;
* ``labels``: recording ``--batch`` more labels (checked against the log, written).

Also printed: the writer's cost on the serving thread (``log`` calls, median and p99 in
microseconds, over 100k records). Nothing is asserted; the last lines compare with the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

START = datetime(2026, 11, 1, tzinfo=timezone.utc)
PREDICTORS = ("legacy", "challenger")
TARGET_STEP_S, TARGET_STEP_MB, TARGET_LABELS_S = 30.0, 2048.0, 5.0


# --------------------------------------------------------------------------------------------------
# data


def _hour(rng: np.random.Generator, index: int, requests: int) -> dict[str, np.ndarray]:
    """One hour of requests: ids, times, amounts, the truth and both predictors' scores."""
    start = START + timedelta(hours=index)
    offsets = np.sort(rng.integers(0, 3_600_000_000, requests))  # microseconds into the hour
    fraud = rng.random(requests) < 0.02
    signal = rng.normal(size=requests)
    return {
        "request_id": np.array(
            [f"{index:06x}{n:010x}{x:016x}" for n, x in enumerate(rng.integers(0, 2**63, requests))]
        ),
        "timestamp": np.datetime64(start.replace(tzinfo=None), "us") + offsets.astype("timedelta64[us]"),
        "amount": np.round(rng.lognormal(3.5, 1.0, requests), 2),
        "fraud": fraud,
        "legacy": 1 / (1 + np.exp(-(3.0 * fraud + signal - 4.5))),
        "challenger": 1 / (1 + np.exp(-(3.6 * fraud + 0.8 * signal + rng.normal(scale=0.5, size=requests) - 4.5))),
    }


def generate(root: str, predictions: int, days: int, fmt: str, seed: int = 7) -> pd.DataFrame:
    """Writes the log's predictions; returns every request's (id, prediction time, fraud) for labels."""
    from kfp_mlops.serving.prediction_log.partitions import prediction_partition, write_segment
    from kfp_mlops.serving.prediction_log.records import PREDICTION_SCHEMA

    rng = np.random.default_rng(seed)
    hours = days * 24
    per_hour = predictions // len(PREDICTORS) // hours
    truth = []
    for index in range(hours):
        hour = _hour(rng, index, per_hour)
        truth.append(pd.DataFrame({k: hour[k] for k in ("request_id", "timestamp", "fraud")}))
        features = pc.binary_join_element_wise('{"amount": ', pa.array(hour["amount"]).cast(pa.string()), "}", "")
        for predictor in PREDICTORS:
            score = hour[predictor]
            columns = {
                "request_id": hour["request_id"],
                "client_request_id": None,
                "model_version": "v2" if predictor == "challenger" else "v1",
                "timestamp": pa.array(hour["timestamp"], pa.timestamp("us", tz="UTC")),
                "features": features,
                "score": score,
                "decision": np.where(score >= 0.5, "decline", "approve"),
                "latency_ms": rng.lognormal(np.log(4.0), 0.3, per_hour),
                "status": "ok",
                "error": None,
            }
            start = START + timedelta(hours=index)
            if fmt == "new":
                table = pa.table(
                    {k: v if not (v is None or isinstance(v, str)) else [v] * per_hour for k, v in columns.items()},
                    schema=PREDICTION_SCHEMA,
                )
                write_segment(f"{prediction_partition(root, predictor, start)}/bench-{index:05d}.parquet", table)
            else:
                OldLog.write_hour(root, predictor, columns, per_hour, index)
    return pd.concat(truth, ignore_index=True)


def label_batches(truth: pd.DataFrame, count: int, batch: int, seed: int = 8) -> list[pd.DataFrame]:
    """``count`` labels in time order, cut in batches, then one more batch (the measured import)."""
    rng = np.random.default_rng(seed)
    chosen = truth.sample(n=min(count + batch, len(truth)), random_state=seed)
    delay = rng.uniform(3_600, 3 * 86_400, len(chosen)).astype("int64").astype("timedelta64[s]")
    labels = pd.DataFrame(
        {
            "request_id": chosen["request_id"].to_numpy(),
            "label": chosen["fraud"].astype(int).to_numpy(),
            "labelled_at": (chosen["timestamp"].to_numpy() + delay).astype("datetime64[us]"),
        }
    ).sort_values("labelled_at", ignore_index=True)
    return [labels.iloc[i : i + batch] for i in range(0, len(labels), batch)]


def triples(labels: pd.DataFrame) -> list[tuple[str, int, datetime]]:
    """A batch as the API takes it."""
    at = pd.to_datetime(labels["labelled_at"]).dt.tz_localize("UTC").tolist()  # Timestamps: datetimes
    return list(zip(labels["request_id"].tolist(), labels["label"].astype(int).tolist(), at))


# --------------------------------------------------------------------------------------------------
# the old JSON Lines log: a copy of the old module's readers, the reference


class OldLog:
    """The JSON Lines log as it was: every reader opens every segment (a name's time skips old ones)."""

    @staticmethod
    def write_hour(root: str, predictor: str, columns: dict[str, Any], rows: int, index: int) -> None:
        """One hour of one predictor as one segment, named by its last record's time."""
        stamps = columns["timestamp"].to_pylist()
        lines = [
            json.dumps(
                {
                    "request_id": rid,
                    "predictor": predictor,
                    "model_version": columns["model_version"],
                    "timestamp": at.isoformat(),
                    "features": json.loads(f),
                    "score": float(s),
                    "decision": d,
                    "latency_ms": float(ms),
                    "status": "ok",
                    "error": None,
                }
            )
            for rid, at, f, s, d, ms in zip(
                columns["request_id"],
                stamps,
                columns["features"].to_pylist(),
                columns["score"],
                columns["decision"],
                columns["latency_ms"],
            )
        ]
        path = Path(root, "predictions", predictor, f"{max(stamps):%Y%m%dT%H%M%S%fZ}-bench000-{index:06d}.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")

    @staticmethod
    def write_labels(root: str, labels: pd.DataFrame) -> None:
        """Already recorded labels, as one segment."""
        at = pd.to_datetime(labels["labelled_at"]).dt.tz_localize("UTC")
        lines = [
            json.dumps({"request_id": r, "label": int(y), "labelled_at": t.isoformat()})
            for r, y, t in zip(labels["request_id"], labels["label"], at)
        ]
        path = Path(root, "labels", f"{at.max():%Y%m%dT%H%M%S%fZ}-bench000-000001.jsonl")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")

    @staticmethod
    def _segments(prefix: Path) -> list[Path]:
        return sorted(p for p in prefix.rglob("*.jsonl")) if prefix.is_dir() else []

    @staticmethod
    def _read(path: Path) -> list[dict[str, Any]]:
        return json.loads(b"[" + b",".join(path.read_bytes().splitlines()) + b"]")

    @classmethod
    def read_predictions(cls, root: str, since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
        rows: list[dict[str, Any]] = []
        for path in cls._segments(Path(root, "predictions")):
            stamp = datetime.strptime(path.name.split("-", 1)[0], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=timezone.utc)
            if since is not None and stamp < since:
                continue
            rows.extend(cls._read(path))
        frame = pd.DataFrame(rows)
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
        if since is not None:
            frame = frame[frame["timestamp"] >= since]
        if until is not None:
            frame = frame[frame["timestamp"] <= until]
        return frame.sort_values(["predictor", "timestamp", "request_id"], ignore_index=True)

    @classmethod
    def read_labels(cls, root: str) -> pd.DataFrame:
        rows = [row for path in cls._segments(Path(root, "labels")) for row in cls._read(path)]
        frame = pd.DataFrame(rows, columns=["request_id", "label", "labelled_at"])
        frame["labelled_at"] = pd.to_datetime(frame["labelled_at"], utc=True, format="ISO8601")
        return frame

    @classmethod
    def join(cls, root: str, as_of: datetime, since: datetime | None = None) -> pd.DataFrame:
        predictions = cls.read_predictions(root, since, as_of)
        labels = cls.read_labels(root)
        labels = labels[labels["labelled_at"] <= as_of]
        joined = predictions.merge(labels, on="request_id", how="left", validate="many_to_one")
        joined["label"] = joined["label"].astype(float)
        return joined

    @classmethod
    def record_labels(cls, root: str, labels: list[tuple[str, int, datetime]]) -> None:
        """The old check -- every prediction and every label read -- then one segment."""
        first_seen = cls.read_predictions(root).groupby("request_id")["timestamp"].min().to_dict()
        recorded = set(cls.read_labels(root)["request_id"])
        bad = [r for r, _, at in labels if r in recorded or r not in first_seen or at < first_seen[r]]
        if bad:
            raise ValueError(f"{len(bad)} labels refused")
        lines = [json.dumps({"request_id": r, "label": y, "labelled_at": at.isoformat()}) for r, y, at in labels]
        Path(root, "labels", "zz-import.jsonl").write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------------------------------
# measurements, each in a fresh process


def measure(what: str, fmt: str, root: str, since: str, as_of: str, labels_file: str) -> dict[str, float]:
    """One measurement in this process: seconds (and parts) and the peak resident memory."""
    from kfp_mlops.rollout.live import LiveConfig, compare_live
    from kfp_mlops.serving import prediction_log as plog

    started = time.perf_counter()
    found: dict[str, float] = {}
    if what == "step":
        window = (datetime.fromisoformat(since), datetime.fromisoformat(as_of))
        joined = (OldLog.join if fmt == "old" else lambda r, a, s: plog.join(r, a, since=s))(root, window[1], window[0])
        found["join_s"] = time.perf_counter() - started
        found["rows"] = len(joined)
        compare_live(joined, config=LiveConfig())
    else:
        batch = triples(pd.read_parquet(labels_file))
        (OldLog.record_labels if fmt == "old" else plog.record_labels)(root, batch)
        found["rows"] = len(batch)
    found["seconds"] = time.perf_counter() - started
    found["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return found


def in_process(what: str, fmt: str, root: str, since: datetime, as_of: datetime, labels_file: str) -> dict[str, float]:
    """:func:`measure` in a fresh interpreter."""
    command = [sys.executable, __file__, "--measure", what, "--format", fmt, "--root", root]
    command += ["--since", since.isoformat(), "--as-of", as_of.isoformat(), "--labels-file", labels_file]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def writer_cost(root: str, records: int = 100_000) -> tuple[float, float, float]:
    """Median and p99 microseconds of ``log`` on the caller's thread, and records/s until all are written."""
    from kfp_mlops.serving import prediction_log as plog

    rows = [
        plog.PredictionRecord(f"w{i}", "challenger", "v2", {"amount": 12.5}, 0.1, "approve", 3.0, "ok", START)
        for i in range(records)
    ]
    spent = np.empty(records)
    writer = plog.PredictionLogWriter(root, max_records=10_000, max_buffered=records + 1)
    started = time.perf_counter()
    for i, row in enumerate(rows):
        t = time.perf_counter()
        writer.log(row)
        spent[i] = time.perf_counter() - t
    writer.close()
    total = time.perf_counter() - started
    return float(np.median(spent) * 1e6), float(np.quantile(spent, 0.99) * 1e6), records / total


# --------------------------------------------------------------------------------------------------


def scale(name: str, fmt: str, root: str, predictions: int, args: argparse.Namespace) -> dict[str, Any]:
    """Generates one log, records its labels, and measures a step and a label import."""
    from kfp_mlops.serving import prediction_log as plog

    t = time.perf_counter()
    truth = generate(root, predictions, args.days, fmt)
    labels = label_batches(truth, round(args.labels * predictions / args.predictions), args.batch)
    generated = time.perf_counter() - t
    *present, last = labels
    batch_seconds = []
    if fmt == "new":
        for batch in present:
            t = time.perf_counter()
            plog.record_labels(root, triples(batch))
            batch_seconds.append(time.perf_counter() - t)
    elif present:
        OldLog.write_labels(root, pd.concat(present))
    labels_file = str(Path(root).parent / f"{name}-import.parquet")
    last.to_parquet(labels_file)
    as_of = START + timedelta(days=args.days)
    since = as_of - timedelta(hours=args.window_hours)
    print(f"  {name}: {predictions:,} predictions, {sum(map(len, present)):,} labels, generated in {generated:.0f} s")
    return {
        "name": name,
        "step": in_process("step", fmt, root, since, as_of, labels_file),
        "labels": in_process("labels", fmt, root, since, as_of, labels_file),
        "batches": batch_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--predictions", type=int, default=10_000_000)
    parser.add_argument("--reference", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--window-hours", type=float, default=2.0)
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--measure", choices=("step", "labels"))
    parser.add_argument("--format", choices=("old", "new"), default="new")
    parser.add_argument("--root", default="")
    parser.add_argument("--since", default="")
    parser.add_argument("--as-of", default="")
    parser.add_argument("--labels-file", default="")
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.format, args.root, args.since, args.as_of, args.labels_file)))
        return

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    work = Path(tempfile.mkdtemp(prefix="bench-plog-"))
    try:
        median_us, p99_us, per_s = writer_cost(str(work / "writer"))
        results = [
            scale("old@reference", "old", str(work / "old"), args.reference, args),
            scale("new@reference", "new", str(work / "small"), args.reference, args),
            scale("new", "new", str(work / "big"), args.predictions, args),
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\nwriter: log() on the serving thread median {median_us:.1f} us, p99 {p99_us:.1f} us; {per_s:,.0f} records/s"
    )
    print(f"window: the last {args.window_hours:g} h of {args.days} days; label import: {args.batch:,} labels\n")
    print("| log | window rows | join s | step s (join + compare) | step peak MB | label import s | import peak MB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        s, lab = r["step"], r["labels"]
        print(
            f"| {r['name']} | {s['rows']:,.0f} | {s['join_s']:.2f} | {s['seconds']:.2f} | {s['peak_mb']:.0f} "
            f"| {lab['seconds']:.2f} | {lab['peak_mb']:.0f} |"
        )
    big = results[-1]
    if big["batches"]:
        b = big["batches"]
        print(
            f"\nnew: {len(b)} label batches recorded: min {min(b):.2f} s, "
            f"median {statistics.median(b):.2f} s, max {max(b):.2f} s"
        )
    old, small = results[0], results[1]
    print(
        f"old vs new at {args.reference:,}: join {old['step']['join_s'] / small['step']['join_s']:.1f}x, "
        f"label import {old['labels']['seconds'] / small['labels']['seconds']:.1f}x faster"
    )
    step, labels = big["step"], big["labels"]
    ok = lambda good: "OK" if good else "MISSED"  # noqa: E731
    print(
        f"step on {args.predictions:,}: {step['seconds']:.1f} s (target <= {TARGET_STEP_S:.0f} s): "
        f"{ok(step['seconds'] <= TARGET_STEP_S)}; peak {step['peak_mb']:.0f} MB (target <= {TARGET_STEP_MB:.0f}): "
        f"{ok(step['peak_mb'] <= TARGET_STEP_MB)}"
    )
    print(
        f"label import of {args.batch:,}: {labels['seconds']:.2f} s (target <= {TARGET_LABELS_S:.0f} s): "
        f"{ok(labels['seconds'] <= TARGET_LABELS_S)}"
    )


if __name__ == "__main__":
    main()
