"""The compiled rule table: matching whose cost follows the event, not the number of rules.

``compile_plan`` turns the rules that can see one event type into a ``Plan``:

* **Conditions.** Every filter part of every rule (each advanced filter, the subject part)
  becomes a condition; equal parts of different rules (same operator, key as written, array
  flag and values, ignoring order and case where Event Grid does) are one condition. Each
  condition's verdict is computed at most once per event, by the same ``passes`` function
  that ``explain`` reports (``filters.AdvancedFilter.passes``, ``Filter.subject_passes``).
  A key's value is read once per event (``keys.EventView``).
* **Anchors.** Each rule is filed under one of its positive conditions, the most selective
  one (the fewest rules share it, equality before prefixes before substrings before number
  bounds), in an index on that condition's key:

  - hash tables for ``StringIn``, ``NumberIn`` and ``BoolEquals`` (folded strings, exact
    decimals);
  - tables by length for ``StringBeginsWith``/``StringEndsWith`` and the subject parts,
    probed once per distinct length;
  - one Aho-Corasick automaton per key for ``StringContains``, which finds every needle in
    one pass over the value;
  - sorted bounds with ``bisect`` for the four number comparisons, ranges sorted by their
    low end;
  - a present-or-not entry for ``IsNotNull``.

  An index answers exactly its condition's verdict, with Event Grid's type rules: a value of
  another type finds nothing; an array finds something only with
  ``enableAdvancedFilteringOnArrays``, and then through any element of the operator's type.
* **Candidates.** An event looks its keys up in the indexes once; the rules found there,
  plus the rules that have no positive condition to be filed under (only negated ones, only
  ``IsNullOrUndefined``, or nothing but event types), are the candidates. Each candidate's
  other conditions are then checked, negated ones as the complement of their positive test
  with Event Grid's missing-key and type-mismatch results (``operators.evaluate``).

So the work per event is the keys the table names, the index entries the event's values hit,
and the conditions of the rules found that way. Only rules that cannot be filed under any
positive condition are tried on every event of their type.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import chain
from typing import TYPE_CHECKING, Any

import ahocorasick

from .folding import fold
from .keys import MISSING, EventView, Key

if TYPE_CHECKING:
    from .filters import AdvancedFilter, Filter

Passes = Callable[[EventView], bool]
Postings = tuple[int, ...]
"""Rule positions in table order."""

FEW_NEEDLES = 4
"""Up to this many substrings on one key are searched one by one (measured: four ``in`` tests
of an experiment name cost about what one pass of the automaton does); more go into one
Aho-Corasick automaton."""

_WEIGHT = {
    "equal": 1,
    "prefix": 2,
    "suffix": 2,
    "contains": 3,
    "above": 6,
    "at_least": 6,
    "below": 6,
    "at_most": 6,
    "range": 6,
    "present": 20,
}
"""How many rules' worth of candidates one value of each index family tends to find."""

_FAMILIES = {
    "StringIn": "equal",
    "NumberIn": "equal",
    "BoolEquals": "equal",
    "StringBeginsWith": "prefix",
    "StringEndsWith": "suffix",
    "StringContains": "contains",
    "NumberGreaterThan": "above",
    "NumberGreaterThanOrEquals": "at_least",
    "NumberLessThan": "below",
    "NumberLessThanOrEquals": "at_most",
    "NumberInRange": "range",
    "IsNotNull": "present",
}
"""The positive operators an index can answer, and the index family that answers each."""


@dataclass(frozen=True, slots=True)
class _Anchor:
    """Where a condition can be filed: an index (by key) and the entries it occupies."""

    index: Hashable
    family: str
    entries: tuple[Any, ...]
    exact: bool
    """Whether being found in the index decides the condition (else it is checked again)."""


@dataclass(frozen=True, slots=True)
class _Condition:
    number: int
    passes: Passes
    anchor: _Anchor | None


@dataclass(frozen=True, slots=True)
class Plan:
    """How to match one event type: indexes to look in, and what to check per candidate."""

    indexes: tuple[_KeyIndex | _SubjectIndex, ...]
    scanned: Postings
    """Rules tried on every event: those with no positive condition to be filed under."""
    checks: dict[int, tuple[tuple[int, Passes], ...]]
    """Per rule position: the conditions left to check (numbered), in filter order."""

    def candidates(self, view: EventView) -> list[int]:
        """The positions worth checking, in table order."""
        return sorted(set(chain.from_iterable(self._found(view))))

    def _found(self, view: EventView) -> list[Postings]:
        """The scanned rules and the postings the event's values find in the indexes."""
        found: list[Postings] = [self.scanned] if self.scanned else []
        for index in self.indexes:
            index.find(view, found)
        return found

    def matching(self, view: EventView) -> list[int]:
        """The positions of the rules that match, in table order."""
        found = self._found(view)
        if not found:
            return []
        # One index's postings are sorted and distinct; several may share positions.
        candidates = found[0] if len(found) == 1 else dict.fromkeys(chain.from_iterable(found))
        checks = self.checks
        verdicts: dict[int, bool] = {}
        matched = []
        for position in candidates:
            for number, passes in checks[position]:
                verdict = verdicts.get(number)
                if verdict is None:
                    verdict = verdicts[number] = passes(view)
                if not verdict:
                    break
            else:
                matched.append(position)
        if len(found) > 1:
            matched.sort()
        return matched


