"""``kfp-mlops demo rollout``: a safe rollout of a fraud model, end to end on this machine.

1. Synthetic card transactions (:mod:`kfp_mlops.demos.fraud`); the **legacy** model is a logistic
   regression on :data:`~kfp_mlops.demos.fraud.LEGACY_FEATURES`, the **challenger** gradient boosting
   on every feature, both fitted by :func:`kfp_mlops.modeling.training.fit_model` and passed through the
   gate of :mod:`kfp_mlops.modeling.evaluation` (ROC AUC); a deliberately **poor** challenger (fitted on inverted
   labels) fails that gate and is rolled out anyway, to show the live guard.
2. :func:`kfp_mlops.rollout.compare_offline` on a holdout.
3. A stream of transactions (fraud enriched to about 10 %, so a stage needs hundreds rather than
   thousands of requests) replayed in batches through the local stack (router, v2 servers that
   log every prediction, shadow relay). Labels arrive one batch late (:func:`record_labels`), and
   the controller (:func:`kfp_mlops.rollout.controller.step`) runs after every batch.

The better challenger goes shadow -> canary -> promoted; the poor one is rolled back in the
shadow stage, having answered no client. The stages and decisions are printed, and plotted to
``rollout.png`` when matplotlib is installed.

One module of ~410 lines on purpose: a demo is one story read top to bottom (models, traffic,
scenarios, plot); split, a reader would jump between files.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from kfp_mlops.demos import fraud
from kfp_mlops.rollout import LiveConfig, StagePlan, compare_offline

DEPLOYMENT = "fraud"
PLAN = StagePlan(
    shadow=True,
    steps=(25, 100),
    min_labelled=300,
    min_positives=15,
    max_labelled=5000,
    max_error_rate=0.01,
    max_p99_latency_ms=2000.0,
    auc_pr_tolerance=0.02,
)
CONFIG = LiveConfig(bootstrap=400)
START = datetime(2026, 11, 2, tzinfo=timezone.utc)


def legacy_columns(frame: Any) -> Any:
    """The legacy model's inputs: it is served with every feature but uses only these."""
    return frame[list(fraud.LEGACY_FEATURES)]


class FailingModel:
    """A model that loads but fails every prediction (a challenger with a bug)."""

    def __init__(self, classes: Sequence[str]) -> None:
        import numpy as np

        self.classes_ = np.asarray(classes)

    def predict_proba(self, frame: Any) -> Any:
        raise RuntimeError("challenger bug: feature store lookup failed")

    def predict(self, frame: Any) -> Any:
        return self.predict_proba(frame)


@dataclass
class Models:
    """The models as versions of the demo's store (servers load nothing else), offline comparison, gate verdicts."""

    uris: dict[str, str]
    offline: dict[str, dict[str, float]]
    gates: dict[str, tuple[bool, list[str]]]
    store_root: str


