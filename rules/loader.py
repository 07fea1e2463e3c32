"""Reading rule tables from TOML or JSON text.

A rules document has a top-level ``rules`` list; each rule is a table with ``name``
(unique across all documents), an optional ``description``, a ``filter`` shaped like an
Event Grid subscription filter, and ``actions``. ``load_table`` checks everything before
anything runs and reports every problem at once, each naming the file, the line of the
rule, the rule and the key. ``check_rules`` does the same checks without raising and also
gives the rules that are valid, so a caller can check what they refer to even while other
rules have problems. This module takes text, not paths: reading files is the shell's job.

With ``subscriptions=True`` (the offline commands), a JSON document may instead be an Event
Grid event subscription (``rules.subscriptions``): each subscription in it is a rule with
its filter and no actions. The worker refuses them: a rule without actions does nothing.
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
from .subscriptions import FoundSubscription, find_subscriptions, is_subscription_document
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


@dataclass(frozen=True, slots=True)
class PlacedAction:
    """An action that parsed, with where it is written: what it refers to outside the rules
    (files, secrets) can be checked even while its rule has other problems."""

    action: Action
    index: int
    """Its position in its rule's ``actions``."""
    rule: str
    file: str
    line: int | None


@dataclass(frozen=True, slots=True)
class CheckedRules:
    """What checking rules documents found: the rules that are valid, every action that
    parsed (in valid rules or not), and every problem and warning."""

    rules: tuple[Rule, ...]
    actions: tuple[PlacedAction, ...]
    problems: tuple[Problem, ...]
    warnings: tuple[Problem, ...]


def load_table(sources: Sequence[RuleSource], *, subscriptions: bool = False) -> LoadedTable:
    """Parse, validate and index rules from one or more documents, in order
    (``subscriptions``: see ``check_rules``).

    Raises:
        RuleTableError: with every problem in every document.
    """
    checked = check_rules(sources, subscriptions=subscriptions)
    if checked.problems:
        raise RuleTableError(list(checked.problems))
    return LoadedTable(RuleTable(checked.rules), checked.warnings)


def check_rules(sources: Sequence[RuleSource], *, subscriptions: bool = False) -> CheckedRules:
    """Parse and validate rules from one or more documents, in order, never stopping at a
    fault: a rule with problems is left out of ``rules`` and the others are still checked,
    their names against every rule's, valid or not. With ``subscriptions``, a JSON document
    may be an Event Grid event subscription: its filter becomes a rule without actions."""
    problems: list[Problem] = []
    warnings: list[Problem] = []
    rules: list[Rule] = []
    actions: list[PlacedAction] = []
    first_seen: dict[str, str] = {}
    for source in sources:
        for named in _parse_document(source, problems, warnings, subscriptions):
            where = f"{source.name}:{named.line}" if named.line else source.name
            if named.name in first_seen:
                problems.append(
                    Problem(
                        f"duplicate rule name, first defined at {first_seen[named.name]}",
                        key="name",
                        rule=named.name,
                        file=source.name,
                        line=named.line,
                    )
                )
            else:
                first_seen[named.name] = where
            if named.rule is not None:
                rules.append(named.rule)
            actions.extend(
                PlacedAction(action, index, named.name, source.name, named.line)
                for index, action in named.actions
            )
    return CheckedRules(tuple(rules), tuple(actions), tuple(problems), tuple(warnings))


@dataclass(frozen=True, slots=True)
class _Named:
    """A rule entry with a name: where it is, its actions that parsed (by position), and the
    rule when it is valid."""

    name: str
    line: int | None
    actions: tuple[tuple[int, Action], ...]
    rule: Rule | None


def _parse_document(
    source: RuleSource, problems: list[Problem], warnings: list[Problem], subscriptions: bool
) -> list[_Named]:
    document = _parse_text(source, problems)
    if document is None:
        return []
    if source.format == "json" and is_subscription_document(document):
        if subscriptions:
            return _parse_subscriptions(source, document, problems, warnings)
        problems.append(
            Problem(
                "is an Event Grid event subscription, not a rules document: match, test, "
                "explain and lint read its filter, but the worker needs rules with actions",
                file=source.name,
            )
        )
        return []
    if not isinstance(document, dict):
        problems.append(Problem("must be a table/object with a 'rules' list", file=source.name))
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
        hint = ""
        if subscriptions and source.format == "json":
            hint = " (or is an Event Grid event subscription, as `az eventgrid ... show` prints)"
        problems.append(
            Problem(f"needs a top-level 'rules' list{hint}", key="rules", file=source.name)
        )
        return []
    named = []
    lines = _NameLines(source.text)
    for index, entry in enumerate(entries):
        found = _parse_rule(entry, index, source, problems, warnings, lines)
        if found is not None:
            named.append(found)
    return named


