"""Event Grid subscription documents read as rules: az output, ARM resources and REST
bodies, ARM templates (expressions included), lists; where their problems are reported."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rules import RuleSource, RuleTableError, check_rules, load_table
from rules.armexpressions import HOLE, UNKNOWN, evaluate
from rules.subscriptions import is_subscription_document

ML = "Microsoft.MachineLearningServices."
WORKSPACE = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
    "Microsoft.MachineLearningServices/workspaces/mlw"
)
HUB = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/"
    "Microsoft.EventHub/namespaces/mlevents-ns/eventhubs/events"
)
FILTER = {
    "advancedFilters": [
        {"key": "data.runStatus", "operatorType": "StringIn", "values": ["Failed"]}
    ],
    "enableAdvancedFilteringOnArrays": None,
    "includedEventTypes": [ML + "RunStatusChanged"],
    "isSubjectCaseSensitive": False,
    "subjectBeginsWith": "experiments/",
    "subjectEndsWith": "",
}


def show(name: str = "failed-runs", flt: Any = FILTER) -> dict[str, Any]:
    """What ``az eventgrid event-subscription show`` prints (properties flattened, nulls kept)."""
    return {
        "deadLetterDestination": None,
        "deadLetterWithResourceIdentity": None,
        "deliveryWithResourceIdentity": None,
        "destination": {
            "deliveryAttributeMappings": None,
            "endpointType": "EventHub",
            "resourceId": HUB,
        },
        "eventDeliverySchema": "EventGridSchema",
        "expirationTimeUtc": None,
        "filter": flt,
        "id": f"{WORKSPACE}/providers/Microsoft.EventGrid/eventSubscriptions/{name}",
        "labels": None,
        "name": name,
        "provisioningState": "Succeeded",
        "resourceGroup": "rg",
        "retryPolicy": {"eventTimeToLiveInMinutes": 1440, "maxDeliveryAttempts": 30},
        "systemData": None,
        "topic": WORKSPACE.lower(),
        "type": "Microsoft.EventGrid/eventSubscriptions",
    }


def arm_resource(name: Any, flt: Any = FILTER, **extra: Any) -> dict[str, Any]:
    return {
        "type": "Microsoft.EventGrid/systemTopics/eventSubscriptions",
        "apiVersion": "2025-02-15",
        "name": name,
        "properties": {
            "destination": {"endpointType": "EventHub", "properties": {"resourceId": HUB}},
            "filter": flt,
        },
        **extra,
    }


def template(*resources: dict[str, Any], parameters: Any = None) -> dict[str, Any]:
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": parameters or {},
        "resources": list(resources),
    }


def load(document: Any, name: str = "sub.json", *, indent: int | None = 2) -> list[Any]:
    text = json.dumps(document, indent=indent)
    return list(load_table([RuleSource(name, text)], subscriptions=True).table.rules)


def problems(document: Any, name: str = "sub.json") -> list[str]:
    with pytest.raises(RuleTableError) as caught:
        load_table([RuleSource(name, json.dumps(document, indent=2))], subscriptions=True)
    return [p.message_at() for p in caught.value.problems]


# --------------------------------------------------------------------------------------
# The documents
# --------------------------------------------------------------------------------------


def test_az_show_output_is_a_rule_named_after_the_subscription_with_its_filter() -> None:
    """The filter at the top level; no actions, and no warning about it (it is expected)."""
    text = json.dumps(show(), indent=2)
    loaded = load_table([RuleSource("show.json", text)], subscriptions=True)
    (rule,) = loaded.table.rules
    assert (rule.name, rule.actions, rule.file) == ("failed-runs", (), "show.json")
    assert rule.line == text.splitlines().index('  "name": "failed-runs",') + 1
    assert rule.filter.source == FILTER
    assert loaded.warnings == ()


def test_an_arm_resource_or_rest_body_has_its_filter_under_properties() -> None:
    """A child's ``topic/name`` gives its last segment, the legacy form too; a REST body,
    which has no name, is named after its file."""
    (child,) = load(arm_resource("ws-events/feed"))
    assert (child.name, child.filter.source) == ("feed", FILTER)
    legacy = arm_resource(
        "mlw/Microsoft.EventGrid/old-feed", type="Microsoft.Foo/bars/providers/eventSubscriptions"
    )
    assert load(legacy)[0].name == "old-feed"
    rest = {"properties": {"destination": {"endpointType": "EventHub"}, "filter": FILTER}}
    (body,) = load(rest, "bodies/put.json")
    assert (body.name, body.filter.source) == ("put.json", FILTER)


def test_every_subscription_of_an_arm_template_is_a_rule() -> None:
    """Top-level resources, child resources (short type) and nested deployments, each with
    its own parameters; names that are expressions are evaluated."""
    child = {"type": "eventSubscriptions", "apiVersion": "2025-02-15", "name": "child-feed",
             "properties": {"filter": {"subjectEndsWith": ".json"}}}  # fmt: skip
    topic = {"type": "Microsoft.EventGrid/systemTopics", "name": "t", "resources": [child]}
    nested = {
        "type": "Microsoft.Resources/deployments",
        "name": "module",
        "properties": {
            "template": template(
                arm_resource("[format('{0}/{1}', 't', parameters('name'))]"),
                parameters={"name": {"type": "string", "defaultValue": "nested-feed"}},
            )
        },
    }
    feed = arm_resource("[format('{0}/{1}', parameters('topicName'), 'mlevents-feed')]")
    document = template(topic, feed, nested, parameters={"topicName": {"type": "string"}})
    rules = load(document)
    assert [r.name for r in rules] == ["child-feed", "mlevents-feed", "nested-feed"]
    assert rules[0].filter.source == {"subjectEndsWith": ".json"}


def test_a_list_of_subscriptions_is_a_rule_for_each() -> None:
    """What ``az eventgrid ... event-subscription list`` prints."""
    rules = load([show("one"), show("two", {"includedEventTypes": [ML + "ModelRegistered"]})])
    assert [r.name for r in rules] == ["one", "two"]


def test_template_expressions_in_a_filter_are_evaluated_where_they_can_be() -> None:
    """Parameter defaults are read; ``[[`` is a literal bracket; what cannot be evaluated
    offline is a problem at its key."""
    flt = {"subjectBeginsWith": "[parameters('prefix')]", "subjectEndsWith": "[[x]"}
    parameters = {"prefix": {"type": "string", "defaultValue": "models/"}}
    (rule,) = load(template(arm_resource("feed", flt), parameters=parameters))
    assert rule.filter.source == {"subjectBeginsWith": "models/", "subjectEndsWith": "[x]"}
    unknown = {"includedEventTypes": ["[parameters('kind')]"]}
    assert problems(template(arm_resource("feed", unknown))) == [
        "sub.json:9: rule 'feed': resources[0].properties.filter.includedEventTypes[0]: the "
        "template expression \"[parameters('kind')]\" cannot be evaluated offline"
    ]


def test_a_template_name_that_cannot_be_evaluated_falls_back_to_where_it_is() -> None:
    (rule,) = load(template(arm_resource("[concat(uniqueString(resourceGroup().id), '/x')]")))
    assert rule.name == "x"
    (rule,) = load(template(arm_resource("[format('{0}/{1}', 't', parameters('missing'))]")))
    assert rule.name == "sub.json:resources[0]"


# --------------------------------------------------------------------------------------
# Problems: file, line, rule and the key where the document has it
# --------------------------------------------------------------------------------------


def test_a_bad_filter_is_reported_at_its_place_in_each_document_shape() -> None:
    bad = {"advancedFilters": [{"key": "data.x", "operatorType": "stringin", "values": ["a"]}]}
    message = "operatorType 'stringin' is not an Event Grid operator (did you mean 'StringIn'?)"
    (at_top,) = problems(show("feed", bad))
    assert at_top.startswith("sub.json:")
    assert at_top.endswith(f": rule 'feed': filter.advancedFilters[0].operatorType: {message}")
    (in_resource,) = problems(arm_resource("t/feed", bad))
    assert in_resource == (
        f"sub.json:4: rule 'feed': properties.filter.advancedFilters[0].operatorType: {message}"
    )
    (in_list,) = problems([show("ok"), show("feed", bad)])
    assert f": rule 'feed': [1].filter.advancedFilters[0].operatorType: {message}" in in_list


def test_limit_warnings_and_duplicate_names_work_as_for_rules() -> None:
    flt = {"subjectBeginsWith": "x" * 513}
    checked = check_rules([RuleSource("s.json", json.dumps(show("feed", flt)))], subscriptions=True)
    assert [w.message_at() for w in checked.warnings] == [
        "s.json:1: rule 'feed': filter.subjectBeginsWith: string of 513 characters; "
        "Event Grid allows 512"
    ]
    (duplicate,) = problems([show("feed"), show("feed")])
    assert "duplicate rule name, first defined at sub.json:" in duplicate


def test_without_subscriptions_a_subscription_document_is_refused() -> None:
    """The worker loads rules with actions: a subscription there is a mistake, said so."""
    with pytest.raises(RuleTableError) as caught:
        load_table([RuleSource("show.json", json.dumps(show()))])
    assert [p.message_at() for p in caught.value.problems] == [
        "show.json: is an Event Grid event subscription, not a rules document: match, test, "
        "explain and lint read its filter, but the worker needs rules with actions"
    ]


def test_a_template_without_a_subscription_is_a_problem() -> None:
    topic = {"type": "Microsoft.EventGrid/systemTopics", "name": "t", "properties": {}}
    assert problems(template(topic)) == [
        "sub.json: an ARM template with no Event Grid event subscription"
    ]


# --------------------------------------------------------------------------------------
# Telling documents apart, and expressions
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (show(), True),
        (arm_resource("x"), True),
        ({"properties": {"destination": {}}}, True),
        (template(), True),
        ([show(), show()], True),
        ({"rules": [], "filter": {}, "destination": {}}, False),
        ([{"eventType": ML + "RunCompleted", "subject": "x", "data": {}}], False),
        ([{"specversion": "1.0", "type": ML + "RunCompleted", "source": "/s"}], False),
        ({"eventType": ML + "RunCompleted", "subject": "x", "data": {}}, False),
        ([], False),
        ({"cases": []}, False),
    ],
)
def test_subscription_documents_are_told_from_rules_and_events(
    document: Any, expected: bool
) -> None:
    assert is_subscription_document(document) is expected


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("plain", "plain"),
        ("[[literal]", "[literal]"),
        ("[['not escaped'", "[['not escaped'"),
        ("['it''s']", "it's"),
        ("[parameters('P')]", "p-default"),
        ("[variables('v')]", "from-v"),
        ("[format('{0}/{1}-{2}', parameters('p'), 'b', 3)]", "p-default/b-3"),
        ("[concat('a', variables('V'))]", "afrom-v"),
        ("[format('{0}/x', parameters('none'))]", f"{HOLE}/x"),
        ("[resourceGroup().location]", UNKNOWN),
        ("[parameters('p').length]", UNKNOWN),
        ("[format('{0}']", UNKNOWN),
        ("[parameters('loop')]", UNKNOWN),
    ],
)
def test_template_expressions_evaluate_as_far_as_names_need(expression: str, value: Any) -> None:
    scope = {
        "parameters": {
            "p": {"type": "string", "defaultValue": "p-default"},
            "none": {"type": "string"},
            "loop": {"type": "string", "defaultValue": "[parameters('loop')]"},
        },
        "variables": {"v": "from-v"},
    }
    assert evaluate(expression, scope) == value
