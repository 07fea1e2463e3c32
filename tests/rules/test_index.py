"""The compiled table: indexes that never change a verdict, and find only what can match.

The property tests compare ``RuleTable.match`` with each rule's filter tried on its own, and
with ``explain``, over tables that use every operator on shared keys (so the indexes hold many
entries per key), keys that differ only in case, arrays with and without the flag, subject
parts and event types. The unit tests pin what makes the cost independent of the table: each
family of index finds exactly the rules whose condition the event satisfies.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rules import EventView, RuleSource, RuleTable, compile_filter, decode_body, load_table
from rules.explain import explain_filter
from rules.index import compile_plan
from tests.support.filters import ALL_OPERATORS, numbers, to_json

TYPES = ["A.B.RunCompleted", "A.B.ModelRegistered", "X.Y"]
KEYS = ["data.k", "data.K", "data.j", "data.tags.Stage", "data.tags.stage", "subject", "id"]
ALPHABET = "aAbBzZß-/0"
texts = st.text(alphabet=ALPHABET, max_size=5)
leaves = st.one_of(st.none(), texts, numbers, st.booleans())
values = st.one_of(
    leaves,
    st.lists(leaves, max_size=4),
    st.dictionaries(st.sampled_from(["k", "x"]), leaves, max_size=2),
)


def table_of(filters: list[dict[str, Any]]) -> RuleTable:
    rules = [{"name": f"r{i}", "filter": f} for i, f in enumerate(filters)]
    return load_table([RuleSource("rules.json", to_json({"rules": rules}))]).table


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from(["k", "K", "j"]), unique=True)):
        data[name] = draw(values)
    tags: dict[str, Any] = {}
    for spelling in draw(st.lists(st.sampled_from(["Stage", "stage", "STAGE"]), unique=True)):
        tags[spelling] = draw(values)
    empty_tags: bool = draw(st.booleans())
    if tags or empty_tags:
        data["tags"] = tags
    return {
        "id": "i" + draw(texts),
        "eventType": draw(st.sampled_from([*TYPES, "a.b.RUNCOMPLETED"])),
        "subject": draw(texts),
        "data": data,
        "dataVersion": "",
        "metadataVersion": "1",
    }


def leaves_in(event: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every string and number in an event with the key that reads it (array elements
    under the array's key), to draw filters that relate to the event."""
    found: list[tuple[str, Any]] = [("subject", event["subject"]), ("id", event["id"])]

    def walk(key: str, node: Any) -> None:
        if isinstance(node, str | int | Decimal) and not isinstance(node, bool):
            found.append((key, node))
        elif isinstance(node, list):
            for item in node:
                walk(key, item)
        elif isinstance(node, dict):
            for name, item in node.items():
                walk(f"{key}.{name}", item)

    walk("data", event["data"])
    return found


Pool = list[tuple[str, Any]]


@st.composite
def filter_numbers(draw: st.DrawFn, pool: Pool) -> Any:
    """A filter number: random, or one of the event's numbers, or next to one."""
    near = [leaf for _, leaf in pool if not isinstance(leaf, str)]
    if not near or draw(st.integers(0, 2)) == 0:
        return draw(numbers)
    return draw(st.sampled_from(near)) + draw(st.sampled_from([0, 0, 1, -1, Decimal("0.5")]))


@st.composite
def filter_strings(draw: st.DrawFn, pool: Pool) -> str:
    """A filter string: random, or a piece of an event string with its case changed."""
    near = [leaf for _, leaf in pool if isinstance(leaf, str) and leaf]
    if not near or draw(st.integers(0, 2)) == 0:
        return draw(st.text(alphabet=ALPHABET, max_size=3))
    base = draw(st.sampled_from(near))
    start = draw(st.integers(0, len(base)))
    end = draw(st.integers(start, len(base)))
    piece = base[start:end]
    return piece.swapcase() if draw(st.booleans()) else piece