def train_models(out: Path, *, rows: int = 30_000, seed: int = 0) -> Models:
    """Fits legacy, challenger, poor and failing models (stored in ``out/store``); compares them offline; gates them."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    from kfp_mlops.modeling.evaluation import evaluate
    from kfp_mlops.modeling.model_bundle import load_bundle, save_bundle
    from kfp_mlops.modeling.model_store import ModelStore
    from kfp_mlops.modeling.schema import feature_kinds
    from kfp_mlops.modeling.training import fit_model

    train = fraud.generate(
        rows, seed=seed, start=START - timedelta(days=14), label_delay=timedelta(days=2), span=timedelta(days=7)
    )
    holdout = fraud.generate(
        rows // 2, seed=seed + 1, start=START - timedelta(days=7), label_delay=timedelta(days=2), span=timedelta(days=7)
    )
    every = [*fraud.FEATURES, fraud.LABEL]
    kinds = feature_kinds(train[every], fraud.LABEL)

    legacy, legacy_meta = fit_model(
        train[[*fraud.LEGACY_FEATURES, fraud.LABEL]], fraud.LABEL, "logistic_regression", {"max_iter": 1000}, seed
    )
    selector = FunctionTransformer(legacy_columns).fit(train[list(fraud.FEATURES)])
    served_legacy = Pipeline([("legacy_features", selector), ("model", legacy)])
    challenger, challenger_meta = fit_model(train[every], fraud.LABEL, "gradient_boosting", {}, seed)
    shuffled = train[every].copy()  # inverted labels: it learns to flag the safest transactions
    shuffled[fraud.LABEL] = 1 - shuffled[fraud.LABEL].to_numpy()
    poor, poor_meta = fit_model(shuffled, fraud.LABEL, "logistic_regression", {"max_iter": 1000}, seed)

    uris: dict[str, str] = {}
    checksums: dict[str, str] = {}  # kept in memory from the save: the demo's record apart from the files
    for name, model, meta in (
        (
            "legacy",
            served_legacy,
            {
                **legacy_meta,
                "feature_names": list(fraud.FEATURES),
                "feature_kinds": kinds,
                "uses_features": list(fraud.LEGACY_FEATURES),
            },
        ),
        ("challenger", challenger, challenger_meta),
        ("poor", poor, poor_meta),
        ("failing", FailingModel(challenger_meta["classes"]), challenger_meta),
    ):
        folder = out / "models" / name
        saved = save_bundle(folder, model, {**meta, "training_data_uri": f"fraud.generate({rows}, seed={seed})"})
        uris[name], checksums[name] = str(folder), saved["model_sha256"]
    store = ModelStore(str(out / "store"))

    offline = compare_offline(
        {
            "legacy": (served_legacy, fraud.FEATURES),
            "challenger": (challenger, fraud.FEATURES),
            "poor": (poor, fraud.FEATURES),
        },
        holdout,
        label=fraud.LABEL,
    )
    test = holdout[every]
    legacy_bundle = load_bundle(uris["legacy"], sha256=checksums["legacy"])
    gates: dict[str, tuple[bool, list[str]]] = {}
    for name in ("legacy", "challenger", "poor"):
        champion = None if name == "legacy" else legacy_bundle
        result = evaluate(
            load_bundle(uris[name], sha256=checksums[name]),
            test,
            gate_metric="roc_auc",
            threshold=0.7,
            champion=champion,
            champion_version=None if champion is None else "legacy",
        )
        gates[name] = (bool(result.passed), list(result.reasons))
    # Registered as register does (with the checksum from the save): the servers load store versions only.
    registered = {
        name: store.publish(
            DEPLOYMENT,
            uri,
            profile_path=None,
            evaluation={"passed": gates[name][0], "reasons": gates[name][1]} if name in gates else {},
            sha256=checksums[name],
        ).uri
        for name, uri in uris.items()
    }
    return Models(registered, offline, gates, store.root)


def transaction_stream(n: int, *, seed: int = 7, fraud_share: float = 0.1) -> Any:
    """``n`` transactions in time order, with frauds enriched to ``fraud_share``."""
    import pandas as pd

    pool = fraud.generate(
        int(n / fraud_share * 1.2) + 100, seed=seed, start=START, label_delay=timedelta(days=3), span=timedelta(days=7)
    )
    frauds = pool[pool[fraud.LABEL] == 1]
    take = min(len(frauds), int(n * fraud_share))
    legit = pool[pool[fraud.LABEL] == 0].sample(n - take, random_state=seed)
    stream = pd.concat([frauds.sample(take, random_state=seed), legit]).sort_values(fraud.TIMESTAMP)
    return stream.reset_index(drop=True)


def request_body(row: Any) -> bytes:
    """A V2 inference request for one transaction, one named input per feature."""
    inputs = []
    for name in fraud.FEATURES:
        value = row[name]
        if isinstance(value, str):
            inputs.append({"name": name, "shape": [1], "datatype": "BYTES", "data": [value]})
        else:
            inputs.append({"name": name, "shape": [1], "datatype": "FP64", "data": [float(value)]})
    return json.dumps({"inputs": inputs}).encode()


@dataclass
class Answer:
    """One client request's outcome."""

    request_id: str
    status: int
    predictor: str | None
    score: float | None
    stage: str
    logged_id: str | None = None  # the id the servers logged it under (the router's X-Request-Id)


