"""Parity of the filter engine with the documented Event Grid subscription-filter semantics.

Written from the research notes (``/work/shared/research/azureml-events.md`` §4) and the
engine contract in the issue, not from the implementation, so that it is an independent
oracle. Every group cites the sentence that decides it: ``[DOC]`` quotes Microsoft Learn
(event-filtering.md unless noted), ``[CONTRACT]`` quotes the issue where the docs are silent.

Every event goes through ``decode_body`` (JSON bytes built here with exact number literals),
so numbers reach the filters exactly as the engine parses them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from rules import DecodeError, Event, FilterError, compile_filter, decode_body
from tests.support.filters import ALL_OPERATORS, Raw, to_json

# --------------------------------------------------------------------------------------
# Event factory: JSON text with exact number literals -> bytes -> decode_body
# --------------------------------------------------------------------------------------

RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
MODEL_REGISTERED = "Microsoft.MachineLearningServices.ModelRegistered"
TOPIC = (
    "/subscriptions/6f1c2a3b-0d4e-4f5a-9b8c-7d6e5f4a3b2c/resourceGroups/rg-mlops-prod"
    "/providers/Microsoft.MachineLearningServices/workspaces/mlw-prod-weu"
)
SUBJECT = "experiments/5b0f7f4e-2f6c-4c1b-9d0a-3e2b1c4d5e6f/runs/brave_lamp_x7k2m9q1pz"
EVENT_ID = "3f9c2b1e-8a7d-4c6b-9e5f-0a1b2c3d4e5f"


def eg_event(
    data: dict[str, Any] | None = None,
    *,
    event_type: str = RUN_STATUS_CHANGED,
    subject: str = SUBJECT,
    **top: Any,
) -> dict[str, Any]:
    """An Event Grid schema event (all eight documented top-level fields)."""
    event: dict[str, Any] = {
        "topic": TOPIC,
        "subject": subject,
        "eventType": event_type,
        "eventTime": "2024-05-14T09:21:37.4818263Z",
        "id": EVENT_ID,
        "data": {} if data is None else data,
        "dataVersion": "1.0",
        "metadataVersion": "1",
    }
    event.update(top)
    return event


def ce_event(
    data: dict[str, Any] | None = None,
    *,
    event_type: str = RUN_STATUS_CHANGED,
    subject: str | None = SUBJECT,
    **top: Any,
) -> dict[str, Any]:
    """A CloudEvents 1.0 event as Event Grid emits it (plus any extension attributes)."""
    event: dict[str, Any] = {
        "source": TOPIC,
        "type": event_type,
        "time": "2024-05-14T09:21:37.4818263Z",
        "id": EVENT_ID,
        "specversion": "1.0",
    }
    if subject is not None:
        event["subject"] = subject
    if data is not None:
        event["data"] = data
    event.update(top)
    return event


def decode_one(event: dict[str, Any]) -> Event:
    """Decode one event delivered the Event Hubs way (an array with a single event)."""
    events = decode_body(to_json([event]).encode("utf-8"))
    assert len(events) == 1
    return events[0]


def adv(operator: str, key: str, /, **args: Any) -> dict[str, Any]:
    """One advanced filter object."""
    return {"operatorType": operator, "key": key, **args}


def flt(*advanced: dict[str, Any], **rest: Any) -> dict[str, Any]:
    """A subscription ``filter`` object with the given advanced filters."""
    out: dict[str, Any] = dict(rest)
    if advanced:
        out["advancedFilters"] = list(advanced)
    return out


def check(filter_obj: dict[str, Any], event: dict[str, Any], expected: bool) -> None:
    compiled = compile_filter(filter_obj)
    ev = decode_one(event)
    assert compiled.matches(ev) is expected, (filter_obj, to_json(event))
    assert compiled.explain(ev).matched is expected


# --------------------------------------------------------------------------------------
# Operator catalogue
# --------------------------------------------------------------------------------------

NEGATED = frozenset(
    {
        "NumberNotIn",
        "NumberNotInRange",
        "StringNotIn",
        "StringNotBeginsWith",
        "StringNotEndsWith",
        "StringNotContains",
    }
)
NULL_CHECKS = frozenset({"IsNullOrUndefined", "IsNotNull"})
VALUE_OPERATORS = tuple(op for op in ALL_OPERATORS if op not in NULL_CHECKS)
NUMBER_OPERATORS = tuple(op for op in ALL_OPERATORS if op.startswith("Number"))
STRING_OPERATORS = tuple(op for op in ALL_OPERATORS if op.startswith("String"))

# Arguments that WOULD match the value 5 / "5" / true if the engine coerced types: a
# coercing engine then gives the wrong answer for both positive and negated operators.
NUM5_ARGS: dict[str, dict[str, Any]] = {
    "NumberIn": {"values": [5]},
    "NumberNotIn": {"values": [5]},
    "NumberLessThan": {"value": 6},
    "NumberGreaterThan": {"value": 4},
    "NumberLessThanOrEquals": {"value": 5},
    "NumberGreaterThanOrEquals": {"value": 5},
    "NumberInRange": {"values": [[5, 5]]},
    "NumberNotInRange": {"values": [[5, 5]]},
}
NUM1_ARGS: dict[str, dict[str, Any]] = {
    "NumberIn": {"values": [1]},
    "NumberNotIn": {"values": [1]},
    "NumberLessThan": {"value": 2},
    "NumberGreaterThan": {"value": 0},
    "NumberLessThanOrEquals": {"value": 1},
    "NumberGreaterThanOrEquals": {"value": 1},
    "NumberInRange": {"values": [[1, 1]]},
    "NumberNotInRange": {"values": [[1, 1]]},
}


def str_args(text: str) -> dict[str, dict[str, Any]]:
    return {op: {"values": [text]} for op in STRING_OPERATORS}


# One matching argument set per operator for the value {"s": "Failed", "n": 5, "b": true}.
MATCHING_ARGS: dict[str, tuple[str, dict[str, Any]]] = {
    **{op: ("data.n", args) for op, args in NUM5_ARGS.items()},
    **{op: ("data.s", {"values": ["Failed"]}) for op in STRING_OPERATORS},
    "BoolEquals": ("data.b", {"value": True}),
    "IsNullOrUndefined": ("data.s", {}),
    "IsNotNull": ("data.s", {}),
}


def _p(expected: bool, filter_obj: dict[str, Any], event: dict[str, Any], id_: str) -> Any:
    return pytest.param(filter_obj, event, expected, id=id_)


# --------------------------------------------------------------------------------------
# 1. Every operator, match and non-match, on a present scalar of the right type
# --------------------------------------------------------------------------------------
# [DOC] §4.5 table: NumberIn "true if the key value is one of the specified filter values";
# NumberLessThan "less than" (strict); ...OrEquals inclusive; NumberInRange pseudo-code
# "IF key >= a AND key <= b / MATCH" (inclusive); StringIn "exactly matches"; BeginsWith /
# EndsWith / Contains as substrings; the Not variants "not ... any of the specified values";
# IsNullOrUndefined "if key1 has any other value ... the operator would evaluate to false".

SCALARS: dict[str, Any] = {"s": "Failed", "n": 5, "b": True, "f": False}


def sc(id_: str, expected: bool, operator: str, key: str, /, **args: Any) -> Any:
    """A case on key data.<key> of the SCALARS event."""
    return pytest.param(
        flt(adv(operator, f"data.{key}", **args)), eg_event(SCALARS), expected, id=id_
    )


def kc(id_: str, expected: bool, operator: str, event_value: Any, /, **args: Any) -> Any:
    """A case on key data.k of an Event Grid event whose data is {"k": event_value}."""
    return pytest.param(
        flt(adv(operator, "data.k", **args)), eg_event({"k": event_value}), expected, id=id_
    )


OPERATOR_CASES = [
    sc("NumberIn-hit", True, "NumberIn", "n", values=[5, 1]),
    sc("NumberIn-miss", False, "NumberIn", "n", values=[4, 6]),
    sc("NumberNotIn-pass", True, "NumberNotIn", "n", values=[41, 0]),
    sc("NumberNotIn-fail", False, "NumberNotIn", "n", values=[41, 5]),
    sc("NumberLessThan-hit", True, "NumberLessThan", "n", value=100),
    sc("NumberLessThan-equal-is-strict", False, "NumberLessThan", "n", value=5),
    sc("NumberLessThan-miss", False, "NumberLessThan", "n", value=4),
    sc("NumberGreaterThan-hit", True, "NumberGreaterThan", "n", value=4),
    sc("NumberGreaterThan-equal-is-strict", False, "NumberGreaterThan", "n", value=5),
    sc("NumberLessThanOrEquals-equal", True, "NumberLessThanOrEquals", "n", value=5),
    sc("NumberLessThanOrEquals-miss", False, "NumberLessThanOrEquals", "n", value=4),
    sc("NumberGreaterThanOrEquals-equal", True, "NumberGreaterThanOrEquals", "n", value=5),
    sc("NumberGreaterThanOrEquals-miss", False, "NumberGreaterThanOrEquals", "n", value=6),
    sc("NumberInRange-upper-bound", True, "NumberInRange", "n", values=[[1, 5]]),
    sc("NumberInRange-lower-bound", True, "NumberInRange", "n", values=[[5, 9]]),
    sc("NumberInRange-miss", False, "NumberInRange", "n", values=[[6, 9]]),
    sc("NumberInRange-second-range", True, "NumberInRange", "n", values=[[0, 1], [4.5, 6]]),
    sc("NumberNotInRange-pass", True, "NumberNotInRange", "n", values=[[6, 9], [0, 4]]),
    sc("NumberNotInRange-point-range", False, "NumberNotInRange", "n", values=[[0, 1], [5, 5]]),
    sc("BoolEquals-true", True, "BoolEquals", "b", value=True),
    sc("BoolEquals-miss", False, "BoolEquals", "b", value=False),
    sc("BoolEquals-false", True, "BoolEquals", "f", value=False),
    sc("StringIn-hit", True, "StringIn", "s", values=["x", "Failed"]),
    sc("StringIn-prefix-is-not-equal", False, "StringIn", "s", values=["Fail"]),
    sc("StringNotIn-pass", True, "StringNotIn", "s", values=["aws"]),
    sc("StringNotIn-fail", False, "StringNotIn", "s", values=["a", "Failed"]),
    sc("StringBeginsWith-hit", True, "StringBeginsWith", "s", values=["Fa"]),
    sc("StringBeginsWith-miss", False, "StringBeginsWith", "s", values=["ai"]),
    sc("StringNotBeginsWith-pass", True, "StringNotBeginsWith", "s", values=["x"]),
    sc("StringNotBeginsWith-fail", False, "StringNotBeginsWith", "s", values=["Fai"]),
    sc("StringEndsWith-hit", True, "StringEndsWith", "s", values=["jpg", "led"]),
    sc("StringEndsWith-miss", False, "StringEndsWith", "s", values=["Fail"]),
    sc("StringNotEndsWith-pass", True, "StringNotEndsWith", "s", values=["x"]),
    sc("StringNotEndsWith-fail", False, "StringNotEndsWith", "s", values=["ed"]),
    sc("StringContains-hit", True, "StringContains", "s", values=["zz", "ile"]),
    sc("StringContains-miss", False, "StringContains", "s", values=["xyz"]),
    sc("StringNotContains-pass", True, "StringNotContains", "s", values=["xyz"]),
    sc("StringNotContains-fail", False, "StringNotContains", "s", values=["q", "ail"]),
    sc("IsNullOrUndefined-present", False, "IsNullOrUndefined", "s"),
    sc("IsNullOrUndefined-false", False, "IsNullOrUndefined", "f"),
    sc("IsNotNull-present", True, "IsNotNull", "s"),
    kc("IsNotNull-zero", True, "IsNotNull", 0),
    kc("IsNotNull-empty-string", True, "IsNotNull", ""),
]


@pytest.mark.parametrize(("filter_obj", "event", "expected"), OPERATOR_CASES)
def test_operator(filter_obj: dict[str, Any], event: dict[str, Any], expected: bool) -> None:
    """Each of the 19 operators matches and fails on a present scalar as documented."""
    check(filter_obj, event, expected)


def test_catalogue_has_19_operators() -> None:
    """The REST API enumerates exactly 19 operatorType values; all are exercised here."""
    assert len(set(ALL_OPERATORS)) == 19
    assert set(MATCHING_ARGS) == set(ALL_OPERATORS)


@pytest.mark.parametrize("operator", VALUE_OPERATORS)
def test_matching_args_really_match(operator: str) -> None:
    """Positive operators match and negated ones fail with the 'matching' arguments."""
    key, args = MATCHING_ARGS[operator]
    check(flt(adv(operator, key, **args)), eg_event(SCALARS), operator not in NEGATED)


# --------------------------------------------------------------------------------------
# 2. The missing-key table, for an absent key and for a JSON null
# --------------------------------------------------------------------------------------
# [DOC NOTE] "If the event JSON doesn't contain the advanced filter key, filter is evaluated
# as not matched for the following operators: NumberGreaterThan, NumberGreaterThanOrEquals,
# NumberLessThan, NumberLessThanOrEquals, NumberIn, BoolEquals, StringContains,
# StringNotContains, StringBeginsWith, StringNotBeginsWith, StringEndsWith, StringNotEndsWith,
# StringIn. The filter is evaluated as matched for the following operators: NumberNotIn,
# StringNotIn." [DOC] IsNullOrUndefined: "missing key -> true; "key1": null -> true".
# [CONTRACT] "a JSON null is treated as a missing key; NumberInRange on a missing key fails
# and NumberNotInRange passes".

MISSING_KEY_MATCHES = {
    "NumberGreaterThan": False,
    "NumberGreaterThanOrEquals": False,
    "NumberLessThan": False,
    "NumberLessThanOrEquals": False,
    "NumberIn": False,
    "BoolEquals": False,
    "StringContains": False,
    "StringNotContains": False,
    "StringBeginsWith": False,
    "StringNotBeginsWith": False,
    "StringEndsWith": False,
    "StringNotEndsWith": False,
    "StringIn": False,
    "NumberNotIn": True,
    "StringNotIn": True,
    "NumberInRange": False,
    "NumberNotInRange": True,
    "IsNullOrUndefined": True,
    "IsNotNull": False,
}

# Ways for data.k (or a deeper key) to be missing.
MISSING_SHAPES: dict[str, tuple[str, dict[str, Any]]] = {
    "absent": ("data.k", {"other": 1}),
    "null": ("data.k", {"k": None}),
    "absent-parent": ("data.p.k", {"other": 1}),
    "null-parent": ("data.p.k", {"p": None}),
    "through-string": ("data.p.k", {"p": "k"}),
    "empty-data": ("data.k", {}),
}

MISSING_CASES = [
    pytest.param(operator, shape, id=f"{operator}-{shape}")
    for operator in ALL_OPERATORS
    for shape in MISSING_SHAPES
]


@pytest.mark.parametrize(("operator", "shape"), MISSING_CASES)
def test_missing_key_table(operator: str, shape: str) -> None:
    """An absent or null key follows the documented missing-key table."""
    key, data = MISSING_SHAPES[shape]
    _, args = MATCHING_ARGS[operator]
    check(flt(adv(operator, key, **args)), eg_event(data), MISSING_KEY_MATCHES[operator])


@pytest.mark.parametrize("operator", ALL_OPERATORS)
def test_missing_key_cloudevent_without_data(operator: str) -> None:
    """A CloudEvent with no data attribute at all: every data.* key is missing."""
    _, args = MATCHING_ARGS[operator]
    check(flt(adv(operator, "data.k", **args)), ce_event(None), MISSING_KEY_MATCHES[operator])


# [CONTRACT] "Event Grid top-level keys other than the five listed (e.g. eventTime,
# metadataVersion) are not filterable: treat them as missing." [DOC] keys for Event Grid
# schema: "ID, Topic, Subject, EventType, DataVersion, or event data (like data.key1)".
UNFILTERABLE_CASES = [
    pytest.param(operator, key, id=f"{operator}-{key}")
    for key in ("eventTime", "metadataVersion", "myext", "source", "type")
    for operator in ("StringIn", "StringNotIn", "StringContains", "IsNullOrUndefined", "IsNotNull")
]


@pytest.mark.parametrize(("operator", "key"), UNFILTERABLE_CASES)
def test_eventgrid_unfilterable_top_level_keys_are_missing(operator: str, key: str) -> None:
    """eventTime, metadataVersion and unknown top-level fields behave as missing keys."""
    event = eg_event({"s": "x"}, myext="1", source="1", type="1")
    event["eventTime"] = "1"
    event["metadataVersion"] = "1"
    args: dict[str, Any] = {} if operator in NULL_CHECKS else {"values": ["1"]}
    check(flt(adv(operator, key, **args)), event, MISSING_KEY_MATCHES[operator])


# --------------------------------------------------------------------------------------
# 3. Type mismatches: no coercion
# --------------------------------------------------------------------------------------
# [DOC] "Any key values with data types that don't match the filter's data type are
# ignored." [CONTRACT] "no type coercion (a key of another type is ignored: positive
# operators fail, negated ones pass)"; "an object value counts as a type mismatch";
# "A boolean is not a number (BoolEquals only sees JSON true/false; NumberIn never matches
# true)". The arguments are chosen so that a coercing engine would answer the other way.


def _mismatch_cases() -> list[Any]:
    cases: list[Any] = []
    number_values: dict[str, tuple[Any, dict[str, dict[str, Any]]]] = {
        "string-5": ("5", NUM5_ARGS),
        "string-1.0": ("1.0", NUM1_ARGS),
        "true": (True, NUM1_ARGS),
        "false": (False, {op: _zero(args) for op, args in NUM1_ARGS.items()}),
        "object": ({"n": 5}, NUM5_ARGS),
    }
    for label, (value, table) in number_values.items():
        for op, args in table.items():
            cases.append(pytest.param(op, value, args, id=f"{op}-on-{label}"))
    string_values: dict[str, tuple[Any, dict[str, dict[str, Any]]]] = {
        "number-5": (5, str_args("5")),
        "number-2.50": (Decimal("2.50"), str_args("2.50")),
        "true": (True, str_args("true")),
        "True": (True, str_args("True")),
        "object": ({"a": "x"}, str_args("a")),
    }
    for label, (value, table) in string_values.items():
        for op, args in table.items():
            cases.append(pytest.param(op, value, args, id=f"{op}-on-{label}"))
    bool_values: dict[str, tuple[Any, bool]] = {
        "string-true": ("true", True),
        "string-false": ("false", False),
        "number-1": (1, True),
        "number-0": (0, False),
        "object": ({"b": True}, True),
    }
    for label, (value, wanted) in bool_values.items():
        cases.append(
            pytest.param("BoolEquals", value, {"value": wanted}, id=f"BoolEquals-on-{label}")
        )
    return cases


def _zero(args: dict[str, Any]) -> dict[str, Any]:
    """NUM1_ARGS shifted to 0 (what ``false`` would coerce to)."""
    shifted: dict[str, Any] = {}
    for name, arg in args.items():
        if isinstance(arg, list):
            shifted[name] = [[x - 1 for x in a] if isinstance(a, list) else a - 1 for a in arg]
        else:
            shifted[name] = arg - 1
    return shifted


@pytest.mark.parametrize(("operator", "value", "args"), _mismatch_cases())
def test_type_mismatch_is_ignored(operator: str, value: Any, args: dict[str, Any]) -> None:
    """A key of another JSON type is ignored: positive operators fail, negated ones pass."""
    expected = operator in NEGATED
    check(flt(adv(operator, "data.k", **args)), eg_event({"k": value}), expected)


PRESENT_VALUES: dict[str, Any] = {
    "string": "x",
    "empty-string": "",
    "number": 0,
    "true": True,
    "false": False,
    "object": {"a": 1},
    "empty-object": {},
    "array": [1],
    "empty-array": [],
}


@pytest.mark.parametrize("flag", [False, True], ids=["no-array-flag", "array-flag"])
@pytest.mark.parametrize("label", list(PRESENT_VALUES))
def test_null_checks_on_present_values(label: str, flag: bool) -> None:
    """IsNotNull passes and IsNullOrUndefined fails on every present, non-null value."""
    event = eg_event({"k": PRESENT_VALUES[label]})
    extra = {"enableAdvancedFilteringOnArrays": flag}
    check(flt(adv("IsNotNull", "data.k"), **extra), event, True)
    check(flt(adv("IsNullOrUndefined", "data.k"), **extra), event, False)


# --------------------------------------------------------------------------------------
# 4. Arrays
# --------------------------------------------------------------------------------------
# [DOC] Key "can be ... Array. You need to set the enableAdvancedFilteringOnArrays property to
# true to use this feature." [CONTRACT] "an array value without enableAdvancedFilteringOnArrays
# fails every value operator (IsNotNull passes, IsNullOrUndefined fails)".

# Per operator: an array and arguments for which the flag-on answer is True.
ARRAY_TRUE_WITH_FLAG: dict[str, tuple[list[Any], dict[str, Any]]] = {
    "NumberIn": ([1, 5, 10], {"values": [5]}),
    "NumberNotIn": ([1, 5, 10], {"values": [7]}),
    "NumberLessThan": ([1, 5, 10], {"value": 2}),
    "NumberGreaterThan": ([1, 5, 10], {"value": 9}),
    "NumberLessThanOrEquals": ([1, 5, 10], {"value": 1}),
    "NumberGreaterThanOrEquals": ([1, 5, 10], {"value": 10}),
    "NumberInRange": ([1, 5, 10], {"values": [[4, 6]]}),
    "NumberNotInRange": ([1, 5, 10], {"values": [[11, 20]]}),
    "BoolEquals": ([False, True], {"value": True}),
    "StringIn": (["alpha", "Beta", "gamma"], {"values": ["beta"]}),
    "StringNotIn": (["alpha", "Beta", "gamma"], {"values": ["delta"]}),
    "StringBeginsWith": (["alpha", "Beta", "gamma"], {"values": ["gam"]}),
    "StringNotBeginsWith": (["alpha", "Beta", "gamma"], {"values": ["x"]}),
    "StringEndsWith": (["alpha", "Beta", "gamma"], {"values": ["ta"]}),
    "StringNotEndsWith": (["alpha", "Beta", "gamma"], {"values": ["x"]}),
    "StringContains": (["alpha", "Beta", "gamma"], {"values": ["mm"]}),
    "StringNotContains": (["alpha", "Beta", "gamma"], {"values": ["zz"]}),
}
# Per operator: arguments for which the flag-on answer on the same array is False.
ARRAY_FALSE_WITH_FLAG: dict[str, dict[str, Any]] = {
    "NumberIn": {"values": [7]},
    "NumberNotIn": {"values": [7, 10]},
    "NumberLessThan": {"value": 1},
    "NumberGreaterThan": {"value": 10},
    "NumberLessThanOrEquals": {"value": Decimal("0.99")},
    "NumberGreaterThanOrEquals": {"value": 11},
    "NumberInRange": {"values": [[2, 4], [6, 9]]},
    "NumberNotInRange": {"values": [[9, 12]]},
    "StringIn": {"values": ["delta"]},
    "StringNotIn": {"values": ["GAMMA"]},
    "StringBeginsWith": {"values": ["eta"]},
    "StringNotBeginsWith": {"values": ["B"]},
    "StringEndsWith": {"values": ["x"]},
    "StringNotEndsWith": {"values": ["MMA"]},
    "StringContains": {"values": ["zz"]},
    "StringNotContains": {"values": ["lph"]},
}


@pytest.mark.parametrize("flag", [None, False], ids=["flag-absent", "flag-false"])
@pytest.mark.parametrize("operator", VALUE_OPERATORS)
def test_array_without_flag_fails_every_value_operator(operator: str, flag: bool | None) -> None:
    """Without enableAdvancedFilteringOnArrays an array key fails every value operator."""
    array, args = ARRAY_TRUE_WITH_FLAG[operator]
    extra = {} if flag is None else {"enableAdvancedFilteringOnArrays": flag}
    check(flt(adv(operator, "data.k", **args), **extra), eg_event({"k": array}), False)
    check(flt(adv(operator, "data.k", **args), **extra), eg_event({"k": []}), False)


# [DOC] pseudo-code "FOR_EACH filter IN (a, b, c) / FOR_EACH key IN (v1, v2, v3) / IF filter ==
# key / MATCH" and "... / FAIL_MATCH" for the Not operators. [CONTRACT] "with the flag, positive
# operators pass if any element matches and negated ones pass only if no element matches
# (elements of another type are ignored; an empty array: positive fail, negated pass)".


@pytest.mark.parametrize("operator", VALUE_OPERATORS)
def test_array_with_flag_true_case(operator: str) -> None:
    """With the flag: positive = some element matches; negated = no element matches."""
    array, args = ARRAY_TRUE_WITH_FLAG[operator]
    on = {"enableAdvancedFilteringOnArrays": True}
    check(flt(adv(operator, "data.k", **args), **on), eg_event({"k": array}), True)


@pytest.mark.parametrize("operator", [op for op in VALUE_OPERATORS if op != "BoolEquals"])
def test_array_with_flag_false_case(operator: str) -> None:
    """With the flag: positive fails when no element matches; negated fails when one does."""
    array, _ = ARRAY_TRUE_WITH_FLAG[operator]
    on = {"enableAdvancedFilteringOnArrays": True}
    args = ARRAY_FALSE_WITH_FLAG[operator]
    check(flt(adv(operator, "data.k", **args), **on), eg_event({"k": array}), False)


@pytest.mark.parametrize("operator", VALUE_OPERATORS)
def test_empty_array_with_flag(operator: str) -> None:
    """With the flag an empty array fails positive operators and passes negated ones."""
    _, args = ARRAY_TRUE_WITH_FLAG[operator]
    on = {"enableAdvancedFilteringOnArrays": True}
    check(flt(adv(operator, "data.k", **args), **on), eg_event({"k": []}), operator in NEGATED)


MIXED = [1, "b", True, Decimal("2.5"), {"o": "b"}, None, "B2"]


def mc(id_: str, expected: bool, operator: str, /, **args: Any) -> Any:
    """A case on the mixed-type array MIXED, with the array flag on."""
    filter_obj = flt(adv(operator, "data.k", **args), enableAdvancedFilteringOnArrays=True)
    return pytest.param(filter_obj, expected, id=id_)


MIXED_CASES = [
    mc("StringIn-string-element", True, "StringIn", values=["B"]),
    mc("StringIn-ignores-number", False, "StringIn", values=["1"]),
    mc("StringIn-ignores-bool", False, "StringIn", values=["true"]),
    mc("StringNotIn-ignores-others", True, "StringNotIn", values=["1", "true", "2.5"]),
    mc("StringNotIn-one-element-hits", False, "StringNotIn", values=["b2"]),
    mc("StringContains-ignores-object", False, "StringContains", values=["o"]),
    mc("StringNotContains-ignores-object", True, "StringNotContains", values=["o"]),
    mc("NumberIn-number-element", True, "NumberIn", values=[1]),
    mc("NumberIn-2.50", True, "NumberIn", values=[Decimal("2.50")]),
    mc("NumberIn-false-is-not-0", False, "NumberIn", values=[0]),
    mc("NumberNotIn-ignores-others", True, "NumberNotIn", values=[0, 3]),
    mc("NumberNotIn-one-element-hits", False, "NumberNotIn", values=[Decimal("2.5")]),
    mc("NumberGreaterThan-some-element", True, "NumberGreaterThan", value=2),
    mc("NumberGreaterThan-none", False, "NumberGreaterThan", value=Decimal("2.5")),
    mc("NumberNotInRange-ignores-others", True, "NumberNotInRange", values=[[3, 9]]),
    mc("NumberNotInRange-one-element-hits", False, "NumberNotInRange", values=[[0, 1]]),
    mc("BoolEquals-bool-element", True, "BoolEquals", value=True),
    mc("BoolEquals-no-false-element", False, "BoolEquals", value=False),
]


@pytest.mark.parametrize(("filter_obj", "expected"), MIXED_CASES)
def test_mixed_type_array_with_flag(filter_obj: dict[str, Any], expected: bool) -> None:
    """With the flag, array elements of another type (or null/object) are ignored."""
    check(filter_obj, eg_event({"k": MIXED}), expected)


def test_bool_array_with_flag_false_case() -> None:
    """With the flag BoolEquals false fails on an array holding only true."""
    on = {"enableAdvancedFilteringOnArrays": True}
    check(flt(adv("BoolEquals", "data.k", value=False), **on), eg_event({"k": [True, True]}), False)


@pytest.mark.parametrize(
    ("operator", "value", "args"),
    [
        pytest.param("StringIn", "Failed", {"values": ["failed"]}, id="StringIn"),
        pytest.param("NumberIn", 5, {"values": [5]}, id="NumberIn"),
        pytest.param("NumberNotIn", 5, {"values": [6]}, id="NumberNotIn"),
        pytest.param("BoolEquals", False, {"value": False}, id="BoolEquals"),
        pytest.param("StringNotContains", "abc", {"values": ["x"]}, id="StringNotContains"),
    ],
)
def test_scalar_with_array_flag_unchanged(operator: str, value: Any, args: dict[str, Any]) -> None:
    """Turning the array flag on does not change how scalar keys are evaluated."""
    on = {"enableAdvancedFilteringOnArrays": True}
    check(flt(adv(operator, "data.k", **args), **on), eg_event({"k": value}), True)


# --------------------------------------------------------------------------------------
# 5. Case rules
# --------------------------------------------------------------------------------------
# [DOC] "All string comparisons aren't case-sensitive." [CONTRACT] "string comparisons
# case-insensitive (ordinal ignore-case)": a per-character simple case mapping, so no
# multi-character folding ("ß" is not "SS") but "ä"/"Ä" and final/medial sigma
# ("ς"/"σ" both upper-case to "Σ") are equal.

STRING_CASE_CASES = [
    kc("StringIn", True, "StringIn", "failed", values=["FAILED"]),
    kc("StringNotIn", False, "StringNotIn", "Failed", values=["fAiLeD"]),
    kc("StringBeginsWith", True, "StringBeginsWith", "azureml.x", values=["AZUREML."]),
    kc("StringNotBeginsWith", False, "StringNotBeginsWith", "azure", values=["AZ"]),
    kc("StringEndsWith", True, "StringEndsWith", "PipelineRun", values=["RUN"]),
    kc("StringNotEndsWith", False, "StringNotEndsWith", "PipelineRUN", values=["run"]),
    kc("StringContains", True, "StringContains", "pipeliner", values=["LINER"]),
    kc("StringNotContains", False, "StringNotContains", "pipeline", values=["LINE"]),
    kc("umlaut-simple-mapping", True, "StringIn", "ärger", values=["ÄRGER"]),
    kc("sharp-s-no-expansion", False, "StringIn", "straße", values=["STRASSE"]),
    kc("final-sigma-uppercases-to-sigma", True, "StringIn", "οδος", values=["ΟΔΟΣ"]),
]


@pytest.mark.parametrize(("filter_obj", "event", "expected"), STRING_CASE_CASES)
def test_string_values_case_insensitive(
    filter_obj: dict[str, Any], event: dict[str, Any], expected: bool
) -> None:
    """String operators compare ordinal ignore-case."""
    check(filter_obj, event, expected)


# [DOC] keys written "ID", "Topic", "Subject", "EventType", "DataVersion", "Data.Key1" /
# "data.key1" in the docs. [CONTRACT] "Key names and event types match case-insensitively".
KEY_CASE_CASES = [
    pytest.param("DATA.RUNSTATUS", id="all-upper"),
    pytest.param("Data.runstatus", id="capital-data"),
    pytest.param("data.runStatus", id="exact"),
    pytest.param("data.RunStatus", id="pascal"),
]


def test_non_ascii_key_names_case_insensitive() -> None:
    """Key lookup folds non-ASCII letters too (ordinal ignore-case: Ä == ä)."""
    data = {"Ärger": {"Σ": "x"}}
    check(flt(adv("StringIn", "data.äRGER.σ", values=["X"])), eg_event(data), True)


def test_data_property_is_not_a_top_level_key() -> None:
    """A key without the data. prefix does not reach into data (Event Grid schema)."""
    data = {"runStatus": "Failed"}
    check(flt(adv("IsNullOrUndefined", "runStatus")), eg_event(data), True)
    check(flt(adv("StringIn", "runStatus", values=["Failed"])), eg_event(data), False)


@pytest.mark.parametrize("key", KEY_CASE_CASES)
def test_data_key_names_case_insensitive(key: str) -> None:
    """data.* key names are looked up case-insensitively (including the data prefix)."""
    check(flt(adv("StringIn", key, values=["Failed"])), eg_event({"runStatus": "Failed"}), True)


def test_nested_key_case_insensitive_any_depth() -> None:
    """Case-insensitive lookup applies at every nesting level."""
    data = {"ModelTags": {"Stage": {"Level": {"Name": "prod"}}}}
    key = "data.modeltags.STAGE.level.NAME"
    check(flt(adv("StringIn", key, values=["PROD"])), eg_event(data), True)


@pytest.mark.parametrize(
    "event_type",
    [
        pytest.param(RUN_STATUS_CHANGED, id="exact"),
        pytest.param(RUN_STATUS_CHANGED.lower(), id="lower"),
        pytest.param(RUN_STATUS_CHANGED.upper(), id="upper"),
    ],
)
def test_event_types_case_insensitive(event_type: str) -> None:
    """includedEventTypes match the event type case-insensitively."""
    check(flt(includedEventTypes=[event_type]), eg_event(), True)
    check(flt(includedEventTypes=[event_type]), ce_event(), True)


# [DOC] subjectBeginsWith "A prefix-match filter"; PowerShell -SubjectCaseSensitive "If not
# specified, subject will be compared in a case insensitive manner."; REST
# isSubjectCaseSensitive "Specifies if the SubjectBeginsWith and SubjectEndsWith properties of
# the filter should be compared in a case sensitive manner." [DOC, edge] "All string
# comparisons are case-insensitive. There's no way to change this behavior today."
SUBJECT_CASE_CASES = [
    _p(True, flt(subjectBeginsWith="EXPERIMENTS/"), eg_event(), "begins-default-insensitive"),
    _p(True, flt(subjectEndsWith="_X7K2M9Q1PZ"), eg_event(), "ends-default-insensitive"),
    _p(True, flt(subjectBeginsWith="EXPERIMENTS/", isSubjectCaseSensitive=False), eg_event(), "f"),
    _p(False, flt(subjectBeginsWith="EXPERIMENTS/", isSubjectCaseSensitive=True), eg_event(), "bs"),
    _p(False, flt(subjectEndsWith="_X7K2M9Q1PZ", isSubjectCaseSensitive=True), eg_event(), "es"),
    _p(True, flt(subjectBeginsWith="experiments/", isSubjectCaseSensitive=True), eg_event(), "b"),
    _p(True, flt(subjectEndsWith="x7k2m9q1pz", isSubjectCaseSensitive=True), eg_event(), "e"),
    _p(True, flt(subjectBeginsWith="EXPERIMENTS/"), ce_event(), "cloudevents-begins"),
    _p(True, flt(subjectBeginsWith="", isSubjectCaseSensitive=True), eg_event(), "sensitive-empty"),
    _p(
        True,
        flt(subjectBeginsWith="models/ärger", subjectEndsWith="ÄRGER:1"),
        eg_event(subject="models/Ärger-Ärger:1"),
        "non-ascii-insensitive",
    ),
    _p(
        False,
        flt(subjectBeginsWith="models/ärger", isSubjectCaseSensitive=True),
        eg_event(subject="models/Ärger:1"),
        "non-ascii-sensitive",
    ),
    _p(False, flt(subjectEndsWith="PZ", isSubjectCaseSensitive=True), ce_event(), "ce-sensitive"),
    _p(
        True,
        flt(
            adv("StringBeginsWith", "subject", values=["EXPERIMENTS/"]),
            isSubjectCaseSensitive=True,
        ),
        eg_event(),
        "sensitive-flag-does-not-touch-advanced-filters",
    ),
]


@pytest.mark.parametrize(("filter_obj", "event", "expected"), SUBJECT_CASE_CASES)
def test_subject_case_rules(
    filter_obj: dict[str, Any], event: dict[str, Any], expected: bool
) -> None:
    """Subject filters are case-insensitive unless isSubjectCaseSensitive is true."""
    check(filter_obj, event, expected)


# --------------------------------------------------------------------------------------
# 6. Decimal numbers
# --------------------------------------------------------------------------------------
# [DOC, edge] "Event Grid uses the decimal .NET type to handle all numeric values. The number
# values specified in the event subscription JSON aren't subject to floating point rounding
# behavior." [CONTRACT] "Decimal numbers (exact, no float rounding: parse JSON numbers as
# Decimal)"; "inclusive ranges".

DRIFT = Raw("0.83503490684792081")
DRIFT_D = Decimal("0.83503490684792081")
DRIFT_FLOAT = Decimal("0.8350349068479208")  # what float64 would make of it
BELOW = "0.09999999999999999999"  # float64 would round it to 0.1
BIG = 12345678901234567890123

D = Decimal
DECIMAL_CASES = [
    kc("0.1-eq-0.10", True, "NumberIn", Raw("0.1"), values=[D("0.10")]),
    kc("0.10-eq-0.1", True, "NumberIn", Raw("0.10"), values=[D("0.1")]),
    kc("0.1-NotIn-0.10", False, "NumberNotIn", Raw("0.1"), values=[D("0.10")]),
    kc("1e2-eq-100", True, "NumberIn", Raw("1e2"), values=[100]),
    kc("1E+2-eq-100", True, "NumberIn", Raw("1E+2"), values=[100]),
    kc("100-eq-Decimal-1E+2", True, "NumberIn", 100, values=[D("1E+2")]),
    kc("5.000-eq-5", True, "NumberIn", Raw("5.000"), values=[5]),
    kc("1.5E-3-eq-0.0015", True, "NumberIn", Raw("1.5E-3"), values=[D("0.0015")]),
    kc("drift-exact", True, "NumberIn", DRIFT, values=[D("0.83503490684792081")]),
    kc("drift-not-its-float", False, "NumberIn", DRIFT, values=[DRIFT_FLOAT]),
    kc("drift-NotIn-its-float", True, "NumberNotIn", DRIFT, values=[DRIFT_FLOAT]),
    kc("drift-gt-its-float", True, "NumberGreaterThan", DRIFT, value=DRIFT_FLOAT),
    kc("drift-not-le-its-float", False, "NumberLessThanOrEquals", DRIFT, value=DRIFT_FLOAT),
    kc("drift-range-upper-bound", True, "NumberInRange", DRIFT, values=[[D("0.3"), DRIFT_D]]),
    kc("drift-below-range", False, "NumberInRange", DRIFT, values=[[DRIFT_D + D("1E-17"), 1]]),
    kc("drift-above-range", False, "NumberInRange", DRIFT, values=[[0, DRIFT_FLOAT]]),
    kc("neg-zero-eq-0", True, "NumberIn", Raw("-0"), values=[0]),
    kc("0-eq-neg-zero", True, "NumberIn", 0, values=[D("-0")]),
    kc("neg-0.0-eq-0", True, "NumberIn", Raw("-0.0"), values=[0]),
    kc("neg-zero-not-lt-0", False, "NumberLessThan", Raw("-0"), value=0),
    kc("neg-zero-ge-0", True, "NumberGreaterThanOrEquals", Raw("-0.0"), value=0),
    kc("neg-zero-in-0-0", True, "NumberInRange", Raw("-0"), values=[[0, 0]]),
    kc("big-int-eq", True, "NumberIn", BIG, values=[BIG]),
    kc("big-int-ne", False, "NumberIn", BIG, values=[BIG + 1]),
    kc("2^53+1-ne-2^53", False, "NumberIn", 2**53 + 1, values=[2**53]),
    kc("2^53+1-gt-2^53", True, "NumberGreaterThan", 2**53 + 1, value=2**53),
    kc("neg-big-lt", True, "NumberLessThan", -(10**20) - 1, value=D("-1E+20")),
    kc("neg-point-range", True, "NumberInRange", Raw("-1.50"), values=[[D("-1.5"), D("-1.5")]]),
    kc("just-below-range", True, "NumberNotInRange", Raw(BELOW), values=[[D("0.1"), D("0.2")]]),
    kc(
        "NotInRange-upper-bound",
        False,
        "NumberNotInRange",
        Raw("0.2"),
        values=[[D("0.1"), D("0.2")]],
    ),
    kc("0.3-trailing-zeros", True, "NumberIn", Raw("0.30000000000000000"), values=[D("0.3")]),
    kc("0.3-le-0.3", True, "NumberLessThanOrEquals", Raw("0.3"), value=D("0.3")),
]


@pytest.mark.parametrize(("filter_obj", "event", "expected"), DECIMAL_CASES)
def test_decimal_numbers(filter_obj: dict[str, Any], event: dict[str, Any], expected: bool) -> None:
    """Numbers compare as exact decimals, whatever their written form."""
    check(filter_obj, event, expected)


# [CONTRACT] compile_filter takes "values as JSON would give them; numbers may be int, Decimal
# or float": a float in the filter stands for the JSON literal it prints as (0.1, not the
# binary 0.1000000000000000055511151231257827...).
FLOAT_CASES = [
    kc("NumberIn-0.1", True, "NumberIn", Raw("0.1"), values=[0.1]),
    kc("LE-0.3", True, "NumberLessThanOrEquals", Raw("0.3"), value=0.3),
    kc("GE-0.3", True, "NumberGreaterThanOrEquals", Raw("0.3"), value=0.3),
    kc("GT-0.3-strict", False, "NumberGreaterThan", Raw("0.3"), value=0.3),
    kc("range-bound-2.5", True, "NumberInRange", Raw("2.5"), values=[[0.5, 2.5]]),
    kc("5.0-eq-5", True, "NumberIn", Raw("5"), values=[5.0]),
]


@pytest.mark.parametrize(("filter_obj", "event", "expected"), FLOAT_CASES)
def test_float_filter_values(
    filter_obj: dict[str, Any], event: dict[str, Any], expected: bool
) -> None:
    """A Python float in a filter means the decimal it prints as, not its binary expansion."""
    check(filter_obj, event, expected)


def test_verbatim_drift_sample_boundary() -> None:
    """The documented DriftCoefficient 0.83503490684792081 equals itself, exactly."""
    event = eg_event({"DriftCoefficient": DRIFT}, event_type="x")
    key = "data.DriftCoefficient"
    check(flt(adv("NumberGreaterThanOrEquals", key, value=DRIFT_D)), event, True)
    check(flt(adv("NumberGreaterThan", key, value=DRIFT_D)), event, False)
    check(flt(adv("NumberLessThan", key, value=DRIFT_D)), event, False)


# --------------------------------------------------------------------------------------
# 7. includedEventTypes
# --------------------------------------------------------------------------------------
# [DOC] "By default, all event types for the event source are sent to the endpoint. ...
# Provide an array with the event types, or specify All to get all event types". [SPEC] "If it
# is desired to subscribe to all default event types, set the IncludedEventTypes to null."
# [CONTRACT] "includedEventTypes absent, null or ["All"] = all types".

EVENT_TYPE_CASES = [
    _p(True, flt(), eg_event(), "absent"),
    _p(True, flt(includedEventTypes=None), eg_event(), "null"),
    _p(True, flt(includedEventTypes=["All"]), eg_event(), "All"),
    _p(True, flt(includedEventTypes=["All"]), eg_event(event_type="Some.Other.Type"), "All-other"),
    _p(True, flt(includedEventTypes=[RUN_COMPLETED, RUN_STATUS_CHANGED]), eg_event(), "listed"),
    _p(False, flt(includedEventTypes=[RUN_COMPLETED, MODEL_REGISTERED]), eg_event(), "unlisted"),
    _p(False, flt(includedEventTypes=[RUN_STATUS_CHANGED[:-1]]), eg_event(), "prefix-is-not-match"),
    _p(True, flt(includedEventTypes=[RUN_STATUS_CHANGED]), ce_event(), "cloudevents-type"),
    _p(False, flt(includedEventTypes=[RUN_COMPLETED]), ce_event(), "cloudevents-unlisted"),
    _p(True, flt(includedEventTypes=None), ce_event(), "cloudevents-null"),
]


@pytest.mark.parametrize(("filter_obj", "event", "expected"), EVENT_TYPE_CASES)
def test_included_event_types(
    filter_obj: dict[str, Any], event: dict[str, Any], expected: bool
) -> None:
    """includedEventTypes: absent/null/["All"] match all, else exact (case-insensitive) list."""
    check(filter_obj, event, expected)


# --------------------------------------------------------------------------------------
# 8. Subject filters
# --------------------------------------------------------------------------------------
# [DOC] subscription schema: subjectBeginsWith "A prefix-match filter to the subject field in
# the event message. The default or empty string matches all." (subjectEndsWith likewise).
# Both set at once: both must hold [notes §4.3, INFERRED]. Plain prefix, no segment awareness.

SUBJECT_CASES = [
    _p(True, flt(subjectBeginsWith="", subjectEndsWith=""), eg_event(), "empty-both"),
    _p(True, flt(subjectBeginsWith="experiments/", subjectEndsWith="pz"), eg_event(), "both-hold"),
    _p(False, flt(subjectBeginsWith="experiments/", subjectEndsWith="xx"), eg_event(), "ends-no"),
    _p(False, flt(subjectBeginsWith="models/", subjectEndsWith="pz"), eg_event(), "begins-no"),
    _p(True, flt(subjectBeginsWith="models/credit"), eg_event(subject="models/credit-risk:7"), "p"),
    _p(False, flt(subjectBeginsWith="/models/"), eg_event(subject="models/x:1"), "leading-slash"),
    _p(True, flt(subjectEndsWith=":7"), eg_event(subject="models/credit-risk:7"), "suffix"),
    _p(True, flt(subjectBeginsWith=SUBJECT, subjectEndsWith=SUBJECT), eg_event(), "whole-subject"),
    _p(True, flt(subjectBeginsWith=""), ce_event(subject=None), "ce-no-subject-empty-prefix"),
    _p(False, flt(subjectBeginsWith="experiments/"), ce_event(subject=None), "ce-no-subject"),
    _p(False, flt(subjectEndsWith="pz"), ce_event(subject=None), "ce-no-subject-suffix"),
]


@pytest.mark.parametrize(("filter_obj", "event", "expected"), SUBJECT_CASES)
def test_subject_filters(filter_obj: dict[str, Any], event: dict[str, Any], expected: bool) -> None:
    """Subject prefix/suffix filters: empty matches all, both must hold when both are set."""
    check(filter_obj, event, expected)


# --------------------------------------------------------------------------------------
# 9. AND across filters and parts, OR within values, the same key twice
# --------------------------------------------------------------------------------------
# [DOC] "If you specify a single filter with multiple values, an OR operation is performed
# ... If you specify multiple different filters, an AND operation is done, so each filter
# condition must be met." "The same key can be used in more than one filter." [CONTRACT]
# "filters AND'd, and AND'd with the event-type and subject parts"; [DOC, edge] "The NOT
# operators - NumberNotIn and StringNotIn behave as AND conditions on each value".

RUN = {"runStatus": "Failed", "experimentName": "credit-risk-training", "n": 5}
STATUS_FAILED = adv("StringIn", "data.runStatus", values=["Failed"])
COMBINATION_CASES = [
    _p(
        True,
        flt(adv("StringIn", "data.runStatus", values=["Completed", "Failed"])),
        eg_event(RUN),
        "or-within-values",
    ),
    _p(
        True,
        flt(STATUS_FAILED, adv("StringBeginsWith", "data.experimentName", values=["credit"])),
        eg_event(RUN),
        "and-both-hold",
    ),
    _p(
        False,
        flt(STATUS_FAILED, adv("StringBeginsWith", "data.experimentName", values=["fraud"])),
        eg_event(RUN),
        "and-second-fails",
    ),
    _p(
        False,
        flt(STATUS_FAILED, includedEventTypes=[RUN_COMPLETED]),
        eg_event(RUN),
        "advanced-ok-type-fails",
    ),
    _p(
        False,
        flt(STATUS_FAILED, subjectBeginsWith="models/"),
        eg_event(RUN),
        "advanced-ok-subject-fails",
    ),
    _p(
        False,
        flt(
            adv("StringIn", "data.runStatus", values=["Completed"]),
            includedEventTypes=[RUN_STATUS_CHANGED],
            subjectBeginsWith="experiments/",
        ),
        eg_event(RUN),
        "type-subject-ok-advanced-fails",
    ),
    _p(
        True,
        flt(
            adv("StringIn", "data.runStatus", values=["failed"]),
            includedEventTypes=[RUN_STATUS_CHANGED],
            subjectBeginsWith="experiments/",
            subjectEndsWith="pz",
        ),
        eg_event(RUN),
        "all-parts-hold",
    ),
    _p(
        True,
        flt(adv("NumberGreaterThan", "data.n", value=1), adv("NumberLessThan", "data.n", value=10)),
        eg_event(RUN),
        "same-key-twice-between",
    ),
    _p(
        False,
        flt(adv("NumberGreaterThan", "data.n", value=1), adv("NumberLessThan", "data.n", value=5)),
        eg_event(RUN),
        "same-key-twice-outside",
    ),
    _p(
        True,
        flt(
            adv("StringBeginsWith", "data.runStatus", values=["F"]),
            adv("StringEndsWith", "data.runStatus", values=["d"]),
        ),
        eg_event(RUN),
        "same-key-twice-begins-ends",
    ),
    _p(
        False,
        flt(adv("StringNotIn", "data.runStatus", values=["Completed", "Failed"])),
        eg_event(RUN),
        "StringNotIn-values-are-and",
    ),
    _p(
        False,
        flt(adv("NumberNotIn", "data.n", values=[1, 5])),
        eg_event(RUN),
        "NumberNotIn-values-are-and",
    ),
    _p(
        False,
        flt(adv("StringNotContains", "data.runStatus", values=["zz", "ail"])),
        eg_event(RUN),
        "StringNotContains-values-are-and",
    ),
    _p(
        True,
        flt(adv("IsNotNull", "data.runStatus"), adv("IsNullOrUndefined", "data.nope")),
        eg_event(RUN),
        "null-checks-and",
    ),
    _p(
        True,
        flt(
            STATUS_FAILED,
            adv("NumberIn", "data.n", values=[5]),
            adv("NumberInRange", "data.n", values=[[5, 5]]),
            adv("StringNotIn", "data.missing", values=["x"]),
        ),
        eg_event(RUN),
        "four-filters-all-hold",
    ),
]


@pytest.mark.parametrize(("filter_obj", "event", "expected"), COMBINATION_CASES)
def test_and_or_combination(
    filter_obj: dict[str, Any], event: dict[str, Any], expected: bool
) -> None:
    """Values OR, Not-values AND, filters AND, and all parts AND together."""
    check(filter_obj, event, expected)


def test_empty_filter_matches_everything() -> None:
    """A filter with no parts at all matches every event of both schemas."""
    check({}, eg_event(), True)
    check({}, ce_event(None, subject=None), True)
    check({"advancedFilters": []}, eg_event(), True)


# --------------------------------------------------------------------------------------
# 10. Keys of both schemas
# --------------------------------------------------------------------------------------
# [DOC] "For events in the Event Grid schema, use the following values for the key: ID,
# Topic, Subject, EventType, DataVersion, or event data (like data.key1). For events in Cloud
# Events schema, use the following values for the key: id, source, type, specversion, or
# custom properties" and "You can also use extension context attributes in CloudEvents 1.0"
# (key "comexampleothervalue"). [CONTRACT] CloudEvents keys "id, source, subject, type,
# specversion and extension attributes"; keys "data.a.b.c to any depth".


def kk(id_: str, expected: bool, op: str, key: str, event: dict[str, Any], /, **args: Any) -> Any:
    """A case with one advanced filter on ``key``."""
    return pytest.param(flt(adv(op, key, **args)), event, expected, id=id_)


DEEP = {"a": {"b": {"c": {"d": {"e": "deep"}}}}}
EG, CE = eg_event(), ce_event()
SCHEMA_KEY_CASES = [
    kk("eg-id", True, "StringIn", "id", EG, values=[EVENT_ID]),
    kk("eg-ID", True, "StringIn", "ID", EG, values=[EVENT_ID.upper()]),
    kk("eg-Topic", True, "StringIn", "Topic", EG, values=[TOPIC.lower()]),
    kk("eg-subject", True, "StringEndsWith", "subject", EG, values=["_x7k2m9q1pz"]),
    kk("eg-EventType", True, "StringIn", "EventType", EG, values=[RUN_STATUS_CHANGED]),
    kk("eg-dataVersion", True, "StringIn", "dataVersion", EG, values=["1.0"]),
    kk("eg-dataVersion-miss", False, "StringIn", "dataVersion", EG, values=["2.0"]),
    kk("eg-has-no-source", True, "IsNullOrUndefined", "source", EG),
    kk("eg-has-no-type", True, "IsNullOrUndefined", "type", EG),
    kk("eg-has-no-specversion", True, "IsNullOrUndefined", "specversion", EG),
    kk("ce-id", True, "StringIn", "id", CE, values=[EVENT_ID]),
    kk("ce-source", True, "StringIn", "source", CE, values=[TOPIC]),
    kk("ce-Type", True, "StringIn", "Type", CE, values=[RUN_STATUS_CHANGED]),
    kk("ce-specversion", True, "StringIn", "specversion", CE, values=["1.0"]),
    kk("ce-subject", True, "StringBeginsWith", "subject", CE, values=["experiments/"]),
    kk("ce-subject-absent", True, "IsNullOrUndefined", "subject", ce_event(subject=None)),
    kk("ce-has-no-topic", True, "IsNullOrUndefined", "topic", CE),
    kk("ce-has-no-eventType", True, "IsNullOrUndefined", "eventType", CE),
    kk(
        "ce-extension-number",
        True,
        "NumberIn",
        "comexampleothervalue",
        ce_event(comexampleothervalue=5),
        values=[5],
    ),
    kk(
        "ce-extension-string-any-case",
        True,
        "StringIn",
        "ComExampleExtension1",
        ce_event(comexampleextension1="value"),
        values=["VALUE"],
    ),
    kk(
        "ce-extension-string-miss",
        False,
        "StringIn",
        "comexampleextension1",
        ce_event(comexampleextension1="value"),
        values=["other"],
    ),
    kk("ce-extension-bool", True, "BoolEquals", "myflag", ce_event(myflag=True), value=True),
    kk("ce-data", True, "StringIn", "data.runStatus", ce_event(RUN), values=["failed"]),
    kk("ce-deep", True, "StringIn", "data.a.b.c.d.e", ce_event(DEEP), values=["deep"]),
    kk("eg-deep", True, "StringIn", "data.a.b.c.d.e", eg_event(DEEP), values=["deep"]),
    kk(
        "howto-example-ModelTags",
        True,
        "StringIn",
        "data.ModelTags.key1",
        eg_event({"ModelTags": {"key1": "value1"}}),
        values=["value1"],
    ),
]


@pytest.mark.parametrize(("filter_obj", "event", "expected"), SCHEMA_KEY_CASES)
def test_schema_keys(filter_obj: dict[str, Any], event: dict[str, Any], expected: bool) -> None:
    """Each schema exposes its own top-level keys, data.* at any depth and CE extensions."""
    check(filter_obj, event, expected)


# [DOC] "Keys with . (dot) character in them ... Currently, there's no support for escape
# characters in keys." A data property whose name has a dot cannot be addressed.
@pytest.mark.parametrize(
    ("operator", "expected"),
    [("StringIn", False), ("IsNullOrUndefined", True), ("StringNotIn", True), ("IsNotNull", False)],
)
def test_dotted_property_name_is_not_addressable(operator: str, expected: bool) -> None:
    """data.runProperties.azureml.runsource walks runProperties -> azureml -> runsource."""
    data = {"runProperties": {"azureml.runsource": "azureml.scriptrun"}}
    args: dict[str, Any] = {} if operator in NULL_CHECKS else {"values": ["azureml.scriptrun"]}
    key = "data.runProperties.azureml.runsource"
    check(flt(adv(operator, key, **args)), eg_event(data), expected)


# [DOC] the CloudEvents key list (id, source, type, specversion, custom properties) does not
# include the spec's optional "time" attribute, just as the Event Grid list leaves out
# eventTime. [CONTRACT] CloudEvents keys: "id, source, subject, type, specversion and
# extension attributes" ("time" is a spec attribute, not an extension).
def test_cloudevents_time_not_filterable() -> None:
    """The CloudEvents time attribute, like Event Grid eventTime, is not a filterable key."""
    check(flt(adv("IsNullOrUndefined", "time")), ce_event(), True)


# --------------------------------------------------------------------------------------
# 11. Bodies: array-wrapped and bare
# --------------------------------------------------------------------------------------
# [DOC] "Event Grid delivers one event at a time to the subscriber. The payload is however an
# array with a single event." [notes §3] "The worker should nevertheless accept an array of
# any length or a bare object."


def test_bare_and_wrapped_body_same_answer() -> None:
    """A bare event object and the same event in an array decode and match alike."""
    event = eg_event({"runStatus": "Failed"})
    compiled = compile_filter(flt(adv("StringIn", "data.runStatus", values=["failed"])))
    bare = decode_body(to_json(event).encode())
    wrapped = decode_body(to_json([event]).encode())
    assert len(bare) == len(wrapped) == 1
    assert compiled.matches(bare[0]) and compiled.matches(wrapped[0])
    assert bare[0].id == wrapped[0].id == EVENT_ID


def test_multi_event_body_each_event_evaluated() -> None:
    """Each event of a multi-event array is evaluated on its own."""
    body = to_json(
        [
            eg_event({"runStatus": "Failed"}),
            eg_event({"runStatus": "Completed"}, event_type=RUN_COMPLETED),
            ce_event({"runStatus": "failed"}),
        ]
    ).encode()
    events = decode_body(body)
    compiled = compile_filter(flt(adv("StringIn", "data.runStatus", values=["FAILED"])))
    assert [compiled.matches(e) for e in events] == [True, False, True]
    assert [e.schema for e in events] == ["eventgrid", "eventgrid", "cloudevents"]


# --------------------------------------------------------------------------------------
# 12. Invalid filters
# --------------------------------------------------------------------------------------
# [SPEC] 19 operatorType values; single-value operators take "value", the others "values",
# IsNullOrUndefined/IsNotNull neither. [CONTRACT] compile_filter "raises FilterError on an
# invalid filter (unknown operatorType, value vs values misuse, wrong value types...)".

INVALID_FILTERS = [
    pytest.param(flt(adv("StringEquals", "data.k", values=["x"])), id="unknown-operator"),
    pytest.param(flt({"key": "data.k", "values": ["x"]}), id="no-operatorType"),
    pytest.param(flt({"operatorType": "StringIn", "values": ["x"]}), id="no-key"),
    pytest.param(flt(adv("NumberIn", "data.k", value=5)), id="NumberIn-value-not-values"),
    pytest.param(flt(adv("StringIn", "data.k", value="x")), id="StringIn-value-not-values"),
    pytest.param(flt(adv("NumberLessThan", "data.k", values=[5])), id="LT-values-not-value"),
    pytest.param(flt(adv("BoolEquals", "data.k", values=[True])), id="BoolEquals-values"),
    pytest.param(flt(adv("NumberIn", "data.k", values=["5"])), id="NumberIn-string-value"),
    pytest.param(flt(adv("NumberIn", "data.k", values=[True])), id="NumberIn-bool-value"),
    pytest.param(flt(adv("StringIn", "data.k", values=[5])), id="StringIn-number-value"),
    pytest.param(flt(adv("StringContains", "data.k", values="x")), id="values-not-a-list"),
    pytest.param(flt(adv("BoolEquals", "data.k", value="true")), id="BoolEquals-string"),
    pytest.param(flt(adv("NumberGreaterThan", "data.k", value="5")), id="GT-string"),
    pytest.param(flt(adv("NumberGreaterThan", "data.k", value=True)), id="GT-bool"),
    pytest.param(flt(adv("NumberInRange", "data.k", values=[5, 6])), id="InRange-not-pairs"),
    pytest.param(flt(adv("NumberInRange", "data.k", values=[[5]])), id="InRange-short-pair"),
    pytest.param(flt(adv("NumberInRange", "data.k", values=[[1, 2, 3]])), id="InRange-triple"),
    pytest.param(flt(adv("NumberNotInRange", "data.k", values=[["1", "2"]])), id="NotInRange-str"),
    pytest.param({"advancedFilters": {"operatorType": "IsNotNull", "key": "k"}}, id="not-a-list"),
    pytest.param({"advancedFilters": ["IsNotNull"]}, id="filter-not-an-object"),
]


@pytest.mark.parametrize("filter_obj", INVALID_FILTERS)
def test_invalid_filter_rejected(filter_obj: dict[str, Any]) -> None:
    """compile_filter raises FilterError (and nothing else) on an invalid filter."""
    with pytest.raises(FilterError):
        compile_filter(filter_obj)


@pytest.mark.parametrize("operator", ALL_OPERATORS)
def test_every_operator_compiles(operator: str) -> None:
    """Each of the 19 operators with its documented argument shape compiles."""
    key, args = MATCHING_ARGS[operator]
    assert compile_filter(flt(adv(operator, key, **args))) is not None


def test_decode_error_is_exported() -> None:
    """DecodeError is part of the package's public names."""
    with pytest.raises(DecodeError):
        decode_body(b"not json")