def _parse_text(source: RuleSource, problems: list[Problem]) -> Any:
    """The parsed document (a JSON list too: a list of subscriptions); ``None`` if it does
    not parse."""
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
    return document


def _parse_subscriptions(
    source: RuleSource, document: Any, problems: list[Problem], warnings: list[Problem]
) -> list[_Named]:
    """One rule per event subscription: named after it, its filter, no actions."""
    found = find_subscriptions(document)
    if not found:
        problems.append(
            Problem("an ARM template with no Event Grid event subscription", file=source.name)
        )
        return []
    lines = _NameLines(source.text)
    named = []
    for subscription in found:
        name = subscription.name or _unnamed(source.name, subscription.at)
        line = lines.line(subscription.written_name) if subscription.written_name else None
        faults = [
            Problem(p.message, key=p.key, rule=name, file=source.name, line=line)
            for p in subscription.problems
        ]
        rule = None
        if not faults:
            rule = _subscription_rule(subscription, name, source.name, line, faults, warnings)
        problems.extend(faults)
        named.append(_Named(name, line, (), rule))
    return named


def _subscription_rule(
    subscription: FoundSubscription,
    name: str,
    file: str,
    line: int | None,
    problems: list[Problem],
    warnings: list[Problem],
) -> Rule | None:
    """The rule of one subscription, or ``None`` with its filter's problems added; keys
    name the filter where the document has it (``properties.filter...``)."""

    def placed(found: Problem) -> Problem:
        key = subscription.where + found.key.removeprefix("filter")
        return Problem(found.message, key=key, rule=name, file=file, line=line)

    try:
        flt = compile_filter(subscription.filter)
    except FilterError as exc:
        problems.extend(placed(p) for p in exc.problems)
        return None
    warnings.extend(placed(w) for w in flt.warnings)
    about = f"the filter of Event Grid subscription {name!r} (no actions)"
    return Rule(name, flt, (), about, file, line)


def _unnamed(file: str, at: str) -> str:
    """The name of a subscription that has none (a REST body) or an unreadable one: its
    file's name, and where it is in the file."""
    base = file.replace("\\", "/").rsplit("/", 1)[-1]
    return f"{base}:{at}" if at else base


def _parse_rule(
    entry: Any,
    index: int,
    source: RuleSource,
    problems: list[Problem],
    warnings: list[Problem],
    lines: _NameLines,
) -> _Named | None:
    """The entry's name and line, and its rule when it is valid (else its problems are
    added); ``lines`` gives the line of each name in document order."""
    if not isinstance(entry, dict):
        problems.append(Problem("must be a table/object", key=f"rules[{index}]", file=source.name))
        return None
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(
            Problem("needs a non-empty string 'name'", key=f"rules[{index}].name", file=source.name)
        )
        return None
    line = lines.line(name)

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
    placed = _parse_actions(entry.get("actions", []), problem, problems)
    if flt is None or len(problems) > count:
        return _Named(name, line, placed, None)
    warnings.extend(problem(w.message, w.key) for w in flt.warnings)
    if not placed:
        warnings.append(problem("has no actions: it can match but will do nothing", "actions"))
    actions = tuple(action for _, action in placed)
    return _Named(name, line, placed, Rule(name, flt, actions, str(description), source.name, line))


def _parse_actions(
    value: Any, problem: Any, problems: list[Problem]
) -> tuple[tuple[int, Action], ...]:
    """The actions that parse, each with its position; the problems of all of them."""
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
        actions.append((index, action))
    return tuple(actions)


_NAME = re.compile(r"""(?m)(?:^|[{,\s])"?name"?\s*[=:]\s*("(?:[^"\\\n]|\\.)*"|'[^'\n]*')""")
"""``name = "x"`` (TOML), ``name = 'x'`` (a TOML literal) or ``"name": "x"`` (JSON)."""


class _NameLines:
    """The lines where each name is written in one document, found in one pass over it;
    ``line`` hands them out in order, so a duplicate gets its own line."""

    def __init__(self, text: str) -> None:
        self._lines: dict[str, list[int]] = {}
        line, counted = 1, 0
        for found in _NAME.finditer(text):
            start = found.start()
            line += text.count("\n", counted, start)
            counted = start
            name = _unquote(found.group(1))
            if name is not None:
                at = line + (1 if text[start] == "\n" else 0)
                self._lines.setdefault(name, []).append(at)
        for lines in self._lines.values():
            lines.reverse()

    def line(self, name: str) -> int | None:
        lines = self._lines.get(name)
        return lines.pop() if lines else None


def _unquote(literal: str) -> str | None:
    if literal.startswith("'"):
        return literal[1:-1]
    try:
        value = json.loads(literal)
    except ValueError:
        return None  # an escape JSON does not know (TOML's \U...): no line for it
    return value if isinstance(value, str) else None
