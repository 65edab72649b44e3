"""RunOutputs: the KFP run's page a run links to, and the outputs of a task that opened no run.

A finished run published to a task's outputs is read back in tests/core/test_tracking.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kfp_mlops.core.run_outputs import RunOutputs


@pytest.mark.parametrize(
    ("host", "run_id", "url"),
    [
        ("https://kubeflow.example.com/pipeline", "3f2a", "https://kubeflow.example.com/pipeline/#/runs/details/3f2a"),
        (" https://kubeflow.example.com/ ", "3f2a", "https://kubeflow.example.com/#/runs/details/3f2a"),
        ("", "3f2a", ""),  # no KFP UI address given
        ("https://kubeflow.example.com", "local", ""),  # kfp.local: no KFP run to link to
    ],
)
def test_the_kfp_run_url_is_on_the_ui_the_parameter_names(host: str, run_id: str, url: str) -> None:
    assert RunOutputs(kfp_ui_host=host).kfp_run_url(run_id) == url


def test_a_task_without_a_run_still_writes_both_outputs_saying_why(tmp_path: Path) -> None:
    outputs = RunOutputs(page=str(tmp_path / "out" / "wandb_page"), files=str(tmp_path / "out" / "wandb_files"))
    outputs.publish_no_run("the rollout was already promoted")
    assert Path(outputs.page).read_text() == "# W&B\n\nNo W&B run: the rollout was already promoted.\n"
    assert [p.name for p in Path(outputs.files).iterdir()] == ["README.md"]
    RunOutputs().publish_no_run("nothing declared")  # no outputs: nothing written, no error
