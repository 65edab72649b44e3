"""``kfp-mlops demo lifecycle``: a year of seasonal traffic where a model changes only through one safe path.

drift -> retrain -> candidate -> shadow -> canary -> champion, every time, on the local stack:

1. An initial model learns a sample of the start week's season (the training pipeline, deployed
   ``single``: the first model of a name) and serves on the local stack (router, v2 model servers
   that log every prediction, shadow relay).
2. Every week, the week's shoppers arrive as single-row requests through the router; each answer
   carries the request id the server logged it under, and the purchases become known at the end of
   the week (delayed labels, recorded in the prediction log against those ids). The week's export
   is written to the windows folder, which is also the retrain's history.
3. While a rollout runs, the scheduled **rollout pipeline** runs once a week (kfp.local, target
   ``local``): it compares the candidate with the champion on the logged, labelled traffic and
   promotes it a stage (shadow -> canary -> champion), holds, or rolls it back. Only its
   promotion moves the champion pointer.
4. The drift check and the retrain policy (:func:`kfp_mlops.drift.run_drift`, the drift_check
   component's code) judge the week's export against the champion; when the policy warrants a
   retrain and no rollout is running, the **monitoring pipeline** runs on the export: the same
   check, the training sub-pipeline retraining the champion (incremental or full, on the window and
   its recent same-regime history), the gate, a candidate, and a rollout started in shadow
   (``deploy_mode`` ``rollout``, the default). A warranted retrain while a rollout runs waits for
   it (``deferred``).
5. One week's export is corrupted on purpose (``corrupted_week``: basket values in cents and the
   purchase flag inverted by a bad join). The drift check sees a huge drop, the retrain learns the
   corrupted export, and the gate passes it (its test rows are as corrupted); the rollout's shadow
   stage, on real traffic, rolls it back: the candidate is marked rejected, the champion never
   changes, and no client ever got one of its answers.

After each pipeline run or rollout step the demo applies the deployment spec the pipeline wrote
(the file ``kfp-mlops serve`` watches) to its stack, as ``kfp-mlops serve`` would.

Outputs in the work folder (kept; the paths are printed): ``weeks.csv`` (one row per week),
``lifecycle.png`` (drift, estimated vs realized accuracy, retrain kinds and each model's traffic
share per week), the windows under ``windows/``, the store and its prediction log under ``store/``.

One module of ~450 lines on purpose: a demo is one story read top to bottom.
"""

from __future__ import annotations

import http.client
import json
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfp_mlops.app.local_run import run_pipeline
from kfp_mlops.app.summary import retrain_outcome
from kfp_mlops.core.errors import ConfigError, MlopsError
from kfp_mlops.demos import ecommerce
from kfp_mlops.demos.drift import season_weeks, window_frame
from kfp_mlops.demos.rollout import configure_logging_env

if TYPE_CHECKING:
    import pandas as pd

    from kfp_mlops.core.config import Settings
    from kfp_mlops.serving.local.stack import LocalStack

PLAN = {
    "shadow": True,
    "steps": [50, 100],
    "min_labelled": 400,
    "min_positives": 40,
    "max_labelled": 20_000,
    "max_p99_latency_ms": 2000.0,  # a busy laptop; the guardrail still catches a stalled server
    "auc_pr_tolerance": 0.02,
    "min_final_auc_pr_gain": -0.02,  # a retrain must not be worse by more than this to take all traffic
}
"""The rollout plan of every retrain: shadow, then half the traffic, then all of it."""
LIVE_CONFIG = {"bootstrap": 300}
CORRUPTED_SCALE = 100.0  # basket values exported in cents
TABLE_COLUMNS = (
    "week",
    "season",
    "champion",
    "drift",
    "mean_psi",
    "estimated_accuracy",
    "realized_accuracy",
    "live_accuracy",
    "decision",
    "retrain_kind",
    "candidate",
    "rollout",
    "failed_requests",
    "traffic",
)


