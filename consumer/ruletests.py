"""Rule tests: cases that pin which rules an event must match.

A cases file (TOML or JSON) holds a ``cases`` list. Each case names an event, either a
path (``event = "events/run-failed.json"``, relative to the cases file) or inline JSON
(``body = '''[{...}]'''``), and the rules expected to match, in table order
(``expect = ["email-on-failed-run"]``; ``[]`` means none). ``actions``, when given, pins
the action types those rules would run, in order. Every action the event would run is
rendered too (``consumer.actions.preview``), so a case fails where the worker would
dead-letter the action before sending it: a template that reads a field the event does not
have, an address that is not one, a webhook body that is not JSON. A ``Tally`` of the
results also reports coverage: the rules that no case matched.

``sample_warnings`` does the same for ``mlevents lint``, which has no events of its own:
each rule's actions are rendered for the shipped sample events the rule matches.

A run takes memory for its cases file, not for its results: ``iter_cases`` yields one case
at a time and reads its event file only then, ``Tally`` keeps counts and the names of the
rules matched, and ``JUnitReport`` writes each case to disk as it comes.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import tomllib
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from consumer.actions import action_type
from consumer.actions.preview import Preview, Previewer
from consumer.errors import ActionError, CaseFileError, ConfigError
from rules import Decision, DecodeError, Problem, RuleTable, decode_body, plan

CASE_FIELDS = ("name", "event", "body", "expect", "actions")


@dataclass(frozen=True, slots=True)
class Case:
    """One rule test: an event body and what it must match."""

    name: str
    where: str
    body: bytes
    expect: tuple[str, ...]
    actions: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class CaseResult:
    """What a case matched, why it failed (``failure is None`` when it passed), and what
    its actions would send."""

    case: Case
    matched: tuple[str, ...]
    failure: str | None
    previews: tuple[Preview, ...] = ()


def iter_cases(path: Path) -> Iterator[Case]:
    """The cases of a cases file, one at a time, in order.

    What is streamed: the events. A case's event file is read when the iterator reaches that
    case, and its body is let go with the case. What is not: the document. TOML cannot be
    parsed piece by piece and JSON is parsed whole too, so the ``cases`` list (inline
    ``body`` strings included) is in memory until the last case; a JSON file of many large
    inline bodies is better written with ``event`` files. Every entry is checked before the
    first case is yielded, so a malformed file stops the run before any of its cases.

    Raises:
        CaseFileError: naming the file and the case at fault (an event file that cannot be
            read, when the iterator reaches its case).
    """
    entries = _entries(path)
    for index, entry in enumerate(entries):
        _entry(path, index, entry)
    for index, entry in enumerate(entries):
        yield _read(_entry(path, index, entry))


def _entries(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
        document = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except OSError as exc:
        raise CaseFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise CaseFileError(
            f"{path}: not valid {path.suffix.lstrip('.') or 'TOML'}: {exc}"
        ) from exc
    entries = document.get("cases") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise CaseFileError(f"{path}: needs a top-level 'cases' list")
    return entries


class _Entry(NamedTuple):
    """A checked entry of a cases file: a case but for its body, which is read last."""

    at: str
    """``file: cases[i]``, for errors."""
    name: str
    where: str
    source: Path | str
    """The event file, or the inline body."""
    expect: tuple[str, ...]
    actions: tuple[str, ...] | None


def _entry(path: Path, index: int, entry: Any) -> _Entry:
    at = f"{path}: cases[{index}]"
    if not isinstance(entry, dict):
        raise CaseFileError(f"{at}: must be a table/object")
    unknown = [k for k in entry if k not in CASE_FIELDS]
    if unknown:
        raise CaseFileError(
            f"{at}: unknown key(s) {', '.join(unknown)}; expected {', '.join(CASE_FIELDS)}"
        )
    name = entry.get("name", f"cases[{index}]")
    if not isinstance(name, str):
        raise CaseFileError(f"{at}.name: must be a string")
    return _Entry(
        at,
        name,
        f"{path}:{name}",
        _source(path, at, entry),
        _names(at, entry, "expect", required=True) or (),
        _names(at, entry, "actions", required=False),
    )


def _source(path: Path, at: str, entry: dict[str, Any]) -> Path | str:
    event, body = entry.get("event"), entry.get("body")
    if (event is None) == (body is None):
        raise CaseFileError(f"{at}: give exactly one of 'event' (a path) or 'body' (JSON)")
    if isinstance(body, str):
        return body
    if isinstance(event, str):
        return path.parent / event
    raise CaseFileError(f"{at}: 'event' must be a path and 'body' a JSON string")


def _read(entry: _Entry) -> Case:
    if isinstance(entry.source, str):
        body = entry.source.encode("utf-8")
    else:
        try:
            body = entry.source.read_bytes()
        except OSError as exc:
            raise CaseFileError(
                f"{entry.at}.event: cannot read {entry.source}: {exc.strerror or exc}"
            ) from exc
    return Case(entry.name, entry.where, body, entry.expect, entry.actions)


def _names(
    where: str, entry: dict[str, Any], key: str, *, required: bool
) -> tuple[str, ...] | None:
    value = entry.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CaseFileError(f"{where}.{key}: must be a list of names")
    return tuple(value)


def run_case(table: RuleTable, case: Case, previewer: Previewer | None = None) -> CaseResult:
    """Decode the case's event, match it, compare with what the case expects, and render
    every action it would run (with ``previewer``, or the default settings)."""
    try:
        events = decode_body(case.body)
    except DecodeError as exc:
        return CaseResult(case, (), f"event does not decode: {exc}")
    if len(events) != 1:
        return CaseResult(case, (), f"a case needs exactly one event; the body has {len(events)}")
    decisions = plan(table, events[0])
    matched = tuple(r.name for r in table.match(events[0]))
    known = {r.name for r in table.rules}
    unknown = [name for name in case.expect if name not in known]
    if unknown:
        return CaseResult(case, matched, f"expects rules that do not exist: {', '.join(unknown)}")
    if matched != case.expect:
        return CaseResult(case, matched, f"expected {list(case.expect)}, matched {list(matched)}")
    actions = tuple(d.action.__struct_config__.tag for d in decisions)
    if case.actions is not None and actions != case.actions:
        return CaseResult(
            case, matched, f"expected actions {list(case.actions)}, planned {list(actions)}"
        )
    previews, failures = render_all(decisions, previewer or Previewer())
    return CaseResult(case, matched, "; ".join(failures) or None, previews)


def render_all(
    decisions: Sequence[Decision], previewer: Previewer
) -> tuple[tuple[Preview, ...], list[str]]:
    """The previews of ``decisions``, and why each one that cannot be rendered would fail,
    naming its rule and action."""
    previews, failures = [], []
    for decision in decisions:
        try:
            previews.append(previewer.preview(decision))
        except ActionError as exc:
            failures.append(
                f"rule {decision.rule.name!r} actions[{decision.index}] "
                f"({action_type(decision)}) would fail: {exc}"
            )
    return tuple(previews), failures


def sample_warnings(
    table: RuleTable, previewer: Previewer, samples: Sequence[Path]
) -> list[Problem]:
    """A warning for each action that would fail on a sample event its rule matches (the
    shipped ``consumer/examples/events``), naming the sample: the event types' documented
    and captured shapes, so a template reading a field they lack is found without events.
    Actions of rules that match no sample are not checked."""
    events = [(path.name, event) for path in samples for event in decode_body(path.read_bytes())]
    warnings = []
    for rule in table.rules:
        failed: set[int] = set()
        for name, event in events:
            if not rule.filter.matches(event):
                continue
            for index, action in enumerate(rule.actions):
                if index in failed:
                    continue
                try:
                    previewer.preview(Decision(event, rule, index, action))
                except ActionError as exc:
                    failed.add(index)
                    message = f"would fail on the sample event {name}: {exc}"
                    warnings.append(
                        Problem(message, f"actions[{index}]", rule.name, rule.file, rule.line)
                    )
    return warnings


@dataclass(slots=True)
class Tally:
    """What a run of cases adds up to, kept without its results: counts, and the names of
    the rules that some case matched (no more of them than the table has)."""

    cases: int = 0
    failed: int = 0
    matched: set[str] = field(default_factory=set)

    def add(self, result: CaseResult) -> None:
        self.cases += 1
        if result.failure is not None:
            self.failed += 1
        self.matched.update(result.matched)

    def uncovered(self, table: RuleTable) -> list[str]:
        """Names of the rules that no case matched, in table order."""
        return [rule.name for rule in table.rules if rule.name not in self.matched]


class JUnitReport:
    """A JUnit XML report, written as the cases run: one testcase per case; the rules no
    case matched as a property.

    The suite's counts open the document but are known only at the end, so the testcases
    go to an unnamed scratch file beside the target first; ``finish`` writes the whole
    document to a hidden temporary file there and renames it over the target. A run that
    stops early leaves the target as it was.

    Raises:
        ConfigError: the report cannot be written (naming the target).
    """

    def __init__(self, target: Path) -> None:
        self._target = target
        self._tests = self._failures = 0
        with self._writing():
            # Closed by __exit__. No newline translation here: finish does it once, as a
            # text file written in one go would have it.
            self._scratch = tempfile.TemporaryFile(  # noqa: SIM115
                "w+", encoding="utf-8", newline="", dir=target.parent
            )

    def __enter__(self) -> JUnitReport:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._scratch.close()

    def add(self, result: CaseResult) -> None:
        self._tests += 1
        case = ET.Element("testcase", classname="rules", name=result.case.name)
        if result.failure is not None:
            self._failures += 1
            failure = ET.SubElement(case, "failure", message=result.failure)
            failure.text = f"{result.case.where}: {result.failure}"
        with self._writing():
            self._scratch.write(ET.tostring(case, encoding="unicode"))

    def finish(self, not_covered: Sequence[str]) -> None:
        """Write the report to its target."""
        suite = ET.Element(
            "testsuite",
            name="mlevents rules",
            tests=str(self._tests),
            failures=str(self._failures),
            errors="0",
            skipped="0",
        )
        properties = ET.SubElement(suite, "properties")
        ET.SubElement(properties, "property", name="uncovered_rules", value=",".join(not_covered))
        end = "</testsuite>"
        start = ET.tostring(suite, encoding="unicode", xml_declaration=True).removesuffix(end)
        temporary = self._target.with_name(f".{self._target.name}.{uuid.uuid4().hex[:8]}.tmp")
        with self._writing():
            try:
                with temporary.open("x", encoding="utf-8") as out:
                    out.write(start)
                    self._scratch.seek(0)
                    shutil.copyfileobj(self._scratch, out)
                    out.write(end)
                temporary.replace(self._target)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise ConfigError(
                f"{self._target}: cannot write the JUnit report: {exc.strerror or exc}"
            ) from exc
