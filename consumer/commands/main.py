"""``mlevents``: react to Azure Machine Learning events from an Event Hub.

Offline commands work on files and need no Azure: ``match`` (which rules each recorded
event matches), ``explain`` (why one rule matched one event or not), ``test`` (rule tests
with coverage and JUnit output) and ``lint`` (validate rule files, print warnings).
With no rules given, ``test`` runs the example rule table and tests shipped with mlevents.
``run`` is the worker; ``dev`` runs it with the emulator and the sample events; ``status``,
``deadletter`` and ``record`` look at a running deployment; ``emulator`` serves a local
Event Hubs and ``send`` publishes event files to a hub.

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

from consumer.commands import deadletter, dev, record, rules, run, send, status
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

DESCRIPTION = "React to Azure Machine Learning events from an Event Hub."


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
    parser = argparse.ArgumentParser(prog="mlevents", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rules.add_parsers(commands)
    run.add_parser(commands)
    dev.add_parser(commands)
    deadletter.add_parser(commands)
    add_emulator_parser(commands)
    send.add_parser(commands)
    status.add_parser(commands)
    record.add_parser(commands)
    return parser