def compile_plan(filters: Sequence[tuple[int, Filter]]) -> Plan:
    """Compile the filters (with their rules' positions) that can see one event type."""
    conditions: dict[Hashable, _Condition] = {}
    per_rule: dict[int, list[_Condition]] = {}
    for position, flt in filters:
        mine: dict[int, _Condition] = {}
        for identity, passes, anchor in _parts(flt):
            condition = conditions.get(identity)
            if condition is None:
                condition = conditions[identity] = _Condition(len(conditions), passes, anchor)
            mine.setdefault(condition.number, condition)
        per_rule[position] = list(mine.values())
    sharing: dict[int, int] = defaultdict(int)
    for mine_list in per_rule.values():
        for condition in mine_list:
            sharing[condition.number] += 1

    def cost(condition: _Condition) -> float:
        assert condition.anchor is not None
        anchor = condition.anchor
        return _WEIGHT[anchor.family] * sharing[condition.number] * max(1, len(anchor.entries))

    indexes: dict[Hashable, _KeyIndex | _SubjectIndex] = {}
    scanned = []
    checks: dict[int, tuple[tuple[int, Passes], ...]] = {}
    for position, mine_list in per_rule.items():
        anchored = [c for c in mine_list if c.anchor is not None]
        chosen = min(anchored, key=cost) if anchored else None
        if chosen is None or chosen.anchor is None:
            scanned.append(position)
        else:
            anchor = chosen.anchor
            index = indexes.get(anchor.index)
            if index is None:
                index = indexes[anchor.index] = _new_index(anchor.index)
            index.file(anchor.family, anchor.entries, position)
        rest = [c for c in mine_list if c is not chosen or not (c.anchor and c.anchor.exact)]
        checks[position] = tuple((c.number, c.passes) for c in rest)
    for index in indexes.values():
        index.finish()
    return Plan(tuple(indexes.values()), tuple(scanned), checks)


def _parts(flt: Filter) -> Iterable[tuple[Hashable, Passes, _Anchor | None]]:
    """Each condition of ``flt``: an identity (equal for equal conditions), its test and
    where an index can find it."""
    if flt.subject_begins_with or flt.subject_ends_with:
        cased = flt.subject_case_sensitive
        begins, ends = flt.subject_begins_with, flt.subject_ends_with
        family, text = ("prefix", begins) if begins else ("suffix", ends)
        anchor = _Anchor(("subject", cased), family, (text,), exact=not (begins and ends))
        yield ("subject", cased, begins, ends), flt.subject_passes, anchor
    for advanced in flt.advanced:
        operand = _operand(advanced)
        identity = (advanced.operator.name, advanced.key.cache_key, advanced.arrays, operand)
        yield identity, advanced.passes, _advanced_anchor(advanced)


def _operand(advanced: AdvancedFilter) -> Hashable:
    operator, operand = advanced.operator, advanced.operand
    if operator.arity == "values":
        if operator.kind == "string":
            return frozenset(fold(s) for s in operand)
        return frozenset(operand)
    if operator.arity == "ranges":
        return frozenset(operand)
    single: Hashable = operand  # a single value, or () for the null operators
    return single


def _advanced_anchor(advanced: AdvancedFilter) -> _Anchor | None:
    operator = advanced.operator
    family = _FAMILIES.get(operator.name)
    if family is None:
        return None  # negated, or IsNullOrUndefined: passes where nothing can be looked up
    operand = advanced.operand
    if operator.arity == "value":
        entries: tuple[Any, ...] = (operand,)
    elif operator.kind == "string":
        entries = tuple(sorted({fold(s) for s in operand}))
    else:
        entries = tuple(operand)
    where = ("key", advanced.key.cache_key, advanced.arrays)
    return _Anchor(where, family, entries, exact=True)


