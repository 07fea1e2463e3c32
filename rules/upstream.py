"""The Event Grid subscription that feeds a rule table: what it may filter before the hub.

One subscription on the Azure ML workspace delivers to the Event Hub that every rule reads,
so its filter may drop only events that no rule can match. ``upstream_filter`` pushes up
the parts of the rules' filters that Event Grid can apply to the whole table:

- ``includedEventTypes``: the union of the rules' event types, or nothing when a rule names
  none (it matches every type);
- ``subjectBeginsWith`` / ``subjectEndsWith``: the longest prefix (suffix) common to every
  rule's, only when every rule has one;
- ``isSubjectCaseSensitive``: only when every rule compares its subject case-sensitively
  (an upstream filter that ignores case passes more, which is harmless; one that minds case
  where a rule does not would drop events the rule matches).

Advanced filters are never pushed. A subscription ANDs its advanced filters; the table
matches an event when any rule does (an OR of ANDs), which AND-ed filters cannot express in
general, and a wrong guess drops events silently. The rules still apply them, downstream.

The workspace publishes only the five Azure ML event types, so a rule's other types are
left out of the subscription (Event Grid refuses types the source does not publish), with a
warning; rules that name only such types do not weaken the subject filters either.
``Subscription`` is the model the ``mlevents export`` renderers (az, Bicep, ARM) share.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from .azureml import EVENT_TYPES
from .errors import Problem, RuleTableError
from .filters import MAX_STRING
from .folding import fold
from .table import Rule, RuleTable

API_VERSION: Final = "2025-02-15"
"""The latest stable Microsoft.EventGrid API version."""
TOPIC_TYPE: Final = "Microsoft.MachineLearningServices.Workspaces"
"""The system topic type of an Azure ML workspace."""
DELIVERY_SCHEMAS: Final = ("EventGridSchema", "CloudEventSchemaV1_0")
"""The delivery schemas that apply to Azure ML events (it publishes the first)."""
SUBSCRIPTION_NAME: Final = re.compile(r"[A-Za-z0-9-]{3,64}")
"""Event Grid's rule for subscription names (whole string): 3 to 64 letters, digits, hyphens."""

_AZUREML_BY_FOLDED: Final = {fold(t): t for t in EVENT_TYPES}


@dataclass(frozen=True, slots=True)
class UpstreamFilter:
    """The part of an Event Grid ``filter`` a subscription applies for a whole rule table."""

    event_types: tuple[str, ...] | None = None
    """Event type names as Event Grid registers them; ``None`` for every type."""
    subject_begins_with: str = ""
    subject_ends_with: str = ""
    subject_case_sensitive: bool = False

    def to_json(self) -> dict[str, Any]:
        """The ``filter`` object: only the parts that filter (``{}`` passes everything)."""
        spec: dict[str, Any] = {}
        if self.event_types is not None:
            spec["includedEventTypes"] = list(self.event_types)
        if self.subject_begins_with:
            spec["subjectBeginsWith"] = self.subject_begins_with
        if self.subject_ends_with:
            spec["subjectEndsWith"] = self.subject_ends_with
        if self.subject_case_sensitive and (self.subject_begins_with or self.subject_ends_with):
            spec["isSubjectCaseSensitive"] = True
        return spec


@dataclass(frozen=True, slots=True)
class Upstream:
    """An upstream filter, why each part is what it is, and what it had to leave out."""

    filter: UpstreamFilter
    notes: tuple[str, ...]
    """Why a part is not pushed (which rule prevents it), for whoever deploys the filter."""
    warnings: tuple[Problem, ...]
    """Event types no workspace publishes, strings cut to Event Grid's 512 characters."""


def upstream_filter(table: RuleTable) -> Upstream:
    """The widest filter Event Grid can apply without dropping an event any rule matches.

    Raises:
        RuleTableError: when no rule can match an Azure ML event.
    """
    warnings: list[Problem] = []
    rules = [rule for rule in table.rules if _can_match_azureml(rule, warnings)]
    if not rules:
        raise RuleTableError(
            [Problem("no rule matches an Azure ML event type: there is nothing to subscribe to")]
        )
    notes: list[str] = []
    untyped = next((rule for rule in rules if rule.filter.event_types is None), None)
    event_types = None
    if untyped is not None:
        notes.append(f"includedEventTypes not set: rule {untyped.name!r} names no event type")
    else:
        wanted = {t for rule in rules for t in rule.filter.event_types or ()}
        event_types = tuple(t for t in EVENT_TYPES if fold(t) in wanted)
    case_sensitive = all(rule.filter.subject_case_sensitive for rule in rules)
    begins = _common(rules, "subjectBeginsWith", case_sensitive, notes, warnings)
    ends = _common(rules, "subjectEndsWith", case_sensitive, notes, warnings)
    upstream = UpstreamFilter(event_types, begins, ends, case_sensitive)
    return Upstream(upstream, tuple(notes), tuple(warnings))


