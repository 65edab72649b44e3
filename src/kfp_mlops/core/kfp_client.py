"""Submitting and scheduling compiled pipelines on a Kubeflow Pipelines backend.

A thin layer over ``kfp.Client`` (KFP v2beta1 API) that fails early and in one line:

* :func:`connect` checks the host answers before building the client, because ``kfp.Client``
  has no timeouts and retries its own health check for about 25 s.
* :func:`validate_cron` checks a schedule locally, because KFP reads cron with seconds first and
  silently accepts a 5-field expression as "seconds minutes hours day month" (``0 2 * * *``
  would run at minute 2 of every hour, not at 02:00).
* :func:`schedule` replaces a recurring run of the same name, because KFP cannot update one in
  place; the new one is created before the old ones are deleted, so a failure never leaves the
  pipeline unscheduled.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import re
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kfp
import kfp_server_api
import urllib3
import yaml
from google.protobuf import json_format

from kfp_mlops.core.config import DEFAULT_KFP_NAMESPACE
from kfp_mlops.core.errors import ConfigError, MlopsError

HEALTH_TIMEOUT_S = 5.0
# The KFP API server rejects other values.
MAX_CONCURRENCY_RANGE = (1, 10)
_PAGE_SIZE = 100
_PACKAGE_SUFFIXES = (".yaml", ".yml", ".tar.gz", ".tgz", ".zip")
_FILTER_EQUALS = 1  # Predicate.Operation EQUALS in KFP's filter.proto

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


@dataclass(frozen=True)
class _CronField:
    name: str
    low: int
    high: int
    names: dict[str, int] = field(default_factory=dict)
    question_mark: bool = False


# KFP's ScheduledWorkflow controller parses with robfig/cron v1: seconds first, six fields.
_CRON_FIELDS = (
    _CronField("seconds", 0, 59),
    _CronField("minutes", 0, 59),
    _CronField("hours", 0, 23),
    _CronField("day-of-month", 1, 31, question_mark=True),
    _CronField("month", 1, 12, {m: i for i, m in enumerate(_MONTHS, start=1)}),
    _CronField("day-of-week", 0, 6, {d: i for i, d in enumerate(_DAYS)}, question_mark=True),
)
_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_CRON_ITEM = re.compile(r"(?:\*|(?P<start>\w+)(?:-(?P<end>\w+))?)(?:/(?P<step>\w+))?")
_EVERY = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def validate_cron(expression: str) -> str:
    """Checks a cron expression the way KFP's recurring runs read it.

    KFP takes six fields, seconds first: ``seconds minutes hours day-of-month month
    day-of-week`` (``"0 0 2 * * *"`` is 02:00 every day). Each field is ``*``, a value, a
    range ``a-b``, any of those with a step (``*/15``, ``0-30/5``, ``5/10``), or a
    comma-separated list of them; months and days of the week may be names (``JAN``,
    ``MON-FRI``); ``?`` means "any" in day-of-month and day-of-week. The descriptors
    ``@yearly``, ``@annually``, ``@monthly``, ``@weekly``, ``@daily``, ``@midnight``,
    ``@hourly`` and ``@every <duration>`` (whole ``h``/``m``/``s`` units, e.g. ``1h30m``) are
    accepted too.

    Args:
        expression: the cron expression.

    Returns:
        The expression with its whitespace normalised, ready to send.

    Raises:
        ConfigError: the expression is not one KFP reads as intended; the message names the
            field and value at fault.
    """
    parts = expression.split()
    if parts and parts[0].startswith("@"):
        return _validate_descriptor(expression, parts)
    if len(parts) == 5:
        raise ConfigError(
            f"cron {expression!r} has 5 fields, but KFP reads 6 with seconds first (it would "
            f"take {parts[0]!r} as the seconds): use {'0 ' + ' '.join(parts)!r}"
        )
    if len(parts) != 6:
        raise ConfigError(
            f"cron {expression!r} has {len(parts)} field(s); KFP needs 6: seconds minutes hours "
            "day-of-month month day-of-week, e.g. '0 0 2 * * *' for 02:00 daily"
        )
    for spec, value in zip(_CRON_FIELDS, parts):
        problem = _cron_field_problem(spec, value)
        if problem:
            raise ConfigError(f"cron {expression!r}: {spec.name} field {value!r} {problem}")
    return " ".join(parts)


def _cron_field_problem(spec: _CronField, value: str) -> str | None:
    """Says what is wrong with one field's value, or None when it is fine."""
    names = list(spec.names)
    allowed = f"{spec.low}-{spec.high}" + (f" or {names[0]}-{names[-1]}" if names else "")
    if value == "?":
        return None if spec.question_mark else "cannot be '?' (only day-of-month/day-of-week)"
    for item in value.split(","):
        match = _CRON_ITEM.fullmatch(item)
        if not match:
            return f"has an invalid item {item!r}; expected *, a value, a-b, or either with /step"
        if match["start"] is not None:
            start = _cron_value(spec, match["start"])
            end = start if match["end"] is None else _cron_value(spec, match["end"])
            if start is None or end is None:
                return f"must use values in {allowed}, not {item!r}"
            if start > end:
                return f"has a range {item!r} that runs backwards"
        step = match["step"]
        if step is not None and (not step.isdigit() or not 1 <= int(step) <= spec.high):
            return f"has a step in {item!r} that is not a number in 1-{spec.high}"
    return None