def _new_index(where: Hashable) -> _KeyIndex | _SubjectIndex:
    assert isinstance(where, tuple)
    if where[0] == "subject":
        return _SubjectIndex(case_sensitive=where[1])
    return _KeyIndex(Key.parse(where[1]), arrays=where[2])


class _Strings:
    """Folded strings to rule positions: equal, prefix, suffix and substring entries."""

    __slots__ = (
        "_automaton",
        "_contains",
        "_empty",
        "_equal",
        "_few_needles",
        "_prefix_lengths",
        "_prefixes",
        "_suffix_lengths",
        "_suffixes",
        "find",
    )

    def __init__(self) -> None:
        self._equal: dict[str, Any] = defaultdict(list)
        self._prefixes: dict[str, Any] = defaultdict(list)
        self._suffixes: dict[str, Any] = defaultdict(list)
        self._contains: dict[str, list[int]] = defaultdict(list)
        self._prefix_lengths: tuple[int, ...] = ()
        self._suffix_lengths: tuple[int, ...] = ()
        self._automaton: Any = None
        self._few_needles: tuple[tuple[str, Postings], ...] = ()
        self._empty: Postings = ()

    def file(self, family: str, text: str, position: int) -> None:
        table = {
            "equal": self._equal,
            "prefix": self._prefixes,
            "suffix": self._suffixes,
            "contains": self._contains,
        }[family]
        table[text].append(position)

    def finish(self) -> None:
        self._equal = {text: _postings(p) for text, p in self._equal.items()}
        self._prefixes = {text: _postings(p) for text, p in self._prefixes.items()}
        self._suffixes = {text: _postings(p) for text, p in self._suffixes.items()}
        self._prefix_lengths = tuple(sorted({len(p) for p in self._prefixes}))
        self._suffix_lengths = tuple(sorted({len(s) for s in self._suffixes}))
        needles = {text: _postings(p) for text, p in self._contains.items()}
        self._empty = needles.pop("", ())  # the empty string is in every string
        if 0 < len(needles) <= FEW_NEEDLES:
            self._few_needles = tuple(needles.items())
        elif needles:
            automaton = ahocorasick.Automaton()
            for needle, positions in needles.items():
                automaton.add_word(needle, positions)
            automaton.make_automaton()
            self._automaton = automaton
        searched = self._automaton or self._few_needles or self._empty
        if not (self._prefixes or self._suffixes or searched):
            self.find = _equal_only(self._equal)  # the common case, without the empty probes
        else:
            self.find = self._find

    def _find(self, text: str, found: list[Postings]) -> None:
        """Append the postings of every entry that ``text`` (folded) satisfies."""
        hit = self._equal.get(text)
        if hit is not None:
            found.append(hit)
        size = len(text)
        for length in self._prefix_lengths:
            if length > size:
                break
            hit = self._prefixes.get(text[:length])
            if hit is not None:
                found.append(hit)
        for length in self._suffix_lengths:
            if length > size:
                break
            hit = self._suffixes.get(text[size - length :])
            if hit is not None:
                found.append(hit)
        self._find_substrings(text, found)

    def _find_substrings(self, text: str, found: list[Postings]) -> None:
        for needle, positions in self._few_needles:
            if needle in text:
                found.append(positions)
        if self._automaton is not None:
            for _end, positions in self._automaton.iter(text):
                found.append(positions)
        if self._empty:
            found.append(self._empty)


class _Numbers:
    """Exact decimals to rule positions: equal values, the four bounds, and ranges."""

    __slots__ = ("_bounds", "_equal", "_highs", "_lows", "_ranges")

    _SIDES = ("above", "at_least", "below", "at_most")

    def __init__(self) -> None:
        self._equal: dict[int | Decimal, Any] = defaultdict(list)
        self._bounds: dict[str, Any] = {side: defaultdict(list) for side in self._SIDES}
        self._ranges: Any = defaultdict(list)
        self._lows: tuple[Decimal, ...] = ()
        self._highs: tuple[tuple[Decimal, Postings], ...] = ()

    def file(self, family: str, entry: Any, position: int) -> None:
        if family == "equal":
            self._equal[entry].append(position)
        elif family == "range":
            self._ranges[entry].append(position)
        else:
            self._bounds[family][entry].append(position)

    def finish(self) -> None:
        self._equal = {value: _postings(p) for value, p in self._equal.items()}
        for side in self._SIDES:
            entries = sorted(self._bounds[side].items())
            bounds = tuple(bound for bound, _ in entries)
            self._bounds[side] = (bounds, tuple(_postings(p) for _, p in entries))
        ranges = sorted(self._ranges.items())
        self._lows = tuple(low for (low, _high), _ in ranges)
        self._highs = tuple((high, _postings(p)) for (_low, high), p in ranges)
        self._ranges = None

    def find(self, value: int | Decimal, found: list[Postings]) -> None:
        hit = self._equal.get(value)
        if hit is not None:
            found.append(hit)
        bounds, postings = self._bounds["above"]  # value > bound
        if bounds:
            found.extend(postings[: bisect_left(bounds, value)])
        bounds, postings = self._bounds["at_least"]  # value >= bound
        if bounds:
            found.extend(postings[: bisect_right(bounds, value)])
        bounds, postings = self._bounds["below"]  # value < bound
        if bounds:
            found.extend(postings[bisect_right(bounds, value) :])
        bounds, postings = self._bounds["at_most"]  # value <= bound
        if bounds:
            found.extend(postings[bisect_left(bounds, value) :])
        if self._lows:
            for high, positions in self._highs[: bisect_right(self._lows, value)]:
                if value <= high:
                    found.append(positions)


