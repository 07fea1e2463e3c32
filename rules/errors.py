"""Errors raised by the rule engine.

Everything the pure core raises derives from ``RulesError``::

    RulesError
    ├── DecodeError          an Event Hubs body that is not an event we can read
    ├── FilterError          an Event Grid filter object that is not valid
    └── RuleTableError       a rules file with problems; carries every ``Problem`` at once

Nothing else escapes the package: adapters in ``consumer/`` turn file-system and
parse errors into these before they reach a user.
"""

from __future__ import annotations

from dataclasses import dataclass


class RulesError(Exception):
    """Root of every error the rule engine raises."""


class DecodeError(RulesError):
    """An Event Hubs body could not be decoded into events; the message says why."""


class FilterError(RulesError):
    """An Event Grid filter object is not valid; ``problems`` lists each fault."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(p.message_at() for p in problems))


@dataclass(frozen=True, slots=True)
class Problem:
    """One fault (or warning) found while validating rules, with where it is."""

    message: str
    key: str = ""
    """Dotted path of the offending key, e.g. ``filter.advancedFilters[2].values``."""
    rule: str = ""
    file: str = ""
    line: int | None = None

    def message_at(self) -> str:
        """The message prefixed with file, line, rule and key, as far as they are known."""
        where = []
        if self.file:
            where.append(self.file if self.line is None else f"{self.file}:{self.line}")
        if self.rule:
            where.append(f"rule {self.rule!r}")
        if self.key:
            where.append(self.key)
        return f"{': '.join(where)}: {self.message}" if where else self.message


class RuleTableError(RulesError):
    """A rule table failed validation; ``problems`` holds every fault found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p.message_at()}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in the rule table:\n{lines}")
