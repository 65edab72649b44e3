"""Tests for submitting, scheduling and waiting for pipelines on KFP (kfp_mlops.core.kfp_client).

No KFP backend can run on this machine (it needs Kubernetes, Argo Workflows, MySQL and object
storage), so the backend is stood in for by ``tests.support.kfp_api_standin``: an in-memory
imitation of the v2beta1 REST API on 127.0.0.1. Everything else is real: ``kfp.Client``,
``kfp_server_api``, urllib3 and HTTP, and the pipeline is compiled here with
``kfp.compiler.Compiler`` from a tiny component. The stand-in checks credentials, answers 5xx a
given number of times, stalls, and moves runs through states, so authentication, retries,
timeouts and waiting are tested against real HTTP.
"""

# No `from __future__ import annotations`: kfp reads component signatures' real types.
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import kfp
import pytest
import yaml
from kfp import compiler, dsl

from kfp_mlops.core.config import Settings
from kfp_mlops.core.errors import ConfigError, MlopsError
from kfp_mlops.core.kfp_client import RetryPolicy, WaitTimeout, connect, schedule, submit, wait_for_run
from tests.support.kfp_api_standin import KfpApiStandIn
from tests.support.loopback import JsonHandler, LoopbackServer

HEALTHZ = "/apis/v2beta1/healthz"
RUNS = "/apis/v2beta1/runs"
RECURRING = "/apis/v2beta1/recurringruns"
EXPERIMENTS = "/apis/v2beta1/experiments"


@dsl.component(base_image="python:3.11-slim")
def add(a: int, b: int) -> int:
    """Adds two numbers."""
    return a + b


@dsl.pipeline(name="tiny-sum")
def tiny_sum(a: int = 1, b: int = 2) -> None:
    """One task, two parameters."""
    add(a=a, b=b)