@st.composite
def advanced_filters(draw: st.DrawFn, pool: Pool) -> dict[str, Any]:
    """Often about one of the event's values: its key, an operator of its type and values
    drawn near it (equal, a piece, a neighbour); otherwise any operator on any key."""
    operators: list[str] = list(ALL_OPERATORS)
    key = draw(st.sampled_from(KEYS))
    if pool and draw(st.integers(0, 2)) > 0:
        key, leaf = draw(st.sampled_from(pool))
        kind = "String" if isinstance(leaf, str) else "Number"
        operators = [op for op in ALL_OPERATORS if op.startswith(kind)]
        pool = [(k, v) for k, v in pool if k == key]
    op = draw(st.sampled_from(operators))
    entry: dict[str, Any] = {"operatorType": op, "key": key}
    if op in ("IsNullOrUndefined", "IsNotNull"):
        return entry
    if op == "BoolEquals":
        entry["value"] = draw(st.booleans())
    elif op in ("NumberInRange", "NumberNotInRange"):
        pair = st.tuples(filter_numbers(pool), filter_numbers(pool))
        pairs = draw(st.lists(pair, min_size=1, max_size=3))
        entry["values"] = [sorted(pair) for pair in pairs]
    elif op in ("NumberIn", "NumberNotIn"):
        entry["values"] = draw(st.lists(filter_numbers(pool), min_size=1, max_size=3))
    elif op.startswith("Number"):
        entry["value"] = draw(filter_numbers(pool))
    else:
        entry["values"] = draw(st.lists(filter_strings(pool), min_size=1, max_size=3))
    return entry


@st.composite
def filters(draw: st.DrawFn, pool: Pool) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if draw(st.integers(0, 2)) == 0:
        spec["includedEventTypes"] = draw(st.lists(st.sampled_from([*TYPES, "All"]), max_size=2))
    subject = [(key, leaf) for key, leaf in pool if key == "subject"]
    if draw(st.integers(0, 2)) == 0:
        spec["subjectBeginsWith"] = draw(filter_strings(subject))
    if draw(st.integers(0, 2)) == 0:
        spec["subjectEndsWith"] = draw(filter_strings(subject))
    if draw(st.booleans()):
        spec["isSubjectCaseSensitive"] = draw(st.booleans())
    if draw(st.booleans()):
        spec["enableAdvancedFilteringOnArrays"] = True
    spec["advancedFilters"] = draw(st.lists(advanced_filters(pool), max_size=2))
    return spec


@settings(max_examples=400, deadline=None)
@given(st.data(), st.lists(events(), min_size=1, max_size=3))
def test_compiled_match_equals_every_filter_on_its_own_and_explain(
    data: st.DataObject, raw_events: list[dict[str, Any]]
) -> None:
    pool = [leaf for event in raw_events for leaf in leaves_in(event)]
    specs = data.draw(st.lists(filters(pool), min_size=1, max_size=20))
    table = table_of(specs)
    for raw in raw_events:
        (event,) = decode_body(to_json([raw]).encode("utf-8"))
        expected = [rule.name for rule in table.rules if rule.filter.matches(event)]
        assert [rule.name for rule in table.match(event)] == expected
        view = EventView(event)
        explained = [r.name for r in table.rules if explain_filter(r.filter, view).matched]
        assert explained == expected


def event(**data: Any) -> EventView:
    raw = {"id": "1", "eventType": "A.B.C", "subject": "teams/t7/runs/r1", "data": data}
    return EventView(decode_body(to_json([raw]).encode("utf-8"))[0])


def candidates(specs: list[dict[str, Any]], view: EventView) -> list[int]:
    plan = compile_plan([(i, compile_filter(spec)) for i, spec in enumerate(specs)])
    return list(plan.candidates(view))


def one(operator: str, key: str = "data.k", **args: Any) -> dict[str, Any]:
    return {"advancedFilters": [{"operatorType": operator, "key": key, **args}]}