@dataclass
class Scenario:
    """One rollout replayed against a running local stack."""

    name: str
    challenger_uri: str
    legacy_uri: str
    stack: Any
    log_root: str
    state_uri: str
    plan: StagePlan = PLAN
    config: LiveConfig = CONFIG
    batch: int = 200
    threads: int = 4
    answers: list[Answer] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    before_batch: Callable[[Scenario, int], None] | None = None

    def run(self, stream: Any, *, max_batches: int, announce: Callable[[str], None] = print) -> str:
        """Starts the rollout and replays ``stream`` batch by batch until it ends; returns the final status."""
        from kfp_mlops.rollout import controller as rc
        from kfp_mlops.rollout.records import challenger_share
        from kfp_mlops.rollout.targets import LocalStackTarget
        from kfp_mlops.serving.prediction_log import record_labels

        base = rc.base_spec(DEPLOYMENT)
        target = LocalStackTarget(self.stack)
        started = rc.start(self.state_uri, self.plan, self.legacy_uri, self.challenger_uri, base=base, target=target)
        stage = started.stage
        announce(f"[{self.name}] rollout started at {stage}")
        pending: list[Any] = []  # batches whose labels are not known yet
        status = "running"
        for number in range(max_batches):
            rows = stream.iloc[number * self.batch : (number + 1) * self.batch]
            if rows.empty:
                break
            if self.before_batch is not None:
                self.before_batch(self, number)
            self.answers += self._send(rows, stage)
            time.sleep(0.6)  # the servers flush their prediction logs every 0.2 s
            if pending:
                labelled = pending.pop(0)
                now = datetime.now(timezone.utc)
                # Labels refer to the ids the servers logged, which the router returned; not the client's.
                logged = {a.request_id: a.logged_id for a in self.answers if a.logged_id}
                rids = [self._rid(r) for r in labelled[fraud.ID]]
                record_labels(
                    self.log_root,
                    [(logged[rid], int(y), now) for rid, y in zip(rids, labelled[fraud.LABEL]) if rid in logged],
                )
            pending.append(rows)
            result = rc.step(self.state_uri, self.log_root, base=base, target=target, config=self.config)
            served = Counter(a.predictor for a in self.answers[-len(rows) :])
            self.steps.append(
                {
                    "batch": number,
                    "stage": result.stage,
                    "action": result.action,
                    "next_stage": result.next_stage,
                    "reasons": list(result.reasons),
                    "served": dict(served),
                    "requests": len(rows),
                    "challenger_share": challenger_share(result.next_stage),
                }
            )
            if result.action != "hold":
                announce(
                    f"[{self.name}] batch {number}: {result.action} {result.stage} -> {result.next_stage}: "
                    f"{result.reasons[0]}"
                )
            stage = result.next_stage
            status = result.state.status
            if status != "running":
                break
        return status

    def _rid(self, transaction_id: str) -> str:
        return f"{self.name}-{transaction_id}"

    def _send(self, rows: Any, stage: str) -> list[Answer]:
        port = int(self.stack.url.rsplit(":", 1)[1])
        records = list(rows.to_dict("records"))
        chunks = [records[i :: self.threads] for i in range(self.threads)]

        def worker(chunk: list[dict[str, Any]]) -> list[Answer]:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            out = []
            for row in chunk:
                rid = self._rid(row[fraud.ID])
                try:
                    connection.request(
                        "POST",
                        f"/v2/models/{DEPLOYMENT}/infer",
                        body=request_body(row),
                        headers={"Content-Type": "application/json", "X-Request-Id": rid},
                    )
                    response = connection.getresponse()
                    body = response.read()
                    score = None
                    if response.status == 200:
                        doc = json.loads(body)
                        probabilities = next(o for o in doc["outputs"] if o["name"] == "probabilities")
                        classes = probabilities["parameters"]["classes"]
                        score = probabilities["data"][classes.index("1")]
                    predictor, logged_id = response.getheader("X-Predictor"), response.getheader("X-Request-Id")
                    out.append(Answer(rid, response.status, predictor, score, stage, logged_id))
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    out.append(Answer(rid, 0, None, None, f"{stage} ({type(exc).__name__})"))
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.close()
            return out

        with ThreadPoolExecutor(self.threads) as pool:
            return [answer for part in pool.map(worker, chunks) for answer in part]


def configure_logging_env() -> None:
    """The servers log predictions with a short flush period, scoring class "1"; one OpenMP thread.

    Gradient boosting's OpenMP threads cost tens of milliseconds per single-row prediction on a
    busy machine; one thread answers in about a millisecond.
    """
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("PREDICTION_LOG_FLUSH_SECONDS", "0.2")
    os.environ.setdefault("PREDICTION_LOG_POSITIVE_CLASS", "1")


