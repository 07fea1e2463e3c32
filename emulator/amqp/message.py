"""AMQP messages: decoding and encoding whole messages, and the byte-level hot paths.

The emulator stores each event as the exact bytes the producer sent, with one
``message-annotations`` section spliced in (sequence number, offset, enqueued time).
Walking sections with ``skip`` instead of decoding them keeps ingest and delivery
cheap. Small request/response messages ($cbs, $management) are decoded fully into
:class:`Message`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from emulator.amqp.codec import Described, UInt, ULong, encode, encode_into
from emulator.amqp.decoding import Buffer, decode, skip
from emulator.amqp.performatives import Properties, described, from_described

HEADER = 0x70
DELIVERY_ANNOTATIONS = 0x71
MESSAGE_ANNOTATIONS = 0x72
PROPERTIES = 0x73
APPLICATION_PROPERTIES = 0x74
DATA = 0x75
AMQP_VALUE = 0x77
# Event Hubs' batch format: the body is one data section per complete inner message.
BATCH_FORMAT = 0x80013700

_SECTION_NAMES = {
    "amqp:header:list": HEADER,
    "amqp:delivery-annotations:map": DELIVERY_ANNOTATIONS,
    "amqp:message-annotations:map": MESSAGE_ANNOTATIONS,
    "amqp:properties:list": PROPERTIES,
    "amqp:application-properties:map": APPLICATION_PROPERTIES,
    "amqp:data:binary": DATA,
    "amqp:amqp-sequence:list": 0x76,
    "amqp:amqp-value:*": AMQP_VALUE,
    "amqp:footer:map": 0x78,
}


@dataclass(slots=True)
class Message:
    """A fully decoded message: the parts the emulator's request/response nodes use."""

    properties: Properties | None = None
    application_properties: dict[object, object] = field(default_factory=dict)
    body: object = None
    message_annotations: dict[object, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Section:
    """Where one section sits inside an encoded message."""

    code: int
    start: int
    value_start: int
    end: int


def sections(raw: Buffer) -> list[Section]:
    """List the sections of an encoded message, in order."""
    found: list[Section] = []
    pos = 0
    while pos < len(raw):
        if raw[pos] != 0x00:
            raise ValueError(f"message section at byte {pos} is not described")
        if raw[pos + 1] == 0x53:  # smallulong descriptor: the usual case
            code, value_start = raw[pos + 2], pos + 3
        else:
            descriptor, value_start = decode(raw, pos + 1)
            code = _section_code(descriptor)
        end = skip(raw, value_start)
        found.append(Section(code, pos, value_start, end))
        pos = end
    return found


def _section_code(descriptor: object) -> int:
    if isinstance(descriptor, int):
        return descriptor
    if isinstance(descriptor, str) and descriptor in _SECTION_NAMES:
        return _SECTION_NAMES[descriptor]
    raise ValueError(f"unknown message section {descriptor!r}")


def decode_message(raw: Buffer) -> Message:
    """Decode a whole message (for small control messages, not the event hot path)."""
    message = Message()
    for section in sections(raw):
        value, _ = decode(raw, section.value_start)
        if section.code == PROPERTIES:
            props = from_described(Described(ULong(PROPERTIES), value))
            message.properties = props if isinstance(props, Properties) else None
        elif section.code == APPLICATION_PROPERTIES and isinstance(value, dict):
            message.application_properties = value
        elif section.code == MESSAGE_ANNOTATIONS and isinstance(value, dict):
            message.message_annotations = value
        elif section.code in (AMQP_VALUE, DATA):
            message.body = value
    return message


def encode_message(message: Message) -> bytes:
    """Encode a control message whose body is an ``amqp-value``."""
    out = bytearray()
    if message.message_annotations:
        encode_into(out, Described(ULong(MESSAGE_ANNOTATIONS), message.message_annotations))
    if message.properties is not None:
        encode_into(out, described(message.properties))
    if message.application_properties:
        encode_into(out, Described(ULong(APPLICATION_PROPERTIES), message.application_properties))
    encode_into(out, Described(ULong(AMQP_VALUE), message.body))
    return bytes(out)


def read_annotations(raw: Buffer) -> dict[object, object]:
    """Return the message-annotations map of an encoded message (empty if it has none)."""
    for section in sections(raw):
        if section.code == MESSAGE_ANNOTATIONS:
            value, _ = decode(raw, section.value_start)
            return value if isinstance(value, dict) else {}
    return {}


def annotate(raw: Buffer, annotations: dict[object, object]) -> bytes:
    """Return the message with ``annotations`` merged into its message-annotations section.

    Delivery annotations from the producer are dropped: they are hop-by-hop.
    """
    parts = sections(raw)
    merged: dict[object, object] = {}
    head = bytearray()
    tail = bytearray()
    for section in parts:
        chunk = raw[section.start : section.end]
        if section.code == HEADER:
            head += chunk
        elif section.code == MESSAGE_ANNOTATIONS:
            value, _ = decode(raw, section.value_start)
            if isinstance(value, dict):
                merged.update(value)
        elif section.code != DELIVERY_ANNOTATIONS:
            tail += chunk
    merged.update(annotations)
    encode_into(head, Described(ULong(MESSAGE_ANNOTATIONS), merged))
    return bytes(head + tail)


def add_delivery_annotations(raw: bytes, annotations: dict[object, object]) -> bytes:
    """Return the message with a delivery-annotations section inserted after its header."""
    cut = 0
    if raw[:3] == b"\x00\x53\x70":
        cut = skip(raw, 3)
    return raw[:cut] + encode(Described(ULong(DELIVERY_ANNOTATIONS), annotations)) + raw[cut:]


def split_batch(raw: Buffer) -> tuple[list[bytes], dict[object, object]]:
    """Split a batch message (format 0x80013700) into its inner messages.

    Returns the inner messages and the outer message-annotations (where the
    producer puts the partition key of the whole batch).
    """
    inner: list[bytes] = []
    outer: dict[object, object] = {}
    for section in sections(raw):
        if section.code == DATA:
            value, _ = decode(raw, section.value_start)
            if isinstance(value, bytes):
                inner.append(value)
        elif section.code == MESSAGE_ANNOTATIONS:
            value, _ = decode(raw, section.value_start)
            outer = value if isinstance(value, dict) else {}
    return inner, outer


_u32 = struct.Struct(">I").pack
_TRAILING_NULLS = b"\x40" * 5  # rcv-settle-mode, state, resume, aborted, batchable


def transfer_performative(
    handle: int,
    delivery_id: int | None,
    delivery_tag: bytes | None,
    *,
    settled: bool,
    more: bool,
    message_format: int = 0,
) -> bytes:
    """Encode a Transfer with all 11 fields, by hand, because it is on the delivery hot path."""
    fields = bytearray(b"\x70" + _u32(handle))
    if delivery_id is None or delivery_tag is None:
        fields += b"\x40\x40\x40"  # continuation frame: id, tag and format come from frame one
    else:
        fields += b"\x70" + _u32(delivery_id)
        fields += bytes((0xA0, len(delivery_tag))) + delivery_tag
        encode_into(fields, UInt(message_format))
    fields += b"\x41" if settled else b"\x42"
    fields += b"\x41" if more else b"\x42"
    fields += _TRAILING_NULLS
    return b"\x00\x53\x14\xc0" + bytes((len(fields) + 1, 11)) + fields
