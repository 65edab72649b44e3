"""Tests for submitting and scheduling pipelines on KFP (kfp_mlops.core.kfp_client).

No KFP backend can run on this machine (it needs Kubernetes, Argo Workflows, MySQL and object
storage), so the backend is stood in for by ``tests.support.kfp_api_standin``: an in-memory
imitation of the v2beta1 REST API on 127.0.0.1. Everything else is real: ``kfp.Client``,
``kfp_server_api``, urllib3 and HTTP, and the pipeline is compiled here with
``kfp.compiler.Compiler`` from a tiny component.
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
from kfp_mlops.core.kfp_client import connect, schedule, submit, validate_cron
from tests.support.kfp_api_standin import KfpApiStandIn

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


@pytest.fixture()
def client(standin: KfpApiStandIn) -> kfp.Client:
    return connect(standin.url)


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
    standin.fail_next("POST", RECURRING, 500, "scheduler unavailable")

    with pytest.raises(MlopsError, match="scheduler unavailable"):
        schedule(package, client=client, name="daily-sum", cron="0 0 3 * * *", experiment="scheduled", arguments={})

    assert list(standin.recurring_runs) == [old.recurring_run_id]
    assert standin.requests_to("DELETE") == []


def test_schedule_failed_delete_names_both_ids(standin: KfpApiStandIn, client: kfp.Client, package: Path) -> None:
    old = schedule(package, client=client, name="daily-sum", cron="0 0 2 * * *", experiment="scheduled", arguments={})
    standin.fail_next("DELETE", RECURRING, 500, "try later")

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


def test_connect_to_a_closed_port_fails_fast() -> None:
    host = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    with pytest.raises(ConfigError, match=host):
        connect(host)
    assert time.monotonic() - started < 10


def test_connect_to_a_silent_host_times_out() -> None:
    # Accepts TCP connections (the kernel's backlog) but never answers.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        host = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(ConfigError, match=f"{host} did not answer within 0.5 s"):
            connect(host, timeout=0.5)
        assert time.monotonic() - started < 5


def test_connect_to_an_unhealthy_api_fails_fast(standin: KfpApiStandIn) -> None:
    # kfp.Client alone would retry this health check 5 times, 5 s apart.
    standin.fail_next("GET", "/apis/v2beta1/healthz", 503, "database not ready")
    started = time.monotonic()
    with pytest.raises(MlopsError, match=f"{standin.url} answered its health check with HTTP 503"):
        connect(standin.url)
    assert time.monotonic() - started < 5


# -- validate_cron --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("0 0 2 * * *", "0 0 2 * * *"),
        ("  0  0 2 * *   * ", "0 0 2 * * *"),
        ("*/15 * * * * *", "*/15 * * * * *"),
        ("0 0-30/5 8-18 * * *", "0 0-30/5 8-18 * * *"),
        ("5/10 0 0 * * *", "5/10 0 0 * * *"),
        ("0 0 9 ? * 2-6", "0 0 9 ? * 2-6"),
        ("0 0 9 * * MON-FRI", "0 0 9 * * MON-FRI"),
        ("0 0 0 1 jan,Jul ?", "0 0 0 1 jan,Jul ?"),
        ("59 59 23 31 12 6", "59 59 23 31 12 6"),
        ("0 0 0 1,15 */3 SUN", "0 0 0 1,15 */3 SUN"),
        ("@daily", "@daily"),
        ("@hourly", "@hourly"),
        ("@every 1h30m", "@every 1h30m"),
        ("@every  45s", "@every 45s"),
    ],
)
def test_validate_cron_accepts(expression: str, expected: str) -> None:
    assert validate_cron(expression) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 2 * * *", "use '0 0 2 * * *'"),
        ("abc", "has 1 field(s); KFP needs 6"),
        ("", "has 0 field(s)"),
        ("0 0 2 * * * 2026", "has 7 field(s)"),
        ("61 * * * * *", "seconds field '61'"),
        ("* 60 * * * *", "minutes field '60'"),
        ("* * 24 * * *", "hours field '24'"),
        ("* * * 0 * *", "day-of-month field '0'"),
        ("* * * 32 * *", "day-of-month field '32'"),
        ("* * * * 13 *", "month field '13'"),
        ("* * * * FOO *", "month field 'FOO'"),
        ("* * * * * 7", "day-of-week field '7'"),
        ("* * * * * MON-FUN", "day-of-week field 'MON-FUN'"),
        ("? * * * * *", "seconds field '?'"),
        ("*/0 * * * * *", "seconds field '*/0'"),
        ("*/x * * * * *", "seconds field '*/x'"),
        ("5-1 * * * * *", "runs backwards"),
        ("1,,2 * * * * *", "invalid item ''"),
        ("* * 1-2-3 * * *", "hours field '1-2-3'"),
        ("-1 * * * * *", "seconds field '-1'"),
        ("@reboot", "not a descriptor"),
        ("@every 1.5h", "not a descriptor"),
        ("@every 0s", "not a descriptor"),
        ("@DAILY", "not a descriptor"),
    ],
)
def test_validate_cron_refuses(expression: str, message: str) -> None:
    with pytest.raises(ConfigError, match="cron") as caught:
        validate_cron(expression)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