def _can_match_azureml(rule: Rule, warnings: list[Problem]) -> bool:
    """Whether ``rule`` names no event type or an Azure ML one; warns of the others."""
    types = rule.filter.event_types
    if types is None:
        return True
    foreign = [t for t in _written_types(rule) if fold(t) not in _AZUREML_BY_FOLDED]
    if foreign:
        warnings.append(
            Problem(
                f"{', '.join(foreign)}: not an Azure ML event type; the workspace never "
                "publishes it, so the subscription leaves it out",
                key="filter.includedEventTypes",
                rule=rule.name,
                file=rule.file,
                line=rule.line,
            )
        )
    return not types.isdisjoint(_AZUREML_BY_FOLDED)


def _written_types(rule: Rule) -> list[str]:
    written = rule.filter.source.get("includedEventTypes")
    if isinstance(written, list) and all(isinstance(t, str) for t in written):
        return written
    return sorted(rule.filter.event_types or ())


def _common(
    rules: Sequence[Rule],
    field: str,
    case_sensitive: bool,
    notes: list[str],
    warnings: list[Problem],
) -> str:
    """The longest prefix (``subjectBeginsWith``) or suffix (``subjectEndsWith``) of every
    rule's, as the first rule writes it; ``""`` when a rule has none or they share none (with
    a note, unless no rule has one)."""
    suffix = field == "subjectEndsWith"
    written = [_written_subject(rule, field) for rule in rules]
    if not any(written):
        return ""
    if not all(written):
        without = rules[written.index("")]
        notes.append(f"{field} not set: rule {without.name!r} has none")
        return ""
    compared = written if case_sensitive else [fold(t) for t in written]
    if suffix:
        compared = [t[::-1] for t in compared]
    length = _common_prefix_length(compared)
    # Folding keeps lengths (one code point for one), so the length applies to the text
    # as written.
    common = written[0][len(written[0]) - length :] if suffix else written[0][:length]
    if not common:
        notes.append(f"{field} not set: the rules' {field} values have nothing in common")
    if len(common) > MAX_STRING:
        # A shorter prefix (suffix) passes more events: still none dropped.
        common = common[-MAX_STRING:] if suffix else common[:MAX_STRING]
        warnings.append(
            Problem(f"{field} cut to Event Grid's {MAX_STRING} characters", key=f"filter.{field}")
        )
    return common


def _written_subject(rule: Rule, field: str) -> str:
    """The rule's subject filter as written (the compiled one is folded when case-blind)."""
    compiled = (
        rule.filter.subject_ends_with
        if field == "subjectEndsWith"
        else rule.filter.subject_begins_with
    )
    written = rule.filter.source.get(field)
    if isinstance(written, str) and (written == compiled or fold(written) == compiled):
        return written
    return compiled


def _common_prefix_length(texts: Sequence[str]) -> int:
    shortest = min(texts, key=len)
    for index, char in enumerate(shortest):
        if any(text[index] != char for text in texts):
            return index
    return len(shortest)


@dataclass(frozen=True, slots=True)
class Subscription:
    """The event subscription ``mlevents export`` writes: one model, three renderers."""

    filter: UpstreamFilter
    name: str = "mlevents-feed"
    delivery_schema: str = "EventGridSchema"

    def __post_init__(self) -> None:
        if not SUBSCRIPTION_NAME.fullmatch(self.name):
            raise ValueError(
                f"subscription name {self.name!r}: Event Grid wants 3 to 64 letters, digits "
                "and hyphens"
            )
        if self.delivery_schema not in DELIVERY_SCHEMAS:
            raise ValueError(
                f"delivery schema {self.delivery_schema!r}: expected one of "
                f"{', '.join(DELIVERY_SCHEMAS)}"
            )

    def properties(self, event_hub_id: str) -> dict[str, Any]:
        """The resource's ``properties`` (API ``API_VERSION``), delivering to the Event Hub
        ``event_hub_id`` (a resource id, or whatever stands for it in a template)."""
        body: dict[str, Any] = {
            "eventDeliverySchema": self.delivery_schema,
            "destination": {"endpointType": "EventHub", "properties": {"resourceId": event_hub_id}},
        }
        spec = self.filter.to_json()
        if spec:
            body["filter"] = spec
        return body
