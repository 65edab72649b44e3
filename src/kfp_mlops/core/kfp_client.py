"""Submitting, scheduling and waiting for pipelines on a Kubeflow Pipelines backend.

A thin layer over ``kfp.Client`` (KFP v2beta1 API) that fails early and in one line:

* :func:`connect` authenticates the way multi-user Kubeflow expects (a bearer token, a service
  account token file re-read on every call, or a session cookie), and puts every call the client
  makes -- the health check included -- through one urllib3 pool with a timeout and bounded
  retries with exponential backoff. ``kfp.Client`` itself has neither: its calls wait forever,
  and it retries only its own health check, for about 25 s. The pool is swapped into the client's
  ``ApiClient`` after construction because kfp builds that ``ApiClient`` itself.
* Retries happen only where repeating a call cannot do harm: on connection failures (nothing was
  sent), 429, 502, 503 and 504 (the request was not handled) for every method, and additionally
  on a 500 or a broken answer for reads and deletes. A POST that got a 500 may have created its
  run, so it is not repeated; no 4xx is ever repeated.
* :func:`validate_cron` (from :mod:`kfp_mlops.core.cron`) checks a schedule locally.
* :func:`schedule` replaces a recurring run of the same name, because KFP cannot update one in
  place; the new one is created before the old ones are deleted, so a failure never leaves the
  pipeline unscheduled.
* :func:`wait_for_run` follows a run to its end state, with a deadline.

Credentials are never printed: errors say which kind was sent, never its value. The module is
over 400 lines because the connection, the calls and their one error mapping belong together.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import certifi
import kfp
import kfp_server_api
import urllib3
import yaml
from google.protobuf import json_format
from kfp.client.set_volume_credentials import ServiceAccountTokenVolumeCredentials
from urllib3.util.retry import Retry

from kfp_mlops.core.config import DEFAULT_KFP_NAMESPACE
from kfp_mlops.core.cron import validate_cron
from kfp_mlops.core.errors import ConfigError, MlopsError

__all__ = [
    "FinishedRun",
    "RetryPolicy",
    "Schedule",
    "SubmittedRun",
    "WaitTimeout",
    "connect",
    "schedule",
    "submit",
    "validate_cron",
    "wait_for_run",
]

# Seconds a single call may wait for its answer (each attempt); connecting gets at most CONNECT_TIMEOUT_S.
REQUEST_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 5.0
# The KFP API server rejects other values.
MAX_CONCURRENCY_RANGE = (1, 10)
# A run in one of these states will not change any more (V2beta1RuntimeState).
FINAL_STATES = frozenset({"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"})
# Answers meaning "not handled, try again" for any method; a 500 is repeated only for reads and deletes.
_RETRY_ANY_METHOD = frozenset({429, 502, 503, 504})
_RETRY_IDEMPOTENT = _RETRY_ANY_METHOD | {500}
# Answers of an authenticating proxy (oauth2-proxy, Dex, Istio) in front of the API.
_AUTH_REFUSALS = frozenset({301, 302, 303, 307, 308, 401, 403})
_PAGE_SIZE = 100
_PACKAGE_SUFFIXES = (".yaml", ".yml", ".tar.gz", ".tgz", ".zip")
_FILTER_EQUALS = 1  # Predicate.Operation EQUALS in KFP's filter.proto


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how patiently, a failed call is repeated.

    Attributes:
        attempts: tries per call, the first included (1: never repeat).
        backoff_seconds: the second retry waits this long, each later one twice the one before
            (the first retry is immediate: urllib3's schedule).
        max_wait_seconds: the longest single wait, also the cap on a server's ``Retry-After``.
    """

    attempts: int = 4
    backoff_seconds: float = 0.5
    max_wait_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff_seconds < 0 or self.max_wait_seconds < 0:
            raise ConfigError(f"retry policy {self}: attempts must be >= 1 and waits >= 0")


class _Retry(Retry):
    """urllib3's Retry, with the per-method status rule above and a capped ``Retry-After``."""

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        statuses = _RETRY_IDEMPOTENT if self._is_method_retryable(method) else _RETRY_ANY_METHOD
        return status_code in statuses  # exhaustion is increment()'s to decide

    def get_retry_after(self, response: Any) -> float | None:
        seconds = super().get_retry_after(response)
        return None if seconds is None else min(seconds, self.backoff_max)


