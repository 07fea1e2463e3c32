"""The offline commands: ``match``, ``explain``, ``test`` and ``lint``.

They work on files and need no Azure, so nothing here imports an Azure SDK, the worker or
the emulator (``tests/test_architecture.py`` holds them to it). The rule engine and its
template library are imported when a command runs, not when ``mlevents`` builds its parser:
``--help`` stays quick. ``match`` and ``test``
stream: one record (or case) is read, matched and printed before the next, with a progress
line on a terminal for long runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from consumer.config import environment_secrets, load_config
from consumer.errors import EXIT_FAILED, EXIT_OK, ConfigError, EventFileError

if TYPE_CHECKING:
    from consumer.ruletests import CaseResult
    from rules import Event, RuleTable

EXAMPLES = Path(__file__).parents[1] / "examples"
EVENT_FILES = "event files (.json, .jsonl, Capture .avro, - for stdin)"


def add_parsers(commands: Any) -> None:
    """Add ``match``, ``explain``, ``test`` and ``lint``."""
    match = commands.add_parser("match", help="print the rules each recorded event matches")
    _rules_options(match)
    match.add_argument("--format", choices=("text", "jsonl"), default="text")
    match.add_argument("events", nargs="*", metavar="EVENTS", help=EVENT_FILES)
    match.set_defaults(func=_match)

    explain = commands.add_parser("explain", help="show why a rule matched an event or not")
    _rules_options(explain)
    explain.add_argument("--rule", required=True, help="name of the rule to explain")
    explain.add_argument("event", nargs="?", metavar="EVENT", help="an event file")
    explain.set_defaults(func=_explain)

    test = commands.add_parser("test", help="run rule tests (the shipped examples by default)")
    _rules_options(test)
    test.add_argument("cases", nargs="*", metavar="CASES", help="rule-test files")
    test.add_argument("--junit-xml", metavar="PATH", help="also write a JUnit XML report")
    test.set_defaults(func=_test)

    lint = commands.add_parser("lint", help="validate rule files and print their warnings")
    _rules_options(lint)
    lint.add_argument(
        "--env",
        action="store_true",
        help="also check that the secrets the rules name (secret_env) are set in the environment",
    )
    lint.set_defaults(func=_lint)


def split_rules(args: argparse.Namespace) -> None:
    """Give back to the positionals what ``--rules FILE...`` swallowed after the rule files.

    ``--rules a.toml b.toml events.jsonl`` is ambiguous to argparse; the contents are not:
    a rules document has a top-level ``rules`` list, an event or cases file has not.
    """
    rules = getattr(args, "rules", None)
    positional = next((n for n in ("events", "cases", "event") if hasattr(args, n)), None)
    if not rules or positional is None:
        return
    split = next((i for i, path in enumerate(rules) if i and not _is_rules_file(path)), len(rules))
    args.rules, moved = rules[:split], rules[split:]
    current = getattr(args, positional)
    if positional == "event":
        if moved and current is None:
            args.event, moved = moved[0], moved[1:]
        if moved:
            raise ConfigError(f"explain takes one EVENT file; also got {', '.join(moved)}")
    else:
        setattr(args, positional, [*moved, *current])


_TOML_TABLE = re.compile(r"(?m)^\s*(?:\[\[\s*(\w+)\s*\]\]|(\w+)\s*=\s*\[)")
"""The first top-level array of a TOML document: ``[[rules]]`` or ``rules = [``."""


def _is_rules_file(path: str) -> bool:
    """Whether ``path`` holds a rules document. Event files (JSON Lines, Capture) never do,
    and are not read here: they may be a day of traffic."""
    lowered = path.lower()
    if path == "-" or lowered.endswith((".jsonl", ".avro")):
        return False
    try:
        text = Path(path).read_text(encoding="utf-8")
        if not lowered.endswith(".json"):
            first = _TOML_TABLE.search(text)  # a cases file need not be parsed twice
            if first is not None and "rules" not in first.groups():
                return False
        document = json.loads(text) if lowered.endswith(".json") else tomllib.loads(text)
    except FileNotFoundError:
        # Named after the rules, a missing file is more likely the events (or cases) file
        # mistyped; as one, it is reported by name as missing, and no rule file goes missing
        # unnoticed either (those after it are reported the same way).
        return False
    except (OSError, UnicodeDecodeError):
        return True  # reported as an unreadable rules file, where it was written
    except ValueError:
        return not lowered.endswith(".json")
    return isinstance(document, dict) and "rules" in document


def _rules_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rules", nargs="+", metavar="FILE", help="rule files (TOML or JSON)")
    parser.add_argument("--config", metavar="PATH", help="take rule files from this config.toml")


def _rule_paths(args: argparse.Namespace, *, default: Sequence[Path] = ()) -> list[str]:
    if args.rules:
        return list(args.rules)
    if args.config:
        return [str(p) for p in load_config(args.config, offline=True).rules.files]
    if default:
        return [str(p) for p in default]
    raise ConfigError("no rules: give --rules FILE... or --config config.toml")


def _load(args: argparse.Namespace, *, default: Sequence[Path] = ()) -> RuleTable:

    from consumer.rulefiles import load_rule_files

    loaded = load_rule_files(_rule_paths(args, default=default))
    for warning in loaded.warnings:
        print(f"warning: {warning.message_at()}", file=sys.stderr)
    return loaded.table


class _Events:
    """The decoded events of files, read one record at a time (so a day of Capture files
    takes no more memory than one message); bad records go to stderr and are counted."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = paths
        self.records = 0
        self.errors = 0

    def __iter__(self) -> Iterator[tuple[str, Event]]:

        from consumer.eventfiles import read_event_files
        from rules import DecodeError, decode_body

        for path in self.paths:
            try:
                for record in read_event_files([path]):
                    self.records += 1
                    try:
                        events = decode_body(record.body)
                    except DecodeError as exc:
                        self.errors += 1
                        print(f"{record.where}: {exc}", file=sys.stderr)
                        continue
                    for event in events:
                        yield record.where, event
            except EventFileError as exc:
                self.errors += 1
                print(str(exc), file=sys.stderr)


class _Progress:
    """A line on stderr, when it is a terminal, for runs longer than ``AFTER_S``: how many
    records (or cases) are done, their rate and the errors (or failures) so far, redrawn
    about once a second. ``counts`` gives the two numbers and ``names`` what they count."""

    AFTER_S = 2.0

    def __init__(
        self,
        counts: Callable[[], tuple[int, int]],
        names: tuple[str, str] = ("records", "errors"),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._counts, self._names, self._clock = counts, names, clock
        self._started = clock()
        self._next = self._started + self.AFTER_S
        self._shown = False
        self._on = sys.stderr.isatty()

    def tick(self) -> None:
        if not self._on or self._clock() < self._next:
            return
        now = self._clock()
        self._next = now + 1.0
        (done, errors), (what, bad) = self._counts(), self._names
        rate = done / (now - self._started)
        sys.stderr.write(f"\r{done:,} {what}, {rate:,.0f}/s, {errors} {bad}")
        sys.stderr.flush()
        self._shown = True

    def done(self) -> None:
        if self._shown:
            sys.stderr.write("\n")


_line_encoder = msgspec.json.Encoder()
FLUSH_EVERY = 512
"""Lines buffered before a write (and a look at the clock for the progress line)."""


class _Output:
    """Lines for standard output, written in blocks of ``every`` (the progress line is
    redrawn between blocks). Leaving the ``with`` block writes what is left, also when an
    error stops the run (so the lines before it are out), unless the reader went away."""

    def __init__(self, progress: _Progress, every: int = FLUSH_EVERY) -> None:
        self._out = sys.stdout.buffer
        self._progress, self._every = progress, every
        self._lines: list[bytes] = []

    def __enter__(self) -> _Output:
        return self

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        if not isinstance(error, BrokenPipeError):
            self._flush()
        self._progress.done()

    def line(self, line: bytes) -> None:
        self._lines.append(line)
        if len(self._lines) >= self._every:
            self._flush()
            self._progress.tick()

    def _flush(self) -> None:
        self._out.write(b"".join(self._lines))
        self._out.flush()
        self._lines.clear()


def _match(args: argparse.Namespace) -> int:
    if not args.events:
        raise ConfigError("match needs EVENTS: event files, or - for standard input")
    table = _load(args)
    events = _Events(args.events)
    progress = _Progress(lambda: (events.records, events.errors))
    # Standard input may be a live stream (``tail -f``, ``mlevents record``): each line goes
    # out as its record is read. Files are written in blocks of lines.
    with _Output(progress, every=1 if "-" in args.events else FLUSH_EVERY) as output:
        for _where, event in events:
            output.line(_match_line(args.format, event, [r.name for r in table.match(event)]))
    return EXIT_FAILED if events.errors else EXIT_OK


def _match_line(fmt: str, event: Event, names: list[str]) -> bytes:
    if fmt == "jsonl":
        line = {"id": event.id, "type": event.type, "subject": event.subject, "matched": names}
        return _line_encoder.encode(line) + b"\n"
    matched = ", ".join(names) if names else "(no rule)"
    return f"{event.id}  {event.type}  {event.subject}  -> {matched}\n".encode()


def _explain(args: argparse.Namespace) -> int:
    if args.event is None:
        raise ConfigError("explain needs an EVENT file")
    table = _load(args)
    try:
        rule = table.rule(args.rule)
    except KeyError:
        known = ", ".join(r.name for r in table.rules)
        raise ConfigError(f"no rule named {args.rule!r}; the rules are: {known}") from None
    events = _Events([args.event])
    for where, event in events:
        explanation = rule.filter.explain(event)
        verdict = "MATCHES" if explanation.matched else "DOES NOT MATCH"
        print(f"rule {rule.name!r} {verdict} event {event.id} ({event.type}) from {where}")
        for check in explanation.checks:
            print(f"  {'pass' if check.passed else 'FAIL'}  {check.part}: {check.detail}")
    return EXIT_FAILED if events.errors else EXIT_OK


def _test(args: argparse.Namespace) -> int:

    from consumer.ruletests import JUnitReport, Tally, iter_cases, run_case

    embedded = not (args.rules or args.config or args.cases)
    table = _load(args, default=[EXAMPLES / "rules.toml"] if embedded else ())
    case_paths = [Path(p) for p in args.cases]
    if not case_paths and args.config:
        case_paths = list(load_config(args.config, offline=True).rules.tests)
    if embedded:
        case_paths = [EXAMPLES / "rules.test.toml"]
    if not case_paths:
        raise ConfigError("no rule tests: give CASES files (or rules.tests in config.toml)")
    tally = Tally()
    with contextlib.ExitStack() as stack:
        report = stack.enter_context(JUnitReport(Path(args.junit_xml))) if args.junit_xml else None
        progress = _Progress(lambda: (tally.cases, tally.failed), ("cases", "failed"))
        # Each case is read, run and let go before the next: its line waits at most for a
        # block of lines, and the report is on disk.
        with _Output(progress) as output:
            for path in case_paths:
                for case in iter_cases(path):
                    result = run_case(table, case)
                    tally.add(result)
                    if report is not None:
                        report.add(result)
                    output.line(_case_line(result))
        missing = tally.uncovered(table)
        if missing:
            print(f"rules no case matched: {', '.join(missing)}")
        print(
            f"{tally.cases} cases, {tally.cases - tally.failed} passed, {tally.failed} failed; "
            f"{len(table) - len(missing)}/{len(table)} rules covered"
        )
        if report is not None:
            report.finish(missing)
    return EXIT_FAILED if tally.failed else EXIT_OK


def _case_line(result: CaseResult) -> bytes:
    if result.failure is None:
        return f"pass  {result.case.name}\n".encode()
    return f"FAIL  {result.case.name}: {result.failure}\n".encode()


def _lint(args: argparse.Namespace) -> int:

    from consumer.rulefiles import load_rule_files

    # With --config, webhooks are checked against its [webhook] allowed_hosts, as at start.
    hosts = load_config(args.config, offline=True).webhook.allowed_hosts if args.config else ()
    secrets = environment_secrets() if args.env else None
    loaded = load_rule_files(_rule_paths(args), secrets=secrets, allowed_hosts=hosts)
    for warning in loaded.warnings:
        print(f"warning: {warning.message_at()}")
    print(f"{len(loaded.table)} rules, {len(loaded.warnings)} warning(s)")
    return EXIT_OK