def _cron_value(spec: _CronField, token: str) -> int | None:
    """A field value as a number, or None when it is not a number or name in range."""
    if token.upper() in spec.names:
        return spec.names[token.upper()]
    if token.isdigit() and spec.low <= int(token) <= spec.high:
        return int(token)
    return None


def _validate_descriptor(expression: str, parts: list[str]) -> str:
    if len(parts) == 1 and parts[0] in _DESCRIPTORS:
        return parts[0]
    if parts[0] == "@every" and len(parts) == 2:
        match = _EVERY.fullmatch(parts[1])
        if match and any(match.groups()):
            hours, minutes, seconds = (int(g or 0) for g in match.groups())
            if hours * 3600 + minutes * 60 + seconds >= 1:
                return f"@every {parts[1]}"
    raise ConfigError(
        f"cron {expression!r} is not a descriptor KFP accepts here: use one of "
        f"{', '.join(_DESCRIPTORS)}, or '@every <duration>' in whole h/m/s units (e.g. "
        "'@every 1h30m'), or a 6-field cron such as '0 0 2 * * *'"
    )


def connect(
    host: str | None, namespace: str = DEFAULT_KFP_NAMESPACE, *, timeout: float = HEALTH_TIMEOUT_S
) -> kfp.Client:
    """Returns a ``kfp.Client`` for a KFP API that has just answered its health check.

    Args:
        host: the KFP API endpoint with its scheme, e.g. ``http://localhost:8080`` (the caller's
            ``--host``, else the ``KFP_HOST`` setting; None or empty: no host).
        namespace: the Kubernetes namespace of the pipeline (the ``KFP_NAMESPACE`` setting).
        timeout: seconds to wait for the health check to answer.

    Raises:
        ConfigError: no host is set, it has no scheme, or it does not answer in time.
        MlopsError: the host answers, but not like a healthy KFP API.
    """
    if not host:
        raise ConfigError("no KFP host: set KFP_HOST or pass --host")
    if not host.startswith(("http://", "https://")):
        # kfp.Client would silently assume https://, which fails obscurely on a port-forward.
        raise ConfigError(f"KFP host {host!r} has no scheme: use http://{host} or https://{host}")
    host = host.rstrip("/")
    _check_health(host, timeout)
    with warnings.catch_warnings():
        # kfp.Client warns on every construction that it needs a KFP >= 2.0.0-beta.2 backend.
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(host=host, namespace=namespace)


def _check_health(host: str, timeout: float) -> None:
    url = f"{host}/apis/v2beta1/healthz"
    # Direct, like kfp.Client's urllib3 pool, which ignores the *_proxy environment variables.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as err:
        raise MlopsError(
            f"KFP host {host} answered its health check with HTTP {err.code} {err.reason}: "
            "check the address and that you are allowed in"
        ) from err
    except (OSError, http.client.HTTPException) as err:  # refused, timed out, not HTTP...
        reason = getattr(err, "reason", err)
        raise ConfigError(
            f"KFP host {host} did not answer within {timeout:g} s ({reason}): check KFP_HOST or "
            "--host, and that the API is reachable (e.g. kubectl port-forward)"
        ) from err
    try:
        json.loads(body)
    except ValueError as err:
        raise MlopsError(
            f"KFP host {host} answered {url} with something that is not JSON: is it the KFP API "
            "endpoint, and not a login page?"
        ) from err


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
    with _kfp_errors(f"submitting {package} to experiment {experiment!r}"):
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
    with _kfp_errors(f"scheduling {package} as {name!r} in experiment {experiment!r}"):
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
            f"{created.recurring_run_id}, is in place; delete them by hand)"
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
def _kfp_errors(action: str) -> Iterator[None]:
    """Turns what kfp and the backend raise into one-line MlopsErrors that name the action."""
    try:
        yield
    except kfp_server_api.ApiException as err:
        raise MlopsError(f"KFP refused {action}: HTTP {err.status} {_api_message(err)}") from err
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