class _BoundedPool(urllib3.PoolManager):
    """A pool whose calls get a timeout when the caller gives none (kfp_server_api never does)."""

    def __init__(self, timeout: float, policy: RetryPolicy, **pool_kw: Any) -> None:
        retries = _Retry(
            total=policy.attempts - 1,
            redirect=False,  # a login page's redirect is an answer to report, not to follow
            backoff_factor=policy.backoff_seconds,
            backoff_max=policy.max_wait_seconds,
            raise_on_status=True,
        )
        super().__init__(retries=retries, **pool_kw)
        self.policy = policy
        self.timeout_seconds = timeout
        self.request_timeout = urllib3.Timeout(connect=min(timeout, CONNECT_TIMEOUT_S), read=timeout)

    # PoolManager's own signature, which already differs from RequestMethods'.
    def urlopen(self, method: str, url: str, redirect: bool = True, **kw: Any) -> Any:  # type: ignore[override]
        if kw.get("timeout") is None:
            kw["timeout"] = self.request_timeout
        return super().urlopen(method, url, redirect=redirect, **kw)


def connect(
    host: str | None,
    namespace: str = DEFAULT_KFP_NAMESPACE,
    *,
    token: str | None = None,
    token_file: str | Path | None = None,
    cookie: str | None = None,
    timeout: float = REQUEST_TIMEOUT_S,
    retry: RetryPolicy = RetryPolicy(),
) -> kfp.Client:
    """Returns a ``kfp.Client`` for a KFP API that has just answered its health check.

    Args:
        host: the KFP API endpoint with its scheme, e.g. ``http://localhost:8080`` (the caller's
            ``--host``, else the ``KFP_HOST`` setting; None or empty: no host).
        namespace: the Kubernetes namespace of the pipeline (the ``KFP_NAMESPACE`` setting).
        token: a bearer token sent with every call (the ``KFP_TOKEN`` setting).
        token_file: a file holding a bearer token, e.g. a projected service account token; read
            again on every call, so a rotated token is picked up (``KF_PIPELINES_SA_TOKEN_PATH``).
        cookie: a session cookie sent with every call, e.g. ``authservice_session=...`` from a
            browser logged in to Kubeflow (the ``KFP_COOKIE`` setting); combines with either token.
        timeout: seconds each attempt of each call may wait for its answer.
        retry: how failed calls are repeated (see the module's docstring for which ones).

    Raises:
        ConfigError: no host, a host without a scheme, both a token and a token file, an empty or
            unreadable token file, or a host that does not answer.
        MlopsError: the host answers, but refuses the credentials or is not a healthy KFP API.
    """
    if not host:
        raise ConfigError("no KFP host: set KFP_HOST or pass --host")
    if not host.startswith(("http://", "https://")):
        # kfp.Client would silently assume https://, which fails obscurely on a port-forward.
        raise ConfigError(f"KFP host {host!r} has no scheme: use http://{host} or https://{host}")
    host = host.rstrip("/")
    credentials = _credentials(token, token_file, cookie)
    # The same TLS settings kfp_server_api uses by default (verify, Mozilla's roots).
    pool = _BoundedPool(timeout, retry, cert_reqs="CERT_REQUIRED", ca_certs=certifi.where())
    # Checked before kfp.Client exists: its constructor may call the health check itself, through its
    # own pool (no timeout; 5 tries 5 s apart), when no namespace is set in kfp's context file.
    _check_health(pool, host, credentials, _auth_headers(token, token_file, cookie))
    with warnings.catch_warnings():
        # kfp.Client warns on every construction that it needs a KFP >= 2.0.0-beta.2 backend.
        warnings.simplefilter("ignore", FutureWarning)
        client = kfp.Client(
            host=host,
            namespace=namespace,
            existing_token=token.strip() if token else None,
            cookies=cookie,
            credentials=ServiceAccountTokenVolumeCredentials(str(token_file)) if token_file else None,
        )
    client._healthz_api.api_client.rest_client.pool_manager = pool  # one ApiClient serves all of its APIs
    return client


