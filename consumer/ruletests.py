"""Rule tests: cases that pin which rules an event must match.

A cases file (TOML or JSON) holds a ``cases`` list. Each case names an event, either a
path (``event = "events/run-failed.json"``, relative to the cases file) or inline JSON
(``body = '''[{...}]'''``), and the rules expected to match, in table order
(``expect = ["email-on-failed-run"]``; ``[]`` means none). ``actions``, when given, pins
the action types those rules would run, in order. ``run_cases`` also reports coverage:
the rules that no case matched.
"""

from __future__ import annotations

import json
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rules import DecodeError, RuleTable, decode_body, plan

from .errors import CaseFileError

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
    """What a case matched, and why it failed (``failure is None`` when it passed)."""

    case: Case
    matched: tuple[str, ...]
    failure: str | None


def read_cases(path: Path) -> list[Case]:
    """Parse a cases file.

    Raises:
        CaseFileError: naming the file and the case at fault.
    """
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
    return [_case(path, index, entry) for index, entry in enumerate(entries)]


def _case(path: Path, index: int, entry: Any) -> Case:
    where = f"{path}: cases[{index}]"
    if not isinstance(entry, dict):
        raise CaseFileError(f"{where}: must be a table/object")
    unknown = [k for k in entry if k not in CASE_FIELDS]
    if unknown:
        raise CaseFileError(
            f"{where}: unknown key(s) {', '.join(unknown)}; expected {', '.join(CASE_FIELDS)}"
        )
    name = entry.get("name", f"cases[{index}]")
    if not isinstance(name, str):
        raise CaseFileError(f"{where}.name: must be a string")
    return Case(
        name,
        f"{path}:{name}",
        _body(path, where, entry),
        _names(where, entry, "expect", required=True) or (),
        _names(where, entry, "actions", required=False),
    )


def _body(path: Path, where: str, entry: dict[str, Any]) -> bytes:
    event, body = entry.get("event"), entry.get("body")
    if (event is None) == (body is None):
        raise CaseFileError(f"{where}: give exactly one of 'event' (a path) or 'body' (JSON)")
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(event, str):
        target = path.parent / event
        try:
            return target.read_bytes()
        except OSError as exc:
            raise CaseFileError(
                f"{where}.event: cannot read {target}: {exc.strerror or exc}"
            ) from exc
    raise CaseFileError(f"{where}: 'event' must be a path and 'body' a JSON string")


def _names(
    where: str, entry: dict[str, Any], key: str, *, required: bool
) -> tuple[str, ...] | None:
    value = entry.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CaseFileError(f"{where}.{key}: must be a list of names")
    return tuple(value)


def run_case(table: RuleTable, case: Case) -> CaseResult:
    """Decode the case's event, match it and compare with what the case expects."""
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
    return CaseResult(case, matched, None)


def uncovered(table: RuleTable, results: Sequence[CaseResult]) -> list[str]:
    """Names of the rules that no case matched, in table order."""
    hit = {name for result in results for name in result.matched}
    return [rule.name for rule in table.rules if rule.name not in hit]


def junit_xml(results: Sequence[CaseResult], not_covered: Sequence[str]) -> str:
    """A JUnit XML report: one testcase per case; uncovered rules as a property."""
    failures = sum(1 for r in results if r.failure is not None)
    suite = ET.Element(
        "testsuite",
        name="mlevents rules",
        tests=str(len(results)),
        failures=str(failures),
        errors="0",
        skipped="0",
    )
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", name="uncovered_rules", value=",".join(not_covered))
    for result in results:
        case = ET.SubElement(suite, "testcase", classname="rules", name=result.case.name)
        if result.failure is not None:
            failure = ET.SubElement(case, "failure", message=result.failure)
            failure.text = f"{result.case.where}: {result.failure}"
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)
