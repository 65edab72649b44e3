"""Executing the notebooks: for their tests, and to commit them with the outputs a reader sees.

A notebook runs top to bottom with nbclient in a folder of its own (its working directory, with
``KFP_MLOPS_HOME`` at ``<folder>/.kfp-mlops``), on a kernel running this interpreter: ``python3``
when its kernelspec starts this interpreter, else a kernelspec pointing at ``sys.executable`` written
under the folder. The committed notebooks carry the outputs of such a run (``make notebooks``:
``python -m tests.support.notebooks notebooks/*.ipynb``), with the folder's path shown as ``.``, so
what a reader sees on the repository is what the current code prints; the notebook tests run them
again and compare the outputs' structure (:func:`structure`) with the committed one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# A hang guard, not a speed target: a demo's cell runs pipelines and the local stack for minutes on a loaded machine.
CELL_TIMEOUT_S = 900
_EXECUTABLE_MARK = "kernel executable: "
# What changes from run to run in an output's text: numbers with their signs, hex digests and the
# versions, times and run names made of them. structure() compares texts with these masked.
_VOLATILE = re.compile(r"[+-]?[0-9a-f]*\d[0-9a-f]*")


class NotebookFailed(Exception):
    """A cell raised, or the kernel was not this interpreter."""


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


def _kernel(folder: Path) -> tuple[str, dict[str, str]]:
    """The kernel to run: ``python3`` when it runs this interpreter, else one written under ``folder``.

    Returns:
        The kernel's name and the environment variables that make it findable.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        spec = None
    if spec is not None and _starts_this_python(spec.argv):
        return "python3", {}
    jupyter_path = folder / "jupyter"
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
    return "kfp-mlops-test", {"JUPYTER_PATH": str(jupyter_path)}


@contextmanager
def _environment(values: dict[str, str | None]) -> Iterator[None]:
    """Sets ``values`` (``None``: unsets) in this process's environment, which the kernel inherits, until the end."""
    saved = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def execute(path: Path, folder: Path) -> Any:
    """Runs the notebook at ``path`` in ``folder``; returns the executed notebook (nbformat 4).

    The working folder of the notebook's code is ``folder`` and its ``KFP_MLOPS_HOME``
    ``folder/.kfp-mlops``, where the store and W&B's offline runs go too. The kernel's interpreter
    is checked by a last cell added to the executed copy and removed from what is returned.

    Raises:
        NotebookFailed: a cell raised (the message holds nbclient's report), or the kernel ran
            another interpreter.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    folder.mkdir(parents=True, exist_ok=True)
    kernel_name, kernel_env = _kernel(folder)
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(f"import sys; print({_EXECUTABLE_MARK!r} + sys.executable)"))
    client = NotebookClient(
        nb,
        kernel_name=kernel_name,
        timeout=CELL_TIMEOUT_S,
        record_timing=False,
        resources={"metadata": {"path": str(folder)}},
    )
    # W&B offline, in the package's default folder ($KFP_MLOPS_HOME/wandb): what a reader without a key sees.
    run_env = {"KFP_MLOPS_HOME": str(folder / ".kfp-mlops"), "WANDB_MODE": "offline", "WANDB_API_KEY": None}
    with _environment({**run_env, "WANDB_DIR": None, "KFP_MLOPS_STORE": None, **kernel_env}):
        try:
            client.execute()
        except (CellExecutionError, CellTimeoutError) as exc:
            raise NotebookFailed(f"{path.name} failed:\n{exc}") from exc
    check = nb.cells.pop()
    shown = "".join(output.get("text", "") for output in check.outputs)
    if f"{_EXECUTABLE_MARK}{sys.executable}" not in shown:
        raise NotebookFailed(f"{path.name} ran on another interpreter: {shown!r}")
    return nb


def text(output: dict) -> str:
    """The text of one cell output (stream, result, display or error)."""
    if output.get("output_type") == "stream":
        return str(output.get("text", ""))
    if output.get("output_type") == "error":
        return "\n".join([output.get("ename", ""), output.get("evalue", "")])
    data = output.get("data", {})
    return "\n".join(str(data.get(kind, "")) for kind in ("text/plain", "text/html") if kind in data)


def outputs(nb: Any) -> list[dict]:
    """Every output of every code cell, in order."""
    return [output for cell in nb.cells if cell.cell_type == "code" for output in cell.outputs]


def relocate(nb: Any, folder: Path) -> Any:
    """Shows the run's folder as ``.`` in every text output, so that no machine's path is committed."""
    prefix = str(folder.resolve())

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(prefix + os.sep, "").replace(prefix, ".")
        if isinstance(value, list):
            return [clean(item) for item in value]
        return value

    for output in outputs(nb):
        if "text" in output:
            output["text"] = clean(output["text"])
        for kind, value in output.get("data", {}).items():
            if kind.startswith("text/"):
                output["data"][kind] = clean(value)
    return nb


def structure(nb: Any) -> list[list[tuple[str, ...]]]:
    """Per code cell, its outputs' kinds and texts with the volatile parts masked.

    Consecutive stream outputs of one name are joined (the kernel may split them anywhere), a
    table's text is reduced to its column headers, numbers, digests and the versions and run names
    made of them are masked and lines are sorted, so that two runs of the same code compare equal
    while a change in what a cell shows does not.
    """
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        shown: list[tuple[str, ...]] = []
        for output in cell.outputs:
            kind = output["output_type"]
            if kind == "stream":
                if shown and shown[-1][:2] == ("stream", output["name"]):
                    shown[-1] = ("stream", output["name"], shown[-1][2] + str(output["text"]))
                else:
                    shown.append(("stream", output["name"], str(output["text"])))
                continue
            data = output.get("data", {})
            head = re.search(r"<thead>(.*?)</thead>", str(data.get("text/html", "")), re.S)
            headers = re.findall(r"<th[^>]*>(.*?)</th>", head.group(1), re.S) if head else []
            shown.append((kind, ",".join(sorted(data)), "|".join(dict.fromkeys(headers)) if headers else text(output)))
        cells.append([(*entry[:2], _mask(entry[2])) for entry in shown])
    return cells


def _mask(value: str) -> str:
    """The text's lines, volatile parts masked and spaces collapsed, sorted (some listings have no set order)."""
    lines = (" ".join(_VOLATILE.sub("#", line).split()) for line in value.splitlines())
    return "\n".join(sorted(line for line in lines if line))


def main(argv: Sequence[str]) -> int:
    """``python -m tests.support.notebooks NOTEBOOK...``: runs each notebook and writes it back with its outputs."""
    import nbformat

    if not argv:
        print("usage: python -m tests.support.notebooks NOTEBOOK.ipynb...", file=sys.stderr)
        return 2
    for name in argv:
        path = Path(name)
        with tempfile.TemporaryDirectory(prefix=f"{path.stem}-") as scratch:
            folder = Path(scratch)
            try:
                nb = relocate(execute(path, folder), folder)
            except NotebookFailed as exc:
                print(exc, file=sys.stderr)
                return 1
        committed = nbformat.read(path, as_version=4)
        nb.metadata = committed.metadata  # the kernel's details stay those of any reader's python3
        nbformat.write(nb, path)
        print(f"{path}: {len(outputs(nb))} outputs written")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