def _credentials(token: str | None, token_file: str | Path | None, cookie: str | None) -> str:
    """Checks the credentials without revealing them; returns what is sent, in words."""
    if token and token_file:
        raise ConfigError("give a KFP token or a token file, not both (--token/KFP_TOKEN, --token-file)")
    sent = []
    if token:
        if not token.strip() or any(c.isspace() for c in token.strip()):
            raise ConfigError("the KFP token (--token/KFP_TOKEN) is empty or holds whitespace")
        sent.append("a bearer token")
    if token_file:
        path = Path(token_file)
        try:
            content = path.read_text().strip()
        except OSError as err:
            raise ConfigError(f"KFP token file {path}: cannot read it ({err.strerror or err})") from None
        if not content:
            raise ConfigError(f"KFP token file {path} is empty")
        sent.append(f"the token in {path}")
    if cookie:
        if any(c in cookie for c in "\r\n") or "=" not in cookie:
            raise ConfigError("the KFP session cookie (--cookie/KFP_COOKIE) must be NAME=VALUE on one line")
        sent.append("a session cookie")
    return " and ".join(sent) or "no credentials"


def _auth_headers(token: str | None, token_file: str | Path | None, cookie: str | None) -> dict[str, str]:
    """The headers kfp.Client sends for these (checked) credentials."""
    headers = {}
    bearer = token or (Path(token_file).read_text() if token_file else None)
    if bearer:
        headers["Authorization"] = f"Bearer {bearer.strip()}"
    if cookie:
        headers["Cookie"] = cookie
    return headers


def _check_health(pool: _BoundedPool, host: str, credentials: str, headers: dict[str, str]) -> None:
    url = f"{host}/apis/v2beta1/healthz"
    attempts, timeout = pool.policy.attempts, pool.timeout_seconds
    try:
        response = pool.request("GET", url, headers=headers)
    except urllib3.exceptions.MaxRetryError as err:
        if isinstance(err.reason, urllib3.exceptions.ResponseError):  # 5xx/429 until the attempts ran out
            raise MlopsError(f"KFP host {host} failed its health check {attempts} times: {err.reason}") from None
        raise _unanswered(host, err.reason, attempts, timeout) from None
    except urllib3.exceptions.HTTPError as err:  # a broken answer to the last attempt
        raise _unanswered(host, err, attempts, timeout) from None
    if response.status in _AUTH_REFUSALS:
        raise MlopsError(
            f"KFP host {host} refused {credentials} (HTTP {response.status} {response.reason}): pass a valid "
            "--token, --token-file or --cookie (or set KFP_TOKEN, KF_PIPELINES_SA_TOKEN_PATH, KFP_COOKIE)"
        )
    if response.status != 200:
        raise MlopsError(
            f"KFP host {host} answered its health check with HTTP {response.status} {response.reason}: "
            "check the address and that you are allowed in"
        )
    try:
        json.loads(response.data)
    except ValueError:
        raise MlopsError(
            f"KFP host {host} answered its health check with something that is not JSON: is it the KFP API "
            "endpoint, and not a login page?"
        ) from None


def _unanswered(host: str, reason: object, attempts: int, timeout: float) -> ConfigError:
    return ConfigError(
        f"KFP host {host} did not answer within {timeout:g} s ({attempts} attempt(s); {_one_line(reason)}): "
        "check KFP_HOST or --host, and that the API is reachable (e.g. kubectl port-forward)"
    )


def _policy(client: kfp.Client) -> RetryPolicy:
    pool = client._healthz_api.api_client.rest_client.pool_manager
    return pool.policy if isinstance(pool, _BoundedPool) else RetryPolicy(attempts=1)


class WaitTimeout(MlopsError):
    """A run had not ended when the wait's deadline passed (it goes on running on the backend)."""

    def __init__(self, run_id: str, state: str, seconds: float) -> None:
        super().__init__(f"run {run_id} is still {state} after {seconds:.0f} s; it goes on running on the backend")
        self.run_id = run_id
        self.state = state


@dataclass(frozen=True)
class FinishedRun:
    """A run in its final state."""

    run_id: str
    state: str
    seconds: float
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        """Whether the run ended ``SUCCEEDED``."""
        return self.state == "SUCCEEDED"


