"""The README's shell examples, run as written.

Every ```bash block of README.md either runs here or is marked just above it with
``<!-- readme-test: cluster-only -->`` (needs a Kubeflow cluster or a bucket) or
``<!-- readme-test: skip: <reason> -->`` (placeholders for the reader's data, a server that runs
until stopped, ``make``). The runnable blocks run in order, one command at a time, in a temporary
folder holding only a link to the checkout's ``.venv`` (so ``.venv/bin/kfp-mlops`` works as
written and ``.kfp-mlops/`` is created there), with a temporary ``HOME`` and no KFP or GCS
settings. A new unmarked block that cannot run here fails this test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
VENV = Path(sys.executable).parent.parent
_FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)
_MARKER = re.compile(r"<!-- readme-test: (?P<kind>cluster-only|skip: (?P<reason>.+?)) -->\s*$", re.DOTALL)
_SHELL = {"bash", "sh", "shell", "console"}
# Settings of the developer's shell or of the test session a reader's shell would not have.
_UNSET = ("KFP_MLOPS_HOME", "KFP_MLOPS_STORE", "KFP_HOST", "KFP_TOKEN", "KFP_COOKIE", "STORAGE_EMULATOR_HOST")


def shell_blocks(text: str) -> list[tuple[int, str, str | None]]:
    """Each shell block: its line number, its body, and its marker (None when it should run)."""
    blocks = []
    for fence in _FENCE.finditer(text):
        if fence["lang"] not in _SHELL:
            continue
        before = text[: fence.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = _MARKER.search(before)
        if marker and marker["kind"].startswith("skip:") and not marker["reason"].strip():
            raise AssertionError(f"README line {text.count(chr(10), 0, fence.start()) + 1}: a skip needs a reason")
        line = text.count("\n", 0, fence.start()) + 1
        blocks.append((line, fence["body"], marker["kind"] if marker else None))
    return blocks


def commands(body: str) -> list[str]:
    """The block's commands: continuation lines joined, comment-only lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", body)
    return [line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_every_shell_block_runs_or_says_why_not() -> None:
    blocks = shell_blocks(README.read_text())
    assert blocks, "no shell blocks found in the README"
    runnable = [b for b in blocks if b[2] is None]
    assert runnable, "no README example runs here"
    # Commands a reader runs from the checkout, never one that rebuilds it or reaches a cluster.
    for line, body, _ in runnable:
        for command in commands(body):
            assert not command.startswith(("make ", "kubectl ")), (line, command)


@pytest.mark.slow
def test_runnable_examples_run_as_written(tmp_path: Path) -> None:
    workdir = tmp_path / "reader"
    workdir.mkdir()
    (workdir / ".venv").symlink_to(VENV)
    env = {key: value for key, value in os.environ.items() if key not in _UNSET}
    env |= {"HOME": str(tmp_path / "home"), "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}"}

    ran = []
    for line, body, marker in shell_blocks(README.read_text()):
        if marker is not None:
            continue
        for command in commands(body):
            done = subprocess.run(
                ["bash", "-c", command], cwd=workdir, env=env, capture_output=True, text=True, timeout=600
            )
            assert done.returncode == 0, f"README line {line}: {command}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            ran.append((command, done.stdout))

    assert len(ran) >= 3
    # What a reader sees: one progress line per task, and the summary of a run that deployed.
    first_run = ran[0][1]
    assert re.search(r"^  ingest +SUCCESS +\d+\.\d s$", first_run, re.MULTILINE), first_run
    assert "Champion  iris-classifier v" in first_run
    assert (workdir / ".kfp-mlops" / "store").is_dir()
