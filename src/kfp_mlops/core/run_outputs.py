"""The links between a KFP task and its W&B run: the run published to the task's outputs, the KFP run in the run.

A KFP task's pod is deleted after the task, and with it an offline run's folder; the KFP UI shows a
task's output artifacts. :class:`RunOutputs` names two of them: a Markdown page with the run's link
(or, offline, where its files went and how to upload them) and a folder holding a copy of the
offline run, ready for ``wandb sync``. :func:`kfp_mlops.core.tracking.tracked_run` publishes to
them once its run has finished. The other way, the run's config holds the KFP run's page
(:meth:`RunOutputs.kfp_run_url`) on the KFP UI the pipeline's ``kfp_ui_host`` parameter names: a
pipeline parameter, never the pod's environment, which the compiled pipelines do not set.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from kfp_mlops.core.tracking import TrackedRun, run_location


@dataclass(frozen=True)
class RunOutputs:
    """The KFP task outputs a finished run is published to, so the KFP UI leads to it, and back.

    Attributes:
        page: An ``Output[Markdown]`` file: the run's link (online), or where its offline files are
            and how to upload them (empty: not written).
        files: An ``Output[Artifact]`` folder: a copy of an offline run's folder (a pod's disk is
            lost with the pod), ready for ``wandb sync``; online it holds a note with the link
            (empty: not written).
        kfp_ui_host: The KFP UI's address (``https://kubeflow.example.com/pipeline``; the pipeline's
            ``kfp_ui_host`` parameter), for the KFP run's page in the run's config (empty: no link).
    """

    page: str = ""
    files: str = ""
    kfp_ui_host: str = ""

    def kfp_run_url(self, run_id: str) -> str:
        """The KFP UI's page of a pipeline run (empty without a UI address or a real run id)."""
        host = self.kfp_ui_host.strip().rstrip("/")
        if not host or not run_id or run_id == "local":
            return ""
        return f"{host}/#/runs/details/{run_id}"

    def publish(self, run: TrackedRun) -> None:
        """Writes the page and the files of a finished run."""
        name, location = run.run.name, run_location(run)
        if self.page:
            Path(self.page).parent.mkdir(parents=True, exist_ok=True)
            if run.url:
                text = f"W&B run [{name}]({run.url}) (group `{run.run.group}`)\n"
            else:
                text = (
                    f"W&B run `{name}` was logged offline (no `WANDB_API_KEY`): its files are this task's "
                    f"`wandb_files` output (`{location}` in the pod); upload them with `wandb sync <folder>`.\n"
                )
            Path(self.page).write_text(f"# W&B\n\n{text}")
        if self.files:
            target = Path(self.files)
            target.mkdir(parents=True, exist_ok=True)
            if run.run.offline and not run.run.disabled:
                _wait_until_flushed(run.dir)
                shutil.copytree(run.dir, target / run.dir.name, dirs_exist_ok=True)
            else:
                (target / "README.md").write_text(f"W&B run {name}: {location}\n")

    def publish_no_run(self, why: str) -> None:
        """Writes the page and the files of a task that opened no run, saying why.

        KFP uploads every declared output of a task, and a cluster's launcher fails the task
        when one is missing.
        """
        if self.page:
            Path(self.page).parent.mkdir(parents=True, exist_ok=True)
            Path(self.page).write_text(f"# W&B\n\nNo W&B run: {why}.\n")
        if self.files:
            Path(self.files).mkdir(parents=True, exist_ok=True)
            (Path(self.files) / "README.md").write_text(f"No W&B run: {why}.\n")


def _wait_until_flushed(run_dir: Path, timeout: float = 5.0) -> None:
    """Waits until the run's transaction log stops growing.

    ``finish()`` returns before wandb-core has flushed the last records (~50 ms); a copy taken
    earlier would lack the exit record, and ``wandb sync`` would upload it as crashed.
    """
    deadline, last, steady = time.monotonic() + timeout, -1, 0
    while steady < 4 and time.monotonic() < deadline:
        size = sum(f.stat().st_size for f in run_dir.glob("*.wandb"))
        steady = steady + 1 if size == last and size > 0 else 0
        last = size
        time.sleep(0.025)
