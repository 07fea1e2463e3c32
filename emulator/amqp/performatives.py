"""AMQP 1.0 performatives and the composite types they carry, with their full field lists.

Each performative is a ``NamedTuple`` whose fields are the specification's fields,
in order. Encoding always writes every field, trailing nulls included: the pyamqp
client inside azure-eventhub reads fields by position and fails on a short list.
Decoding pads a short list with nulls, as the specification allows senders to omit
trailing fields.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from emulator.amqp.codec import Described, ULong, encode
from emulator.amqp.decoding import Buffer, decode


class Open(NamedTuple):
    """Connection open (0x10)."""

    container_id: str
    hostname: str | None = None
    max_frame_size: int | None = None
    channel_max: int | None = None
    idle_time_out: int | None = None
    outgoing_locales: object = None
    incoming_locales: object = None
    offered_capabilities: object = None
    desired_capabilities: object = None
    properties: dict[object, object] | None = None


class Begin(NamedTuple):
    """Session begin (0x11)."""

    remote_channel: int | None
    next_outgoing_id: int
    incoming_window: int
    outgoing_window: int
    handle_max: int | None = None
    offered_capabilities: object = None
    desired_capabilities: object = None
    properties: dict[object, object] | None = None


class Attach(NamedTuple):
    """Link attach (0x12). ``role`` is False for a sender, True for a receiver."""

    name: str
    handle: int
    role: bool
    snd_settle_mode: int | None = None
    rcv_settle_mode: int | None = None
    source: object = None
    target: object = None
    unsettled: object = None
    incomplete_unsettled: object = None
    initial_delivery_count: int | None = None
    max_message_size: int | None = None
    offered_capabilities: object = None
    desired_capabilities: object = None
    properties: dict[object, object] | None = None


class Flow(NamedTuple):
    """Session and link flow control (0x13)."""

    next_incoming_id: int | None
    incoming_window: int
    next_outgoing_id: int
    outgoing_window: int
    handle: int | None = None
    delivery_count: int | None = None
    link_credit: int | None = None
    available: int | None = None
    drain: bool | None = None
    echo: bool | None = None
    properties: dict[object, object] | None = None


class Transfer(NamedTuple):
    """One frame of a delivery (0x14); the message bytes travel as the frame payload."""

    handle: int
    delivery_id: int | None = None
    delivery_tag: bytes | None = None
    message_format: int | None = None
    settled: bool | None = None
    more: bool | None = None
    rcv_settle_mode: int | None = None
    state: object = None
    resume: bool | None = None
    aborted: bool | None = None
    batchable: bool | None = None


class Disposition(NamedTuple):
    """Delivery state change (0x15)."""

    role: bool
    first: int
    last: int | None = None
    settled: bool | None = None
    state: object = None
    batchable: bool | None = None


class Detach(NamedTuple):
    """Link detach (0x16)."""

    handle: int
    closed: bool | None = None
    error: object = None


class End(NamedTuple):
    """Session end (0x17)."""

    error: object = None


class Close(NamedTuple):
    """Connection close (0x18)."""

    error: object = None


class SaslMechanisms(NamedTuple):
    """The server's list of SASL mechanisms (0x40)."""

    sasl_server_mechanisms: object


class SaslInit(NamedTuple):
    """The client's chosen mechanism (0x41)."""

    mechanism: str
    initial_response: bytes | None = None
    hostname: str | None = None


class SaslOutcome(NamedTuple):
    """The result of SASL negotiation (0x44); code 0 means ok."""

    code: int
    additional_data: bytes | None = None


class Error(NamedTuple):
    """An AMQP error (0x1d) carried by detach, end, close and rejected."""

    condition: str
    description: str | None = None
    info: dict[object, object] | None = None


class Source(NamedTuple):
    """A link source terminus (0x28)."""

    address: str | None = None
    durable: int | None = None
    expiry_policy: str | None = None
    timeout: int | None = None
    dynamic: bool | None = None
    dynamic_node_properties: object = None
    distribution_mode: str | None = None
    filter: dict[object, object] | None = None
    default_outcome: object = None
    outcomes: object = None
    capabilities: object = None


class Target(NamedTuple):
    """A link target terminus (0x29)."""

    address: str | None = None
    durable: int | None = None
    expiry_policy: str | None = None
    timeout: int | None = None
    dynamic: bool | None = None
    dynamic_node_properties: object = None
    capabilities: object = None


class Accepted(NamedTuple):
    """Delivery outcome accepted (0x24)."""


class Rejected(NamedTuple):
    """Delivery outcome rejected (0x25), with the reason."""

    error: object = None


class Properties(NamedTuple):
    """The immutable properties section of a message (0x73)."""

    message_id: object = None
    user_id: bytes | None = None
    to: str | None = None
    subject: str | None = None
    reply_to: str | None = None
    correlation_id: object = None
    content_type: str | None = None
    content_encoding: str | None = None
    absolute_expiry_time: int | None = None
    creation_time: int | None = None
    group_id: str | None = None
    group_sequence: int | None = None
    reply_to_group_id: str | None = None


_CODES: dict[type[Any], int] = {
    Open: 0x10,
    Begin: 0x11,
    Attach: 0x12,
    Flow: 0x13,
    Transfer: 0x14,
    Disposition: 0x15,
    Detach: 0x16,
    End: 0x17,
    Close: 0x18,
    Error: 0x1D,
    Accepted: 0x24,
    Rejected: 0x25,
    Source: 0x28,
    Target: 0x29,
    Properties: 0x73,
    SaslMechanisms: 0x40,
    SaslInit: 0x41,
    SaslOutcome: 0x44,
}
_BY_CODE: dict[int, type[Any]] = {code: kind for kind, code in _CODES.items()}


def described(value: tuple[object, ...]) -> Described:
    """Wrap a composite so that it encodes with its descriptor and full field list."""
    fields = [described(v) if isinstance(v, tuple) and type(v) in _CODES else v for v in value]
    return Described(ULong(_CODES[type(value)]), fields)


def encode_performative(value: tuple[object, ...]) -> bytes:
    """Encode a performative or composite with every field present."""
    return encode(described(value))


def from_described(value: object) -> object:
    """Turn a decoded described composite into its ``NamedTuple``; other values pass through."""
    if not isinstance(value, Described) or not isinstance(value.value, list):
        return value
    kind = _BY_CODE.get(value.descriptor) if isinstance(value.descriptor, int) else None
    if kind is None:
        return value
    width = len(kind._fields)
    fields = [from_described(v) for v in value.value[:width]]
    fields += [None] * (width - len(fields))
    return kind(*fields)


def decode_performative(body: Buffer) -> tuple[object, int]:
    """Decode the performative at the start of a frame body; return it and the payload start."""
    value, end = decode(body, 0)
    return from_described(value), end
