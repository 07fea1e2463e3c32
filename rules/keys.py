"""Advanced-filter keys: parsing ``data.a.b`` paths and resolving them on an event.

Keys follow Event Grid: a top-level attribute of the event's schema, or ``data.`` and a
dot-separated path into the payload, to any depth. Key names match case-insensitively
(Azure ML payloads use PascalCase in the docs and camelCase in real events). A JSON
``null`` reads as missing. ``EventView`` caches what one event resolves, so a rule table
that asks a hundred rules about ``data.runStatus`` walks the payload once.

When an object holds several properties whose names fold to the same name (run tags
``Stage`` and ``stage``, say), one rule picks the property, at each step of the path: the
property spelled exactly as the key's segment, if there is one; otherwise the first, in the
document's order, whose name folds to it. So ``data.runTags.Stage`` and
``data.runTags.stage`` may read different properties, and each key reads the same one in
matching, in ``explain`` and in templates, whatever the order of the rules. Values are
cached per key as written, not per folded key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

from .events import Event
from .folding import fold


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Final = _Missing()
"""The value of a key that the event does not have (or has as JSON null)."""

EVENTGRID_TOP_LEVEL: Final = {
    "ID": "id",
    "TOPIC": "topic",
    "SUBJECT": "subject",
    "EVENTTYPE": "eventType",
    "DATAVERSION": "dataVersion",
}
"""Top-level Event Grid keys a filter may name (folded name -> JSON name)."""

CLOUDEVENTS_NOT_FILTERABLE: Final = frozenset(
    {"TIME", "DATACONTENTTYPE", "DATASCHEMA", "DATA_BASE64"}
)
"""CloudEvents attributes a filter cannot name: the filterable ones are id, source, subject,
type, specversion, extension attributes and ``data.`` paths (like ``eventTime`` in Event Grid)."""


Reader = Callable[[Event], Any]
"""Reads a key's value from an event of one schema."""


@dataclass(frozen=True, slots=True)
class Key:
    """A parsed advanced-filter key."""

    text: str
    segments: tuple[str, ...] = field(repr=False)
    folded: tuple[str, ...] = field(repr=False)
    cache_key: str = field(repr=False)
    """What an ``EventView`` caches this key's value under: the path as written, since keys
    that differ only in case may read different properties (see the module docstring)."""
    read_eventgrid: Reader = field(repr=False, compare=False)
    read_cloudevents: Reader = field(repr=False, compare=False)

    @classmethod
    def parse(cls, text: str) -> Key:
        """Split ``text`` on dots; the caller has checked that no segment is empty."""
        segments = tuple(text.split("."))
        folded = tuple(fold(s) for s in segments)
        return cls(
            text, segments, folded, text, _eventgrid_reader(segments, folded),
            _cloudevents_reader(segments, folded),
        )  # fmt: skip

    def resolve(self, event: Event) -> Any:
        """The key's value in ``event``, or ``MISSING``."""
        if event.schema == "eventgrid":
            return self.read_eventgrid(event)
        return self.read_cloudevents(event)


def _eventgrid_reader(segments: tuple[str, ...], folded: tuple[str, ...]) -> Reader:
    head = folded[0]
    if head == "DATA":
        return partial(_walk, "data", tuple(zip(segments[1:], folded[1:], strict=True)))
    if len(folded) == 1 and head in EVENTGRID_TOP_LEVEL:
        return partial(_walk, "raw", ((EVENTGRID_TOP_LEVEL[head], head),))
    return _missing


def _cloudevents_reader(segments: tuple[str, ...], folded: tuple[str, ...]) -> Reader:
    if folded[0] in CLOUDEVENTS_NOT_FILTERABLE and len(folded) == 1:
        return _missing
    return partial(_walk, "raw", tuple(zip(segments, folded, strict=True)))


def _missing(event: Event) -> Any:
    return MISSING


def _walk(root: str, path: tuple[tuple[str, str], ...], event: Event) -> Any:
    """Follow ``path`` (names as written, folded) from the event's ``data`` or ``raw``
    object; JSON null is missing."""
    node = event.data if root == "data" else event.raw
    for name, folded_name in path:
        if not isinstance(node, dict):
            return MISSING
        value = node.get(name, MISSING)
        if value is MISSING:
            size = len(folded_name)  # folding maps each character to one: lengths must agree
            for candidate, candidate_value in node.items():
                if (
                    len(candidate) == size
                    and (
                        candidate.upper() if candidate.isascii() else fold(candidate)  # fold()
                    )
                    == folded_name
                ):
                    value = candidate_value
                    break
            else:
                return MISSING
        if value is None:
            return MISSING
        node = value
    return MISSING if node is None else node


_UNSET: Final = object()


class EventView:
    """One event plus the values and folded strings already resolved from it."""

    __slots__ = ("_eventgrid", "_folded", "_subject", "_type", "_values", "event")

    def __init__(self, event: Event) -> None:
        self.event = event
        self._eventgrid = event.schema == "eventgrid"
        self._type: str | None = None
        self._subject: str | None = None
        self._values: dict[str, Any] = {}
        self._folded: dict[str, str] = {}

    @property
    def folded_type(self) -> str:
        """The event type folded for case-insensitive comparison."""
        if self._type is None:
            self._type = fold(self.event.type)
        return self._type

    @property
    def folded_subject(self) -> str:
        """The subject folded for case-insensitive comparison (``""`` when there is none)."""
        if self._subject is None:
            subject = self.event.subject
            self._subject = "" if subject is None else fold(subject)
        return self._subject

    def value(self, key: Key) -> Any:
        """The value of ``key`` (``MISSING`` when absent or null), resolved once."""
        value = self._values.get(key.cache_key, _UNSET)
        if value is _UNSET:
            read = key.read_eventgrid if self._eventgrid else key.read_cloudevents
            value = self._values[key.cache_key] = read(self.event)
        return value

    def folded_string(self, key: Key, value: str) -> str:
        """``fold(value)`` for the scalar string ``value`` of ``key``, computed once."""
        folded = self._folded.get(key.cache_key)
        if folded is None:
            folded = value.upper() if value.isascii() else fold(value)  # fold(), inlined
            self._folded[key.cache_key] = folded
        return folded
