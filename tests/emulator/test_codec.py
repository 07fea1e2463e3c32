"""The emulator's own AMQP codec: values, performatives and messages round-trip."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from emulator.amqp import (
    Array,
    Attach,
    Described,
    Message,
    Properties,
    Source,
    Symbol,
    Timestamp,
    UInt,
    ULong,
    annotate,
    decode,
    decode_message,
    decode_performative,
    encode,
    encode_message,
    encode_performative,
    read_annotations,
    skip,
    split_batch,
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(0, 2**32 - 1).map(UInt),
    st.integers(0, 2**64 - 1).map(ULong),
    st.integers(-(2**63), 2**63 - 1).map(Timestamp),
    st.text(max_size=300),
    st.binary(max_size=300),
    st.text(alphabet="abcxyz-:.", max_size=40).map(Symbol),
    st.uuids(),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.text(alphabet="abc-", max_size=10).map(Symbol), inner, max_size=5),
        st.builds(Described, st.integers(0, 255).map(ULong), inner),
    ),
    max_leaves=30,
)


@given(values)
def test_values_round_trip_with_their_types(value: object) -> None:
    """Decoding an encoded value gives back an equal value of the same AMQP type."""
    data = encode(value)
    decoded, end = decode(data)
    assert decoded == value and type(decoded) is type(value)
    assert end == len(data) == skip(data, 0)


def test_arrays_round_trip() -> None:
    """Arrays of symbols and strings keep their elements."""
    array = Array([Symbol("ANONYMOUS"), Symbol("PLAIN")], 0xB3)
    decoded, _ = decode(encode(array))
    assert decoded == ["ANONYMOUS", "PLAIN"] and isinstance(decoded, Array)


def test_performatives_always_carry_every_field() -> None:
    """An encoded Attach lists all 14 fields even when trailing ones are null."""
    data = encode_performative(Attach("link", 1, True, source=Source("amqps://h/hub")))
    raw, _ = decode(data)
    assert isinstance(raw, Described) and len(raw.value) == 14  # type: ignore[arg-type]
    attach, end = decode_performative(data)
    assert isinstance(attach, Attach) and attach.source == Source("amqps://h/hub")
    assert end == len(data)


def test_short_performatives_are_padded_on_decode() -> None:
    """A peer may omit trailing null fields; decoding fills them in."""
    data = encode(Described(ULong(0x12), ["link", UInt(0), True]))
    attach, _ = decode_performative(data)
    assert isinstance(attach, Attach) and attach.properties is None


def test_message_round_trip_and_annotation() -> None:
    """A control message round-trips; annotate merges into its message annotations."""
    message_id = uuid.uuid4()
    message = Message(
        properties=Properties(message_id=message_id),
        application_properties={"operation": "READ"},
        body={"name": "hub"},
        message_annotations={Symbol("x-opt-partition-key"): "k"},
    )
    data = encode_message(message)
    assert decode_message(data) == message
    stamped = annotate(data, {Symbol("x-opt-offset"): "42"})
    assert read_annotations(stamped) == {"x-opt-partition-key": "k", "x-opt-offset": "42"}
    assert decode_message(stamped).body == {"name": "hub"}


def test_batches_split_into_inner_messages() -> None:
    """A batch body of data sections yields each inner message."""
    inner = [encode_message(Message(body=f"event-{i}")) for i in range(3)]
    batch = b"".join(encode(Described(ULong(0x75), body)) for body in inner)
    messages, outer = split_batch(batch)
    assert messages == inner and outer == {}
