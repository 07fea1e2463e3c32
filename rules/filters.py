"""Event Grid subscription filters: validation, compilation and evaluation.

``compile_filter`` takes a filter object shaped exactly like the ``filter`` of an Event Grid
event subscription (what ``az eventgrid event-subscription show`` prints) and returns a
``Filter``: event types, subject prefix/suffix and advanced filters, ANDed together.
Validation reports every fault at once. Event Grid's own limits (25 advanced filters, 25
values, 512 characters per string) are warnings, since a rule table is not bound by them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from . import azureml
from .errors import FilterError, Problem
from .events import Event
from .explain import Explanation, explain_filter
from .folding import fold
from .keys import MISSING, EventView, Key
from .operators import OPERATORS, Operator, Test, evaluate, make_test

FILTER_FIELDS: Final = (
    "includedEventTypes",
    "subjectBeginsWith",
    "subjectEndsWith",
    "isSubjectCaseSensitive",
    "enableAdvancedFilteringOnArrays",
    "advancedFilters",
)
MAX_ADVANCED_FILTERS: Final = 25
MAX_VALUES: Final = 25
MAX_STRING: Final = 512


@dataclass(frozen=True, slots=True)
class AdvancedFilter:
    """One compiled entry of ``advancedFilters``."""

    operator: Operator
    key: Key
    operand: Any
    """``value``, ``values`` or ranges as given (numbers as Decimal, strings unfolded)."""
    test: Test = field(repr=False, compare=False)
    arrays: bool = False
    passes: Callable[[EventView], bool] = field(init=False, repr=False, compare=False)
    """Whether this filter passes for the event in a view."""

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "passes", _checker(self.operator, self.key, self.test, self.arrays)
        )


def _checker(op: Operator, key: Key, test: Test, arrays: bool) -> Callable[[EventView], bool]:
    """A closure with a fast path for the common case: a scalar of the operator's type."""
    if op.kind == "null":  # decided by presence alone, as ``evaluate`` decides it
        if op.name == "IsNotNull":
            return lambda view: view.value(key) is not MISSING
        return lambda view: view.value(key) is MISSING
    negated, on_missing = op.negated, op.on_missing
    fast_type: tuple[type, ...] = {"string": (str,), "number": (int, Decimal), "bool": (bool,)}.get(
        op.kind, ()
    )

    def passes(view: EventView) -> bool:
        value = view.value(key)
        kind = value.__class__
        if kind in fast_type:
            if kind is str:
                return test(view.folded_string(key, value)) is not negated
            return test(value) is not negated
        if value is MISSING:
            return on_missing
        return evaluate(op, test, value, arrays, lambda s: view.folded_string(key, s), fold)

    return passes


@dataclass(frozen=True, slots=True)
class Filter:
    """A compiled Event Grid filter; ``matches`` is the whole verdict."""

    event_types: frozenset[str] | None
    """Folded event types, or ``None`` for all."""
    subject_begins_with: str = ""
    subject_ends_with: str = ""
    subject_case_sensitive: bool = False
    advanced: tuple[AdvancedFilter, ...] = ()
    source: Mapping[str, Any] = field(default_factory=dict, compare=False)
    """The filter object as written, for explanations and error messages."""
    warnings: tuple[Problem, ...] = field(default=(), compare=False)

    def matches(self, event: Event | EventView) -> bool:
        """Whether the event passes every part of the filter."""
        view = event if isinstance(event, EventView) else EventView(event)
        if self.event_types is not None and view.folded_type not in self.event_types:
            return False
        return self.matches_besides_type(view)

    def matches_besides_type(self, view: EventView) -> bool:
        """The subject and advanced parts only (a rule table indexes on the type)."""
        if (self.subject_begins_with or self.subject_ends_with) and not self.subject_passes(view):
            return False
        for advanced in self.advanced:  # noqa: SIM110 - a loop is faster than all() here
            if not advanced.passes(view):
                return False
        return True

    def explain(self, event: Event) -> Explanation:
        """Part by part, why this filter matches ``event`` or not."""
        return explain_filter(self, EventView(event))

    def subject_passes(self, view: EventView) -> bool:
        """Both subject filters (an empty one matches everything)."""
        subject = view.folded_subject
        if self.subject_case_sensitive:
            subject = view.event.subject or ""
        return subject.startswith(self.subject_begins_with) and subject.endswith(
            self.subject_ends_with
        )


