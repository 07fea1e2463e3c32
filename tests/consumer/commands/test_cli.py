"""The command line as a whole: ``--version``, help for every argument, shell completion."""

from __future__ import annotations

import argparse
import importlib.metadata
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from typing import Any

import pytest

from consumer.commands.main import DISTRIBUTION, _parser, main
from tests.support import ROOT


def _commands(parser: argparse.ArgumentParser) -> Iterator[argparse._SubParsersAction[Any]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield action


def _walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ("mlevents",)
) -> Iterator[tuple[str, str, str | None]]:
    """(command path, argument, its help) for every argument and command, at any depth:
    commands, the deadletter actions and what their parsers hold."""
    for action in parser._actions:
        name = "/".join(action.option_strings) or str(action.metavar or action.dest)
        yield " ".join(path), name, action.help
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for command, subparser in action.choices.items():
                yield " ".join(path), command, helps.get(command)
                yield from _walk(subparser, (*path, command))


def test_every_command_option_and_positional_has_help() -> None:
    """No argument of any command, nested ones included, is left without a help text."""
    walked = list(_walk(_parser()))
    assert ("mlevents deadletter", "show", "one dead letter in full") in walked  # it goes deep
    assert len(walked) > 80
    missing = [f"{path}: {name}" for path, name, text in walked if not (text or "").strip()]
    assert missing == []


def test_top_level_help_says_what_mlevents_does_and_lists_every_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``mlevents --help`` tells what mlevents is for, how to try it, each command with its
    one-line help, and the exit codes."""
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "React to Azure Machine Learning events." in out
    assert "mlevents dev" in out and "Exit codes:" in out and "--version" in out
    (commands,) = _commands(_parser())
    for choice in commands._choices_actions:
        assert choice.dest in out and " ".join(str(choice.help).split()[:3]) in out


def test_version_is_the_installed_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    """``--version`` prints the version of the package pyproject.toml names, and exits 0."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == DISTRIBUTION
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"mlevents {importlib.metadata.version(DISTRIBUTION)}\n"


def _command_names(parser: argparse.ArgumentParser) -> set[str]:
    names = set()
    for commands in _commands(parser):
        for name, subparser in commands.choices.items():
            names.add(name)
            names |= _command_names(subparser)
    return names


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_script_names_every_command(
    shell: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``mlevents completion SHELL`` prints a script that knows every command, the
    deadletter actions among them, and the options of each."""
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    names = _command_names(_parser())
    assert {"match", "deadletter", "replay", "completion"} <= names
    assert [name for name in sorted(names) if name not in script] == []
    for option in ("--connection-string-env", "--junit-xml", "--exit-when-done", "--version"):
        assert option in script


def _complete(script: str, words: list[str]) -> list[str]:
    """What bash offers for the last of ``words`` with ``script`` loaded."""
    line = " ".join(words)
    program = (
        f"source /dev/stdin <<'SCRIPT'\n{script}\nSCRIPT\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        f"COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}\n"
        '_shtab_mlevents; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    bash = shutil.which("bash")
    assert bash is not None
    done = subprocess.run([bash, "-c", program], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_bash_completes_commands_actions_choices_and_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Loaded into bash, the script completes commands, deadletter's actions, the choices of
    ``--format`` and a command's options."""
    main(["completion", "bash"])
    script = capsys.readouterr().out
    assert set(_complete(script, ["mlevents", ""])) == _command_names(_parser()) - {
        "list",
        "show",
        "replay",
    }
    assert _complete(script, ["mlevents", "deadletter", "--config", "c.toml", ""]) == [
        "list",
        "show",
        "replay",
    ]
    assert _complete(script, ["mlevents", "match", "--format", ""]) == ["text", "jsonl"]
    assert "--connection-string-env" in _complete(script, ["mlevents", "send", "--conn"])
