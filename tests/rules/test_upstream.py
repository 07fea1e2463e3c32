"""The upstream filter of a rule table: what one Event Grid subscription may filter for all
rules, and the guarantee that it never drops an event a rule matches."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules import Event, RuleSource, RuleTable, RuleTableError, compile_filter, decode_body
from rules import load_table as _load_table
from rules.azureml import EVENT_TYPES
from rules.upstream import Subscription, UpstreamFilter, upstream_filter

ML = "Microsoft.MachineLearningServices."
BLOB_CREATED = "Microsoft.Storage.BlobCreated"


def table(*filters: dict[str, Any]) -> RuleTable:
    """A table with one rule per filter (named r0, r1, ...), loaded from JSON."""
    rules = [
        {"name": f"r{i}", "filter": f, "actions": [{"type": "log"}]} for i, f in enumerate(filters)
    ]
    return _load_table([RuleSource("rules.json", json.dumps({"rules": rules}))]).table


def pushed(*filters: dict[str, Any]) -> dict[str, Any]:
    return upstream_filter(table(*filters)).filter.to_json()


def event(event_type: str, subject: str) -> Event:
    body = {
        "topic": "/subscriptions/s/resourceGroups/g/providers/"
        "Microsoft.MachineLearningServices/workspaces/w",
        "subject": subject,
        "eventType": event_type,
        "eventTime": "2026-01-01T00:00:00Z",
        "id": "e1",
        "data": {"k": "v"},
        "dataVersion": "",
        "metadataVersion": "1",
    }
    return decode_body(json.dumps([body]).encode())[0]


# --------------------------------------------------------------------------------------
# Event types
# --------------------------------------------------------------------------------------


def test_event_types_are_the_union_of_the_rules_spelled_as_event_grid_registers_them() -> None:
    """Each type once, in a fixed order, with Event Grid's spelling whatever the rule wrote."""
    spec = pushed(
        {"includedEventTypes": [ML + "ModelRegistered", ML + "RunCompleted"]},
        {"includedEventTypes": [(ML + "runcompleted").upper(), ML + "ModelDeployed"]},
    )
    assert spec == {
        "includedEventTypes": [ML + "ModelRegistered", ML + "ModelDeployed", ML + "RunCompleted"]
    }


@pytest.mark.parametrize(
    "unrestricted", [{}, {"includedEventTypes": ["All"]}, {"subjectEndsWith": "x"}]
)
def test_event_types_are_omitted_when_a_rule_names_none(unrestricted: dict[str, Any]) -> None:
    """A rule without a type restriction matches every type: no list may leave one out."""
    found = upstream_filter(table({"includedEventTypes": [ML + "RunCompleted"]}, unrestricted))
    assert "includedEventTypes" not in found.filter.to_json()
    assert "includedEventTypes not set: rule 'r1' names no event type" in found.notes


def test_types_an_azure_ml_workspace_never_publishes_are_left_out_with_a_warning() -> None:
    """Event Grid refuses types the source does not publish; the rule that names one is told,
    and a rule that names only such types does not weaken the subject filter."""
    found = upstream_filter(
        table(
            {
                "includedEventTypes": [ML + "ModelRegistered", BLOB_CREATED],
                "subjectBeginsWith": "m",
            },
            {"includedEventTypes": [BLOB_CREATED]},
        )
    )
    assert found.filter.to_json() == {
        "includedEventTypes": [ML + "ModelRegistered"],
        "subjectBeginsWith": "m",
    }
    assert [w.message_at() for w in found.warnings] == [
        f"rules.json:1: rule 'r{i}': filter.includedEventTypes: {BLOB_CREATED}: not an Azure ML "
        "event type; the workspace never publishes it, so the subscription leaves it out"
        for i in (0, 1)
    ]


def test_a_table_without_an_azure_ml_rule_has_nothing_to_subscribe_to() -> None:
    with pytest.raises(RuleTableError, match="no rule matches an Azure ML event type"):
        upstream_filter(table({"includedEventTypes": [BLOB_CREATED]}))


# --------------------------------------------------------------------------------------
# Subject
# --------------------------------------------------------------------------------------


