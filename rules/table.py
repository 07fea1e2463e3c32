"""The rule table: rules in order, and an index that keeps matching cheap.

``RuleTable.match`` returns the rules whose filters pass, in table order. Two indexes keep
the cost per event nearly flat as the table grows:

* by event type: a rule that lists ``includedEventTypes`` is only tried on those types;
* by a ``StringIn`` guard: within one type, a rule whose filter has a ``StringIn`` on some
  key can only pass when the event's value at that key is one of its values, so rules are
  grouped by (key, folded value) and only the group the event's value names is tried.

Both indexes only skip rules that would fail; every candidate still runs its whole filter.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .actions import Action
from .events import Event
from .filters import AdvancedFilter, Filter
from .folding import fold
from .keys import EventView, Key

MAX_CACHED_TYPES = 1024
"""Event types whose candidate lists are kept; more means someone sends junk types."""


@dataclass(frozen=True, slots=True)
class Rule:
    """A named filter and the actions to take when it matches."""

    name: str
    filter: Filter
    actions: tuple[Action, ...] = ()
    description: str = ""
    file: str = ""
    line: int | None = None


@dataclass(frozen=True, slots=True)
class _Guard:
    key: Key
    arrays: bool
    groups: dict[str, tuple[int, ...]]


@dataclass(frozen=True, slots=True)
class _Bucket:
    """The rules that can match one event type, split into always-tried and guarded."""

    unguarded: tuple[int, ...]
    guards: tuple[_Guard, ...]


@dataclass(slots=True)
class RuleTable:
    """An ordered, indexed set of rules with unique names."""

    rules: tuple[Rule, ...]
    _untyped: tuple[int, ...] = field(init=False, repr=False)
    _typed: dict[str, list[int]] = field(init=False, repr=False)
    _buckets: dict[str, _Bucket] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        typed: dict[str, list[int]] = defaultdict(list)
        untyped = []
        for position, rule in enumerate(self.rules):
            if rule.filter.event_types is None:
                untyped.append(position)
            for event_type in rule.filter.event_types or ():
                typed[event_type].append(position)
        self._untyped = tuple(untyped)
        self._typed = dict(typed)
        self._buckets = {}

    def __len__(self) -> int:
        return len(self.rules)

    def rule(self, name: str) -> Rule:
        """The rule called ``name``; ``KeyError`` if there is none."""
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)

    def match(self, event: Event | EventView) -> tuple[Rule, ...]:
        """The rules whose filters pass for ``event``, in table order."""
        view = event if isinstance(event, EventView) else EventView(event)
        bucket = self._buckets.get(view.folded_type) or self._bucket(view.folded_type)
        rules = self.rules
        matched = []
        for position in _candidates(bucket, view):
            rule = rules[position]
            if rule.filter.matches_besides_type(view):
                matched.append(rule)
        return tuple(matched)

    def _bucket(self, folded_type: str) -> _Bucket:
        bucket = self._buckets.get(folded_type)
        if bucket is None:
            positions = sorted((*self._untyped, *self._typed.get(folded_type, ())))
            bucket = _build_bucket(self.rules, positions)
            if len(self._buckets) < MAX_CACHED_TYPES:
                self._buckets[folded_type] = bucket
        return bucket


def _candidates(bucket: _Bucket, view: EventView) -> Sequence[int]:
    """Positions worth trying, in table order: the unguarded ones and the guards' hits."""
    if not bucket.guards:
        return bucket.unguarded
    parts = [bucket.unguarded] if bucket.unguarded else []
    for guard in bucket.guards:
        value = view.value(guard.key)
        if value.__class__ is str:
            hits = guard.groups.get(view.folded_string(guard.key, value))
            if hits:
                parts.append(hits)
        elif isinstance(value, list) and guard.arrays:
            parts.extend(guard.groups.get(fold(e), ()) for e in value if isinstance(e, str))
    if len(parts) == 1:
        return parts[0]  # each part is sorted already; only a union needs sorting
    return sorted({position for part in parts for position in part})


def _build_bucket(rules: Sequence[Rule], positions: Iterable[int]) -> _Bucket:
    unguarded = []
    groups: dict[tuple[tuple[str, ...], bool], tuple[Key, dict[str, list[int]]]] = {}
    for position in positions:
        guard = _guard_filter(rules[position].filter)
        if guard is None:
            unguarded.append(position)
            continue
        # Grouped by the key as written: keys that differ only in case may read different
        # properties of one event (``rules.keys``).
        _, by_value = groups.setdefault((guard.key.segments, guard.arrays), (guard.key, {}))
        for value in {fold(v) for v in guard.operand}:
            by_value.setdefault(value, []).append(position)
    guards = tuple(
        _Guard(key, arrays, {v: tuple(p) for v, p in by_value.items()})
        for (_, arrays), (key, by_value) in groups.items()
    )
    return _Bucket(tuple(unguarded), guards)


def _guard_filter(flt: Filter) -> AdvancedFilter | None:
    for advanced in flt.advanced:
        if advanced.operator.name == "StringIn":
            return advanced
    return None
