"""Fault: the challenger's model server is SIGKILLed in the middle of a canary, under 16 busy clients.

The local stack (nginx router, one v2 server per predictor, prediction logging on) serves a rollout
at canary 50 %. While 16 clients send predictions back to back, the challenger's server is killed.
What must survive: every client request is answered 200 -- requests in flight on the dead server and
those routed to it afterwards are retried by nginx on the legacy predictor (``proxy_next_upstream``
with the legacy as a ``backup`` server) -- and the next controller step rolls the rollout back
because the challenger is down: the legacy alone in the spec, still champion, the challenger rejected.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kfp_mlops.modeling.model_store import REJECTED, ModelStore
from kfp_mlops.rollout import CHALLENGER, LEGACY, StagePlan
from kfp_mlops.rollout import controller as rc
from kfp_mlops.rollout.state import StoredModels
from kfp_mlops.rollout.targets import LocalStackTarget
from kfp_mlops.serving.local.stack import LocalStack
from tests.faults.traffic import DEPLOYMENT, Traffic
from tests.support.models import crown, iris_model, register

pytestmark = pytest.mark.slow
CANARY = StagePlan(shadow=False, steps=(50, 100), min_labelled=300, min_positives=15, max_p99_latency_ms=5000.0)


@pytest.fixture()
def rollout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LocalStack, str, str, StoredModels]]:
    """A canary at 50 % of two stored Iris models (the legacy is champion), on a running local stack."""
    monkeypatch.setenv("PREDICTION_LOG_FLUSH_SECONDS", "0.2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    root, log = str(tmp_path / "store"), str(tmp_path / "log")
    legacy = crown(root, iris_model(tmp_path / "legacy", seed=0))
    challenger = register(root, iris_model(tmp_path / "challenger", estimator="decision_tree", seed=1)).version
    stored = StoredModels(root, "iris", legacy, challenger)
    with LocalStack(tmp_path / "stack", prediction_log=log, store_root=root) as stack:
        state = str(tmp_path / "rollout.json")
        started = rc.start(
            state,
            CANARY,
            f"{root}/models/iris/versions/{legacy}",
            f"{root}/models/iris/versions/{challenger}",
            base=rc.base_spec(DEPLOYMENT),
            target=LocalStackTarget(stack),
            stored=stored,
            log_root=log,
        )
        assert started.stage == "canary-50"
        yield stack, state, log, stored


def test_no_client_request_fails_and_the_next_step_rolls_back(
    rollout: tuple[LocalStack, str, str, StoredModels],
) -> None:
    stack, state, log, stored = rollout
    challenger = stack.servers[CHALLENGER]
    with Traffic(stack.url, connections=16) as traffic:
        traffic.wait_for(600)
        killed_at = time.monotonic()
        challenger.process.send_signal(signal.SIGKILL)
        challenger.process.wait()
        traffic.wait_for(len(traffic.outcomes) + 1500)
    before, after = traffic.predictors(0.0), traffic.predictors(killed_at + 1.0)
    print(
        f"\n{len(traffic.outcomes)} requests, statuses {dict(traffic.statuses())}; "
        f"until 1 s after the kill {dict(traffic.predictors() - after)}, from then on {dict(after)}"
    )
    assert traffic.statuses() == {200: len(traffic.outcomes)}, [o for o in traffic.outcomes if o.status != 200][:5]
    assert before[CHALLENGER] > 100  # it did serve its share before it died
    assert set(after) == {LEGACY}  # nginx skips the dead server

    result = rc.step(state, log, base=rc.base_spec(DEPLOYMENT), target=LocalStackTarget(stack))
    print(f"step: {result.action} {result.stage} -> {result.next_stage}: {result.reasons[0]}")
    assert (result.action, result.next_stage) == ("rollback", "rolled_back")
    assert "challenger is down" in result.reasons[0]
    assert [p.name for p in stack.spec.predictors] == [LEGACY]
    assert stack.servers[LEGACY].process.poll() is None
    store = ModelStore(stored.store_root)  # the champion untouched, the challenger rejected
    assert store.champion("iris").version == stored.legacy_version
    assert store.status("iris", stored.challenger_version).status == REJECTED
