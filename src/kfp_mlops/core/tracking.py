"""The one Weights & Biases helper every KFP component logs through.

A component wraps its work in :func:`tracked_run`, which opens one W&B run per task: the
component name is the run's ``job_type``, the KFP pipeline job id its ``group`` (so the W&B UI
shows one pipeline run as one group), ``<component>-<job id>`` its name, and the KFP run's page
(``kfp_run_url``, on the KFP UI the task's ``kfp_ui_host`` parameter names: :class:`RunOutputs`)
is in its config. The project and entity come from the :class:`~kfp_mlops.core.config.Settings`
the caller read where its task or command started. W&B's own variables are read when a run opens:
runs are offline unless ``WANDB_API_KEY`` is set (:func:`resolve_mode`); offline runs land in
``$WANDB_DIR/wandb/offline-run-*`` and can be uploaded later with ``wandb sync``. An online run
whose server cannot be reached within :data:`ONLINE_INIT_TIMEOUT_S` (``WANDB_INIT_TIMEOUT``
overrides it) falls back to offline, with the reason in its config (``wandb_offline_fallback``)
and a warning: W&B being down never fails a task. :class:`RunOutputs` publishes a run to a KFP
task's outputs (a Markdown page with its link, and the offline run folder as an archive, which a pod would lose).

Lineage is exact: :meth:`TrackedRun.log_artifact` returns an :class:`ArtifactRef` (name, digest
and, online, the version W&B assigned), which the producing component puts in its KFP artifact's
metadata and the consuming one passes as ``uses``; a consumer never names ``:latest``. Model
versions are linked to the W&B Registry with aliases (:meth:`TrackedRun.log_model_version`).
What wandb 0.31 cannot do offline, checked against its source: ``use_artifact`` (asks the server
to resolve the version) and ``link_artifact`` (``NotImplementedError``, after logging the
artifact again). Offline, the inputs are kept in the artifact's metadata (``inputs``) and the
intended Registry link in its metadata (``registry``); the aliases are set on the artifact version
itself, where they act on ``wandb sync``: an artifact logged again with the same content is the same
version (W&B deduplicates by digest), and an alias is unique within a collection, so logging the
champion's version with ``champion`` moves that alias. ``rejected`` is a tag, not an alias: many
versions can be rejected, and an alias would move. ``run.alert`` works offline (an ``alert`` record,
sent on sync).

``wandb`` is imported inside the functions that use it: the import alone costs ~0.3-1 s and not
every caller logs.

Longer than 400 lines: every kind of record a component logs stays in this one helper, so there is
one W&B idiom. wandb 0.31.0 is pinned exactly; this module relies on one of its internals, noted where used: the
GCS manifest entry for references.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import ConfigError

if TYPE_CHECKING:
    from kfp_mlops.core.run_outputs import RunOutputs

if TYPE_CHECKING:
    import numpy as np
    import pandas
    import wandb

MODES = ("online", "offline", "disabled")
ONLINE_INIT_TIMEOUT_S = 30.0
"""How long an online run waits for the W&B server before falling back to offline (wandb's default is 90 s)."""
_log = logging.getLogger(__name__)


# The W&B Registry's model registry: model versions are linked to ``<prefix>/<registered model>``.
REGISTRY_PREFIX = "wandb-registry-model"


def registered_artifact(model_name: str) -> str:
    """The W&B artifact collection of a model's stored versions (``<model_name>-registered``).

    register logs each version there with ``candidate``; deploy (mode single) and a rollout's
    promotion log the champion's version there again with ``champion`` (the same files, so the same
    W&B version: the alias moves), a rollback tags the challenger ``rejected``.
    """
    return f"{model_name}-registered"


@dataclass(frozen=True)
class ArtifactRef:
    """One logged artifact version, exactly: what a consumer declares it used.

    Attributes:
        name: The artifact collection, e.g. ``iris-train-data``.
        type: Its type, e.g. ``dataset``.
        digest: W&B's digest of its contents (known offline too).
        version: ``v<N>`` as W&B assigned it (None offline: versions are assigned on sync).
    """

    name: str
    type: str
    digest: str
    version: str | None = None

    @classmethod
    def of(cls, artifact: wandb.Artifact) -> ArtifactRef:
        """The reference of a just-logged artifact."""
        version = None if artifact.is_draft() else artifact.version
        return cls(artifact.name.split(":")[0], artifact.type, artifact.digest, version)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArtifactRef:
        """The reference from :meth:`to_dict` (e.g. a KFP artifact's ``wandb_artifact`` metadata).

        Raises:
            ConfigError: ``data`` lacks a name, type or digest.
        """
        try:
            return cls(str(data["name"]), str(data["type"]), str(data["digest"]), data.get("version") or None)
        except (KeyError, TypeError):
            raise ConfigError(f"W&B artifact reference {data!r}: needs name, type and digest") from None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields, for KFP artifact metadata."""
        return {"name": self.name, "type": self.type, "digest": self.digest, "version": self.version}


def artifact_refs(*metadata: Mapping[str, Any] | None) -> list[ArtifactRef]:
    """The W&B artifacts recorded in KFP artifacts' metadata (key ``wandb_artifact``), skipping those without one."""
    return [ArtifactRef.from_dict(m["wandb_artifact"]) for m in metadata if m and m.get("wandb_artifact")]


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
        uses: Sequence[ArtifactRef] = (),
        aliases: Sequence[str] = (),
        tags: Sequence[str] = (),
    ) -> ArtifactRef:
        """Logs a dataset or model artifact, with the exact artifact versions it was made from.

        Args:
            name: Artifact name, e.g. ``iris-train-data``.
            type: Artifact type, e.g. ``dataset`` or ``model``.
            uri: A local file or folder (its files are added) or a ``gs://`` URI (added as a
                reference, without reading the bucket).
            metadata: JSON-able facts about the artifact (rows, metrics, versions...).
            uses: The artifacts this run consumed, as their producers logged them. Online each is
                declared with ``use_artifact`` by its exact version; offline (or without a known
                version) they are listed in the metadata's ``inputs``.
            aliases: Aliases of this version (``latest`` is added by W&B).
            tags: Tags of this version.

        Returns:
            The logged version: name, type, digest and, online, its version.

        Raises:
            FileNotFoundError: A local ``uri`` does not exist.
            ValueError: ``uri`` has a scheme other than ``gs://``.
        """
        return ArtifactRef.of(self._log(name, type, uri=uri, metadata=metadata, uses=uses, aliases=aliases, tags=tags))

    def log_model_version(
        self,
        name: str,
        *,
        uri: str,
        metadata: Mapping[str, Any],
        registered_model: str,
        aliases: Sequence[str] = (),
        tags: Sequence[str] = (),
        uses: Sequence[ArtifactRef] = (),
    ) -> ArtifactRef:
        """Logs a stored model version as a ``model`` artifact and links it to the W&B Registry.

        Logging the same stored version again (same files, so the same digest) names the same W&B
        version: this is how a promotion moves ``champion`` to it.

        Args:
            name: The artifact collection, e.g. ``iris-registered``.
            uri: The stored version's folder (local or ``gs://``).
            metadata: Facts about the version (store version, status, checksum...).
            registered_model: The Registry collection, linked as ``wandb-registry-model/<it>``.
            aliases: Aliases for the version, in the project and in the Registry.
            tags: Tags for the version (e.g. ``rejected``).
            uses: The artifacts it was made from.

        Returns:
            The logged version.
        """
        target = f"{REGISTRY_PREFIX}/{registered_model}"
        meta = {**metadata, "registry": {"path": target, "aliases": list(aliases), "linked": not self.run.offline}}
        artifact = self._log(name, "model", uri=uri, metadata=meta, uses=uses, aliases=aliases, tags=tags)
        if not self.run.offline:
            self.run.link_artifact(artifact, target, aliases=list(aliases))
        return ArtifactRef.of(artifact)

    def log_html(self, key: str, html_path: str) -> None:
        """Logs an HTML page (e.g. Evidently's report) under ``key``, shown in the run's media panel."""
        import wandb

        self.run.log({key: wandb.Html(Path(html_path).read_text())})

    def log_record(self, key: str, record: Mapping[str, Any]) -> None:
        """Logs a flat JSON document as a two-column W&B Table (``field``, ``value``) under ``key``."""
        import json

        import pandas as pd

        rows = [
            {"field": str(k), "value": v if isinstance(v, (str, int, float, bool)) else json.dumps(v, default=str)}
            for k, v in record.items()
        ]
        self.log_table(key, pd.DataFrame(rows, columns=["field", "value"]).astype({"value": str}))

    def alert(self, title: str, text: str, *, level: str = "WARN") -> None:
        """Sends a W&B alert (Slack or email, as the user set up in W&B); offline it is sent on sync.

        Args:
            title: Short title (W&B allows under 64 characters; longer is cut).
            text: What happened and why.
            level: ``INFO``, ``WARN`` or ``ERROR``.
        """
        self.run.alert(title=title[:63], text=text, level=level, wait_duration=0)

    def _log(
        self,
        name: str,
        type: str,  # noqa: A002
        *,
        uri: str,
        metadata: Mapping[str, Any],
        uses: Sequence[ArtifactRef],
        aliases: Sequence[str],
        tags: Sequence[str],
    ) -> wandb.Artifact:
        import wandb

        meta = dict(metadata)
        undeclared = [ref for ref in uses if self.run.offline or ref.version is None]
        if undeclared:
            # use_artifact raises offline (it asks the server to resolve the version), and a
            # version logged offline has none yet: the exact inputs are kept as metadata instead.
            meta["inputs"] = [ref.to_dict() for ref in undeclared]
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
        for ref in uses:
            if ref not in undeclared:
                self.run.use_artifact(f"{ref.name}:{ref.version}")
        logged = self.run.log_artifact(artifact, aliases=list(aliases) or None, tags=list(tags) or None)
        if not self.run.offline:
            logged.wait()  # the version W&B assigns, for the consumers' exact use_artifact
        return logged


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
    outputs: RunOutputs | None = None,
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
        name: Run display name (default: ``<component>-<group>``).
        outputs: The KFP task outputs the finished run is published to, and the KFP UI its config
            links to (None: none, and no link).

    Raises:
        ConfigError: ``WANDB_MODE`` is invalid.
    """
    run = _init(
        project=project or settings.wandb_project,
        entity=settings.wandb_entity,
        name=name or f"{component}-{group}",
        job_type=component,
        group=group,
        config={**config, "kfp_run_id": group, "kfp_run_url": outputs.kfp_run_url(group) if outputs else ""},
        mode=resolve_mode(),
    )
    tracked = TrackedRun(run)
    try:
        yield tracked
    except BaseException:
        run.finish(exit_code=1)
        raise
    run.finish()
    if outputs is not None:
        outputs.publish(tracked)


def _init(**kwargs: Any) -> wandb.sdk.wandb_run.Run:
    """``wandb.init`` with the settings every component run uses; offline when online is unreachable."""
    import wandb

    online = kwargs.get("mode") == "online"
    bounded = {"init_timeout": ONLINE_INIT_TIMEOUT_S} if online and not os.environ.get("WANDB_INIT_TIMEOUT") else {}
    try:
        return _init_once(kwargs, bounded)
    except wandb.errors.CommError as exc:
        if not online:
            raise
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        _log.warning(
            "W&B server unreachable (%s): this run is logged offline; upload it later with `wandb sync`", reason
        )
        config = {**kwargs.get("config", {}), "wandb_offline_fallback": reason}
        return _init_once({**kwargs, "mode": "offline", "config": config}, {})


def _init_once(kwargs: Mapping[str, Any], extra_settings: Mapping[str, Any]) -> wandb.sdk.wandb_run.Run:
    import wandb
    from wandb.sdk.lib.service.service_token import WandbServiceConnectionError

    quiet = wandb.Settings(
        silent=True,  # no banners in KFP task logs
        console="off",  # do not tee stdout/stderr into the run
        x_disable_stats=True,  # system metrics sample every 15 s: useless for short tasks
        x_disable_machine_info=True,  # skips git inspection and job creation
        **extra_settings,
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
