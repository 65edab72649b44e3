"""A real Prometheus Pushgateway (Debian's ``prometheus-pushgateway``) on a free loopback port.

``make tools`` and ``.ci/run`` install the package; a test that needs the gateway is skipped with
the install command when the program is missing. :func:`scrape` reads the gateway's ``/metrics``
back with prometheus_client's own text parser.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROGRAM = "prometheus-pushgateway"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_pushgateway(workdir: Path) -> Iterator[str]:
    """Starts a Pushgateway (state in ``workdir``) and yields its ``http://127.0.0.1:<port>``; stops it after.

    Raises:
        FileNotFoundError: the program is not installed.
        TimeoutError: it did not answer within 10 s.
    """
    program = shutil.which(PROGRAM) or (f"/usr/bin/{PROGRAM}" if Path(f"/usr/bin/{PROGRAM}").exists() else None)
    if program is None:
        raise FileNotFoundError(f"{PROGRAM} is not installed: apt-get install -y {PROGRAM}")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (workdir / "pushgateway.log").open("w")
    process = subprocess.Popen(
        # Debian's default persistence file is shared: keep each gateway's state its own.
        [
            program,
            f"--web.listen-address=127.0.0.1:{port}",
            f"--persistence.file={workdir / 'pushgateway.data'}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise TimeoutError(f"{PROGRAM} did not start on {url}: {(workdir / 'pushgateway.log').read_text()}")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Our samples on the gateway, keyed by (name, labels); the empty ``instance`` label it adds is left out."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset((k, v) for k, v in sample.labels.items() if (k, v) != ("instance", ""))): sample.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("kfp_mlops_")
        for sample in family.samples
    }