@dataclass(frozen=True)
class LifecycleConfig:
    """What the demo simulates.

    Attributes:
        weeks: Weeks to simulate from ``start_week`` (at most to week 51).
        start_week: The first week; the initial model learns a sample of that week's season.
        rows_per_week: Requests (shoppers) per week, and rows per week of the initial sample.
        corrupted_week: The week whose export is corrupted (None: none); its retrain must be rolled back.
        seed: Seed of the data (the initial sample uses ``seed + 1000``).
        model_name: The registered model's name.
        deployment: The deployment's name on the local stack.
        threshold: The gate's accuracy threshold.
        max_regression: How much worse than the champion, on the same test rows, a retrain may be.
        retrain_policy: :class:`kfp_mlops.drift.RetrainPolicy` fields.
        threads: Concurrent client connections sending the week's requests.
    """

    weeks: int = 52
    start_week: int = 0
    rows_per_week: int = 1_500
    corrupted_week: int | None = 28
    seed: int = 0
    model_name: str = "shop"
    deployment: str = "shop"
    threshold: float = 0.6
    max_regression: float = 0.02
    retrain_policy: dict[str, Any] = field(default_factory=dict)
    threads: int = 4

    def check(self) -> None:
        """Raises ConfigError naming a week range outside the year, a bad size or policy."""
        from kfp_mlops.drift import RetrainPolicy

        ecommerce.check_weeks(self.start_week, self.weeks)
        end = self.start_week + self.weeks - 1
        if self.corrupted_week is not None and not self.start_week < self.corrupted_week <= end:
            raise ConfigError(f"corrupted week {self.corrupted_week}: expected a week in {self.start_week + 1}..{end}")
        if self.rows_per_week < 500:
            raise ConfigError(f"rows_per_week={self.rows_per_week}: expected at least 500 (a stage needs labels)")
        if self.threads < 1:
            raise ConfigError(f"threads={self.threads}: expected at least 1")
        RetrainPolicy.from_dict(self.retrain_policy)


@dataclass
class Week:
    """One simulated week: what the monitoring saw and decided, and who served the traffic."""

    week: int
    season: str
    champion: str
    drift: bool
    mean_psi: float
    estimated_accuracy: float | None
    realized_accuracy: float | None
    live_accuracy: float
    decision: str
    corrupted: bool = False
    retrain_kind: str | None = None
    candidate: str | None = None
    rollout: str | None = None  # the rollout's stage or outcome after this week's step
    failed_requests: int = 0
    traffic: dict[str, float] = field(default_factory=dict)  # model version -> share of the answers


@dataclass
class LifecycleResult:
    """The whole run: one entry per week and where the outputs are."""

    config: LifecycleConfig
    workdir: Path
    store_root: str
    initial_version: str
    weeks: list[Week]
    table_path: Path
    plot_path: Path
    seconds: float

    def table(self) -> pd.DataFrame:
        """One row per week."""
        import pandas as pd

        rows = [{k: v for k, v in asdict(w).items() if k in TABLE_COLUMNS} for w in self.weeks]
        for row in rows:
            row["traffic"] = ", ".join(f"{v} {share:.0%}" for v, share in row["traffic"].items())
        return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))

    @property
    def failed_requests(self) -> int:
        """Client requests that did not get a 200, over the whole run."""
        return sum(w.failed_requests for w in self.weeks)


def run_demo(
    config: LifecycleConfig,
    *,
    settings: Settings,
    workdir: Path | None = None,
    announce: Callable[[str], None] = print,
) -> LifecycleResult:
    """Runs the year (see the module docstring) and writes the table and the plot.

    Args:
        config: What to simulate.
        settings: Where the pipelines' runs go and the local deployment spec is written.
        workdir: The work folder (default ``<home>/demo-lifecycle``; kept).
        announce: Called with one line per step.

    Raises:
        ConfigError: a bad config; MlopsError: a pipeline or the local stack failed.
    """
    from kfp_mlops.drift import DriftConfig, RetrainPolicy
    from kfp_mlops.modeling.model_store import ModelStore
    from kfp_mlops.rollout.state import default_log_root, default_state_uri
    from kfp_mlops.serving.local.stack import LocalStack

    config.check()
    configure_logging_env()
    workdir = (workdir or settings.home / "demo-lifecycle").resolve()
    windows = workdir / "windows"
    windows.mkdir(parents=True, exist_ok=True)
    store_root = str(workdir / "store")
    started = time.perf_counter()
    world = _World(
        config=config,
        settings=settings,
        store=ModelStore(store_root),
        windows=windows,
        state_uri=default_state_uri(store_root, config.deployment),
        log_root=default_log_root(store_root, config.deployment),
        policy=RetrainPolicy.from_dict(config.retrain_policy),
        drift_config=DriftConfig(),
        announce=announce,
    )
    sample = workdir / f"initial-{ecommerce.season_of(config.start_week)}.csv"
    window_frame(season_weeks(config.start_week), config.rows_per_week, config.seed + 1000).to_csv(sample, index=False)
    announce(f"Training the initial model on {sample.name} (deploy single: the first model of {config.model_name})")
    world.train(source=str(sample), deploy_mode="single")
    champion = world.store.champion(config.model_name)
    if champion is None:
        raise MlopsError(f"the initial model did not pass its gate (threshold {config.threshold}); lower it")
    weeks = []
    with LocalStack(workdir / "serving", prediction_log=world.log_root, store_root=store_root) as stack:
        world.stack = stack
        world.apply_written_spec()
        announce(f"Serving {champion.version} on {stack.url}; prediction log {world.log_root}")
        for week in range(config.start_week, config.start_week + config.weeks):
            weeks.append(world.simulate(week))
    result = LifecycleResult(
        config=config,
        workdir=workdir,
        store_root=store_root,
        initial_version=champion.version,
        weeks=weeks,
        table_path=workdir / "weeks.csv",
        plot_path=workdir / "lifecycle.png",
        seconds=time.perf_counter() - started,
    )
    result.table().to_csv(result.table_path, index=False)
    write_plot(result, result.plot_path)
    return result


