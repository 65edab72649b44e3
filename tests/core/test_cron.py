"""Tests for cron expressions as KFP reads them (kfp_mlops.core.cron)."""

from __future__ import annotations

import pytest

from kfp_mlops.core.cron import validate_cron
from kfp_mlops.core.errors import ConfigError


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