def test_equal_values_find_only_their_rules() -> None:
    specs = [one("StringIn", values=[f"team-{i}", f"alias-{i}"]) for i in range(1000)]
    assert candidates(specs, event(k="TEAM-7")) == [7]
    assert candidates(specs, event(k="alias-999")) == [999]
    numbers = [one("NumberIn", values=[i]) for i in range(1000)]
    assert candidates(numbers, event(k=Decimal("7.0"))) == [7]
    assert candidates(numbers, event(k="7")) == []  # no coercion


def test_prefixes_suffixes_and_substrings_find_only_their_rules() -> None:
    prefixes = [{"subjectBeginsWith": f"teams/t{i}/"} for i in range(1000)]
    assert candidates(prefixes, event()) == [7]
    suffixes = [one("StringEndsWith", values=[f"{i}"]) for i in range(1000)]
    assert candidates(suffixes, event(k="run-17")) == [7, 17]
    needles = [one("StringContains", values=[f"<{i}>"]) for i in range(1000)]
    assert candidates(needles, event(k="a<5>b<500>c<5>")) == [5, 500]


def test_number_bounds_find_the_rules_whose_bound_the_value_passes() -> None:
    above = [one("NumberGreaterThan", value=i) for i in range(1000)]
    assert candidates(above, event(k=Decimal("3.5"))) == [0, 1, 2, 3]
    at_most = [one("NumberLessThanOrEquals", value=i) for i in range(1000)]
    assert candidates(at_most, event(k=997)) == [997, 998, 999]
    ranges = [one("NumberInRange", values=[[i, i + 1]]) for i in range(1000)]
    assert candidates(ranges, event(k=7)) == [6, 7]


def test_arrays_find_through_any_element_only_with_the_flag() -> None:
    specs = [one("StringIn", values=[f"t{i}"]) for i in range(10)]
    flagged = [{**spec, "enableAdvancedFilteringOnArrays": True} for spec in specs]
    assert candidates(specs, event(k=["t1", "t2"])) == []
    assert candidates(flagged, event(k=["t1", 3, "T2", "t1"])) == [1, 2]


def test_a_rule_is_filed_under_its_most_selective_condition() -> None:
    """Every rule shares ``runStatus == Failed``; each has its own team: the team decides."""
    specs = [
        {
            "advancedFilters": [
                {"operatorType": "StringIn", "key": "data.runStatus", "values": ["Failed"]},
                {"operatorType": "NumberGreaterThan", "key": "data.score", "value": 0},
                {"operatorType": "StringContains", "key": "data.name", "values": [f"/t{i}/"]},
            ]
        }
        for i in range(500)
    ]
    assert candidates(specs, event(runStatus="Failed", score=3, name="x/t42/y")) == [42]


def test_equal_conditions_are_one_condition() -> None:
    """Five hundred rules with the same negated condition check it once per event."""
    specs = [
        {
            "advancedFilters": [
                {"operatorType": "StringIn", "key": "data.team", "values": [f"t{i}"]},
                {"operatorType": "StringNotIn", "key": "data.STATUS", "values": ["b", "A"]},
            ]
        }
        for i in range(500)
    ]
    plan = compile_plan([(i, compile_filter(spec)) for i, spec in enumerate(specs)])
    assert len({number for checks in plan.checks.values() for number, _ in checks}) == 1
    assert plan.scanned == ()


def test_rules_without_a_positive_condition_are_tried_on_every_event() -> None:
    specs = [one("StringNotIn", values=["x"]), {}, one("IsNullOrUndefined"), one("IsNotNull")]
    plan = compile_plan([(i, compile_filter(spec)) for i, spec in enumerate(specs)])
    assert plan.scanned == (0, 1, 2)
    assert plan.matching(event(k="y")) == [0, 1, 3]
    assert plan.matching(event()) == [0, 1, 2]
