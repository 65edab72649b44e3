"""Risk guarantees of a safe rollout, with real servers: router (nginx), v2 servers logging predictions, relay.

One local stack serves every scenario in turn (each with its own rollout state and request ids).
"""

from __future__ import annotations

import http.client
import json
import signal
from collections.abc import Iterator

import numpy as np
import pytest

from kfp_mlops.demos import fraud
from kfp_mlops.demos import rollout as demo
from kfp_mlops.rollout import CHALLENGER, LEGACY, Stage, StagePlan, spec_for
from kfp_mlops.rollout.controller import base_spec

pytestmark = pytest.mark.slow
CANARY_FIRST = StagePlan(
    shadow=False, steps=(25, 100), min_labelled=300, min_positives=15, max_labelled=5000, max_p99_latency_ms=2000.0
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    from kfp_mlops.serving.local.stack import LocalStack

    out = tmp_path_factory.mktemp("rollout-live")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (
            ("OMP_NUM_THREADS", "1"),
            ("PREDICTION_LOG_FLUSH_SECONDS", "0.2"),
            ("PREDICTION_LOG_POSITIVE_CLASS", "1"),
        ):
            patch.setenv(name, value)
        models = demo.train_models(out, rows=20_000)
        patch.setenv("KFP_MLOPS_STORE", models.store_root)  # the store the servers (and the controller) load from
        stream = demo.transaction_stream(4000)
        with LocalStack(out / "stack", prediction_log=str(out / "log")) as stack:
            yield {"out": out, "models": models, "stream": stream, "stack": stack}


@pytest.fixture(autouse=True)
def demo_store(setup: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's store within each test, for the controller's in-process checks (isolated_env removes it)."""
    monkeypatch.setenv("KFP_MLOPS_STORE", setup["models"].store_root)


def _scenario(setup: dict, name: str, challenger: str, **kwargs) -> demo.Scenario:
    return demo.Scenario(
        name,
        setup["models"].uris[challenger],
        setup["models"].uris["legacy"],
        setup["stack"],
        str(setup["out"] / "log"),
        str(setup["out"] / f"{name}.json"),
        **kwargs,
    )


def test_worse_challenger_is_rolled_back_before_more_than_the_first_canary_share(setup: dict) -> None:
    scenario = _scenario(setup, "worse", "poor")
    assert scenario.run(setup["stream"], max_batches=15, announce=lambda _: None) == "rolled_back"
    stages = {step["next_stage"] for step in scenario.steps}
    assert stages <= {"shadow", "canary-25", "rolled_back"}
    assert scenario.steps[-1]["action"] == "rollback" and "worse" in scenario.steps[-1]["reasons"][0]
    for step in scenario.steps:
        assert step["served"].get(CHALLENGER, 0) <= 0.4 * step["requests"]  # 25 % with sampling noise
    assert all(answer.status == 200 for answer in scenario.answers)


def test_better_challenger_is_promoted_and_in_shadow_clients_get_legacy_answers(setup: dict) -> None:
    from kfp_mlops.modeling.model_store import load_model

    scenario = _scenario(setup, "better", "challenger")
    assert scenario.run(setup["stream"], max_batches=20, announce=lambda _: None) == "promoted"
    assert [s["next_stage"] for s in scenario.steps if s["action"] == "promote"] == ["canary-25", "promoted"]
    assert all(answer.status == 200 for answer in scenario.answers)

    shadow = [a for a in scenario.answers if a.stage == "shadow"]
    assert shadow and {a.predictor for a in shadow} == {LEGACY}
    rows = setup["stream"].set_index(fraud.ID).loc[[a.request_id.removeprefix("better-") for a in shadow]]
    legacy = load_model(setup["models"].uris["legacy"], store_root=setup["models"].store_root).model
    expected = legacy.predict_proba(rows[list(fraud.FEATURES)])[:, list(legacy.classes_).index("1")]
    np.testing.assert_allclose([a.score for a in shadow], expected, rtol=1e-9, atol=1e-12)
    canary = [a for a in scenario.answers if a.stage == "canary-25"]
    assert {a.predictor for a in canary} == {LEGACY, CHALLENGER}
    assert {a.predictor for a in scenario.answers if a.stage == "promoted"} <= {CHALLENGER}


def test_failing_challenger_is_rolled_back_without_a_failed_client_request(setup: dict) -> None:
    scenario = _scenario(setup, "failing", "failing", plan=CANARY_FIRST)
    assert scenario.run(setup["stream"], max_batches=5, announce=lambda _: None) == "rolled_back"
    assert len(scenario.steps) == 1 and "guardrail: challenger error rate" in scenario.steps[0]["reasons"][0]
    assert [a for a in scenario.answers if a.status != 200] == []
    assert {a.predictor for a in scenario.answers} == {LEGACY}  # nginx retried every failed answer on legacy


def test_killed_challenger_is_rolled_back_without_a_failed_client_request(setup: dict) -> None:
    def kill_after_first_batch(scenario: demo.Scenario, number: int) -> None:
        if number == 1:
            setup["stack"].servers[CHALLENGER].process.send_signal(signal.SIGKILL)
            setup["stack"].servers[CHALLENGER].process.wait()

    scenario = _scenario(setup, "killed", "challenger", plan=CANARY_FIRST, before_batch=kill_after_first_batch)
    assert scenario.run(setup["stream"], max_batches=5, announce=lambda _: None) == "rolled_back"
    assert [s["action"] for s in scenario.steps] == ["hold", "rollback"]
    assert "challenger is down" in scenario.steps[-1]["reasons"][0]
    assert [a for a in scenario.answers if a.status != 200] == []
    assert scenario.steps[1]["served"] == {LEGACY: scenario.steps[1]["requests"]}


def test_feedback_reaches_the_predictor_that_served_the_request(setup: dict) -> None:
    stack, models = setup["stack"], setup["models"]
    stack.apply(
        spec_for(Stage("canary", 50), base_spec(demo.DEPLOYMENT), models.uris["legacy"], models.uris["challenger"])
    )
    port = int(stack.url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    seen = set()
    for _, row in setup["stream"].head(40).iterrows():
        connection.request(
            "POST",
            f"/v2/models/{demo.DEPLOYMENT}/infer",
            body=demo.request_body(row),
            headers={"Content-Type": "application/json"},
        )
        response = connection.getresponse()
        answer = json.loads(response.read())
        served_by, request_id = response.getheader("X-Predictor"), response.getheader("X-Request-Id")
        assert answer["parameters"]["predictor"] == served_by and request_id
        label = next(o for o in answer["outputs"] if o["name"] == "label")["data"][0]
        truth = str(row[fraud.LABEL])
        feedback_path = f"/predictors/{served_by}/v2/models/{demo.DEPLOYMENT}/feedback"
        connection.request(
            "POST",
            feedback_path,
            body=json.dumps({"request_id": request_id, "truth": [truth]}),
            headers={"Content-Type": "application/json"},
        )
        feedback = connection.getresponse()
        recorded = json.loads(feedback.read())
        assert feedback.status == 200 and recorded["predictor"] == served_by, recorded
        assert recorded["request_id"] == request_id and recorded["correct"] == int(label == truth)
        assert feedback.getheader("X-Request-Id")
        seen.add(served_by)
        other = CHALLENGER if served_by == LEGACY else LEGACY  # the other predictor never answered this id
        connection.request(
            "POST",
            f"/predictors/{other}/v2/models/{demo.DEPLOYMENT}/feedback",
            body=json.dumps({"request_id": request_id, "truth": [truth]}),
            headers={"Content-Type": "application/json"},
        )
        elsewhere = connection.getresponse()
        reason = elsewhere.read()
        assert elsewhere.status == 404, reason
    assert seen == {LEGACY, CHALLENGER}
