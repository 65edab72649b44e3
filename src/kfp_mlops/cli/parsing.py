"""What the command groups share: the parser class (help with defaults), the command list's type, JSON options."""

from __future__ import annotations

import argparse
import copy
import json
import re
from typing import Any

from kfp_mlops.core.errors import ConfigError

_BACKTICKED = re.compile(r"``?([^`]+?)``?")

Commands = argparse._SubParsersAction
"""The ``add_subparsers()`` result each group adds its commands to."""


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help, with every option's default and plain quotes.

    An option that has a default and whose help does not state it gets ``(default: ...)``; one
    without help text gets just that. Flags (``store_true``) and options whose default is None
    (their help says what leaving them out does) are left as written. Inline code quoted with
    backticks, as in docstrings and parameter docs, is shown in plain quotes.
    """

    def _format_action(self, action: argparse.Action) -> str:
        if action.help is None and _has_default(action):
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = plain_quotes(action.help or "")
        if not _has_default(action) or "default" in text.lower():
            return text
        return f"{text} (default: %(default)s)"

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain_quotes(text))


def _has_default(action: argparse.Action) -> bool:
    """Whether the option has a default worth showing: a value, on an option that takes one."""
    takes_value = bool(action.option_strings) and action.nargs != 0 and not action.required
    empty = action.default in (None, argparse.SUPPRESS) or action.default == []  # e.g. a repeatable option
    return takes_value and not empty


def plain_quotes(text: str) -> str:
    """``text`` with inline code quoted by backticks (one or two) in plain single quotes."""
    return _BACKTICKED.sub(r"'\1'", text)


class Parser(argparse.ArgumentParser):
    """The parser of every command and sub-command (``add_subparsers`` passes its class on)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


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