def wait_for_run(
    client: kfp.Client,
    run_id: str,
    *,
    timeout: float,
    poll_seconds: float = 5.0,
    on_state: Callable[[str], None] | None = None,
) -> FinishedRun:
    """Polls a run until it reaches a final state (``SUCCEEDED``, ``FAILED``, ``SKIPPED``, ``CANCELED``).

    Args:
        client: a client from :func:`connect` (each poll has its timeout and retries).
        run_id: the run.
        timeout: seconds to wait in all.
        poll_seconds: seconds between polls.
        on_state: called with each state the run is seen in, once per change.

    Returns:
        The final state, the seconds waited and, for a failed run, the backend's error message.

    Raises:
        WaitTimeout: the run had not ended in ``timeout`` seconds.
        MlopsError: the backend refused or stopped answering.
    """
    started = time.monotonic()
    seen = None
    while True:
        with _kfp_errors(f"reading run {run_id}", client):
            run = client.get_run(run_id)
        state = str(run.state or "RUNTIME_STATE_UNSPECIFIED")
        if state != seen and on_state is not None:
            on_state(state)
        seen = state
        waited = time.monotonic() - started
        if state in FINAL_STATES:
            error = _one_line(run.error.message) if run.error is not None and run.error.message else None
            return FinishedRun(run_id=run_id, state=state, seconds=waited, error=error)
        remaining = timeout - waited
        if remaining <= 0:
            raise WaitTimeout(run_id, state, waited)
        time.sleep(min(poll_seconds, remaining))  # the last poll falls on the deadline


@dataclass(frozen=True)
class SubmittedRun:
    """A run the backend accepted."""

    run_id: str
    experiment: str
    url: str


def submit(
    package_path: Path,
    *,
    client: kfp.Client,
    experiment: str,
    run_name: str,
    arguments: Mapping[str, Any],
    service_account: str | None = None,
) -> SubmittedRun:
    """Starts one run of a compiled pipeline, creating the experiment if it is missing.

    Args:
        package_path: the compiled pipeline (``.yaml``, ``.yml``, ``.tar.gz``, ``.tgz``, ``.zip``).
        client: a client from :func:`connect`.
        experiment: the experiment's display name.
        run_name: the run's display name.
        arguments: the pipeline's parameters.
        service_account: the Kubernetes service account the run uses (default: the backend's).

    Returns:
        The run's id, experiment and UI address.

    Raises:
        MlopsError: the package is missing or unreadable, or the backend refused.
    """
    package = _check_package(package_path)
    with _kfp_errors(f"submitting {package} to experiment {experiment!r}", client):
        experiment_id = _experiment_id(client, experiment)
        with contextlib.redirect_stdout(io.StringIO()):  # kfp prints its own "Run details" link
            result = client.create_run_from_pipeline_package(
                str(package),
                arguments=dict(arguments),
                run_name=run_name,
                experiment_id=experiment_id,
                service_account=service_account,
            )
    # kfp's own rule for the UI address: KF_PIPELINES_UI_ENDPOINT, else the API host.
    url = f"{client._get_url_prefix()}/#/runs/details/{result.run_id}"
    return SubmittedRun(run_id=result.run_id, experiment=experiment, url=url)


@dataclass(frozen=True)
class Schedule:
    """The recurring run that now schedules a pipeline, and the ones it replaced."""

    recurring_run_id: str
    name: str
    cron: str
    replaced: list[str]


