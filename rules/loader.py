"""Reading rule tables from TOML or JSON text.

A rules document has a top-level ``rules`` list; each rule is a table with ``name``
(unique across all documents), an optional ``description``, a ``filter`` shaped like an
Event Grid subscription filter, and ``actions``. ``load_table`` checks everything before
anything runs and reports every problem at once, each naming the file, the line of the
rule, the rule and the key. This module takes text, not paths: reading files is the
shell's job.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from . import addresses, templates
from .actions import Action, parse_action
from .errors import FilterError, Problem, RuleTableError
from .filters import compile_filter
from .table import Rule, RuleTable

RULE_FIELDS = ("name", "description", "filter", "actions")


@dataclass(frozen=True, slots=True)
class RuleSource:
    """The text of one rules document and the name to report it under."""

    name: str
    text: str

    @property
    def format(self) -> str:
        """``json`` for ``*.json`` names, ``toml`` for everything else."""
        return "json" if self.name.lower().endswith(".json") else "toml"


@dataclass(frozen=True, slots=True)
class LoadedTable:
    """A validated table and the warnings found on the way (Event Grid's limits, etc.)."""

    table: RuleTable
    warnings: tuple[Problem, ...]


def load_table(sources: Sequence[RuleSource]) -> LoadedTable:
    """Parse, validate and index rules from one or more documents, in order.

    Raises:
        RuleTableError: with every problem in every document.
    """
    problems: list[Problem] = []
    warnings: list[Problem] = []
    rules: list[Rule] = []
    first_seen: dict[str, Rule] = {}
    for source in sources:
        for rule in _parse_document(source, problems, warnings):
            earlier = first_seen.setdefault(rule.name, rule)
            if earlier is not rule:
                where = f"{earlier.file}:{earlier.line}" if earlier.line else earlier.file
                problems.append(
                    Problem(
                        f"duplicate rule name, first defined at {where}",
                        key="name",
                        rule=rule.name,
                        file=rule.file,
                        line=rule.line,
                    )
                )
            rules.append(rule)
    if problems:
        raise RuleTableError(problems)
    return LoadedTable(RuleTable(tuple(rules)), tuple(warnings))


def _parse_document(
    source: RuleSource, problems: list[Problem], warnings: list[Problem]
) -> list[Rule]:
    document = _parse_text(source, problems)
    if document is None:
        return []
    extra = [k for k in document if k != "rules"]
    if extra:
        problems.append(
            Problem(
                f"unknown top-level key(s) {', '.join(map(repr, extra))}; a "
                "rules document has only 'rules'",
                file=source.name,
            )
        )
    entries = document.get("rules")
    if not isinstance(entries, list):
        problems.append(Problem("needs a top-level 'rules' list", key="rules", file=source.name))
        return []
    rules = []
    for index, entry in enumerate(entries):
        rule = _parse_rule(entry, index, source, problems, warnings)
        if rule is not None:
            rules.append(rule)
    return rules


def _parse_text(source: RuleSource, problems: list[Problem]) -> dict[str, Any] | None:
    try:
        if source.format == "json":
            document = json.loads(source.text, parse_float=Decimal)
        else:
            document = tomllib.loads(source.text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        problems.append(
            Problem(
                f"not valid JSON: {exc.msg} (column {exc.colno})", file=source.name, line=exc.lineno
            )
        )
        return None
    except tomllib.TOMLDecodeError as exc:
        problems.append(Problem(f"not valid TOML: {exc}", file=source.name))
        return None
    if not isinstance(document, dict):
        problems.append(Problem("must be a table/object with a 'rules' list", file=source.name))
        return None
    return document


def _parse_rule(
    entry: Any, index: int, source: RuleSource, problems: list[Problem], warnings: list[Problem]
) -> Rule | None:
    if not isinstance(entry, dict):
        problems.append(Problem("must be a table/object", key=f"rules[{index}]", file=source.name))
        return None
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(
            Problem("needs a non-empty string 'name'", key=f"rules[{index}].name", file=source.name)
        )
        return None
    line = _line_of(source, name)

    def problem(message: str, key: str = "") -> Problem:
        return Problem(message, key=key, rule=name, file=source.name, line=line)

    count = len(problems)
    for extra in (k for k in entry if k not in RULE_FIELDS):
        problems.append(
            problem(f"unknown rule property; expected one of {', '.join(RULE_FIELDS)}", key=extra)
        )
    description = entry.get("description", "")
    if not isinstance(description, str):
        problems.append(problem("must be a string", key="description"))
    try:
        flt = compile_filter(entry.get("filter"))
    except FilterError as exc:
        problems.extend(problem(p.message, p.key) for p in exc.problems)
        flt = None
    actions = _parse_actions(entry.get("actions", []), problem, problems)
    if flt is None or len(problems) > count:
        return None
    warnings.extend(problem(w.message, w.key) for w in flt.warnings)
    if not actions:
        warnings.append(problem("has no actions: it can match but will do nothing", "actions"))
    return Rule(name, flt, actions, str(description), source.name, line)


def _parse_actions(value: Any, problem: Any, problems: list[Problem]) -> tuple[Action, ...]:
    if not isinstance(value, list):
        problems.append(problem("must be a list of action tables", "actions"))
        return ()
    actions = []
    for index, spec in enumerate(value):
        try:
            action = parse_action(spec)
        except ValueError as exc:
            problems.append(problem(str(exc), f"actions[{index}]"))
            continue
        for path, message in templates.check_value(action):
            problems.append(problem(message, f"actions[{index}].{path}"))
        for path, message in addresses.check_action(action):
            problems.append(problem(message, f"actions[{index}].{path}"))
        actions.append(action)
    return tuple(actions)


def _line_of(source: RuleSource, name: str) -> int | None:
    """The line where the rule's ``name`` is written (TOML ``name = "x"``, JSON ``"name": "x"``)."""
    quoted = re.escape(json.dumps(name))
    pattern = rf'(?m)(?:^|[{{,\s])"?name"?\s*[=:]\s*(?:{quoted}|{re.escape(repr(name))})'
    found = re.search(pattern, source.text)
    return (
        None
        if found is None
        else source.text.count("\n", 0, found.start())
        + 1
        + (1 if source.text[found.start()] == "\n" else 0)
    )