def test_subject_filters_are_the_longest_prefix_and_suffix_every_rule_shares() -> None:
    spec = pushed(
        {"subjectBeginsWith": "models/credit-risk", "subjectEndsWith": "s/runs/7"},
        {"subjectBeginsWith": "models/credit-scoring", "subjectEndsWith": "runs/7"},
    )
    assert spec == {"subjectBeginsWith": "models/credit-", "subjectEndsWith": "runs/7"}


def test_subject_filters_are_omitted_when_a_rule_has_none_or_nothing_is_shared() -> None:
    """Each with a note that says why, but none for what no rule asks for."""
    found = upstream_filter(
        table(
            {"subjectBeginsWith": "models/", "subjectEndsWith": ":1"},
            {"subjectBeginsWith": "endpoints/"},
        )
    )
    assert found.filter.to_json() == {}
    assert found.notes[1:] == (
        "subjectBeginsWith not set: the rules' subjectBeginsWith values have nothing in common",
        "subjectEndsWith not set: rule 'r1' has none",
    )
    unasked = upstream_filter(table({"includedEventTypes": [ML + "RunCompleted"]}))
    assert unasked.filter.to_json() == {"includedEventTypes": [ML + "RunCompleted"]}
    assert unasked.notes == ()


def test_subjects_compare_ignoring_case_unless_every_rule_minds_case() -> None:
    """The prefix is found ignoring case and written as the first rule writes it; a rule that
    minds case does not make the upstream filter mind it while another rule does not."""
    assert pushed(
        {"subjectBeginsWith": "Models/Crédit-A", "isSubjectCaseSensitive": True},
        {"subjectBeginsWith": "models/CRÉDIT-b"},
    ) == {"subjectBeginsWith": "Models/Crédit-"}
    assert pushed(
        {"subjectBeginsWith": "Models/a", "isSubjectCaseSensitive": True},
        {"subjectBeginsWith": "Models/b", "isSubjectCaseSensitive": True},
    ) == {"subjectBeginsWith": "Models/", "isSubjectCaseSensitive": True}
    assert (
        pushed(
            {"subjectBeginsWith": "Models/a", "isSubjectCaseSensitive": True},
            {"subjectBeginsWith": "models/a", "isSubjectCaseSensitive": True},
        )
        == {}
    )


def test_a_prefix_longer_than_event_grid_allows_is_cut_short() -> None:
    """512 characters at most: a shorter prefix passes more, so it still drops nothing."""
    long = "models/" + "x" * 600
    found = upstream_filter(table({"subjectBeginsWith": long}, {"subjectBeginsWith": long + "y"}))
    assert found.filter.subject_begins_with == long[:512]
    assert [w.message_at() for w in found.warnings] == [
        "filter.subjectBeginsWith: subjectBeginsWith cut to Event Grid's 512 characters"
    ]
    assert compile_filter(found.filter.to_json()).matches(event(ML + "RunCompleted", long + "y"))


def test_advanced_filters_are_never_pushed() -> None:
    """Two rules with advanced filters on different keys: no AND of filters is their union."""
    advanced = {"operatorType": "StringIn", "key": "data.runStatus", "values": ["Failed"]}
    spec = pushed(
        {"includedEventTypes": [ML + "RunStatusChanged"], "advancedFilters": [advanced]},
        {"includedEventTypes": [ML + "RunStatusChanged"], "advancedFilters": [advanced]},
    )
    assert spec == {"includedEventTypes": [ML + "RunStatusChanged"]}


# --------------------------------------------------------------------------------------
# The guarantee
# --------------------------------------------------------------------------------------

SUBJECT_LETTERS = "aAbBéÉ/:"
affixes = st.sampled_from(["", "a", "A", "ab", "aB", "Ab/", "é", "É/", "ab:", "/b"])
"""Subject filters that often share a prefix or suffix, and differ in case."""
type_spellings = st.sampled_from([*EVENT_TYPES, BLOB_CREATED]).flatmap(
    lambda t: st.sampled_from([t, t.lower(), t.upper()])
)
subjects = st.text(SUBJECT_LETTERS, max_size=5)
rule_filters = st.fixed_dictionaries(
    {},
    optional={
        "includedEventTypes": st.lists(type_spellings, min_size=1, max_size=3),
        "subjectBeginsWith": affixes,
        "subjectEndsWith": affixes,
        "isSubjectCaseSensitive": st.booleans(),
        "advancedFilters": st.just(
            [{"operatorType": "StringIn", "key": "data.k", "values": ["v", "w"]}]
        ),
    },
)


