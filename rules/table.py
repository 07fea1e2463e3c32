"""The rule table: rules in order, compiled so that matching cost does not grow with it.

``RuleTable.match`` returns the rules whose filters pass, in table order. The rules are
grouped by event type (a rule without ``includedEventTypes`` is in every group, and event
types no rule names share one group of those), and each group is compiled into a
``rules.index.Plan``: distinct conditions evaluated once per event, each rule filed in an
index under its most selective positive condition, so an event only meets the rules its
values can match. Compilation never changes a verdict: the plan checks every condition of a
rule that its index did not decide, with the same code ``explain`` reports.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .actions import Action
from .events import Event
from .filters import Filter
from .index import Plan, compile_plan
from .keys import EventView

MAX_SPELLINGS = 1024
"""Event type spellings whose plan is remembered; more means someone sends junk types."""
MAX_COMBINATIONS = 4096
"""Distinct sets of matched rules whose result tuple is kept and handed out again."""


@dataclass(frozen=True, slots=True)
class Rule:
    """A named filter and the actions to take when it matches."""

    name: str
    filter: Filter
    actions: tuple[Action, ...] = ()
    description: str = ""
    file: str = ""
    line: int | None = None


@dataclass(slots=True)
class RuleTable:
    """An ordered, indexed set of rules with unique names."""

    rules: tuple[Rule, ...]
    _plans: dict[str, Plan] = field(init=False, repr=False)
    _other_types: Plan = field(init=False, repr=False)
    """The plan of the event types no rule names: the rules that name none."""
    _by_spelling: dict[str, Plan] = field(init=False, repr=False)
    """Plans by event type as spelled in events, so that a known type is not folded again."""
    _results: dict[tuple[int, ...], tuple[Rule, ...]] = field(init=False, repr=False)
    """Results by matched positions: one set of rules is one tuple, always the same object
    (up to ``MAX_COMBINATIONS`` sets), so a caller may remember what it does per result."""

    def __post_init__(self) -> None:
        typed: dict[str, list[int]] = defaultdict(list)
        untyped = []
        for position, rule in enumerate(self.rules):
            if rule.filter.event_types is None:
                untyped.append(position)
            for event_type in rule.filter.event_types or ():
                typed[event_type].append(position)
        self._other_types = self._compile(untyped)
        self._by_spelling = {}
        self._results = {}
        self._plans = {
            event_type: self._compile(sorted((*untyped, *positions)))
            for event_type, positions in typed.items()
        }

    def _compile(self, positions: list[int]) -> Plan:
        return compile_plan([(p, self.rules[p].filter) for p in positions])

    def __len__(self) -> int:
        return len(self.rules)

    def rule(self, name: str) -> Rule:
        """The rule called ``name``; ``KeyError`` if there is none."""
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)

    def match(self, event: Event | EventView) -> tuple[Rule, ...]:
        """The rules whose filters pass for ``event``, in table order.

        Events that match the same rules get the same tuple object (for the first
        ``MAX_COMBINATIONS`` sets of rules): the worker keys what it does per set on that."""
        view = event if isinstance(event, EventView) else EventView(event)
        plan = self._by_spelling.get(view.event.type)
        if plan is None:
            plan = self._plans.get(view.folded_type, self._other_types)
            if len(self._by_spelling) < MAX_SPELLINGS:
                self._by_spelling[view.event.type] = plan
        positions = tuple(plan.matching(view))
        result = self._results.get(positions)
        if result is None:
            rules = self.rules
            result = tuple([rules[position] for position in positions])
            if len(self._results) < MAX_COMBINATIONS:
                self._results[positions] = result
        return result
