"""The rule table: order, indexes that never change a verdict, plans and idempotency keys."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rules import EventView, plan
from rules.explain import explain_filter
from tests.support.factories import RUN_STATUS_CHANGED, make_event, make_table

TYPES = [RUN_STATUS_CHANGED, "Microsoft.MachineLearningServices.RunCompleted", "Other.Type"]
KEYS = [
    "data.runStatus",
    "data.experimentName",
    "data.runTags.team",
    "subject",
    # Run tags may hold both spellings: these read different properties of one event.
    "data.runTags.Stage",
    "data.runTags.stage",
    "data.RunTags.STAGE",
]
WORDS = ["Failed", "failed", "Completed", "exp", "risk", "ops", ""]

advanced = st.fixed_dictionaries(
    {
        "operatorType": st.sampled_from(["StringIn", "StringNotIn", "StringBeginsWith"]),
        "key": st.sampled_from(KEYS),
        "values": st.lists(st.sampled_from([w for w in WORDS if w]), min_size=1, max_size=3),
    }
)
filters = st.fixed_dictionaries(
    {},
    optional={
        "includedEventTypes": st.lists(st.sampled_from([*TYPES, "All"]), max_size=2),
        "enableAdvancedFilteringOnArrays": st.booleans(),
        "advancedFilters": st.lists(advanced, max_size=3),
    },
)
scalars = st.one_of(st.sampled_from(WORDS), st.integers(-2, 2), st.none())
values = st.one_of(scalars, st.lists(scalars, max_size=3))


@st.composite
def events(draw: st.DrawFn) -> Any:
    tags = {"team": draw(values)}
    for spelling in draw(st.lists(st.sampled_from(["Stage", "stage", "STAGE"]), unique=True)):
        tags[spelling] = draw(values)
    data = {
        "runStatus": draw(values),
        "experimentName": draw(values),
        "runTags": tags,
    }
    return make_event(eventType=draw(st.sampled_from(TYPES)), data=data)


@settings(max_examples=300, deadline=None)
@given(st.lists(filters, min_size=1, max_size=12), st.lists(events(), min_size=1, max_size=4))
def test_indexed_match_equals_trying_every_rule(specs: list[Any], evs: list[Any]) -> None:
    """The type and StringIn indexes only skip rules whose filter would fail anyway."""
    table = make_table(*({"name": f"r{i}", "filter": f} for i, f in enumerate(specs)))
    for event in evs:
        expected = [r.name for r in table.rules if r.filter.matches(event)]
        assert [r.name for r in table.match(event)] == expected
        assert [r.name for r in table.match(EventView(event))] == expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(filters, min_size=1, max_size=12),
    st.lists(events(), min_size=1, max_size=4),
    st.randoms(use_true_random=False),
)
def test_the_matched_set_does_not_depend_on_the_order_of_the_rules(
    specs: list[Any], evs: list[Any], rnd: Any
) -> None:
    """Any permutation of the table matches the same rules (listed in its own order), and
    ``explain`` says so for every rule and event."""
    named = [{"name": f"r{i}", "filter": f} for i, f in enumerate(specs)]
    shuffled = list(named)
    rnd.shuffle(shuffled)
    table, permuted = make_table(*named), make_table(*shuffled)
    for event in evs:
        matched = {r.name for r in table.match(event)}
        assert {r.name for r in permuted.match(event)} == matched
        view = EventView(event)
        explained = {r.name for r in table.rules if explain_filter(r.filter, view).matched}
        assert explained == matched


def test_keys_differing_only_in_case_read_their_own_spelling_in_any_order() -> None:
    """An event with both run tags ``Stage`` and ``stage``: a rule keyed on each matches on
    its own property, in either order of the table, and explain agrees."""
    event = make_event(data={"runTags": {"Stage": "prod", "stage": "dev"}})
    upper, lower, other = (
        _string_in(name, key, value)
        for name, key, value in [
            ("upper", "data.runTags.Stage", "prod"),
            ("lower", "data.runTags.stage", "dev"),
            ("other", "data.runTags.STAGE", "prod"),
        ]
    )
    for order in ([upper, lower, other], [other, lower, upper]):
        table = make_table(*order)
        assert {r.name for r in table.match(event)} == {"upper", "lower", "other"}
        view = EventView(event)
        assert all(explain_filter(r.filter, view).matched for r in table.rules)
    # No exact spelling: the first property in document order that folds to the key.
    first = make_event(data={"runTags": {"stage": "dev", "Stage": "prod"}})
    assert [r.name for r in make_table(other).match(first)] == []


def _string_in(name: str, key: str, value: str) -> dict[str, Any]:
    advanced = [{"operatorType": "StringIn", "key": key, "values": [value]}]
    return {"name": name, "filter": {"advancedFilters": advanced}}


def test_matches_come_back_in_table_order() -> None:
    """Rules are returned in the order they were written, whatever the index does."""
    table = make_table(
        {"name": "z-last-typed", "filter": {"includedEventTypes": [RUN_STATUS_CHANGED]}},
        {"name": "a-any", "filter": {}},
        {
            "name": "m-guarded",
            "filter": {
                "advancedFilters": [
                    {"operatorType": "StringIn", "key": "data.runStatus", "values": ["failed"]}
                ]
            },
        },
    )
    assert [r.name for r in table.match(make_event())] == ["z-last-typed", "a-any", "m-guarded"]


def test_events_matching_the_same_rules_get_the_same_result_object() -> None:
    """One tuple per set of matched rules, so the worker can remember per set what to do."""
    table = make_table(
        {"name": "any", "filter": {}},
        {
            "name": "failed",
            "filter": {
                "advancedFilters": [
                    {"operatorType": "StringIn", "key": "data.runStatus", "values": ["failed"]}
                ]
            },
        },
    )
    first, again = table.match(make_event()), table.match(make_event(id="other"))
    completed = table.match(make_event(data={"runStatus": "Completed"}))
    assert [r.name for r in first] == ["any", "failed"]
    assert first is again
    assert [r.name for r in completed] == ["any"]
    assert completed is table.match(make_event(data={"runStatus": "Running"}))


def test_guarded_rule_with_array_flag_matches_any_element() -> None:
    """A StringIn guard on an array value looks up every element when arrays are enabled."""
    table = make_table(
        {
            "name": "team",
            "filter": {
                "enableAdvancedFilteringOnArrays": True,
                "advancedFilters": [
                    {"operatorType": "StringIn", "key": "data.teams", "values": ["RISK"]}
                ],
            },
        }
    )
    assert [r.name for r in table.match(make_event(data={"teams": ["ops", "risk"]}))] == ["team"]
    assert table.match(make_event(data={"teams": ["ops"]})) == ()


def test_plan_lists_every_action_with_a_stable_idempotency_key() -> None:
    """Each action of each matched rule becomes a decision keyed by event, rule and position."""
    table = make_table(
        {
            "name": "a",
            "filter": {},
            "actions": [{"type": "log"}, {"type": "log", "level": "error"}],
        },
        {"name": "b", "filter": {"includedEventTypes": ["Nope"]}, "actions": [{"type": "log"}]},
    )
    decisions = plan(table, make_event(id="ev-7"))
    assert [d.key for d in decisions] == ["ev-7/a/0", "ev-7/a/1"]
    assert [d.action for d in decisions] == list(table.rules[0].actions)


def test_rule_lookup_by_name() -> None:
    """A table finds a rule by name and raises KeyError for an unknown one."""
    table = make_table({"name": "a"})
    assert table.rule("a").name == "a"
    assert len(table) == 1
    try:
        table.rule("b")
    except KeyError:
        pass
    else:  # pragma: no cover
        raise AssertionError("expected KeyError")