@pytest.fixture(autouse=True)
def kfp_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keeps kfp.Client away from the user's ~/.config/kfp/context.json and KFP variables."""
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    for var in (
        "KFP_NAMESPACE",
        "KF_PIPELINES_ENDPOINT",
        "KF_PIPELINES_UI_ENDPOINT",
        "KF_PIPELINES_DEFAULT_EXPERIMENT_NAME",
        "KF_PIPELINES_OVERRIDE_EXPERIMENT_NAME",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture()
def standin() -> Iterator[KfpApiStandIn]:
    """A fresh in-memory KFP API."""
    with KfpApiStandIn() as api:
        yield api


# Quick retries for tests: waits of 0, 0.1 and 0.2 s.
FAST = RetryPolicy(attempts=4, backoff_seconds=0.05, max_wait_seconds=1.0)


@pytest.fixture()
def client(standin: KfpApiStandIn) -> kfp.Client:
    return connect(standin.url, retry=FAST)


@pytest.fixture()
def package(tmp_path: Path) -> Path:
    """The tiny pipeline, compiled."""
    path = tmp_path / "tiny_sum.yaml"
    compiler.Compiler().compile(tiny_sum, str(path))
    return path


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- submit ---------------------------------------------------------------------------------------


def test_submit_creates_one_run_in_a_new_experiment(standin: KfpApiStandIn, client: kfp.Client, package: Path) -> None:
    run = submit(package, client=client, experiment="nightly", run_name="sum-1", arguments={"a": 5, "b": 7})

    assert [e["display_name"] for e in standin.experiments.values()] == ["nightly"]
    assert list(standin.runs) == [run.run_id]
    assert run.experiment == "nightly"
    assert run.url == f"{standin.url}/#/runs/details/{run.run_id}"
    [request] = standin.requests_to("POST", RUNS)
    sent = request.body
    assert sent["display_name"] == "sum-1"
    assert sent["experiment_id"] == next(iter(standin.experiments))
    assert sent["runtime_config"]["parameters"] == {"a": 5, "b": 7}
    assert sent["pipeline_spec"] == yaml.safe_load(package.read_text())


def test_submit_reuses_an_existing_experiment(standin: KfpApiStandIn, client: kfp.Client, package: Path) -> None:
    first = submit(package, client=client, experiment="nightly", run_name="one", arguments={})
    second = submit(package, client=client, experiment="nightly", run_name="two", arguments={})

    assert len(standin.experiments) == 1
    assert len(standin.requests_to("POST", EXPERIMENTS)) == 1
    assert set(standin.runs) == {first.run_id, second.run_id}
    assert {r["experiment_id"] for r in standin.runs.values()} == set(standin.experiments)


def test_submit_passes_namespace_and_service_account(standin: KfpApiStandIn, package: Path) -> None:
    client = connect(standin.url, namespace="team-a")
    submit(
        package, client=client, experiment="nightly", run_name="one", arguments={}, service_account="pipeline-runner"
    )

    [experiment] = standin.experiments.values()
    assert experiment["namespace"] == "team-a"
    [run] = standin.runs.values()
    assert run["service_account"] == "pipeline-runner"


def test_submit_missing_package_names_it(standin: KfpApiStandIn, client: kfp.Client, tmp_path: Path) -> None:
    missing = tmp_path / "never_compiled.yaml"
    with pytest.raises(MlopsError, match=r"never_compiled\.yaml"):
        submit(missing, client=client, experiment="nightly", run_name="one", arguments={})
    assert standin.requests_to("POST") == []


def test_submit_not_a_pipeline_is_an_mlops_error(standin: KfpApiStandIn, client: kfp.Client, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.yaml"
    bogus.write_text("pipelineInfo: {name: x}\nnotAField: 1\n")
    with pytest.raises(MlopsError, match="not a compiled KFP pipeline"):
        submit(bogus, client=client, experiment="nightly", run_name="one", arguments={})
    assert standin.requests_to("POST", RUNS) == []


def test_submit_backend_refusal_is_one_line(standin: KfpApiStandIn, client: kfp.Client, package: Path) -> None:
    standin.fail_next("POST", RUNS, 400, "pipeline spec is invalid:\n  no root")
    with pytest.raises(MlopsError) as caught:
        submit(package, client=client, experiment="nightly", run_name="one", arguments={})
    message = str(caught.value)
    assert "HTTP 400" in message and "pipeline spec is invalid: no root" in message
    assert "\n" not in message
    assert len(standin.requests_to("POST", RUNS)) == 1  # a 4xx is never repeated
    assert standin.runs == {}


# -- schedule -------------------------------------------------------------------------------------


def test_schedule_twice_leaves_exactly_one(standin: KfpApiStandIn, client: kfp.Client, package: Path) -> None:
    first = schedule(
        package, client=client, name="daily-sum", cron="0 0 2 * * *", experiment="scheduled", arguments={"a": 1}
    )
    second = schedule(
        package,
        client=client,
        name="daily-sum",
        cron="0 30 3 * * MON-FRI",
        experiment="scheduled",
        arguments={"a": 2},
        max_concurrency=2,
    )

    assert first.replaced == []
    assert second.replaced == [first.recurring_run_id]
    assert second.cron == "0 30 3 * * MON-FRI"
    assert list(standin.recurring_runs) == [second.recurring_run_id]
    sent = standin.requests_to("POST", RECURRING)[-1].body
    assert sent["display_name"] == "daily-sum"
    assert sent["trigger"]["cron_schedule"]["cron"] == "0 30 3 * * MON-FRI"
    assert sent["runtime_config"]["parameters"] == {"a": 2}
    assert sent["max_concurrency"] == 2
    assert sent["mode"] == "ENABLE" and sent["no_catchup"] is True
    assert sent["pipeline_spec"] == yaml.safe_load(package.read_text())
    # Created before the old one was deleted.
    order = [(r.method, r.path) for r in standin.requests if r.method in ("POST", "DELETE")]
    assert order[-2:] == [("POST", RECURRING), ("DELETE", f"{RECURRING}/{first.recurring_run_id}")]


def test_schedule_replaces_every_duplicate_across_pages_and_nothing_else(package: Path) -> None:
    with KfpApiStandIn(max_page_size=2) as standin:
        client = connect(standin.url)
        here = client.create_experiment("scheduled").experiment_id
        elsewhere = client.create_experiment("other").experiment_id

        def make(name: str, experiment_id: str) -> str:
            return client.create_recurring_run(
                experiment_id, name, cron_expression="0 0 1 * * *", pipeline_package_path=str(package)
            ).recurring_run_id

        duplicates = [make("daily-sum", here) for _ in range(5)]
        keep = [make("weekly-sum", here), make("daily-sum", elsewhere)]

        result = schedule(
            package, client=client, name="daily-sum", cron="0 0 2 * * *", experiment="scheduled", arguments={}
        )

        assert sorted(result.replaced) == sorted(duplicates)
        assert set(standin.recurring_runs) == {result.recurring_run_id, *keep}
        pages = standin.requests_to("GET", RECURRING)
        assert len(pages) == 3 and "page_token" in pages[-1].query


def test_schedule_failed_create_keeps_the_old_schedule(
    standin: KfpApiStandIn, client: kfp.Client, package: Path
) -> None:
    old = schedule(package, client=client, name="daily-sum", cron="0 0 2 * * *", experiment="scheduled", arguments={})
    standin.fail_next("POST", RECURRING, 500, "scheduler unavailable")  # a POST's 500 is not repeated

    with pytest.raises(MlopsError, match="scheduler unavailable"):
        schedule(package, client=client, name="daily-sum", cron="0 0 3 * * *", experiment="scheduled", arguments={})

    assert list(standin.recurring_runs) == [old.recurring_run_id]
    assert standin.requests_to("DELETE") == []


def test_schedule_failed_delete_names_both_ids(standin: KfpApiStandIn, client: kfp.Client, package: Path) -> None:
    old = schedule(package, client=client, name="daily-sum", cron="0 0 2 * * *", experiment="scheduled", arguments={})
    standin.fail_next("DELETE", RECURRING, 500, "try later", times=100)

    with pytest.raises(MlopsError) as caught:
        schedule(package, client=client, name="daily-sum", cron="0 0 3 * * *", experiment="scheduled", arguments={})

    [new_id] = set(standin.recurring_runs) - {old.recurring_run_id}
    assert old.recurring_run_id in str(caught.value) and new_id in str(caught.value)


@pytest.mark.parametrize("cron", ["0 2 * * *", "61 * * * * *", "abc"])
def test_schedule_bad_cron_creates_nothing(
    standin: KfpApiStandIn, client: kfp.Client, package: Path, cron: str
) -> None:
    with pytest.raises(ConfigError, match="cron"):
        schedule(package, client=client, name="daily-sum", cron=cron, experiment="scheduled", arguments={})
    assert standin.requests_to("POST") == []
    assert standin.recurring_runs == {} and standin.experiments == {}


@pytest.mark.parametrize("max_concurrency", [0, 11])
def test_schedule_max_concurrency_out_of_range(
    standin: KfpApiStandIn, client: kfp.Client, package: Path, max_concurrency: int
) -> None:
    with pytest.raises(ConfigError, match="max_concurrency"):
        schedule(
            package,
            client=client,
            name="daily-sum",
            cron="0 0 2 * * *",
            experiment="scheduled",
            arguments={},
            max_concurrency=max_concurrency,
        )
    assert standin.requests_to("POST") == []


def test_schedule_missing_package_names_it(standin: KfpApiStandIn, client: kfp.Client, tmp_path: Path) -> None:
    with pytest.raises(MlopsError, match=r"never_compiled\.yaml"):
        schedule(
            tmp_path / "never_compiled.yaml",
            client=client,
            name="daily-sum",
            cron="0 0 2 * * *",
            experiment="scheduled",
            arguments={},
        )
    assert standin.requests_to("POST") == []


# -- connect --------------------------------------------------------------------------------------


def test_connect_without_host_says_how_to_set_one() -> None:
    with pytest.raises(ConfigError, match="no KFP host: set KFP_HOST or pass --host"):
        connect(Settings.from_env().kfp_host)  # conftest unsets KFP_HOST


def test_connect_takes_the_kfp_host_setting(standin: KfpApiStandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    # The caller reads KFP_HOST where it starts (the CLI) and passes it; a trailing slash is fine.
    monkeypatch.setenv("KFP_HOST", standin.url + "/")
    settings = Settings.from_env()
    connect(settings.kfp_host, settings.kfp_namespace).list_experiments()
    assert standin.requests_to("GET", EXPERIMENTS)


def test_connect_without_scheme_suggests_one() -> None:
    with pytest.raises(ConfigError, match="http://localhost:8080"):
        connect("localhost:8080")


def test_connect_to_a_closed_port_fails_after_bounded_retries() -> None:
    host = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    with pytest.raises(ConfigError, match=f"{host} did not answer within .* s \\(4 attempt"):
        connect(host, retry=FAST)
    assert time.monotonic() - started < 10


def test_connect_to_a_silent_host_times_out() -> None:
    # Accepts TCP connections (the kernel's backlog) but never answers.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        host = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(ConfigError, match=f"{host} did not answer within 0.5 s \\(2 attempt"):
            connect(host, timeout=0.5, retry=RetryPolicy(attempts=2, backoff_seconds=0))
        assert time.monotonic() - started < 5


def test_connect_retries_an_unhealthy_api_a_bounded_number_of_times(standin: KfpApiStandIn) -> None:
    # kfp.Client alone would retry this health check 5 times, 5 s apart.
    standin.fail_next("GET", HEALTHZ, 503, "database not ready", times=100)
    with pytest.raises(MlopsError, match=f"{standin.url} failed its health check 4 times: too many 503"):
        connect(standin.url, retry=FAST)
    assert len(standin.requests_to("GET", HEALTHZ)) == 4


def test_connect_to_a_login_page_says_so() -> None:
    class LoginPage(JsonHandler):
        def do_GET(self) -> None:
            page = b"<html><body>Log in to Kubeflow</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

    class LoginServer(LoopbackServer):
        handler = LoginPage

    with LoginServer() as server, pytest.raises(MlopsError, match="not JSON: is it the KFP API endpoint, and not"):
        connect(server.url)


# -- credentials ----------------------------------------------------------------------------------

TOKEN = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0.c2lnbmF0dXJl"  # shaped like a JWT; only ever compared


def test_a_bearer_token_goes_with_every_call(package: Path) -> None:
    with KfpApiStandIn(token=TOKEN) as standin:
        client = connect(standin.url, token=TOKEN)
        submit(package, client=client, experiment="nightly", run_name="one", arguments={})

        assert len(standin.requests) >= 3  # health check, experiment, run
        assert {r.headers.get("authorization") for r in standin.requests} == {f"Bearer {TOKEN}"}
        assert len(standin.runs) == 1


def test_a_token_file_is_read_again_on_every_call(tmp_path: Path, package: Path) -> None:
    """A projected service account token is rotated by the kubelet; the client must follow."""
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    with KfpApiStandIn(token="first-token") as standin:
        client = connect(standin.url, token_file=token_file)
        submit(package, client=client, experiment="nightly", run_name="one", arguments={})

        token_file.write_text("second-token\n")
        standin.token = "second-token"
        submit(package, client=client, experiment="nightly", run_name="two", arguments={})

        assert len(standin.runs) == 2
        assert standin.requests[-1].headers["authorization"] == "Bearer second-token"


def test_a_session_cookie_goes_with_every_call(package: Path) -> None:
    cookie = "authservice_session=MTcwMDAwMDAwMHxkYXRh"
    with KfpApiStandIn(cookie=cookie) as standin:
        client = connect(standin.url, cookie=cookie)
        submit(package, client=client, experiment="nightly", run_name="one", arguments={})

        assert {r.headers.get("cookie") for r in standin.requests} == {cookie}
        assert len(standin.runs) == 1


@pytest.mark.parametrize(
    ("credentials", "described"),
    [
        ({}, "no credentials"),
        ({"token": "not-the-token"}, "a bearer token"),
        ({"cookie": "s=wrong"}, "a session cookie"),
    ],
)
def test_refused_credentials_are_named_but_never_shown(credentials: dict[str, str], described: str) -> None:
    with KfpApiStandIn(token=TOKEN) as standin:
        with pytest.raises(MlopsError) as caught:
            connect(standin.url, retry=FAST, **credentials)
        message = str(caught.value)
        assert f"refused {described} (HTTP 401" in message and "--token" in message
        assert all(value not in message for value in credentials.values())
        assert len(standin.requests) == 1  # a 401 is not repeated


def test_a_login_redirect_is_reported_not_followed() -> None:
    with KfpApiStandIn(cookie="authservice_session=valid", login_redirect=True) as standin:
        with pytest.raises(MlopsError, match="refused no credentials \\(HTTP 302"):
            connect(standin.url)
        assert [r.path for r in standin.requests] == [HEALTHZ]


def test_a_token_and_a_token_file_together_are_refused(standin: KfpApiStandIn, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    with pytest.raises(ConfigError, match="not both"):
        connect(standin.url, token=TOKEN, token_file=token_file)
    assert standin.requests == []


@pytest.mark.parametrize("content", [None, "  \n"])
def test_an_unreadable_or_empty_token_file_is_named(
    standin: KfpApiStandIn, tmp_path: Path, content: str | None
) -> None:
    token_file = tmp_path / "token"
    if content is not None:
        token_file.write_text(content)
    with pytest.raises(ConfigError, match=f"KFP token file {token_file}"):
        connect(standin.url, token_file=token_file)
    assert standin.requests == []


def test_settings_read_credentials_but_never_show_them(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "KFP_TOKEN": TOKEN,
            "KF_PIPELINES_SA_TOKEN_PATH": str(tmp_path / "token"),
            "KFP_COOKIE": "authservice_session=abc",
        }
    )
    assert settings.kfp_token == TOKEN
    assert settings.kfp_token_file == tmp_path / "token"
    assert settings.kfp_cookie == "authservice_session=abc"
    assert TOKEN not in repr(settings) and "authservice_session" not in repr(settings)


# -- faults: the KFP API answering 5xx (issue 11's fault-injection suite) --------------------------


def test_5xx_answers_then_success_are_retried(standin: KfpApiStandIn, client: kfp.Client, package: Path) -> None:
    standin.fail_next("POST", RUNS, 503, "apiserver overloaded", times=2)
    standin.fail_next("GET", EXPERIMENTS, 500, "database hiccup", times=3)

    run = submit(package, client=client, experiment="nightly", run_name="one", arguments={})

    assert list(standin.runs) == [run.run_id]  # one run, although its create was sent three times
    assert len(standin.requests_to("POST", RUNS)) == 3


def test_5xx_answers_that_never_stop_end_in_a_clear_error(
    standin: KfpApiStandIn, client: kfp.Client, package: Path
) -> None:
    standin.fail_next("POST", RUNS, 503, "apiserver overloaded", times=100)
    started = time.monotonic()

    with pytest.raises(MlopsError) as caught:
        submit(package, client=client, experiment="nightly", run_name="one", arguments={})

    assert str(caught.value).startswith("KFP kept failing while submitting")
    assert "4 attempt(s), too many 503 error responses" in str(caught.value)
    assert len(standin.requests_to("POST", RUNS)) == 4 and standin.runs == {}
    assert time.monotonic() - started >= 0.1 + 0.2  # urllib3 waits 0, then 0.1 and 0.2 s (backoff 0.05 s, doubling)


def test_a_post_answered_500_is_not_repeated(standin: KfpApiStandIn, client: kfp.Client, package: Path) -> None:
    """A 500 to a create may have created the run: repeating it could start the pipeline twice."""
    standin.fail_next("POST", RUNS, 500, "internal error after insert")
    with pytest.raises(MlopsError, match="HTTP 500 internal error after insert"):
        submit(package, client=client, experiment="nightly", run_name="one", arguments={})
    assert len(standin.requests_to("POST", RUNS)) == 1


def test_429_waits_as_retry_after_says_within_the_cap(standin: KfpApiStandIn, package: Path) -> None:
    client = connect(standin.url, retry=RetryPolicy(attempts=3, backoff_seconds=0, max_wait_seconds=0.5))
    standin.fail_next("POST", RUNS, 429, "slow down", retry_after=3600)
    started = time.monotonic()

    submit(package, client=client, experiment="nightly", run_name="one", arguments={})

    assert 0.5 <= time.monotonic() - started < 5  # waited, but not the hour the server asked for
    assert len(standin.runs) == 1


def test_every_call_has_a_timeout(standin: KfpApiStandIn, package: Path) -> None:
    client = connect(standin.url, timeout=0.3, retry=RetryPolicy(attempts=2, backoff_seconds=0))
    standin.stall_next("GET", EXPERIMENTS, 2.0, times=2)
    started = time.monotonic()

    with pytest.raises(MlopsError, match=r"KFP kept failing while submitting .* 2 attempt\(s\), .*timed out"):
        submit(package, client=client, experiment="nightly", run_name="one", arguments={})

    assert time.monotonic() - started < 1.9
    assert standin.runs == {}


# -- wait_for_run ---------------------------------------------------------------------------------


def test_wait_follows_a_run_to_success(package: Path) -> None:
    with KfpApiStandIn(run_states=("PENDING", "RUNNING", "RUNNING", "SUCCEEDED")) as standin:
        client = connect(standin.url)
        run = submit(package, client=client, experiment="nightly", run_name="one", arguments={})
        seen: list[str] = []

        finished = wait_for_run(client, run.run_id, timeout=30, poll_seconds=0.01, on_state=seen.append)

        assert finished.succeeded and finished.state == "SUCCEEDED" and finished.error is None
        assert seen == ["RUNNING", "SUCCEEDED"]  # each change once
        assert len(standin.requests_to("GET", f"{RUNS}/{run.run_id}")) == 3


def test_wait_reports_a_failed_run_with_its_error(package: Path) -> None:
    with KfpApiStandIn(run_states=("PENDING", "FAILED"), run_error="task validate failed:\n 3 bad columns") as standin:
        client = connect(standin.url)
        run = submit(package, client=client, experiment="nightly", run_name="one", arguments={})

        finished = wait_for_run(client, run.run_id, timeout=30, poll_seconds=0.01)

        assert not finished.succeeded and finished.state == "FAILED"
        assert finished.error == "task validate failed: 3 bad columns"


def test_wait_gives_up_at_its_deadline(package: Path) -> None:
    with KfpApiStandIn(run_states=("PENDING", "RUNNING")) as standin:
        client = connect(standin.url)
        run = submit(package, client=client, experiment="nightly", run_name="one", arguments={})
        started = time.monotonic()

        with pytest.raises(WaitTimeout, match=f"run {run.run_id} is still RUNNING after 0 s") as caught:
            wait_for_run(client, run.run_id, timeout=0.3, poll_seconds=0.1)

        assert caught.value.state == "RUNNING"
        assert 0.3 <= time.monotonic() - started < 3


def test_wait_retries_a_poll_answered_5xx(standin: KfpApiStandIn, client: kfp.Client, package: Path) -> None:
    run = submit(package, client=client, experiment="nightly", run_name="one", arguments={})
    standin.fail_next("GET", RUNS, 502, "bad gateway", times=2)
    standin.run_states = ["PENDING", "SUCCEEDED"]

    assert wait_for_run(client, run.run_id, timeout=30, poll_seconds=0.01).succeeded
