"""Fault: nginx refuses a new configuration while clients are being served; the old one keeps serving.

Two ways a reload is refused, both under 16 busy clients: a configuration ``nginx -t`` refuses (an
unknown directive), and one it accepts but nginx cannot apply when signalled (its listening port
is taken by another process: nginx logs ``bind() failed`` and keeps its old workers). Either way
:meth:`~kfp_mlops.serving.local.router.Router.reload` raises, the configuration file is the one
nginx runs, no client request fails, and the next good reload is applied. (When a reload replaces
nginx's workers, the old ones close their idle kept-alive connections; a request that goes out on
one just then is sent again on a new connection, as HTTP clients do: see :mod:`tests.faults.traffic`.)
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from kfp_mlops.core.errors import MlopsError
from kfp_mlops.serving.local.stack import LocalStack
from kfp_mlops.serving.spec import DeploymentSpec, PredictorSpec
from tests.faults.traffic import DEPLOYMENT, Traffic
from tests.support.models import crown, iris_model

pytestmark = pytest.mark.slow


@pytest.fixture()
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    root = str(tmp_path / "store")
    version = crown(root, iris_model(tmp_path / "model"))
    spec = DeploymentSpec(DEPLOYMENT, (PredictorSpec("main", f"{root}/models/iris/versions/{version}"),))
    with LocalStack(tmp_path / "stack", store_root=root) as running:
        running.apply(spec)
        yield running


def test_a_refused_reload_leaves_the_old_configuration_serving(stack: LocalStack) -> None:
    router = stack.router
    running = router.config_path.read_text()
    with socket.socket() as taken, Traffic(stack.url) as traffic:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        traffic.wait_for(200)

        with pytest.raises(MlopsError, match=r"nginx refused the configuration: .*unknown directive"):
            router.reload(running.replace("worker_processes 1;", "worker_processes 1;\nno_such_directive on;"))
        assert router.config_path.read_text() == running
        traffic.wait_for(len(traffic.outcomes) + 200)

        elsewhere = running.replace(f"listen 127.0.0.1:{router.port};", f"listen 127.0.0.1:{taken.getsockname()[1]};")
        with pytest.raises(MlopsError, match=r"nginx did not apply the configuration .*could not bind\(\)"):
            router.reload(elsewhere)
        assert router.config_path.read_text() == running
        traffic.wait_for(len(traffic.outcomes) + 200)

        router.reload(running)  # a good reload is applied
        traffic.wait_for(len(traffic.outcomes) + 200)
    print(
        f"\n{len(traffic.outcomes)} requests through two refused reloads and a good one: {dict(traffic.statuses())}"
        f" ({traffic.resent} sent again on a new connection: the old workers closed their kept-alive ones)"
    )
    assert traffic.statuses() == {200: len(traffic.outcomes)}
    assert traffic.predictors() == {"main": len(traffic.outcomes)}