def _flip_case(text: str, flips: list[bool]) -> str:
    return "".join(
        c.swapcase() if flip else c
        for c, flip in zip(text, flips + [False] * len(text), strict=False)
    )


@settings(max_examples=300, deadline=None)
@given(filters=st.lists(rule_filters, min_size=1, max_size=4), data=st.data())
def test_every_event_a_rule_matches_passes_the_upstream_filter(
    filters: list[dict[str, Any]], data: st.DataObject
) -> None:
    """Whatever the rules, an Azure ML event that some rule matches passes the exported filter,
    evaluated by the engine itself: the subscription never drops an event a rule wants.

    Events are drawn near the rules (a rule's prefix, then anything, then its suffix, with
    letters' case flipped at random) so that many of them match."""
    rules = table(*filters)
    if all(
        r.filter.event_types is not None and not _azureml(r.filter.event_types) for r in rules.rules
    ):
        with pytest.raises(RuleTableError):
            upstream_filter(rules)
        return
    upstream = compile_filter(upstream_filter(rules).filter.to_json())
    matched = 0
    for _ in range(8):
        near = data.draw(st.sampled_from(filters))
        subject = (
            near.get("subjectBeginsWith", "")
            + data.draw(subjects)
            + near.get("subjectEndsWith", "")
        )
        subject = _flip_case(subject, data.draw(st.lists(st.booleans(), max_size=12)))
        kind = data.draw(st.sampled_from(EVENT_TYPES))
        sample = event(kind, subject)
        if rules.match(sample):
            matched += 1
            assert upstream.matches(sample), (sample.type, sample.subject)


def _azureml(types: frozenset[str]) -> bool:
    return any(t.upper() in types for t in EVENT_TYPES)


def test_the_upstream_filter_passes_only_what_the_rules_could_want() -> None:
    """Not a filter that passes everything: a type no rule names, a subject outside every
    rule's prefix, are dropped."""
    upstream = compile_filter(
        pushed(
            {"includedEventTypes": [ML + "ModelRegistered"], "subjectBeginsWith": "models/a"},
            {"includedEventTypes": [ML + "ModelDeployed"], "subjectBeginsWith": "models/b"},
        )
    )
    assert upstream.matches(event(ML + "ModelDeployed", "MODELS/b:1"))
    assert not upstream.matches(event(ML + "RunCompleted", "models/a:1"))
    assert not upstream.matches(event(ML + "ModelRegistered", "endpoints/a"))


# --------------------------------------------------------------------------------------
# The subscription model
# --------------------------------------------------------------------------------------


def test_the_subscription_properties_deliver_to_the_hub_with_the_upstream_filter() -> None:
    subscription = Subscription(
        UpstreamFilter((ML + "RunCompleted",)), "feed", "CloudEventSchemaV1_0"
    )
    assert subscription.properties("HUB") == {
        "eventDeliverySchema": "CloudEventSchemaV1_0",
        "destination": {"endpointType": "EventHub", "properties": {"resourceId": "HUB"}},
        "filter": {"includedEventTypes": [ML + "RunCompleted"]},
    }
    assert "filter" not in Subscription(UpstreamFilter()).properties("HUB")


@pytest.mark.parametrize(
    ("name", "schema"),
    [("ab", "EventGridSchema"), ("a_b_c", "EventGridSchema"), ("x" * 65, "EventGridSchema"),
     ("feed", "CloudEventSchema"), ("feed", "CustomInputSchema")],
)  # fmt: skip
def test_a_subscription_event_grid_would_refuse_is_refused(name: str, schema: str) -> None:
    with pytest.raises(ValueError, match=r"subscription name|delivery schema"):
        Subscription(UpstreamFilter(), name, schema)
