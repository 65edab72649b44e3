"""``kfp-mlops demo drift``: a year of weekly data windows, a served model, drift checks and retraining.

The data is :mod:`kfp_mlops.demos.ecommerce`'s seasonal generator, so every drift is known: features
and the purchase behaviour change at each season's first week (docs/ecommerce_data.md).

1. An initial model is trained on a separate sample of the start week's season (the training
   pipeline, kfp.local) and served on the local stack (router + model server).
2. Every week: the week's window is written as CSV without the ``week`` column (metadata, not a
   feature); the drift check runs against the champion (:func:`kfp_mlops.drift.run_drift`, the
   same check as the drift_check component, without the Evidently report); the window's rows are
   sent to the served model through the router in batches, and its answers are compared with the
   labels (live accuracy).
3. On a flagged week, the full monitoring pipeline runs on the window (import -> drift_check ->
   the training pipeline on the window, as a sub-pipeline), with ``deploy_mode`` ``single``
   chosen explicitly: the retrained model, registered as a candidate, becomes champion at once
   (the pipelines' default, ``rollout``, would start a safe rollout in shadow beside the champion
   instead, and only the rollout's promotion on live evidence would make it champion). The new
   champion is deployed with ``LocalStack.apply`` and serves from the next week on.

Running the whole monitoring pipeline (about 30 s of task processes) only on flagged weeks keeps a
52-week run to a few minutes; on quiet weeks it would only repeat the check already made.

Outputs in the work folder: ``weeks.csv`` (the summary table), ``drift_demo.png`` (drift share and
live accuracy per week, retrains marked), the windows under ``data/`` and the store under ``store/``.

One module of ~440 lines on purpose: a demo is one story read top to bottom (its settings, the
weekly loop, the table and plot it leaves behind); split, a reader would jump between files.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfp_mlops.app.local_run import run_pipeline
from kfp_mlops.app.summary import retrain_outcome
from kfp_mlops.core.errors import ConfigError, MlopsError
from kfp_mlops.demos import ecommerce

if TYPE_CHECKING:
    import pandas as pd

    from kfp_mlops.core.config import Settings
    from kfp_mlops.serving.local.stack import LocalStack

TABLE_COLUMNS = (
    "week",
    "season",
    "drift",
    "drift_share",
    "drifted_features",
    "live_accuracy",
    "served_version",
    "retrained",
    "new_version",
    "reasons",
)


@dataclass(frozen=True)
class DemoConfig:
    """What the demo simulates.

    Attributes:
        weeks: How many weeks to simulate, from ``start_week`` (at most to week 51).
        start_week: The first week; the initial model learns that week's season.
        rows_per_week: Rows in each weekly window (and per week of the initial training sample).
        seed: Seed of the data (the initial sample uses ``seed + 1000``).
        model_name: The registered model's name.
        deployment: The deployment's name on the local stack.
        estimator: The estimator of every training run.
        threshold: The training gate's accuracy threshold.
        max_regression: How much worse than the champion (on the same test rows) a retrained
            model may be and still replace it: after a pure covariate shift the old and the new
            model score about the same, and the new one brings the new reference profile.
        drift_config: :class:`kfp_mlops.drift.DriftConfig` fields.
        batch_rows: Rows per request to the served model.
    """

    weeks: int = 52
    start_week: int = 0
    rows_per_week: int = 2_000
    seed: int = 0
    model_name: str = "shop"
    deployment: str = "shop"
    estimator: str = "logistic_regression"
    threshold: float = 0.65
    max_regression: float = 0.02
    drift_config: dict[str, Any] = field(default_factory=dict)
    batch_rows: int = 500

    def check(self) -> None:
        """Raises ConfigError for a week range outside the year or a bad size."""
        from kfp_mlops.drift import DriftConfig

        ecommerce.check_weeks(self.start_week, self.weeks)
        if self.rows_per_week < 100:
            raise ConfigError(f"rows_per_week={self.rows_per_week}: expected at least 100")
        if self.batch_rows < 1:
            raise ConfigError(f"batch_rows={self.batch_rows}: expected at least 1")
        DriftConfig.from_dict(self.drift_config)


@dataclass
class WeekResult:
    """One simulated week; ``retrain`` is what the monitoring run's retrain did, when one ran.

    ``retrain`` holds :func:`kfp_mlops.app.summary.retrain_outcome`: the window trained on, the
    gate's decision, metrics and reasons, and the registered version.
    """

    week: int
    season: str
    drift: bool
    drift_share: float
    drifted_features: list[str]
    live_accuracy: float
    served_version: str
    retrained: bool = False
    new_version: str | None = None
    reasons: list[str] = field(default_factory=list)
    retrain: dict[str, Any] | None = None


@dataclass
class DemoResult:
    """The whole run: one entry per week and where the outputs are."""

    config: DemoConfig
    workdir: Path
    store_root: str
    initial_version: str
    weeks: list[WeekResult]
    table_path: Path
    plot_path: Path
    seconds: float

    def table(self) -> pd.DataFrame:
        """The summary table, one row per week."""
        import pandas as pd

        rows = []
        for w in self.weeks:
            row = {k: v for k, v in asdict(w).items() if k in TABLE_COLUMNS}
            row["drifted_features"] = ", ".join(w.drifted_features)
            row["reasons"] = "; ".join(w.reasons)
            rows.append(row)
        return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))

    @property
    def retrain_weeks(self) -> list[int]:
        """Weeks after which a new champion was deployed."""
        return [w.week for w in self.weeks if w.new_version]


def window_frame(weeks: Sequence[int], rows_per_week: int, seed: int) -> pd.DataFrame:
    """The generator's rows for ``weeks`` without the ``week`` column (not a feature)."""
    return ecommerce.generate(weeks, rows_per_week, seed).drop(columns=ecommerce.WEEK)