def compile_filter(spec: Mapping[str, Any] | None) -> Filter:
    """Validate and compile an Event Grid ``filter`` object.

    Args:
        spec: the filter object (camelCase keys; ``None`` or ``{}`` matches every event).

    Returns:
        The compiled filter; ``warnings`` lists where it exceeds Event Grid's limits.

    Raises:
        FilterError: with every problem found, each naming the key.
    """
    spec = {} if spec is None else spec
    problems: list[Problem] = []
    if not isinstance(spec, Mapping):
        raise FilterError([Problem("must be a table/object", key="filter")])
    for name in spec:
        if name not in FILTER_FIELDS:
            problems.append(
                Problem(
                    f"unknown filter property {name!r}; expected one of {', '.join(FILTER_FIELDS)}",
                    key=f"filter.{name}",
                )
            )
    types = _event_types(spec.get("includedEventTypes"), problems)
    begins = _optional(spec, "subjectBeginsWith", str, "", problems)
    ends = _optional(spec, "subjectEndsWith", str, "", problems)
    case_sensitive = _optional(spec, "isSubjectCaseSensitive", bool, False, problems)
    arrays = _optional(spec, "enableAdvancedFilteringOnArrays", bool, False, problems)
    advanced = _advanced_filters(spec.get("advancedFilters"), arrays, problems)
    if problems:
        raise FilterError(problems)
    return Filter(
        event_types=types,
        subject_begins_with=begins if case_sensitive else fold(begins),
        subject_ends_with=ends if case_sensitive else fold(ends),
        subject_case_sensitive=case_sensitive,
        advanced=advanced,
        source=spec,
        warnings=(*_limit_warnings(spec, advanced), *_event_type_warnings(spec, advanced)),
    )


def _optional(
    spec: Mapping[str, Any], name: str, kind: type, default: Any, problems: list[Problem]
) -> Any:
    value = spec.get(name)
    if value is None:
        return default
    if not isinstance(value, kind):
        problems.append(
            Problem(f"must be a {_kind_name(kind)}, not {_describe(value)}", key=f"filter.{name}")
        )
        return default
    return value


def _event_types(value: Any, problems: list[Problem]) -> frozenset[str] | None:
    key = "filter.includedEventTypes"
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(Problem("must be a list of event type names", key=key))
        return None
    folded = frozenset(fold(v) for v in value)
    if not folded or "ALL" in folded:
        return None
    return folded


def _advanced_filters(
    value: Any, arrays: bool, problems: list[Problem]
) -> tuple[AdvancedFilter, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.append(Problem("must be a list of advanced filters", key="filter.advancedFilters"))
        return ()
    compiled = []
    for index, entry in enumerate(value):
        where = f"filter.advancedFilters[{index}]"
        before = len(problems)
        result = _advanced_filter(entry, arrays, where, problems)
        if result is not None and len(problems) == before:
            compiled.append(result)
    return tuple(compiled)


def _advanced_filter(
    entry: Any, arrays: bool, where: str, problems: list[Problem]
) -> AdvancedFilter | None:
    if not isinstance(entry, Mapping):
        problems.append(Problem("must be a table/object", key=where))
        return None
    for name in entry:
        if name not in ("operatorType", "key", "value", "values"):
            problems.append(
                Problem(
                    f"unknown property {name!r}; expected operatorType, key and value or values",
                    key=f"{where}.{name}",
                )
            )
    op = _operator(entry.get("operatorType"), where, problems)
    key = _key(entry.get("key"), where, problems)
    if op is None:
        return None
    operand = _operand(op, entry, where, problems)
    if key is None or operand is None:
        return None
    folded = [fold(s) for s in operand] if op.kind == "string" else operand
    return AdvancedFilter(op, key, operand, make_test(op, folded), arrays)


def _operator(name: Any, where: str, problems: list[Problem]) -> Operator | None:
    if isinstance(name, str) and name in OPERATORS:
        return OPERATORS[name]
    near = [op for op in OPERATORS if isinstance(name, str) and op.lower() == name.lower()]
    hint = f" (did you mean {near[0]!r}?)" if near else f"; expected one of {', '.join(OPERATORS)}"
    what = "is missing" if name is None else f"{name!r} is not an Event Grid operator"
    problems.append(Problem(f"operatorType {what}{hint}", key=f"{where}.operatorType"))
    return None


def _key(text: Any, where: str, problems: list[Problem]) -> Key | None:
    if not isinstance(text, str) or not text or "" in text.split("."):
        got = "is missing" if text is None else f"{text!r} is not a dotted path like data.runStatus"
        problems.append(Problem(f"key {got}", key=f"{where}.key"))
        return None
    return Key.parse(text)


def _operand(op: Operator, entry: Mapping[str, Any], where: str, problems: list[Problem]) -> Any:
    value, values = entry.get("value"), entry.get("values")
    if op.arity == "none":
        if value is not None or values is not None:
            problems.append(Problem(f"{op.name} takes no value", key=where))
            return None
        return ()
    if op.arity == "value":
        if values is not None:
            problems.append(
                Problem(f"{op.name} takes a single 'value', not 'values'", key=f"{where}.values")
            )
            return None
        return _scalar(op, value, f"{where}.value", problems)
    if value is not None:
        problems.append(
            Problem(f"{op.name} takes a list 'values', not 'value'", key=f"{where}.value")
        )
        return None
    if not isinstance(values, list) or not values:
        problems.append(
            Problem(f"{op.name} needs a non-empty list 'values'", key=f"{where}.values")
        )
        return None
    items = [_item(op, v, f"{where}.values[{i}]", problems) for i, v in enumerate(values)]
    return None if any(i is None for i in items) else tuple(items)


def _item(op: Operator, value: Any, where: str, problems: list[Problem]) -> Any:
    if op.arity != "ranges":
        return _scalar(op, value, where, problems)
    if not isinstance(value, list) or len(value) != 2:
        problems.append(
            Problem(
                f"a range is a list of two numbers [low, high], not {_describe(value)}", key=where
            )
        )
        return None
    low = _scalar(op, value[0], f"{where}[0]", problems)
    high = _scalar(op, value[1], f"{where}[1]", problems)
    return None if low is None or high is None else (low, high)


def _scalar(op: Operator, value: Any, where: str, problems: list[Problem]) -> Any:
    if op.kind == "number":
        number = _number(value)
        if number is None:
            problems.append(
                Problem(
                    f"{op.name} compares numbers; {_describe(value)} is not a finite number",
                    key=where,
                )
            )
        return number
    expected: type = bool if op.kind == "bool" else str
    if not isinstance(value, expected):
        problems.append(
            Problem(
                f"{op.name} compares {_kind_name(expected)}s; got {_describe(value)}", key=where
            )
        )
        return None
    return value


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        value = Decimal(repr(value))
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal) and value.is_finite():
        return value
    return None