def schedule(
    package_path: Path,
    *,
    client: kfp.Client,
    name: str,
    cron: str,
    experiment: str,
    arguments: Mapping[str, Any],
    max_concurrency: int = 1,
    service_account: str | None = None,
) -> Schedule:
    """Schedules a compiled pipeline, replacing recurring runs of the same name.

    Recurring runs cannot be updated in place, so this creates the new one first and then
    deletes every recurring run with the same display name in the experiment: a failed create
    leaves the old schedule running, and afterwards exactly one recurring run has that name.
    Recurring runs of that name in other experiments are left alone.

    Args:
        package_path: the compiled pipeline (``.yaml``, ``.yml``, ``.tar.gz``, ``.tgz``, ``.zip``).
        client: a client from :func:`connect`.
        name: the recurring run's display name, its identity for replacement.
        cron: a 6-field cron expression, seconds first (see :func:`validate_cron`).
        experiment: the experiment's display name; created if missing.
        arguments: the pipeline's parameters for every run.
        max_concurrency: how many of its runs may run at once (1-10).
        service_account: the Kubernetes service account the runs use (default: the backend's).

    Returns:
        The new recurring run's id, name and cron, and the ids it replaced.

    Raises:
        ConfigError: the cron, name or max_concurrency cannot work; nothing was sent.
        MlopsError: the package is missing or unreadable, or the backend refused.
    """
    cron = validate_cron(cron)
    if not name.strip():
        raise ConfigError("recurring run name is empty: pass a name to identify the schedule")
    low, high = MAX_CONCURRENCY_RANGE
    if not low <= max_concurrency <= high:
        raise ConfigError(f"max_concurrency {max_concurrency} is out of range: KFP takes {low}-{high}")
    package = _check_package(package_path)
    with _kfp_errors(f"scheduling {package} as {name!r} in experiment {experiment!r}", client):
        experiment_id = _experiment_id(client, experiment)
        # Listed before creating, so the new recurring run can never be among those deleted.
        old_ids = _recurring_run_ids(client, experiment_id, name)
        created = client.create_recurring_run(
            experiment_id=experiment_id,
            job_name=name,
            cron_expression=cron,
            pipeline_package_path=str(package),
            params=dict(arguments),
            max_concurrency=max_concurrency,
            enabled=True,
            no_catchup=True,
            service_account=service_account,
        )
    for done, old_id in enumerate(old_ids):
        left = ", ".join(old_ids[done:])
        with _kfp_errors(
            f"deleting replaced recurring run(s) {left} (the new one, "
            f"{created.recurring_run_id}, is in place; delete them by hand)",
            client,
        ):
            client.delete_recurring_run(old_id)
    return Schedule(recurring_run_id=created.recurring_run_id, name=name, cron=cron, replaced=old_ids)


def _check_package(package_path: Path) -> Path:
    package = Path(package_path)
    if not package.name.endswith(_PACKAGE_SUFFIXES):
        raise ConfigError(f"pipeline package {package} must end with one of {', '.join(_PACKAGE_SUFFIXES)}")
    if not package.is_file():
        raise MlopsError(f"pipeline package {package} does not exist: compile the pipeline first")
    return package


def _experiment_id(client: kfp.Client, name: str) -> str:
    """The id of the experiment with this display name, created if missing."""
    with contextlib.redirect_stdout(io.StringIO()):  # kfp prints its own "Experiment details"
        return client.create_experiment(name=name).experiment_id


def _recurring_run_ids(client: kfp.Client, experiment_id: str, name: str) -> list[str]:
    """The ids of every recurring run in the experiment with this display name, all pages."""
    name_filter = json.dumps(
        {"predicates": [{"operation": _FILTER_EQUALS, "key": "display_name", "stringValue": name}]}
    )
    ids: list[str] = []
    page_token = ""
    while True:
        page = client.list_recurring_runs(
            page_token=page_token, page_size=_PAGE_SIZE, experiment_id=experiment_id, filter=name_filter
        )
        # Checked again here: a server that ignored the filter must not get others deleted.
        ids += [r.recurring_run_id for r in page.recurring_runs or [] if r.display_name == name]
        page_token = page.next_page_token
        if not page_token:
            return ids


@contextlib.contextmanager
def _kfp_errors(action: str, client: kfp.Client) -> Iterator[None]:
    """Turns what kfp and the backend raise into one-line MlopsErrors that name the action."""
    try:
        yield
    except kfp_server_api.ApiException as err:
        raise MlopsError(f"KFP refused {action}: HTTP {err.status} {_api_message(err)}") from err
    except urllib3.exceptions.MaxRetryError as err:
        attempts = _policy(client).attempts
        raise MlopsError(f"KFP kept failing while {action}: {attempts} attempt(s), {_one_line(err.reason)}") from err
    except urllib3.exceptions.HTTPError as err:
        raise MlopsError(f"KFP did not answer while {action}: {_one_line(err)}") from err
    except (yaml.YAMLError, json_format.ParseError) as err:
        raise MlopsError(f"not a compiled KFP pipeline while {action}: {_one_line(err)}") from err
    except ValueError as err:  # kfp's own checks, e.g. two experiments with the same name
        raise MlopsError(f"kfp refused {action}: {_one_line(err)}") from err


def _api_message(err: kfp_server_api.ApiException) -> str:
    """The backend's own error message (grpc-gateway JSON), else the HTTP reason."""
    try:
        message = json.loads(err.body)["message"]
    except (TypeError, ValueError, KeyError):
        message = err.reason
    return _one_line(message)


def _one_line(text: object, limit: int = 300) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit] + "..."
