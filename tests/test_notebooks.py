"""The notebooks run top to bottom: each is executed with nbclient in this test's own folder.

The kernel must be this interpreter (the venv the package is installed in). ``python3`` is used when
its kernelspec starts this interpreter; otherwise a kernelspec pointing at ``sys.executable`` is
written to a temporary JUPYTER_PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
QUICKSTART = NOTEBOOKS / "01_quickstart.ipynb"
DRIFT_NOTEBOOK = NOTEBOOKS / "02_drift_and_retrain.ipynb"
ROLLOUT_NOTEBOOK = NOTEBOOKS / "03_safe_rollout.ipynb"
LIFECYCLE_NOTEBOOK = NOTEBOOKS / "04_lifecycle.ipynb"
CELL_TIMEOUT_S = 300
_EXECUTABLE_MARK = "kernel executable: "


def _starts_this_python(argv: list[str]) -> bool:
    """Whether a kernelspec's command line runs ``sys.executable``."""
    if not argv:
        return False
    # jupyter_client replaces these names by sys.executable of the process launching the kernel.
    if argv[0] in {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}:
        return True
    found = shutil.which(argv[0])
    # No resolve(): a venv's python is a symlink to the base interpreter, which has other packages.
    return found is not None and os.path.abspath(found) == os.path.abspath(sys.executable)


def _kernel_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``python3`` when it runs this interpreter, else a temporary kernelspec that does."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        spec = None
    if spec is not None and _starts_this_python(spec.argv):
        return "python3"
    jupyter_path = tmp_path / "jupyter"
    kernel_dir = jupyter_path / "kernels" / "kfp-mlops-test"
    kernel_dir.mkdir(parents=True)
    (kernel_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "kfp-mlops tests",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_path))
    return "kfp-mlops-test"


def _text(output: dict) -> str:
    """The text of one cell output (stream, result, display or error)."""
    if output.get("output_type") == "stream":
        return output.get("text", "")
    if output.get("output_type") == "error":
        return "\n".join([output.get("ename", ""), output.get("evalue", "")])
    data = output.get("data", {})
    return "\n".join(str(data.get(kind, "")) for kind in ("text/plain", "text/html"))


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebook_is_committed_clean(path: Path) -> None:
    """Each committed notebook is valid nbformat 4, for the python3 kernel, with no outputs."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code, "the notebook has no code cells"
    dirty = [cell.id for cell in code if cell.outputs or cell.execution_count is not None]
    assert not dirty, f"clear the outputs of cells {dirty} before committing"


def _execute(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[dict], list[str]]:
    """Runs a notebook in ``tmp_path`` with its own KFP_MLOPS_HOME; returns its outputs and their texts.

    A last cell printing the kernel's interpreter is added to the executed copy only.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("KFP_MLOPS_HOME", str(tmp_path / "home"))  # the kernel inherits this environment
    kernel_name = _kernel_name(tmp_path, monkeypatch)
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(f"import sys; print({_EXECUTABLE_MARK!r} + sys.executable)"))
    client = NotebookClient(
        nb, kernel_name=kernel_name, timeout=CELL_TIMEOUT_S, resources={"metadata": {"path": str(tmp_path)}}
    )
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"{path.name} failed:\n{exc}")
    outputs = [output for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs]
    texts = [_text(output) for output in outputs]
    assert not [_text(o) for o in outputs if o.get("output_type") == "error"]
    assert f"{_EXECUTABLE_MARK}{sys.executable}" in texts[-1], texts[-1]
    return outputs, texts


@pytest.mark.slow
def test_quickstart_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """01_quickstart runs the training pipeline locally, shows the metrics and passes its own check."""
    _, texts = _execute(QUICKSTART, tmp_path, monkeypatch)
    assert any("accuracy" in text for text in texts), "no output mentions accuracy"
    # Everything went to the notebook's working folder, none of it into the repository.
    home = tmp_path / "home"
    assert list((home / "runs").glob("training-*/evaluate/executor_output.json"))
    assert list((home / "compiled").glob("training*.yaml"))


@pytest.mark.slow
def test_drift_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """02_drift_and_retrain runs a short drift demo, retrains on the holiday week and passes its own check."""
    outputs, texts = _execute(DRIFT_NOTEBOOK, tmp_path, monkeypatch)
    assert any(text.startswith("check passed") for text in texts), texts[-2]
    assert any("image/png" in output.get("data", {}) for output in outputs), "the plot is not shown"
    assert (tmp_path / "demo-drift" / "weeks.csv").is_file()
    # The training sub-pipeline registered the retrained model inside the monitoring run.
    assert list((tmp_path / "home" / "runs").glob("monitoring-*/register/registered"))


@pytest.mark.slow
def test_rollout_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """03_safe_rollout trains, rolls out a better and a poor challenger on the local stack, and passes its check."""
    outputs, texts = _execute(ROLLOUT_NOTEBOOK, tmp_path, monkeypatch)
    assert any(text.startswith("check passed") for text in texts), texts[-2]
    assert any("image/png" in output.get("data", {}) for output in outputs), "the plot is not shown"
    assert (tmp_path / "demo-rollout" / "rollouts" / "challenger.json").is_file()


@pytest.mark.slow
def test_lifecycle_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """04_lifecycle: a holiday retrain promoted through its rollout, a corrupted one rolled back, no failed request."""
    outputs, texts = _execute(LIFECYCLE_NOTEBOOK, tmp_path, monkeypatch)
    assert any(text.startswith("check passed") for text in texts), texts[-2]
    assert any("image/png" in output.get("data", {}) for output in outputs), "the plot is not shown"
    assert (tmp_path / "demo-lifecycle" / "lifecycle.png").is_file()
    # The retrains ran as monitoring runs, the promotions and the rollback as rollout runs.
    runs = sorted(p.name.split("-")[0] for p in (tmp_path / "home" / "runs").iterdir())
    assert runs.count("monitoring") == 2 and runs.count("rollout") >= 3
