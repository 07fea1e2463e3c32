"""Decoding Event Hubs bodies into events.

Owns the ``Event`` value and ``decode_body``: bytes in, a tuple of events out, or one
``DecodeError`` that says what is wrong. Event Grid writes one JSON array holding one
event per Event Hubs message; a bare event object is accepted too. Both the Event Grid
schema and CloudEvents 1.0 (structured JSON) decode; ``specversion`` tells them apart.

Numbers are parsed as ``Decimal`` (floats) and ``int`` (integers), so filters compare them
exactly as Event Grid does with .NET ``decimal``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

import msgspec

from .errors import DecodeError

Schema = Literal["eventgrid", "cloudevents"]

MAX_BODY_BYTES = 1024 * 1024
"""Event Hubs refuses larger messages, so a larger body is not something Event Grid wrote."""

MAX_DEPTH = 64
"""Deepest JSON nesting accepted; Azure ML events are a handful of levels deep."""

_decoder = msgspec.json.Decoder(float_hook=Decimal)


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One decoded event, in either schema, with its original JSON object kept in ``raw``."""

    id: str
    type: str
    """``eventType`` (Event Grid) or ``type`` (CloudEvents)."""
    subject: str | None
    """Required in Event Grid; optional in CloudEvents, where it may be ``None``."""
    source: str | None
    """``topic`` (Event Grid) or ``source`` (CloudEvents)."""
    time: str | None
    schema: Schema
    data: Any
    raw: dict[str, Any]
    """The event object exactly as parsed (numbers as ``int``/``Decimal``)."""


def decode_body(body: bytes | str, *, max_bytes: int = MAX_BODY_BYTES) -> tuple[Event, ...]:
    """Decode one Event Hubs message body into its events.

    Args:
        body: UTF-8 JSON: an array of events or one event object.
        max_bytes: bodies larger than this are refused.

    Returns:
        The events in body order (at least one).

    Raises:
        DecodeError: the body is too large, not UTF-8, not JSON, too deeply nested, or
            holds something that is not an event of either schema.
    """
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    if len(body) > max_bytes:
        raise DecodeError(f"body is {len(body)} bytes, more than the limit of {max_bytes}")
    parsed = _parse_json(body)
    if parsed.__class__ is list and len(parsed) == 1 and parsed[0].__class__ is dict:
        return (_event(parsed[0], 0),)  # what Event Grid writes, every time
    if isinstance(parsed, dict):
        return (_event(parsed, None),)
    if isinstance(parsed, list):
        if not parsed:
            raise DecodeError("body is an empty JSON array: no events")
        return tuple(_event(item, index) for index, item in enumerate(parsed))
    raise DecodeError(f"body is a JSON {_json_type(parsed)}, not an event object or an array")


def _parse_json(body: bytes) -> Any:
    try:
        # msgspec guards its own recursion (RecursionError), so decoding first is safe.
        parsed = _decoder.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as utf8_exc:
            raise DecodeError(
                f"body is not UTF-8: {utf8_exc.reason} at byte {utf8_exc.start}"
            ) from None
        if isinstance(exc, RecursionError):
            raise DecodeError(f"body is nested more than {MAX_DEPTH} levels deep") from None
        raise DecodeError(f"body is not JSON: {exc}") from None
    # Counting brackets is one fast pass; only a body with many of them needs the walk.
    if body.count(b"[") + body.count(b"{") > MAX_DEPTH:
        _check_depth(parsed)
    return parsed


def _check_depth(parsed: Any) -> None:
    level: list[Any] = [parsed]
    for _ in range(MAX_DEPTH):
        level = [child for node in level for child in _children(node)]
        if not level:
            return
    raise DecodeError(f"body is nested more than {MAX_DEPTH} levels deep")


def _children(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [v for v in node.values() if isinstance(v, dict | list)]
    if isinstance(node, list):
        return [v for v in node if isinstance(v, dict | list)]
    return []


def _event(obj: object, index: int | None) -> Event:
    if isinstance(obj, dict) and "specversion" not in obj:
        event = _eventgrid_fast(obj)
        if event is not None:
            return event
    where = "event" if index is None else f"event [{index}]"
    if not isinstance(obj, dict):
        raise DecodeError(f"{where} is a JSON {_json_type(obj)}, not an object")
    if "specversion" in obj:
        return _cloud_event(obj, where)
    return _eventgrid_event(obj, where)


def _eventgrid_fast(obj: dict[str, Any]) -> Event | None:
    """The event, when every envelope field is what Event Grid writes; else ``None``, and
    ``_eventgrid_event`` says what is wrong."""
    event_id, event_type, subject = obj.get("id"), obj.get("eventType"), obj.get("subject")
    topic, time = obj.get("topic"), obj.get("eventTime")
    if (
        event_id.__class__ is str
        and event_type.__class__ is str
        and subject.__class__ is str
        and event_id
        and event_type
        and (topic is None or topic.__class__ is str)
        and (time is None or time.__class__ is str)
    ):
        return Event(
            id=event_id,
            type=event_type,
            subject=subject,
            source=topic,
            time=time,
            schema="eventgrid",
            data=obj.get("data"),
            raw=obj,
        )
    return None


def _eventgrid_event(obj: dict[str, Any], where: str) -> Event:
    return Event(
        id=_required(obj, "id", where),
        type=_required(obj, "eventType", where, hint=" (Event Grid schema)"),
        subject=_required(obj, "subject", where),
        source=_optional(obj, "topic", where),
        time=_optional(obj, "eventTime", where),
        schema="eventgrid",
        data=obj.get("data"),
        raw=obj,
    )


def _cloud_event(obj: dict[str, Any], where: str) -> Event:
    version = obj["specversion"]
    if version != "1.0":
        raise DecodeError(f"{where}: CloudEvents specversion {version!r} is not supported (1.0 is)")
    return Event(
        id=_required(obj, "id", where),
        type=_required(obj, "type", where, hint=" (CloudEvents)"),
        subject=_optional(obj, "subject", where),
        source=_required(obj, "source", where),
        time=_optional(obj, "time", where),
        schema="cloudevents",
        data=obj.get("data"),
        raw=obj,
    )


def _required(obj: dict[str, Any], name: str, where: str, hint: str = "") -> str:
    """``obj[name]`` if it is a string (non-empty but for the subject); else why not."""
    if name not in obj:
        raise DecodeError(f"{where} has no {name!r}{hint}")
    value = obj[name]
    if not isinstance(value, str):
        raise DecodeError(f"{where}: {name!r} is a JSON {_json_type(value)}, not a string")
    if not value and name != "subject":
        raise DecodeError(f"{where}: {name!r} is empty")
    return value


def _optional(obj: dict[str, Any], name: str, where: str) -> str | None:
    value: object = obj.get(name)
    if value is None or isinstance(value, str):
        return value
    raise DecodeError(f"{where}: {name!r} is a JSON {_json_type(value)}, not a string")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | Decimal | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
