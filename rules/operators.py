"""The 19 advanced-filter operators of Event Grid and how each one treats a value.

``Operator`` records what the docs fix for each operator: the JSON type it compares, whether
it takes ``value``, ``values`` or ranges, whether it is a negated ("Not") operator, and its
result on a missing key (the documented table, plus the contract for the ranges).

``evaluate`` applies one compiled advanced filter to one resolved key value:

* missing (absent or null): the operator's missing-key result;
* ``IsNullOrUndefined`` / ``IsNotNull`` on anything present: false / true;
* an array without ``enableAdvancedFilteringOnArrays``: every value operator fails;
* an array with it: elements of the operator's type are tested, the others ignored; a
  positive operator passes if any element matches, a negated one only if none does;
* a scalar of the operator's type: tested; of another type (or an object): ignored, so a
  positive operator fails and a negated one passes. No coercion, ever.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal

from .keys import MISSING

Kind = Literal["number", "string", "bool", "null"]
Arity = Literal["value", "values", "ranges", "none"]
Test = Callable[[Any], bool]
"""A positive test of one value already known to be of the operator's type (strings folded)."""


@dataclass(frozen=True, slots=True)
class Operator:
    """What Event Grid fixes about one ``operatorType``."""

    name: str
    kind: Kind
    arity: Arity
    negated: bool
    on_missing: bool


def _ops(*specs: tuple[str, Kind, Arity, bool, bool]) -> dict[str, Operator]:
    return {spec[0]: Operator(*spec) for spec in specs}


OPERATORS: Final = _ops(
    ("NumberIn", "number", "values", False, False),
    ("NumberNotIn", "number", "values", True, True),
    ("NumberLessThan", "number", "value", False, False),
    ("NumberGreaterThan", "number", "value", False, False),
    ("NumberLessThanOrEquals", "number", "value", False, False),
    ("NumberGreaterThanOrEquals", "number", "value", False, False),
    ("NumberInRange", "number", "ranges", False, False),
    ("NumberNotInRange", "number", "ranges", True, True),
    ("BoolEquals", "bool", "value", False, False),
    ("StringIn", "string", "values", False, False),
    ("StringNotIn", "string", "values", True, True),
    ("StringBeginsWith", "string", "values", False, False),
    ("StringNotBeginsWith", "string", "values", True, False),
    ("StringEndsWith", "string", "values", False, False),
    ("StringNotEndsWith", "string", "values", True, False),
    ("StringContains", "string", "values", False, False),
    ("StringNotContains", "string", "values", True, False),
    ("IsNullOrUndefined", "null", "none", False, True),
    ("IsNotNull", "null", "none", False, False),
)


def is_number(value: object) -> bool:
    """JSON numbers only: ``bool`` is an ``int`` in Python but never a number here."""
    return isinstance(value, int | Decimal) and not isinstance(value, bool)


def make_test(op: Operator, operand: Any) -> Test:
    """The positive test for ``op`` against its compiled operand (folded strings, Decimals)."""
    name = op.name.replace("Not", "")
    if op.kind == "null":
        return lambda v: True  # decided by presence alone; evaluate() never calls it
    if name == "NumberIn":
        members = frozenset(operand)
        return members.__contains__
    if name == "NumberInRange":
        ranges = tuple(operand)
        if len(ranges) == 1:
            ((low, high),) = ranges
            return lambda v: low <= v <= high
        return lambda v: any(low <= v <= high for low, high in ranges)
    if name in _COMPARISONS:
        return _COMPARISONS[name](operand)
    if name == "BoolEquals":
        return lambda v: v is operand
    if name == "StringIn":
        strings = frozenset(operand)
        return strings.__contains__
    if name == "StringBeginsWith":
        prefixes = tuple(operand)
        return lambda v: v.startswith(prefixes)
    if name == "StringEndsWith":
        suffixes = tuple(operand)
        return lambda v: v.endswith(suffixes)
    if name == "StringContains":
        parts = tuple(operand)
        if len(parts) == 1:
            (part,) = parts
            return lambda v: part in v
        return lambda v: any(map(v.__contains__, parts))
    raise AssertionError(f"no test for {op.name}")  # pragma: no cover - OPERATORS is closed


_COMPARISONS: Final[dict[str, Callable[[Any], Test]]] = {
    "NumberLessThan": lambda x: lambda v: v < x,
    "NumberGreaterThan": lambda x: lambda v: v > x,
    "NumberLessThanOrEquals": lambda x: lambda v: v <= x,
    "NumberGreaterThanOrEquals": lambda x: lambda v: v >= x,
}


_TYPE_CHECKS: Final[dict[Kind, Callable[[object], bool]]] = {
    "number": is_number,
    "string": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "null": lambda v: True,
}


def has_kind(op: Operator, value: object) -> bool:
    """Whether ``value`` is of the JSON type ``op`` compares."""
    return _TYPE_CHECKS[op.kind](value)


Fold = Callable[[str], str]


def evaluate(
    op: Operator, test: Test, value: Any, arrays: bool, fold_scalar: Fold, fold_element: Fold
) -> bool:
    """Apply ``op`` to a resolved key ``value`` (see the module docstring for the rules)."""
    if value is MISSING:
        return op.on_missing
    if op.kind == "null":
        return op.name == "IsNotNull"
    if isinstance(value, list):
        if not arrays:
            return False
        hit = any(
            _test_one(op, test, element, fold_element) for element in value if has_kind(op, element)
        )
    elif has_kind(op, value):
        hit = test(fold_scalar(value) if op.kind == "string" else value)
    else:
        return op.negated
    return not hit if op.negated else hit


def _test_one(op: Operator, test: Test, element: Any, fold_element: Fold) -> bool:
    return test(fold_element(element) if op.kind == "string" else element)
