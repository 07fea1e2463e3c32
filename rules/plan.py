"""Action plans: the decisions one event produces against a rule table.

A ``Decision`` is one action of one matched rule for one event, with the key that makes
carrying it out idempotent: the same event, rule and action position always give the
same key, so a redelivered event can skip what was already done.
"""

from __future__ import annotations

import msgspec

from .actions import Action
from .events import Event
from .table import Rule, RuleTable


class Decision(msgspec.Struct, frozen=True):
    """Carry out ``action`` (position ``index`` in ``rule.actions``) for ``event``.

    A struct rather than a dataclass: one is made per matched action, on the hot path."""

    event: Event
    rule: Rule
    index: int
    action: Action

    @property
    def key(self) -> str:
        """Idempotency key: event id, rule name and action position."""
        return f"{self.event.id}/{self.rule.name}/{self.index}"


def plan(table: RuleTable, event: Event) -> tuple[Decision, ...]:
    """Every action of every rule that matches ``event``, rules in table order."""
    return tuple(
        Decision(event, rule, index, action)
        for rule in table.match(event)
        for index, action in enumerate(rule.actions)
    )