@dataclass
class _World:
    """The running simulation: settings, store, stack and the paths the pipelines share."""

    config: LifecycleConfig
    settings: Settings
    store: Any
    windows: Path
    state_uri: str
    log_root: str
    policy: Any
    drift_config: Any
    announce: Callable[[str], None]
    stack: LocalStack | None = None
    applied: int | None = None  # mtime of the spec file last applied

    def train(self, **arguments: Any) -> Any:
        """Runs the training or (with ``source`` a window) the monitoring pipeline with the demo's settings."""
        pipeline = "monitoring" if "history_root" in arguments else "training"
        common = {
            "store_root": self.store.root,
            "model_name": self.config.model_name,
            "deployment_name": self.config.deployment,
            "label": ecommerce.LABEL,
            "threshold": self.config.threshold,
            "max_regression": self.config.max_regression,
            "rollout_plan": PLAN,
            "deploy_target": "local",
        }
        return run_pipeline(pipeline, common | arguments, settings=self.settings)

    def step_rollout(self) -> str:
        """The scheduled rollout pipeline's weekly run; returns the stage (or outcome) it left."""
        from kfp_mlops.rollout import load_rollout

        arguments = {
            "state_uri": self.state_uri,
            "deployment_name": self.config.deployment,
            "target": "local",
            "live_config": LIVE_CONFIG,
        }
        run_pipeline("rollout", arguments, settings=self.settings)
        self.apply_written_spec()
        state = load_rollout(self.state_uri)[0]
        return state.stage.name if state.status == "running" else state.status

    def apply_written_spec(self) -> None:
        """Applies the spec file the last pipeline wrote, when it changed (what ``kfp-mlops serve`` does)."""
        from kfp_mlops.serving.local.serve import deployment_file, load_spec

        path = deployment_file(self.settings, self.config.deployment)
        if self.stack is not None and path.exists() and path.stat().st_mtime_ns != self.applied:
            self.applied = path.stat().st_mtime_ns
            self.stack.apply(load_spec(path))

    def rollout_running(self) -> bool:
        from kfp_mlops.core import storage
        from kfp_mlops.rollout import load_rollout

        return storage.exists(self.state_uri) and load_rollout(self.state_uri)[0].status == "running"

    def simulate(self, week: int) -> Week:
        """One week: traffic, labels, the rollout's step, the drift check, and a retrain when warranted."""
        from kfp_mlops.drift import run_drift

        config = self.config
        served_by = self.store.champion(config.model_name).version
        truth = window_frame([week], config.rows_per_week, config.seed)
        versions = self._versions_by_predictor()
        answers = _send(self.stack, config.deployment, truth, week=week, threads=config.threads)
        self._record_labels(answers, truth)
        corrupted = week == config.corrupted_week
        window = self.windows / f"week-{week:02d}.csv"
        (_corrupt(truth) if corrupted else truth).to_csv(window, index=False)
        stage = self.step_rollout() if self.rollout_running() else None
        champion = self.store.champion(config.model_name)  # a promotion this week makes the next one's judge
        verdict = run_drift(
            champion.uri,
            str(window),
            model=champion.uri,
            store_root=self.store.root,
            config=self.drift_config,
            policy=self.policy,
        )
        decision = verdict["retrain"]
        estimate = verdict["performance_estimate"] or {}
        record = Week(
            week=week,
            season=ecommerce.season_of(week),
            champion=served_by,
            drift=bool(verdict["drift"]),
            mean_psi=float(decision["evidence"]["mean_psi"]),
            estimated_accuracy=estimate["accuracy"]["estimate"] if estimate.get("available") else None,
            realized_accuracy=(verdict["performance"] or {}).get("accuracy"),
            live_accuracy=_live_accuracy(answers, truth),
            decision=decision["action"],
            corrupted=corrupted,
            rollout=stage,
            failed_requests=sum(a["status"] != 200 for a in answers),
            traffic=_shares(answers, versions),
        )
        line = (
            f"week {week:2d} {record.season:<8} {'CORRUPTED export ' if corrupted else ''}champion {served_by} "
            f"live accuracy {record.live_accuracy:.3f}  mean PSI {record.mean_psi:.2f}  policy: {decision['action']}"
        )
        if stage:
            line += f"  rollout -> {stage}"
        if decision["retrain"]:
            if self.rollout_running():
                record.decision = "deferred"
                line += " (deferred: a rollout is running)"
            else:
                line += self._retrain(record, window)
        self.announce(line)
        return record

    def _retrain(self, record: Week, window: Path) -> str:
        """The monitoring pipeline on the week's export: retrain, gate, candidate, rollout in shadow."""
        run = self.train(
            source=str(window),
            history_root=str(self.windows),
            retrain_policy=self.config.retrain_policy,
            drift_config=self.drift_config.to_dict(),
        )
        self.apply_written_spec()
        outcome = retrain_outcome(run)
        if outcome is None:  # the pipeline's own check disagreed with the in-process one (it cannot: same code)
            return "  -> monitoring run: no retrain"
        record.retrain_kind = json.loads(run.artifact("drift-check", "verdict").read_text())["retrain"]["kind"]
        if not outcome["version"]:
            return f"  -> {record.retrain_kind} retrain refused by the gate: {'; '.join(outcome['reasons'])}"
        record.candidate, record.rollout = outcome["version"], outcome["stage"]
        return f"  -> {record.retrain_kind} retrain: candidate {outcome['version']} in {outcome['stage']}"

    def _versions_by_predictor(self) -> dict[str, str]:
        """Predictor name -> the model version it serves, from the spec applied."""
        from kfp_mlops.serving.local.serve import deployment_file, load_spec

        spec = load_spec(deployment_file(self.settings, self.config.deployment))
        return {p.name: p.model_uri.rstrip("/").rsplit("/", 1)[-1] for p in spec.predictors}

    def _record_labels(self, answers: list[dict[str, Any]], truth: pd.DataFrame) -> None:
        """The week's purchases, known at its end, recorded against the ids the servers logged."""
        from kfp_mlops.serving.prediction_log import record_labels

        time.sleep(1.0)  # the servers flush their logs every 0.2 s
        now = datetime.now(timezone.utc)
        labels = truth[ecommerce.LABEL].astype(int).tolist()  # purchased: 1 is the positive class
        record_labels(self.log_root, [(a["id"], labels[a["row"]], now) for a in answers if a["status"] == 200])