def run_demo(
    out: Path | None = None, *, quick: bool = False, announce: Callable[[str], None] = print
) -> dict[str, Any]:
    """Trains, compares offline, and replays two rollouts (better, poor) on the local stack.

    Returns:
        Per scenario: final status, the steps (stage, action, reasons, served counts) and failed requests.
    """
    from kfp_mlops.serving.local.stack import LocalStack

    cleanup = out is None
    out = Path(tempfile.mkdtemp(prefix="kfp-mlops-rollout-")) if out is None else Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    configure_logging_env()
    store_before = os.environ.get("KFP_MLOPS_STORE")
    try:
        announce(
            "Training legacy (logistic regression, 4 features), challenger (gradient boosting, 10 features) "
            "and a poor challenger (inverted labels) ..."
        )
        models = train_models(out, rows=20_000 if quick else 30_000)
        announce("\nOffline comparison on a holdout:")
        for name, metrics in models.offline.items():
            announce(
                f"  {name:<11} AUC-PR {metrics['auc_pr']:.3f}  ROC AUC {metrics['roc_auc']:.3f}  "
                f"recall@1%FPR {metrics['recall_at_fpr']:.3f}  Brier {metrics['brier']:.4f}"
            )
        for name, (passed, reasons) in models.gates.items():
            announce(f"  gate {name:<11} {'PASSED' if passed else 'FAILED'}: {'; '.join(reasons)}")
        stream = transaction_stream(5000 if quick else 6000)
        results: dict[str, Any] = {}
        # The demo's store for the servers and the controller's in-process checks of the models.
        os.environ["KFP_MLOPS_STORE"] = models.store_root
        stack = LocalStack(out / "stack", prediction_log=str(out / "prediction-log"), store_root=models.store_root)
        with stack:
            for name in ("challenger", "poor"):
                announce(
                    f"\nLive rollout of {name} (plan: shadow, "
                    f"{', '.join(f'{s} %' for s in PLAN.steps)}; labels one batch late):"
                )
                scenario = Scenario(
                    name,
                    models.uris[name],
                    models.uris["legacy"],
                    stack,
                    str(out / "prediction-log"),
                    str(out / "rollouts" / f"{name}.json"),
                )
                status = scenario.run(stream, max_batches=len(stream) // scenario.batch, announce=announce)
                failed = sum(a.status != 200 for a in scenario.answers)
                served = sum(a.predictor == "challenger" for a in scenario.answers)
                announce(
                    f"  -> {status} after {len(scenario.steps)} batches; {len(scenario.answers)} requests, "
                    f"{failed} failed, {served} answered by the challenger"
                )
                results[name] = {
                    "status": status,
                    "steps": scenario.steps,
                    "failed": failed,
                    "challenger_answers": served,
                }
        plot = _plot(results, out / "rollout.png")
        if plot:
            announce(f"\nPlot: {plot}")
        (out / "demo.json").write_text(json.dumps(results, indent=2, default=str))
        return results
    finally:
        if store_before is None:
            os.environ.pop("KFP_MLOPS_STORE", None)
        else:
            os.environ["KFP_MLOPS_STORE"] = store_before
        if cleanup:
            shutil.rmtree(out, ignore_errors=True)


def _plot(results: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, axes = plt.subplots(len(results), 1, figsize=(8, 2.6 * len(results)), squeeze=False)
    for axis, (name, result) in zip(axes[:, 0], results.items()):
        batches = [s["batch"] for s in result["steps"]]
        shares = [s["challenger_share"] for s in result["steps"]]
        answered = [100 * s["served"].get("challenger", 0) / max(s["requests"], 1) for s in result["steps"]]
        axis.step(batches, shares, where="post", label="planned challenger share (%)")
        axis.plot(batches, answered, "o", label="answered by challenger (%)")
        for step in result["steps"]:
            if step["action"] != "hold":
                axis.annotate(step["action"], (step["batch"], step["challenger_share"]), fontsize=8)
        axis.set_title(f"{name}: {result['status']}")
        axis.set_ylim(-5, 105)
        axis.set_xlabel("batch")
        axis.legend(fontsize=7, loc="center right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