def _limit_warnings(spec: Mapping[str, Any], advanced: tuple[AdvancedFilter, ...]) -> list[Problem]:
    warnings = []
    if len(advanced) > MAX_ADVANCED_FILTERS:
        warnings.append(
            Problem(
                f"{len(advanced)} advanced filters; Event Grid allows "
                f"{MAX_ADVANCED_FILTERS} per subscription",
                key="filter.advancedFilters",
            )
        )
    count = sum(
        len(f.operand) if f.operator.arity in ("values", "ranges") else 1
        for f in advanced
        if f.operator.arity != "none"
    )
    if count > MAX_VALUES:
        warnings.append(
            Problem(
                f"{count} filter values in all; Event Grid allows {MAX_VALUES} per subscription",
                key="filter.advancedFilters",
            )
        )
    for where, text in _strings(spec, "filter"):
        if len(text) > MAX_STRING:
            warnings.append(
                Problem(
                    f"string of {len(text)} characters; Event Grid allows {MAX_STRING}", key=where
                )
            )
    for index, f in enumerate(advanced):
        if f.operator.kind == "string" and "" in f.operand:
            warnings.append(
                Problem(
                    "an empty string value; Event Grid's handling of it is undocumented",
                    key=f"filter.advancedFilters[{index}]",
                )
            )
    return warnings


_EVENT_TYPE_KEYS = (("EVENTTYPE",), ("TYPE",))
"""The keys that name an event's type: ``eventType`` (Event Grid), ``type`` (CloudEvents)."""


def _event_type_warnings(
    spec: Mapping[str, Any], advanced: tuple[AdvancedFilter, ...]
) -> list[Problem]:
    """A warning for each Azure ML event type named that Azure ML never publishes, in
    ``includedEventTypes`` and in the values of StringIn and StringNotIn on the type."""
    named = [
        (f"filter.includedEventTypes[{i}]", name)
        for i, name in enumerate(spec.get("includedEventTypes") or ())
    ]
    for index, f in enumerate(advanced):
        if f.key.folded in _EVENT_TYPE_KEYS and f.operator.name in ("StringIn", "StringNotIn"):
            named.extend(
                (f"filter.advancedFilters[{index}].values[{i}]", value)
                for i, value in enumerate(f.operand)
            )
    return [
        Problem(message, key=where)
        for where, name in named
        if (message := azureml.unknown_event_type(name)) is not None
    ]


def _strings(node: Any, where: str) -> list[tuple[str, str]]:
    if isinstance(node, str):
        return [(where, node)]
    if isinstance(node, Mapping):
        return [s for k, v in node.items() for s in _strings(v, f"{where}.{k}")]
    if isinstance(node, list):
        return [s for i, v in enumerate(node) for s in _strings(v, f"{where}[{i}]")]
    return []


def _kind_name(kind: type) -> str:
    return {bool: "boolean", str: "string", list: "list"}.get(kind, kind.__name__)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float | Decimal):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"a {'list' if isinstance(value, list) else 'table'}"
