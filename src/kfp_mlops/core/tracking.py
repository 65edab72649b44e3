"""The one Weights & Biases helper every KFP component logs through.

A component wraps its work in :func:`tracked_run`, which opens one W&B run per task: the
component name is the run's ``job_type`` and the KFP pipeline job id its ``group``, so the W&B UI
shows one pipeline run as one group. The project and entity come from the
:class:`~kfp_mlops.core.config.Settings` the caller read where its task or command started. W&B's
own variables are read when a run opens: runs are offline unless ``WANDB_API_KEY`` is set
(:func:`resolve_mode`); offline runs land in ``$WANDB_DIR/wandb/offline-run-*`` and can be
uploaded later with ``wandb sync``.

``wandb`` is imported inside the functions that use it: the import alone costs ~0.3-1 s and not
every caller logs.

wandb 0.31.0 is pinned exactly; this module relies on one of its internals, noted where used: the
GCS manifest entry for references.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import pandas
    import wandb

MODES = ("online", "offline", "disabled")


def resolve_mode(environ: Mapping[str, str] | None = None) -> str:
    """The W&B mode for a run: ``online`` with an API key, else ``offline``.

    An explicit ``WANDB_MODE`` (``online``, ``offline`` or ``disabled``) wins. Without one the
    result is never ``disabled``: a run without a key still keeps its data on disk. A key stored
    by ``wandb login`` (netrc) does not count; only ``WANDB_API_KEY`` does, so a laptop never
    goes online by accident.

    Args:
        environ: Variables to read (default: the process environment).

    Raises:
        ConfigError: ``WANDB_MODE`` has another value.
    """
    env = os.environ if environ is None else environ
    explicit = env.get("WANDB_MODE", "").strip().lower()
    if explicit:
        if explicit not in MODES:
            raise ConfigError(f"WANDB_MODE={explicit!r}: expected one of {', '.join(MODES)}")
        return explicit
    return "online" if env.get("WANDB_API_KEY") else "offline"


class TrackedRun:
    """One component's W&B run, with the few kinds of records components log.

    Attributes:
        run: The underlying ``wandb`` run, for anything not covered here.
    """

    def __init__(self, run: wandb.sdk.wandb_run.Run) -> None:
        self.run = run

    @property
    def dir(self) -> Path:
        """The run's local folder: ``offline-run-*`` (or ``run-*``) with ``files/`` and its log."""
        return Path(self.run.settings.sync_dir)

    @property
    def url(self) -> str | None:
        """The run's page, or None for an offline or disabled run."""
        # Run.url warns on offline runs instead of returning None.
        return None if self.run.offline or self.run.disabled else self.run.url

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        """Logs scalar metrics as one history step and as the run's summary values."""
        values = {key: float(value) for key, value in metrics.items()}
        self.run.log(values)
        # Explicit, so the summary holds these values even where a define_metric summary
        # (min/max) would keep another; the summary is what W&B run tables compare.
        self.run.summary.update(values)

    def log_confusion_matrix(self, y_true: Sequence[Any], y_pred: Sequence[Any], class_names: Sequence[str]) -> None:
        """Logs a confusion matrix chart under the key ``confusion_matrix``.

        Args:
            y_true: True labels, as class indices or class names.
            y_pred: Predicted labels, the same way.
            class_names: Names of classes 0..K-1.
        """
        import wandb

        names = list(class_names)
        chart = wandb.plot.confusion_matrix(
            y_true=_class_indices(y_true, names),
            preds=_class_indices(y_pred, names),
            class_names=names,
        )
        self.run.log({"confusion_matrix": chart})

    def log_roc_curve(self, y_true: Sequence[Any], y_proba: np.ndarray, class_names: Sequence[str]) -> None:
        """Logs one-vs-rest ROC curves under the key ``roc_curve`` (needs scikit-learn).

        Args:
            y_true: True labels, as class indices or class names.
            y_proba: Predicted probabilities, shape (n_samples, K), columns in class order.
            class_names: Names of classes 0..K-1.
        """
        import numpy as np
        import wandb

        names = list(class_names)
        true = np.asarray(_class_indices(y_true, names))
        proba = np.asarray(y_proba, dtype=float)
        # wandb.plot.roc_curve takes probability column i for the i-th class *present* in
        # y_true, which is the wrong column when a class is absent (a small test split). Keep
        # only the present classes' columns and renumber, so columns and labels line up.
        present = np.unique(true)
        chart = wandb.plot.roc_curve(
            np.searchsorted(present, true).tolist(),
            proba[:, present].tolist(),
            labels=[names[i] for i in present],
        )
        if chart is None:  # wandb returns None (after a warning) for NaN or mistyped input
            raise ValueError("roc_curve: y_true/y_proba contain missing or non-numeric values")
        self.run.log({"roc_curve": chart})

    def log_table(self, key: str, frame: pandas.DataFrame) -> None:
        """Logs a DataFrame as a W&B Table under ``key``."""
        import wandb

        self.run.log({key: wandb.Table(dataframe=frame)})

    def log_artifact(
        self,
        name: str,
        type: str,  # noqa: A002 - W&B's own name for it
        *,
        uri: str,
        metadata: Mapping[str, Any],
        uses: Sequence[str] = (),
    ) -> None:
        """Logs a dataset or model artifact, with the artifacts it was made from.

        Args:
            name: Artifact name, e.g. ``iris-train``.
            type: Artifact type, e.g. ``dataset`` or ``model``.
            uri: A local file or folder (its files are added) or a ``gs://`` URI (added as a
                reference, without reading the bucket).
            metadata: JSON-able facts about the artifact (rows, metrics, versions...).
            uses: Artifacts this run consumed, e.g. ``["iris-train:latest"]``.

        Raises:
            FileNotFoundError: A local ``uri`` does not exist.
            ValueError: ``uri`` has a scheme other than ``gs://``.
        """
        import wandb

        meta = dict(metadata)
        if uses and self.run.offline:
            # use_artifact raises in offline mode (it asks the server to resolve the name), so
            # offline the lineage is kept as metadata instead of as a graph edge.
            meta["inputs"] = list(uses)
        artifact = wandb.Artifact(name, type=type, metadata=meta)
        if uri.startswith("gs://"):
            _add_gcs_reference(artifact, uri)
        elif "://" in uri:
            raise ValueError(f"artifact {name!r}: unsupported URI {uri!r} (local path or gs://)")
        elif Path(uri).is_dir():
            artifact.add_dir(uri)
        elif Path(uri).is_file():
            artifact.add_file(uri)
        else:
            raise FileNotFoundError(f"artifact {name!r}: no file or folder at {uri}")
        if not self.run.offline:
            for used in uses:
                self.run.use_artifact(used)
        self.run.log_artifact(artifact)


