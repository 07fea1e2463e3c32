"""``mlevents completion bash|zsh``: print a shell completion script for every command.

The script is generated from the argparse parser by shtab: commands, the deadletter
actions, every option, the choices of options that have them (``--format text|jsonl``),
and file names where an argument is a file. It is static: the shell completes without
starting mlevents, and nothing is hooked into mlevents' own start. shtab is imported when
this command runs, never when the parser is built.
"""

from __future__ import annotations

import argparse
from typing import Any

SHELLS = ("bash", "zsh")

FILE_METAVARS = frozenset({"FILE", "PATH", "EVENTS", "EVENT", "CASES"})
"""Arguments whose value is a file name: the shell completes paths for them."""
DIRECTORY_METAVARS = frozenset({"DIR"})

INSTALL = """\
Install the script where the shell looks for completions, then start a new shell:
  bash: mlevents completion bash > ~/.local/share/bash-completion/completions/mlevents
  zsh:  mlevents completion zsh > ~/.zfunc/_mlevents
        (with fpath=(~/.zfunc $fpath) before compinit in ~/.zshrc)"""


def add_parser(commands: Any, root: argparse.ArgumentParser) -> None:
    """Add ``completion``; ``root`` is the whole parser the script is generated from."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "completion",
        help="print a shell completion script (bash or zsh)",
        description="Print a completion script for mlevents' commands and options.",
        epilog=INSTALL,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    parser.set_defaults(func=lambda args: run_completion(root, args.shell))


def run_completion(root: argparse.ArgumentParser, shell: str) -> int:
    """Print the completion script of ``root`` for ``shell``; return the exit code."""
    print(completion_script(root, shell), end="")
    return 0


def completion_script(root: argparse.ArgumentParser, shell: str) -> str:
    """The completion script of ``root`` (every command and its options) for ``shell``."""
    import shtab

    for action in _actions(root):
        if action.metavar in FILE_METAVARS:
            action.complete = shtab.FILE  # type: ignore[attr-defined]
        elif action.metavar in DIRECTORY_METAVARS:
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
    script: str = shtab.complete(root, shell=shell)
    return script


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Every argument of ``parser`` and of its commands, at any depth."""
    found = []
    for action in parser._actions:
        found.append(action)
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                found.extend(_actions(command))
    return found
