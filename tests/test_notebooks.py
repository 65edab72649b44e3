"""The notebooks run top to bottom, and are committed with the outputs the current code prints.

Each is executed with nbclient in this test's own folder (:mod:`tests.support.notebooks`: a kernel
running this interpreter, ``KFP_MLOPS_HOME`` under the folder) and passes its own checks. The
committed copy carries the outputs of such a run, so that a reader sees results on the repository:
every code cell executed once, in order, no error, no machine's path; and the fresh run's outputs
have the committed ones' structure (:func:`tests.support.notebooks.structure`: the kinds of outputs,
their texts with numbers, digests and versions masked, tables' columns). When a change to the code
changes what a notebook shows, ``make notebooks`` runs them and writes the outputs back.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.notebooks import NotebookFailed, execute, outputs, relocate, structure, text

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
QUICKSTART = NOTEBOOKS / "01_quickstart.ipynb"
DRIFT_NOTEBOOK = NOTEBOOKS / "02_drift_and_retrain.ipynb"
ROLLOUT_NOTEBOOK = NOTEBOOKS / "03_safe_rollout.ipynb"
LIFECYCLE_NOTEBOOK = NOTEBOOKS / "04_lifecycle.ipynb"
# What a committed output must not show: where the run happened on the machine that wrote it.
MACHINE_PATHS = ("/tmp/", "/root/", "/home/", "/work/", "/Users/")


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebook_is_committed_with_its_outputs(path: Path) -> None:
    """Valid nbformat 4 for the python3 kernel; every code cell run once, in order, without error."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, "the notebook has no code cells"
    counts = [cell.execution_count for cell in code]
    assert counts == list(range(1, len(code) + 1)), f"{counts}: run `make notebooks` to commit a top-to-bottom run"
    assert any(cell.outputs for cell in code), "no outputs: run `make notebooks`"
    shown = [text(output) for output in outputs(nb)]
    assert not [output for output in outputs(nb) if output["output_type"] == "error"]
    leaked = [line for line in "\n".join(shown).splitlines() if any(p in line for p in MACHINE_PATHS)]
    assert not leaked, f"outputs show a machine's paths: {leaked[:3]}"


def _run(path: Path, folder: Path) -> tuple[list[dict], list[str]]:
    """Executes ``path`` in ``folder``, checks its outputs against the committed ones; returns them and their texts."""
    import nbformat

    try:
        nb = relocate(execute(path, folder), folder)  # as committed: the folder shown as .
    except NotebookFailed as exc:
        pytest.fail(str(exc))
    committed = structure(nbformat.read(path, as_version=4))
    fresh = structure(nb)
    stale = [i for i, (old, new) in enumerate(zip(committed, fresh)) if old != new]
    assert len(committed) == len(fresh) and not stale, (
        f"{path.name}: the committed outputs of code cells {stale} are not what the code shows now "
        f"(run `make notebooks`): first difference\n{committed[stale[0]] if stale else committed}\n"
        f"now\n{fresh[stale[0]] if stale else fresh}"
    )
    shown = outputs(nb)
    return shown, [text(output) for output in shown]


@pytest.mark.slow
def test_quickstart_runs(tmp_path: Path) -> None:
    """01_quickstart runs the training pipeline locally, shows the metrics and passes its own check."""
    _, texts = _run(QUICKSTART, tmp_path)
    assert any("accuracy" in text for text in texts), "no output mentions accuracy"
    # Everything went to the notebook's working folder, none of it into the repository.
    home = tmp_path / ".kfp-mlops"
    assert list((home / "runs").glob("training-*/evaluate/executor_output.json"))
    assert list((home / "compiled").glob("training*.yaml"))


@pytest.mark.slow
def test_drift_notebook_runs(tmp_path: Path) -> None:
    """02_drift_and_retrain runs a short drift demo, retrains on the holiday week and passes its own check."""
    shown, texts = _run(DRIFT_NOTEBOOK, tmp_path)
    assert any(text.startswith("check passed") for text in texts), texts[-1]
    assert any("image/png" in output.get("data", {}) for output in shown), "the plot is not shown"
    assert (tmp_path / "demo-drift" / "weeks.csv").is_file()
    # The training sub-pipeline registered the retrained model inside the monitoring run.
    assert list((tmp_path / ".kfp-mlops" / "runs").glob("monitoring-*/register/registered"))


@pytest.mark.slow
def test_rollout_notebook_runs(tmp_path: Path) -> None:
    """03_safe_rollout trains, rolls out a better and a poor challenger on the local stack, and passes its check."""
    shown, texts = _run(ROLLOUT_NOTEBOOK, tmp_path)
    assert any(text.startswith("check passed") for text in texts), texts[-1]
    assert any("image/png" in output.get("data", {}) for output in shown), "the plot is not shown"
    assert (tmp_path / "demo-rollout" / "rollouts" / "challenger.json").is_file()


@pytest.mark.slow
def test_lifecycle_notebook_runs(tmp_path: Path) -> None:
    """04_lifecycle: a holiday retrain promoted through its rollout, a corrupted one rolled back, no failed request."""
    shown, texts = _run(LIFECYCLE_NOTEBOOK, tmp_path)
    assert any(text.startswith("check passed") for text in texts), texts[-1]
    assert any("image/png" in output.get("data", {}) for output in shown), "the plot is not shown"
    assert (tmp_path / "demo-lifecycle" / "lifecycle.png").is_file()
    # The retrains ran as monitoring runs, the promotions and the rollback as rollout runs.
    runs = sorted(p.name.split("-")[0] for p in (tmp_path / ".kfp-mlops" / "runs").iterdir())
    assert runs.count("monitoring") == 2 and runs.count("rollout") >= 3
