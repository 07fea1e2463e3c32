"""Why a filter matched an event or not, part by part.

``explain_filter`` walks the same compiled filter that ``Filter.matches`` runs and records,
for the event-type part, each subject part and each advanced filter, what was compared and
the rule of Event Grid's that decided it. The verdicts come from the same evaluation code,
so an explanation can never disagree with a match.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .folding import fold
from .keys import MISSING, EventView
from .operators import has_kind

if TYPE_CHECKING:
    from .filters import AdvancedFilter, Filter


@dataclass(frozen=True, slots=True)
class Check:
    """One part of a filter and its verdict for one event."""

    part: str
    passed: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Explanation:
    """The verdict of a whole filter and the checks behind it, in filter order."""

    matched: bool
    checks: tuple[Check, ...]


def explain_filter(flt: Filter, view: EventView) -> Explanation:
    """Evaluate every part of ``flt`` for the event in ``view`` (no short-circuit)."""
    checks = [_event_type_check(flt, view)]
    if flt.subject_begins_with or flt.subject_ends_with:
        checks.append(_subject_check(flt, view))
    checks.extend(_advanced_check(index, f, view) for index, f in enumerate(flt.advanced))
    return Explanation(all(c.passed for c in checks), tuple(checks))


def _event_type_check(flt: Filter, view: EventView) -> Check:
    event_type = view.event.type
    if flt.event_types is None:
        return Check("includedEventTypes", True, f"all event types are included ({event_type})")
    passed = view.folded_type in flt.event_types
    listed = flt.source.get("includedEventTypes")
    verb = "is" if passed else "is not"
    return Check(
        "includedEventTypes",
        passed,
        f"{event_type!r} {verb} one of {listed} (compared ignoring case)",
    )


def _subject_check(flt: Filter, view: EventView) -> Check:
    subject = view.event.subject
    how = "case-sensitive" if flt.subject_case_sensitive else "ignoring case"
    wants = []
    if flt.subject_begins_with:
        wants.append(f"begins with {flt.source.get('subjectBeginsWith')!r}")
    if flt.subject_ends_with:
        wants.append(f"ends with {flt.source.get('subjectEndsWith')!r}")
    passed = flt.subject_passes(view)
    verdict = "does" if passed else "does not"
    return Check(
        "subject", passed, f"subject {subject!r} {verdict} satisfy: {' and '.join(wants)} ({how})"
    )


def _advanced_check(index: int, f: AdvancedFilter, view: EventView) -> Check:
    value = view.value(f.key)
    passed = f.passes(view)
    operand = "" if f.operator.arity == "none" else f" {_show(f.operand)}"
    head = f"{f.key.text} {f.operator.name}{operand}"
    return Check(f"advancedFilters[{index}]", passed, f"{head}: {_reason(f, value, passed)}")


def _reason(f: AdvancedFilter, value: Any, passed: bool) -> str:
    op = f.operator
    verdict = "passes" if passed else "fails"
    if value is MISSING:
        return f"the key is missing or null, and {op.name} {verdict} on a missing key"
    shown = _show(value)
    if op.kind == "null":
        return f"the key has the value {shown}, so {op.name} {verdict}"
    if isinstance(value, list):
        if not f.arrays:
            return (
                f"the key is the array {shown}; without enableAdvancedFilteringOnArrays "
                "every value operator fails on an array"
            )
        typed = [v for v in value if has_kind(op, v)]
        rule = "no element may match" if op.negated else "any element may match"
        return f"array {shown}: {len(typed)} element(s) of {op.kind} type tested, {rule}: {verdict}"
    if not has_kind(op, value):
        return (
            f"the key is {shown}, not of {op.kind} type; Event Grid ignores it, so a "
            f"{'negated' if op.negated else 'positive'} operator {verdict}"
        )
    compared = f" (compared as {fold(value)!r})" if op.kind == "string" else ""
    return f"the key is {shown}{compared}: {verdict}"


def _show(value: Any) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "{…}"
    return repr(value)