class _KeyIndex:
    """The anchors on one advanced-filter key (as written, with one array flag)."""

    __slots__ = ("_arrays", "_bools", "_key", "_numbers", "_present", "_strings", "find")

    def __init__(self, key: Key, *, arrays: bool) -> None:
        self._key = key
        self._arrays = arrays
        self._strings: _Strings | None = None
        self._numbers: _Numbers | None = None
        self._bools: dict[bool, Any] = defaultdict(list)
        self._present: Any = []
        self.find: Callable[[EventView, list[Postings]], None] = self._find
        """Append the postings the event's value at this key satisfies."""

    def file(self, family: str, entries: tuple[Any, ...], position: int) -> None:
        if family == "present":
            self._present.append(position)
            return
        for entry in entries:
            if isinstance(entry, bool):
                self._bools[entry].append(position)
            elif isinstance(entry, str):
                self._strings = self._strings or _Strings()
                self._strings.file(family, entry, position)
            else:
                self._numbers = self._numbers or _Numbers()
                self._numbers.file(family, entry, position)

    def finish(self) -> None:
        self._bools = {value: _postings(p) for value, p in self._bools.items()}
        self._present = _postings(self._present)
        for part in (self._strings, self._numbers):
            if part is not None:
                part.finish()
        strings = self._strings
        if strings is None or self._arrays or self._numbers or self._bools or self._present:
            self.find = self._find
        else:  # only strings, the common case: the one type of value that can find anything
            self.find = _strings_only(self._key, strings)

    def _find(self, view: EventView, found: list[Postings]) -> None:
        """Append the postings the event's value at this key satisfies."""
        value = view.value(self._key)
        if value is MISSING:
            return
        if self._present:
            found.append(self._present)
        if value.__class__ is str:  # the common case first
            if self._strings is not None:
                self._strings.find(view.folded_string(self._key, value), found)
        elif isinstance(value, list):
            if self._arrays:
                for element in value:
                    self._element(element, found)
        else:
            self._element(value, found)

    def _element(self, value: Any, found: list[Postings]) -> None:
        if isinstance(value, str):
            if self._strings is not None:
                self._strings.find(fold(value), found)
        elif isinstance(value, bool):
            hit = self._bools.get(value)
            if hit is not None:
                found.append(hit)
        elif isinstance(value, int | Decimal) and self._numbers is not None:
            self._numbers.find(value, found)


class _SubjectIndex:
    """The anchors on the subject: prefixes and suffixes, folded unless case-sensitive."""

    __slots__ = ("_case_sensitive", "_strings")

    def __init__(self, *, case_sensitive: bool) -> None:
        self._case_sensitive = case_sensitive
        self._strings = _Strings()

    def file(self, family: str, entries: tuple[Any, ...], position: int) -> None:
        for entry in entries:
            self._strings.file(family, entry, position)

    def finish(self) -> None:
        self._strings.finish()

    def find(self, view: EventView, found: list[Postings]) -> None:
        subject = (view.event.subject or "") if self._case_sensitive else view.folded_subject
        self._strings.find(subject, found)


def _strings_only(key: Key, strings: _Strings) -> Callable[[EventView, list[Postings]], None]:
    probe = strings.find

    def find(view: EventView, found: list[Postings]) -> None:
        value = view.value(key)
        if isinstance(value, str):
            probe(view.folded_string(key, value), found)

    return find


def _equal_only(equal: dict[str, Postings]) -> Callable[[str, list[Postings]], None]:
    get = equal.get

    def find(text: str, found: list[Postings]) -> None:
        hit = get(text)
        if hit is not None:
            found.append(hit)

    return find


def _postings(positions: Iterable[int]) -> Postings:
    return tuple(sorted(set(positions)))