def _corrupt(frame: pd.DataFrame) -> pd.DataFrame:
    """A corrupted export: basket values in cents and the purchase flag inverted (a bad join)."""
    corrupted = frame.copy()
    corrupted["avg_basket_value"] = corrupted["avg_basket_value"] * CORRUPTED_SCALE
    corrupted[ecommerce.LABEL] = 1 - corrupted[ecommerce.LABEL]
    return corrupted


def _send(stack: Any, deployment: str, frame: pd.DataFrame, *, week: int, threads: int) -> list[dict[str, Any]]:
    """Sends every row as one request through the router; each answer's status, predictor, label and id.

    Every shopper carries a session id (``X-Session-Id``), so the router's split is sticky: the same
    week sends the same shoppers to the same predictors, and a run of the demo is reproducible.
    """
    from kfp_mlops.serving.local.router import SESSION_HEADER

    port = int(stack.url.rsplit(":", 1)[1])
    rows = list(enumerate(frame.to_dict("records")))

    def worker(chunk: list[tuple[int, dict[str, Any]]]) -> list[dict[str, Any]]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        out = []
        for number, row in chunk:
            answer: dict[str, Any] = {"row": number, "status": 0, "predictor": None, "label": None, "id": None}
            try:
                connection.request(
                    "POST",
                    f"/v2/models/{deployment}/infer",
                    body=json.dumps(ecommerce.v2_request({name: [row[name]] for name in ecommerce.FEATURES})).encode(),
                    headers={"Content-Type": "application/json", SESSION_HEADER: f"week-{week}-shopper-{number}"},
                )
                response = connection.getresponse()
                body = response.read()
                answer |= {"status": response.status, "predictor": response.getheader("X-Predictor")}
                answer["id"] = response.getheader("X-Request-Id")
                if response.status == 200:
                    outputs = json.loads(body)["outputs"]
                    answer["label"] = str(next(o for o in outputs if o["name"] == "label")["data"][0])
            except (OSError, http.client.HTTPException, ValueError):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            out.append(answer)
        connection.close()
        return out

    with ThreadPoolExecutor(threads) as pool:
        return [a for part in pool.map(worker, [rows[i::threads] for i in range(threads)]) for a in part]


