"""``kfp-mlops submit | schedule`` against a KFP backend: credentials, retries, and ``submit --wait``.

The backend is ``tests.support.kfp_api_standin``, an in-memory stand-in of the KFP REST API,
because no KFP backend can run on this machine; the command, kfp.Client and HTTP are real. The
stand-in checks the ``Authorization`` header and cookie, answers 5xx when told to, and moves a
run through the states a waiting client sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import kfp
import pytest

from kfp_mlops.cli import main
from kfp_mlops.cli.pipelines import WAIT_TIMED_OUT
from tests.cli.support import error_line
from tests.support.kfp_api_standin import KfpApiStandIn

TOKEN = "eyJhbGciOiJSUzI1NiJ9.dG9rZW4.c2ln"
SUBMIT = ["submit", "training", "--store", "gs://bucket/store", "--deploy-target", "cluster"]


@pytest.fixture(autouse=True)
def kfp_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keeps kfp.Client away from the user's ~/.config/kfp/context.json and credentials."""
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))
    monkeypatch.chdir(tmp_path)
    for name in ("KFP_TOKEN", "KF_PIPELINES_SA_TOKEN_PATH", "KFP_COOKIE", "KFP_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture()
def standin() -> Iterator[KfpApiStandIn]:
    with KfpApiStandIn(run_states=("PENDING", "RUNNING", "SUCCEEDED")) as api:
        yield api


def test_submit_wait_exits_0_when_the_run_succeeded(standin: KfpApiStandIn, capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*SUBMIT, "--host", standin.url, "--wait", "--poll-seconds", "0.01"])

    out = capsys.readouterr().out.splitlines()
    assert code == 0
    [run_id] = standin.runs
    assert out[0].startswith(f"submitted run {run_id}")
    assert out[1:3] == [f"run {run_id}: RUNNING", f"run {run_id}: SUCCEEDED"]
    assert out[-1].startswith(f"run {run_id} SUCCEEDED after ")


@pytest.mark.parametrize("end", ["FAILED", "CANCELED"])
def test_submit_wait_exits_1_with_the_final_state(end: str, capsys: pytest.CaptureFixture[str]) -> None:
    with KfpApiStandIn(run_states=("PENDING", "RUNNING", end), run_error="task train: exit code 137") as standin:
        code = main([*SUBMIT, "--host", standin.url, "--wait", "--poll-seconds", "0.01"])

    last = capsys.readouterr().out.splitlines()[-1]
    assert code == 1
    assert f" {end} after " in last
    assert ("task train: exit code 137" in last) == (end == "FAILED")


def test_submit_wait_gives_up_at_its_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    with KfpApiStandIn(run_states=("PENDING", "RUNNING")) as standin:
        code = main([*SUBMIT, "--host", standin.url, "--wait", "--timeout", "0.2", "--poll-seconds", "0.05"])
        [run_id] = standin.runs

    assert code == WAIT_TIMED_OUT
    line = error_line(capsys)
    assert f"run {run_id} is still RUNNING after" in line and "--timeout 0.2" in line


def test_submit_without_wait_does_not_poll(standin: KfpApiStandIn, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SUBMIT, "--host", standin.url]) == 0
    [run_id] = standin.runs
    assert standin.requests_to("GET", f"/apis/v2beta1/runs/{run_id}") == []


def test_credentials_come_from_the_environment_and_are_never_shown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with KfpApiStandIn(token=TOKEN) as standin:
        monkeypatch.setenv("KFP_TOKEN", TOKEN)
        assert main([*SUBMIT, "--host", standin.url]) == 0
        assert {r.headers["authorization"] for r in standin.requests} == {f"Bearer {TOKEN}"}

        monkeypatch.setenv("KFP_TOKEN", "expired-" + TOKEN)
        assert main([*SUBMIT, "--host", standin.url]) == 1

    captured = capsys.readouterr()
    assert "refused a bearer token (HTTP 401" in captured.err
    assert TOKEN not in captured.out + captured.err
    assert len(standin.runs) == 1


def test_a_token_file_flag_replaces_the_token_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "sa-token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setenv("KFP_TOKEN", "some-other-token")  # the flag wins; no "not both" clash
    with KfpApiStandIn(token=TOKEN) as standin:
        assert main([*SUBMIT, "--host", standin.url, "--token-file", str(token_file)]) == 0, capsys.readouterr().err
        assert len(standin.runs) == 1


def test_a_session_cookie_schedules(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cookie = "authservice_session=MTcwMDAwMDAwMA"
    monkeypatch.setenv("KFP_COOKIE", cookie)
    with KfpApiStandIn(cookie=cookie) as standin:
        argv = ["schedule", "training", "--host", standin.url, "--store", "gs://b/s", "--cron", "0 0 2 * * *"]
        argv += ["--deploy-target", "cluster"]
        assert main(argv) == 0, capsys.readouterr().err
        assert len(standin.recurring_runs) == 1
    assert cookie not in capsys.readouterr().out


def test_a_backend_answering_5xx_is_retried(standin: KfpApiStandIn, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11's fault: the KFP API answers 503 twice; the submit still creates exactly one run."""
    standin.fail_next("POST", "/apis/v2beta1/runs", 503, "apiserver restarting", times=2)
    assert main([*SUBMIT, "--host", standin.url]) == 0, capsys.readouterr().err
    assert len(standin.runs) == 1
    assert len(standin.requests_to("POST", "/apis/v2beta1/runs")) == 3
