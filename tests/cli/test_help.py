"""``--help`` of every command and group: each option's default shown, help text in plain quotes."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from kfp_mlops.cli import build_parser, main


def every_parser(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The command path of the parser and of each of its sub-commands, depth first."""
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from every_parser(sub, (*path, name))


def find(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> argparse.ArgumentParser:
    for name in path:
        [subparsers] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = subparsers.choices[name]
    return parser


COMMANDS = list(every_parser(build_parser()))


def test_every_command_and_group_is_checked() -> None:
    names = {" ".join(path) for path in COMMANDS}
    assert {"", "run training", "submit rollout", "serve", "drift", "rollout step", "demo rollout"} <= names
    assert len(COMMANDS) > 20


@pytest.mark.parametrize("path", COMMANDS, ids=lambda path: " ".join(path) or "kfp-mlops")
def test_help_shows_every_default(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([*path, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "`" not in text  # inline code in plain quotes, never raw backticks

    parser = find(build_parser(), path)
    for action in parser._actions:
        takes_value = action.option_strings and action.nargs != 0 and not action.required
        if not takes_value or action.default in (None, argparse.SUPPRESS, []):
            continue
        formatter = parser._get_formatter()
        formatter.add_argument(action)
        shown = " ".join(formatter.format_help().split())
        assert "default" in shown, (path, action.option_strings, shown)


def test_pipelines_lists_every_parameter_with_its_option_and_default(capsys: pytest.CaptureFixture[str]) -> None:
    from kfp_mlops.cli.pipelines import option_name
    from kfp_mlops.pipelines.parameters import SPECS

    assert main(["pipelines"]) == 0
    text = capsys.readouterr().out
    assert "`" not in text
    listed = {line.split()[0] for line in text.splitlines() if line and not line.startswith(" ")}
    assert listed == set(SPECS)
    for pipeline, spec in SPECS.items():
        assert main(["pipelines", pipeline]) == 0
        lines = capsys.readouterr().out.splitlines()
        for parameter in spec.parameters:
            [line] = [x for x in lines if x.startswith(f"  {parameter.name}  ")]
            assert option_name(parameter.name) in line
            if parameter.name in ("store_root", "wandb_project"):
                assert "default: " in line and "else" in line  # from the settings, when not given
            elif parameter.required:
                assert line.endswith("required")
            elif parameter.type in (int, float, str):
                assert line.endswith(f"default: {parameter.default!r}"), line


def test_pipelines_refuses_an_unknown_pipeline(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["pipelines", "trainig"])
    assert done.value.code == 2
    assert "invalid choice: 'trainig'" in capsys.readouterr().err
