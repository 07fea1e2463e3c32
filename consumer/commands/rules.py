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
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from consumer.commands.progress import Progress
from consumer.config import environment_secrets, load_config
from consumer.errors import EXIT_FAILED, EXIT_OK, ConfigError, EventFileError

if TYPE_CHECKING:
    from consumer.actions.preview import Previewer
    from consumer.config import Config
    from consumer.ruletests import CaseResult
    from rules import Event, Rule, RuleTable

EXAMPLES = Path(__file__).parents[1] / "examples"
SAMPLES = EXAMPLES / "events"
EVENT_FILES = "event files (.json, .jsonl, Capture .avro, - for stdin)"
RENDER_HELP = (
    "also show what each matched action would send: the email, the webhook request, the ARM "
    "calls (secrets redacted)"
)


def add_parsers(commands: Any) -> None:
    """Add ``match``, ``explain``, ``test`` and ``lint``."""
    match = commands.add_parser("match", help="print the rules each recorded event matches")
    _rules_options(match)
    match.add_argument(
        "--format",
        choices=("text", "jsonl"),
        default="text",
        help="text (default): a line to read per event; jsonl: one JSON object per event",
    )
    match.add_argument("events", nargs="*", metavar="EVENTS", help=EVENT_FILES)
    match.set_defaults(func=_match)

    explain = commands.add_parser("explain", help="show why a rule matched an event or not")
    _rules_options(explain)
    explain.add_argument("--rule", required=True, help="name of the rule to explain")
    explain.add_argument("event", nargs="?", metavar="EVENT", help="an event file")
    explain.add_argument("--render", action="store_true", help=RENDER_HELP)
    explain.set_defaults(func=_explain)

    test = commands.add_parser("test", help="run rule tests (the shipped examples by default)")
    _rules_options(test)
    test.add_argument("cases", nargs="*", metavar="CASES", help="rule-test files")
    test.add_argument("--junit-xml", metavar="PATH", help="also write a JUnit XML report")
    test.add_argument("--render", action="store_true", help=RENDER_HELP)
    test.set_defaults(func=_test)

    lint = commands.add_parser("lint", help="validate rule files and print their warnings")
    _rules_options(lint)
    lint.add_argument(
        "--env",
        action="store_true",
        help="also check the environment variables the rules name (url_env, headers_env, "
        "secret_env): set, and holding what they must",
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
    """Whether ``path`` holds a rules document or, in JSON, an Event Grid event subscription
    (``rules.subscriptions``). Event files (JSON Lines, Capture) never do, and are not read
    here: they may be a day of traffic."""
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
    if isinstance(document, dict) and "rules" in document:
        return True
    from rules.subscriptions import is_subscription_document

    return lowered.endswith(".json") and is_subscription_document(document)


def _rules_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rules",
        nargs="+",
        metavar="FILE",
        help="rule files (TOML or JSON), or Event Grid subscriptions (JSON) to check their filter",
    )
    parser.add_argument("--config", metavar="PATH", help="take rule files from this config.toml")


def _config(args: argparse.Namespace) -> Config | None:
    return load_config(args.config, offline=True) if args.config else None


def _previewer(config: Config | None) -> Previewer:
    """Previews with the config's settings (the email sender, ARM's address and API
    versions, allowed hosts), else the defaults."""
    from consumer.actions.preview import Previewer

    return Previewer() if config is None else Previewer.of(config)


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

    loaded = load_rule_files(_rule_paths(args, default=default), subscriptions=True)
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


_line_encoder = msgspec.json.Encoder()
FLUSH_EVERY = 512
"""Lines buffered before a write (and a look at the clock for the progress line)."""


class _Output:
    """Lines for standard output, written in blocks of ``every`` (the progress line is
    redrawn between blocks). Leaving the ``with`` block writes what is left, also when an
    error stops the run (so the lines before it are out), unless the reader went away."""

    def __init__(self, progress: Progress, every: int = FLUSH_EVERY) -> None:
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
    progress = Progress(lambda: (events.records, events.errors))
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
    previewer = _previewer(_config(args)) if args.render else None
    events = _Events([args.event])
    for where, event in events:
        explanation = rule.filter.explain(event)
        verdict = "MATCHES" if explanation.matched else "DOES NOT MATCH"
        print(f"rule {rule.name!r} {verdict} event {event.id} ({event.type}) from {where}")
        for check in explanation.checks:
            print(f"  {'pass' if check.passed else 'FAIL'}  {check.part}: {check.detail}")
        if previewer is not None and explanation.matched:
            _print_previews(previewer, event, rule)
    return EXIT_FAILED if events.errors else EXIT_OK


def _print_previews(previewer: Previewer, event: Event, rule: Rule) -> None:
    """What each action of ``rule`` would send for ``event``, or why it would fail."""

    from consumer.ruletests import render_all
    from rules import Decision

    decisions = [Decision(event, rule, index, action) for index, action in enumerate(rule.actions)]
    previews, failures = render_all(decisions, previewer)
    print("would send:")
    for preview in previews:
        print(preview.text(indent="  "), end="")
    for failure in failures:
        print(f"  FAIL  {failure}")


def _test(args: argparse.Namespace) -> int:

    from consumer.ruletests import JUnitReport, Tally, iter_cases, run_case

    embedded = not (args.rules or args.config or args.cases)
    table = _load(args, default=[EXAMPLES / "rules.toml"] if embedded else ())
    config = _config(args)
    previewer = _previewer(config)
    case_paths = [Path(p) for p in args.cases]
    if not case_paths and config is not None:
        case_paths = list(config.rules.tests)
    if embedded:
        case_paths = [EXAMPLES / "rules.test.toml"]
    if not case_paths:
        raise ConfigError("no rule tests: give CASES files (or rules.tests in config.toml)")
    tally = Tally()
    with contextlib.ExitStack() as stack:
        report = stack.enter_context(JUnitReport(Path(args.junit_xml))) if args.junit_xml else None
        progress = Progress(lambda: (tally.cases, tally.failed), ("cases", "failed"))
        # Each case is read, run and let go before the next: its line waits at most for a
        # block of lines, and the report is on disk.
        with _Output(progress) as output:
            for path in case_paths:
                for case in iter_cases(path):
                    result = run_case(table, case, previewer)
                    tally.add(result)
                    if report is not None:
                        report.add(result)
                    output.line(_case_line(result))
                    if args.render:
                        for preview in result.previews:
                            output.line(preview.text(indent="    ").encode())
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
    from consumer.ruletests import sample_warnings

    config = _config(args)
    # With --config, webhooks are checked against its [webhook] allowed_hosts, as at start.
    hosts = config.webhook.allowed_hosts if config is not None else ()
    secrets = environment_secrets() if args.env else None
    loaded = load_rule_files(
        _rule_paths(args), secrets=secrets, allowed_hosts=hosts, subscriptions=True
    )
    samples = sorted(SAMPLES.glob("*.json"))
    warnings = [*loaded.warnings, *sample_warnings(loaded.table, _previewer(config), samples)]
    for warning in warnings:
        print(f"warning: {warning.message_at()}")
    print(f"{len(loaded.table)} rules, {len(warnings)} warning(s)")
    return EXIT_OK