def _live_accuracy(answers: list[dict[str, Any]], truth: pd.DataFrame) -> float:
    labels = truth[ecommerce.LABEL].astype(str).tolist()
    served = [a for a in answers if a["status"] == 200]
    return sum(a["label"] == labels[a["row"]] for a in served) / max(1, len(served))


def _shares(answers: list[dict[str, Any]], versions: dict[str, str]) -> dict[str, float]:
    counts = Counter(versions.get(a["predictor"] or "", "?") for a in answers if a["status"] == 200)
    total = sum(counts.values()) or 1
    return {version: count / total for version, count in sorted(counts.items())}


def write_plot(result: LifecycleResult, path: Path) -> Path:
    """Drift, estimated vs realized accuracy, retrain kinds and traffic shares per week (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weeks = [w.week for w in result.weeks]
    fig, (drift, accuracy, traffic) = plt.subplots(3, 1, sharex=True, figsize=(11, 9), constrained_layout=True)
    drift.bar(weeks, [w.mean_psi for w in result.weeks], color="tab:blue", alpha=0.7, label="features' mean PSI")
    for w in result.weeks:
        if w.retrain_kind:
            drift.annotate(w.retrain_kind, (w.week, w.mean_psi), ha="center", va="bottom", fontsize=8, color="red")
    drift.set_ylabel("mean PSI")
    drift.set_yscale("symlog", linthresh=0.1)
    accuracy.plot(weeks, [w.live_accuracy for w in result.weeks], marker="o", label="live accuracy (served answers)")
    accuracy.plot(
        weeks, [w.estimated_accuracy for w in result.weeks], marker="x", label="estimated (label-free, champion)"
    )
    accuracy.plot(
        weeks, [w.realized_accuracy for w in result.weeks], linestyle="--", label="realized on the export (champion)"
    )
    accuracy.set_ylabel("accuracy")
    accuracy.set_ylim(0, 1)
    versions = sorted({v for w in result.weeks for v in w.traffic})
    bottom = [0.0] * len(weeks)
    for version in versions:
        shares = [w.traffic.get(version, 0.0) for w in result.weeks]
        traffic.bar(weeks, shares, bottom=bottom, label=version)
        bottom = [b + s for b, s in zip(bottom, shares)]
    traffic.set_ylabel("share of answers")
    traffic.set_xlabel("week")
    for axis in (drift, accuracy, traffic):
        for w in result.weeks:
            if w.corrupted:
                axis.axvspan(w.week - 0.5, w.week + 0.5, color="red", alpha=0.12)
        for season in ecommerce.SEASONS.values():
            if weeks and weeks[0] < season.weeks[0] <= weeks[-1]:
                axis.axvline(season.weeks[0] - 0.5, color="black", alpha=0.3)
        axis.legend(loc="upper left", fontsize=7, ncol=2)
    drift.set_title(
        "One lifecycle: drift -> retrain (kind) -> shadow -> canary -> champion (red band: corrupted export)"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def render_summary(result: LifecycleResult) -> str:
    """The weekly table as text, the lifecycle's outcomes, and where the outputs are."""
    import pandas as pd

    table = result.table().drop(columns=["traffic"])
    for name in ("mean_psi", "estimated_accuracy", "realized_accuracy", "live_accuracy"):
        table[name] = table[name].map(lambda v: "" if v is None or v != v else f"{v:.3f}")
    with pd.option_context("display.width", 220, "display.max_rows", 100):
        text = table.fillna("").to_string(index=False)
    champions = list(dict.fromkeys(w.champion for w in result.weeks))
    return "\n".join(
        [
            text,
            "",
            f"{len(result.weeks)} weeks in {result.seconds:.0f} s; champions in turn: {' -> '.join(champions)}; "
            f"failed client requests: {result.failed_requests}",
            f"Table  {result.table_path}",
            f"Plot   {result.plot_path}",
            f"Store  {result.store_root}",
        ]
    )