def season_weeks(week: int) -> range:
    """Every week of ``week``'s season."""
    first, last = ecommerce.SEASONS[ecommerce.season_of(week)].weeks
    return range(first, last + 1)


def live_accuracy(url: str, deployment: str, frame: pd.DataFrame, *, batch_rows: int = 500) -> tuple[float, int]:
    """Sends ``frame``'s features to the served model (v2 protocol, batches) and scores its answers.

    Returns:
        The accuracy of the served answers against ``purchased``, and the number of requests.

    Raises:
        MlopsError: the router or the model server did not answer a request.
    """
    correct = requests = 0
    for start in range(0, len(frame), batch_rows):
        batch = frame.iloc[start : start + batch_rows]
        body = ecommerce.v2_request(batch)
        request = urllib.request.Request(
            f"{url}/v2/models/{deployment}/infer",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                answer = json.loads(response.read())
        except OSError as exc:
            raise MlopsError(f"the served model {deployment} at {url} did not answer: {exc}") from None
        labels = next(o["data"] for o in answer["outputs"] if o["name"] == "label")
        truth = [str(v) for v in batch[ecommerce.LABEL]]
        correct += sum(str(p) == t for p, t in zip(labels, truth))
        requests += 1
    return correct / len(frame), requests


def run_demo(
    config: DemoConfig,
    *,
    settings: Settings,
    workdir: Path | None = None,
    announce: Callable[[str], None] = print,
) -> DemoResult:
    """Runs the simulation (see the module docstring) and writes the table and the plot.

    Args:
        config: What to simulate.
        settings: Where the pipelines' runs and logs go (and the default work folder).
        workdir: The work folder (default ``<home>/demo-drift``).
        announce: Called with one line per step (the initial training, then each week).

    Raises:
        ConfigError: a bad config; MlopsError: a pipeline or the local stack failed.
    """
    from kfp_mlops.drift import DriftConfig, run_drift
    from kfp_mlops.modeling.model_store import ModelStore
    from kfp_mlops.serving.local.stack import LocalStack
    from kfp_mlops.serving.spec import DeploymentSpec

    config.check()
    workdir = (workdir or settings.home / "demo-drift").resolve()
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    store_root = str(workdir / "store")
    store = ModelStore(store_root)
    drift_config = DriftConfig.from_dict(config.drift_config)
    started = time.perf_counter()
    common = {
        "store_root": store_root,
        "label": ecommerce.LABEL,
        "model_name": config.model_name,
        "estimator": config.estimator,
        "threshold": config.threshold,
        "max_regression": config.max_regression,
        "deployment_name": config.deployment,
        # Explicitly: a retrain that passes the gate replaces the champion at once (no safe rollout).
        "deploy_mode": "single",
    }

    first_season = ecommerce.season_of(config.start_week)
    history = data_dir / f"history-{first_season}.csv"
    window_frame(season_weeks(config.start_week), config.rows_per_week, config.seed + 1000).to_csv(history, index=False)
    announce(f"Training the initial model on a {first_season} sample ({history.name}) ...")
    run_pipeline("training", {**common, "source": str(history)}, settings=settings)
    champion = store.champion(config.model_name)
    if champion is None:
        raise MlopsError(
            f"the initial model of {config.model_name} did not pass its gate (threshold "
            f"{config.threshold}); lower the threshold"
        )
    initial_version = champion.version

    results: list[WeekResult] = []
    with LocalStack(workdir / "serving", store_root=store_root) as stack:
        stack.apply(DeploymentSpec.single(config.deployment, champion.uri))
        announce(f"Serving {champion.version} on {stack.url}")
        announce(
            "Flagged weeks retrain with deploy_mode single, chosen explicitly: a retrained model that passes "
            "the gate replaces the champion at once, without a safe rollout"
        )
        for week in range(config.start_week, config.start_week + config.weeks):
            results.append(
                _simulate_week(
                    week,
                    config,
                    stack,
                    store,
                    common,
                    data_dir,
                    drift_config,
                    settings,
                    run_drift,
                    announce,
                )
            )

    result = DemoResult(
        config=config,
        workdir=workdir,
        store_root=store_root,
        initial_version=initial_version,
        weeks=results,
        table_path=workdir / "weeks.csv",
        plot_path=workdir / "drift_demo.png",
        seconds=time.perf_counter() - started,
    )
    result.table().to_csv(result.table_path, index=False)
    write_plot(result, result.plot_path)
    return result


def _simulate_week(
    week: int,
    config: DemoConfig,
    stack: LocalStack,
    store: Any,
    common: dict[str, Any],
    data_dir: Path,
    drift_config: Any,
    settings: Settings,
    run_drift: Callable,
    announce: Callable[[str], None],
) -> WeekResult:
    from kfp_mlops.serving.spec import DeploymentSpec

    champion = store.champion(config.model_name)
    frame = window_frame([week], config.rows_per_week, config.seed)
    window = data_dir / f"week-{week:02d}.csv"
    frame.to_csv(window, index=False)
    verdict = run_drift(champion.uri, str(window), model=champion.uri, store_root=store.root, config=drift_config)
    accuracy, _ = live_accuracy(stack.url, config.deployment, frame, batch_rows=config.batch_rows)
    result = WeekResult(
        week=week,
        season=ecommerce.season_of(week),
        drift=bool(verdict["drift"]),
        drift_share=float(verdict["drift_share"]),
        drifted_features=list(verdict["drifted_features"]),
        live_accuracy=accuracy,
        served_version=champion.version,
        reasons=list(verdict["reasons"]),
    )
    line = (
        f"week {week:2d} {result.season:<8} drift share {result.drift_share:.2f} "
        f"{'DRIFT' if result.drift else 'quiet'}  live accuracy {accuracy:.3f}"
    )
    if result.drift:
        run = run_pipeline(
            "monitoring", {**common, "source": str(window), "drift_config": drift_config.to_dict()}, settings=settings
        )
        result.retrain = retrain_outcome(run)
        result.retrained = result.retrain is not None
        if result.retrain is not None:
            result.new_version = result.retrain["version"]
            if result.new_version:
                new = store.champion(config.model_name)
                stack.apply(DeploymentSpec.single(config.deployment, new.uri))
                line += f"  -> retrained, deployed {new.version} (deploy_mode single: champion at once)"
            else:
                line += f"  -> retrained, gate refused: {'; '.join(result.retrain['reasons'])}"
    announce(line)
    return result


def write_plot(result: DemoResult, path: Path) -> Path:
    """Drift share and live accuracy per week, season changes shaded, retrains marked (PNG)."""
    import matplotlib

    from kfp_mlops.drift import DriftConfig

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weeks = [w.week for w in result.weeks]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 6), constrained_layout=True)
    top.plot(weeks, [w.drift_share for w in result.weeks], marker="o", label="drift share (features)")
    top.axhline(
        DriftConfig.from_dict(result.config.drift_config).drift_share,
        color="grey",
        linestyle="--",
        label="dataset drift threshold",
    )
    flagged = [w for w in result.weeks if w.drift]
    top.scatter(
        [w.week for w in flagged], [w.drift_share for w in flagged], color="red", zorder=3, label="drift flagged"
    )
    top.set_ylabel("drift share")
    top.set_ylim(0, 1)
    bottom.plot(
        weeks,
        [w.live_accuracy for w in result.weeks],
        marker="o",
        color="tab:green",
        label="live accuracy (served model)",
    )
    bottom.set_ylabel("accuracy")
    bottom.set_xlabel("week")
    for axis in (top, bottom):
        for season in ecommerce.SEASONS.values():
            if weeks and weeks[0] < season.weeks[0] <= weeks[-1]:
                axis.axvline(season.weeks[0] - 0.5, color="black", alpha=0.3)
        for week in result.retrain_weeks:
            axis.axvline(week + 0.5, color="red", linestyle=":", alpha=0.8)
    bottom.plot([], [], color="red", linestyle=":", label="new model deployed")
    top.legend(loc="upper left", fontsize=8)
    bottom.legend(loc="lower left", fontsize=8)
    top.set_title("Drift monitoring and retraining: seasonal e-commerce data")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def render_table(result: DemoResult) -> str:
    """The summary table as text, with the outputs' locations."""
    import pandas as pd

    table = result.table().drop(columns=["reasons", "drifted_features"])
    table["live_accuracy"] = table["live_accuracy"].map("{:.3f}".format)
    table["drift_share"] = table["drift_share"].map("{:.2f}".format)
    table["new_version"] = table["new_version"].fillna("")
    with pd.option_context("display.width", 200, "display.max_rows", 100):
        text = table.to_string(index=False)
    return "\n".join(
        [
            text,
            "",
            f"{len(result.weeks)} weeks in {result.seconds:.0f} s; drift flagged in weeks "
            f"{', '.join(str(w.week) for w in result.weeks if w.drift) or 'none'}; new champion after weeks "
            f"{', '.join(map(str, result.retrain_weeks)) or 'none'}",
            f"Table  {result.table_path}",
            f"Plot   {result.plot_path}",
            f"Store  {result.store_root}",
        ]
    )
