"""Cron expressions as Kubeflow Pipelines reads them, checked before anything is sent.

KFP's ScheduledWorkflow controller parses cron with robfig/cron v1: six fields, seconds first. It
silently accepts a 5-field expression as "seconds minutes hours day month" (``0 2 * * *`` would
run at minute 2 of every hour, not at 02:00), so :func:`validate_cron` refuses one and says what
to write instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kfp_mlops.core.errors import ConfigError

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
