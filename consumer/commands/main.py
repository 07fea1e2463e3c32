"""``mlevents``: react to Azure Machine Learning events from an Event Hub.

Offline commands work on files and need no Azure: ``match`` (which rules each recorded
event matches), ``explain`` (why one rule matched one event or not), ``test`` (rule tests
with coverage and JUnit output), ``lint`` (validate rule files, print warnings) and
``export`` (the Event Grid subscription that feeds the hub, from the rules).
With no rules given, ``test`` runs the example rule table and tests shipped with mlevents.
``run`` is the worker; ``dev`` runs it with the emulator and the sample events; ``status``,
``deadletter`` and ``record`` look at a running deployment; ``emulator`` serves a local
Event Hubs and ``send`` publishes event files to a hub; ``completion`` prints a shell
completion script. ``--version`` prints the installed package's version.

Exit codes (``consumer.errors``): 0 success; 1 a test failed or an event did not decode;
2 usage, config or rules errors, and what the worker needs at start and cannot have (a store
that cannot be opened, an event hub that cannot be reached, a port already in use); 130 the
worker was stopped before it had drained.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from consumer.commands import completion, deadletter, dev, export, record, rules, run, send, status
from consumer.errors import (
    EXIT_OK,
    EXIT_USAGE,
    CaseFileError,
    ConfigError,
    DeadLetterError,
    StartError,
    StoreError,
)
from emulator.cli import add_emulator_parser

DESCRIPTION = """\
React to Azure Machine Learning events. Event Grid routes a workspace's events
into an Event Hub; mlevents reads them there and runs a rule table against each
one. Rule filters are written exactly like Event Grid subscription filters;
actions send email, call webhooks, and start Data Factory pipelines, Azure ML
jobs and deployments."""

EPILOG = """\
Try it without Azure: `mlevents dev` runs the worker on a local emulator with
the sample events.
Offline, on files: match, explain, test, lint, export. The worker: run.
A running deployment: status, deadletter, record.
Tools: emulator, send, completion.

Exit codes: 0 success; 1 a test failed or an event did not decode; 2 usage,
config or rules errors, or what the worker needs at start and cannot have (a
store, the event hub, a port); 130 the worker was stopped before it had
drained."""

DISTRIBUTION = "mlevents"
"""The project's name in pyproject.toml: its version is the installed package's."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (the console script exits with it)."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        rules.split_rules(args)
        code: int = args.func(args)
        # Here rather than at exit: the interpreter's own flush reports a reader that went
        # away as an error (and exit code 120) after main has returned.
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly.
        _drop_output()
        return EXIT_OK
    except Exception as exc:
        if not isinstance(exc, _usage_errors()):
            raise
        print(f"mlevents: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit:  # argparse printed --help (or a usage error) and exits
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _drop_output()
        raise
    return code


def _drop_output() -> None:
    """Point stdout at /dev/null, so that nothing written to it later (the interpreter's flush
    at exit included) fails again on the reader that went away."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _usage_errors() -> tuple[type[Exception], ...]:
    """The errors that mean bad input (exit code 2, one line). The rule engine is imported
    here, once something failed, so that building the parser does not load it."""
    from rules import RuleTableError

    return (ConfigError, CaseFileError, DeadLetterError, StoreError, StartError, RuleTableError)


def _parser() -> argparse.ArgumentParser:
    """Every command's options. Each module adds its own; none imports an Azure SDK, the
    worker or the emulator's server before its command runs."""
    parser = argparse.ArgumentParser(
        prog="mlevents",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, help="print mlevents' version and exit")
    commands = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        title="commands",
        help="each has its own --help",
    )
    rules.add_parsers(commands)
    export.add_parser(commands)
    run.add_parser(commands)
    dev.add_parser(commands)
    deadletter.add_parser(commands)
    add_emulator_parser(commands)
    send.add_parser(commands)
    status.add_parser(commands)
    record.add_parser(commands)
    completion.add_parser(commands, parser)
    return parser


class _Version(argparse.Action):
    """``--version``: the installed package's version, looked up only when asked for (the
    metadata machinery costs every other command its start-up time)."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(
            option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=help
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version(DISTRIBUTION)
        except PackageNotFoundError:
            found = "(unknown: the package is not installed)"
        print(f"{parser.prog} {found}")
        parser.exit()
