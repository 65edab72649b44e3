"""What the command groups share: the type of the parser's command list, and JSON object options."""

from __future__ import annotations

import argparse
import json
from typing import Any

from kfp_mlops.core.errors import ConfigError

Commands = argparse._SubParsersAction
"""The ``add_subparsers()`` result each group adds its commands to."""


def parse_json_object(text: str, option: str) -> dict[str, Any]:
    """``text`` as a JSON object.

    Raises:
        ConfigError: not valid JSON, or not an object; naming ``option``.
    """
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{option}: not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{option}: must be a JSON object, got {type(value).__name__}")
    return value
