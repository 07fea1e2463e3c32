"""Event Grid event subscriptions read as rules: a deployed filter, checked offline.

``mlevents match``, ``test`` and ``explain`` take a subscription document wherever they take
a rules file: each subscription in it becomes a rule named after the subscription, with its
``filter`` and no actions. So the filter Event Grid applies can be tested against recorded
events (and against the rules behind it) before or after it is deployed. The documents:

- what ``az eventgrid event-subscription show`` (or ``... system-topic event-subscription
  show``) prints: ``filter`` at the top level, next to ``destination``;
- an ARM resource, a REST body or ``az resource show``: ``properties.filter``;
- an ARM template (``resources``, with a deploymentTemplate ``$schema`` or a
  ``contentVersion``): every ``eventSubscriptions`` resource, child resources and nested
  deployments included. Names and filter values written as template expressions are read
  as far as ``rules.armexpressions`` can (parameter defaults, ``format``, ``concat``);
- a JSON list of subscriptions (``az ... list``).

A child's name (``topic/feed``) and the legacy ``<resource>/Microsoft.EventGrid/<name>``
give the rule the last segment. ``is_subscription_document`` tells these from rules
documents and event files; ``find_subscriptions`` lists what is in one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .armexpressions import evaluate, is_expression, unknown_within
from .errors import Problem


@dataclass(frozen=True, slots=True)
class FoundSubscription:
    """One event subscription in a document."""

    name: str | None
    """Its name; ``None`` when it has none (a REST body) or it cannot be evaluated."""
    written_name: str | None
    """The name as written in the document (to find its line)."""
    filter: Any
    """The ``filter`` object (``None`` when it has none: it passes every event)."""
    at: str
    """Where the subscription is in the document (``""``, ``[0]``, ``resources[1]``)."""
    where: str
    """Where its filter is: the prefix of problem keys (``resources[1].properties.filter``)."""
    problems: tuple[Problem, ...] = ()
    """Template expressions in the filter that cannot be evaluated, each at its key."""


def is_subscription_document(document: Any) -> bool:
    """Whether a parsed JSON document is one of the subscription documents above."""
    if isinstance(document, list):
        return bool(document) and all(_is_subscription(item) for item in document)
    if not isinstance(document, dict) or "rules" in document:
        return False
    return _is_template(document) or _is_subscription(document)


def find_subscriptions(document: Any) -> list[FoundSubscription]:
    """Every subscription in a document ``is_subscription_document`` accepts, in order."""
    if isinstance(document, list):
        return [_read(item, f"[{index}]", None) for index, item in enumerate(document)]
    if _is_template(document):
        return list(_in_template(document, ""))
    # A resource cut from a template (it has an apiVersion) may hold expressions, unknown
    # without the template's parameters; REST bodies and az output hold none.
    return [_read(document, "", {} if "apiVersion" in document else None)]


def _is_template(document: Mapping[str, Any]) -> bool:
    schema = document.get("$schema")
    return isinstance(document.get("resources"), list | dict) and (
        "contentVersion" in document
        or (isinstance(schema, str) and "deploymenttemplate" in schema.lower())
    )


def _is_subscription(document: Any) -> bool:
    if not isinstance(document, dict):
        return False
    kind = document.get("type")
    if isinstance(kind, str) and kind.lower().endswith("/eventsubscriptions"):
        return True
    body = document.get("properties")
    delivery = ("destination", "deliveryWithResourceIdentity")
    if isinstance(body, dict) and any(k in body for k in delivery):
        return True  # a REST body
    return "filter" in document and any(k in document for k in delivery)


def _is_subscription_resource(resource: Mapping[str, Any]) -> bool:
    kind = resource.get("type")
    return isinstance(kind, str) and kind.lower().split("/")[-1] == "eventsubscriptions"


def _in_template(template: Mapping[str, Any], at: str) -> Iterator[FoundSubscription]:
    """The subscriptions among a template's resources, their children and nested templates;
    each nested template has its own parameters."""
    yield from _in_resources(template.get("resources"), f"{at}resources", template)


def _in_resources(
    resources: Any, at: str, template: Mapping[str, Any]
) -> Iterator[FoundSubscription]:
    if isinstance(resources, dict):  # symbolic names (languageVersion 2.0)
        entries = [(f"{at}.{name}", r) for name, r in resources.items()]
    elif isinstance(resources, list):
        entries = [(f"{at}[{index}]", r) for index, r in enumerate(resources)]
    else:
        return
    for where, resource in entries:
        if not isinstance(resource, dict):
            continue
        if _is_subscription_resource(resource):
            yield _read(resource, where, template)
        yield from _in_resources(resource.get("resources"), f"{where}.resources", template)
        kind = resource.get("type")
        body = resource.get("properties")
        if isinstance(kind, str) and kind.lower() == "microsoft.resources/deployments":
            nested = body.get("template") if isinstance(body, dict) else None
            if isinstance(nested, dict):
                yield from _in_template(nested, f"{where}.properties.template.")


def _read(
    document: Mapping[str, Any], at: str, template: Mapping[str, Any] | None
) -> FoundSubscription:
    """One subscription; ``template`` is its template (``None``: no expressions)."""
    body = document.get("properties")
    if isinstance(body, dict):
        spec, where = body.get("filter"), _join(at, "properties.filter")
    else:
        spec, where = document.get("filter"), _join(at, "filter")
    written = document.get("name")
    written_name = written if isinstance(written, str) else None
    name = written_name
    problems: tuple[Problem, ...] = ()
    if template is not None:
        name = _evaluated_name(written_name, template)
        spec, problems = _evaluated_filter(spec, where, template)
    if name is not None:
        name = name.rsplit("/", 1)[-1] or None
    return FoundSubscription(name, written_name, spec, at, where, problems)


def _evaluated_name(written: str | None, template: Mapping[str, Any]) -> str | None:
    value = None if written is None else evaluate(written, template)
    if not isinstance(value, str):
        return None
    last = value.rsplit("/", 1)[-1]
    return None if unknown_within(last) else last


def _evaluated_filter(
    spec: Any, where: str, template: Mapping[str, Any]
) -> tuple[Any, tuple[Problem, ...]]:
    """The filter as deployed, and a problem for each expression that cannot be evaluated
    (the filter then keeps the expression text there)."""
    value = evaluate(spec, template)
    problems = [
        Problem(f"the template expression {text!r} cannot be evaluated offline", key=key)
        for key, text in _unknowns(spec, value, where)
    ]
    return (spec if problems else value), tuple(problems)


def _unknowns(written: Any, value: Any, where: str) -> Iterator[tuple[str, str]]:
    if is_expression(written) and unknown_within(value):
        yield where, written
    elif isinstance(written, dict) and isinstance(value, dict):
        for key, item in written.items():
            yield from _unknowns(item, value.get(key), f"{where}.{key}")
    elif isinstance(written, list) and isinstance(value, list):
        for index, item in enumerate(written):
            yield from _unknowns(item, value[index], f"{where}[{index}]")


def _join(at: str, key: str) -> str:
    return f"{at}.{key}" if at else key