def run_location(run: TrackedRun) -> str:
    """Where to find a run, for CLI summaries: its URL online, its folder offline."""
    if run.run.disabled:
        return "not recorded (WANDB_MODE=disabled)"
    return run.url or str(run.dir)


@contextmanager
def tracked_run(
    component: str,
    *,
    group: str,
    config: Mapping[str, Any],
    settings: Settings,
    project: str | None = None,
    name: str | None = None,
) -> Iterator[TrackedRun]:
    """Opens a W&B run for one component task and finishes it on exit.

    The run is finished with exit code 1 when an exception escapes the block, which then
    propagates. Several runs may be opened in one process, one after the other or nested.

    Args:
        component: Component name, recorded as the run's ``job_type``.
        group: The KFP pipeline job id, so one pipeline run is one W&B group.
        config: The component's parameters.
        settings: The W&B project and entity (``WANDB_PROJECT``, ``WANDB_ENTITY``), read by the
            caller where its task or command starts.
        project: W&B project instead of the settings' one (a pipeline's ``wandb_project``; empty
            or None: the settings' one).
        name: Run display name (default: generated by W&B).

    Raises:
        ConfigError: ``WANDB_MODE`` is invalid.
    """
    run = _init(
        project=project or settings.wandb_project,
        entity=settings.wandb_entity,
        name=name,
        job_type=component,
        group=group,
        config=dict(config),
        mode=resolve_mode(),
    )
    try:
        yield TrackedRun(run)
    except BaseException:
        run.finish(exit_code=1)
        raise
    run.finish()


def _init(**kwargs: Any) -> wandb.sdk.wandb_run.Run:
    """``wandb.init`` with the settings every component run uses."""
    import wandb
    from wandb.sdk.lib.service.service_token import WandbServiceConnectionError

    quiet = wandb.Settings(
        silent=True,  # no banners in KFP task logs
        console="off",  # do not tee stdout/stderr into the run
        x_disable_stats=True,  # system metrics sample every 15 s: useless for short tasks
        x_disable_machine_info=True,  # skips git inspection and job creation
    )
    run_kwargs = dict(
        kwargs,
        settings=quiet,
        # Each run stands alone: no reliance on the global wandb.run, nesting allowed.
        reinit="create_new",
        # wandb reads its environment once per process; take WANDB_DIR per run so a process
        # that opens several runs (tests, notebooks) follows a changed WANDB_DIR.
        dir=os.environ.get("WANDB_DIR") or None,
    )
    try:
        return wandb.init(**run_kwargs)
    except WandbServiceConnectionError:
        # WANDB_SERVICE, inherited from a parent process that ran wandb, names a service that is
        # gone: a private service keeps the task running.
        os.environ.pop("WANDB_SERVICE", None)
        return wandb.init(**run_kwargs)


def _class_indices(labels: Sequence[Any], class_names: list[str]) -> list[int]:
    """Class indices for labels given as indices or as class names.

    Raises:
        ValueError: A label is neither a class name nor an index into ``class_names``.
    """
    index = {name: i for i, name in enumerate(class_names)}
    indices = []
    for label in labels:
        i = index.get(label, -1) if isinstance(label, str) else int(label)
        if not 0 <= i < len(class_names):
            raise ValueError(f"label {label!r} is not one of {class_names} nor an index into them")
        indices.append(i)
    return indices


def _add_gcs_reference(artifact: wandb.Artifact, uri: str) -> None:
    """Adds ``uri`` as an unchecksummed reference, exactly as ``add_reference`` would.

    ``add_reference(uri, checksum=False)`` still builds a ``storage.Client()`` in wandb 0.31,
    which fails without Google credentials (laptops, tests, offline runs). The entry it would
    add does not need the client, so it is built here (internal class, pinned wandb).
    """
    from wandb.sdk.artifacts.artifact_manifest_entry import ArtifactManifestEntry
    from wandb.sdk.lib.paths import LogicalPath

    bucket, _, key = uri.removeprefix("gs://").partition("/")
    if not bucket or not key.strip("/"):
        raise ValueError(f"artifact {artifact.name!r}: {uri!r} names no object or folder")
    artifact.manifest.add_entry(ArtifactManifestEntry(path=LogicalPath(key), ref=uri, digest=uri))
