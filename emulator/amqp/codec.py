"""AMQP 1.0 type system: encode Python values to AMQP bytes and decode them back.

This module owns the wire encoding of single values (section 1.6 of the AMQP 1.0
specification). It knows nothing about frames, performatives or messages.

Python types map to AMQP types as follows. Plain ``int`` encodes as ``long``,
``str`` as ``string``, ``bytes`` as ``binary``, ``list`` as ``list``, ``dict`` as
``map``, ``uuid.UUID`` as ``uuid``, ``float`` as ``double``. The wrappers below
(``Symbol``, ``Timestamp``, ``UInt``, ...) select the other types. Decoding
returns the same wrappers, so a decoded value re-encodes to the same AMQP types;
that matters when the emulator echoes a client's source, target or message id.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeAlias


class Symbol(str):
    """An AMQP ``symbol`` (ASCII name, used for keys, conditions and descriptors)."""

    __slots__ = ()


class Timestamp(int):
    """An AMQP ``timestamp``: milliseconds since the Unix epoch."""

    __slots__ = ()


class UByte(int):
    """An AMQP ``ubyte``."""

    __slots__ = ()


class UShort(int):
    """An AMQP ``ushort``."""

    __slots__ = ()


class UInt(int):
    """An AMQP ``uint``."""

    __slots__ = ()


class ULong(int):
    """An AMQP ``ulong``."""

    __slots__ = ()


class Int(int):
    """An AMQP ``int`` (signed 32 bits)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Described:
    """A described value: a descriptor (usually a ``ULong`` code) and the value it describes."""

    descriptor: object
    value: object


class Array(list[object]):
    """An AMQP ``array``: every element has the same constructor (``element_code``)."""

    def __init__(self, items: Iterable[object], element_code: int) -> None:
        super().__init__(items)
        self.element_code = element_code


class DecodeError(ValueError):
    """The bytes are not a valid AMQP encoding."""


Value: TypeAlias = object

_pack_u8 = struct.Struct(">B").pack
_pack_u16 = struct.Struct(">H").pack
_pack_u32 = struct.Struct(">I").pack
_pack_u64 = struct.Struct(">Q").pack
_pack_i32 = struct.Struct(">i").pack
_pack_i64 = struct.Struct(">q").pack
_pack_f64 = struct.Struct(">d").pack


def encode(value: Value) -> bytes:
    """Return the AMQP encoding of ``value``."""
    out = bytearray()
    encode_into(out, value)
    return bytes(out)


def encode_into(out: bytearray, value: Value) -> None:
    """Append the AMQP encoding of ``value`` to ``out``."""
    encoder = _ENCODERS.get(type(value))
    if encoder is None:
        encoder = _fallback_encoder(value)
    encoder(out, value)


def _fallback_encoder(value: Value) -> Callable[[bytearray, object], None]:
    for kind, encoder in _ENCODERS.items():
        if kind is not type(None) and isinstance(value, kind):
            return encoder
    raise TypeError(f"cannot encode {type(value).__name__} as AMQP")


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _enc_null(out: bytearray, _: object) -> None:
    out.append(0x40)


def _enc_bool(out: bytearray, value: object) -> None:
    out.append(0x41 if value else 0x42)


def _enc_long(out: bytearray, value: object) -> None:
    number = _int(value)
    if -128 <= number <= 127:
        out += b"\x55" + struct.pack(">b", number)
    else:
        out += b"\x81" + _pack_i64(number)


def _enc_int(out: bytearray, value: object) -> None:
    number = _int(value)
    if -128 <= number <= 127:
        out += b"\x54" + struct.pack(">b", number)
    else:
        out += b"\x71" + _pack_i32(number)


def _enc_uint(out: bytearray, value: object) -> None:
    number = _int(value)
    if number == 0:
        out.append(0x43)
    elif number < 256:
        out += b"\x52" + _pack_u8(number)
    else:
        out += b"\x70" + _pack_u32(number)


def _enc_ulong(out: bytearray, value: object) -> None:
    number = _int(value)
    if number == 0:
        out.append(0x44)
    elif number < 256:
        out += b"\x53" + _pack_u8(number)
    else:
        out += b"\x80" + _pack_u64(number)


def _enc_ubyte(out: bytearray, value: object) -> None:
    out += b"\x50" + _pack_u8(_int(value))


def _enc_ushort(out: bytearray, value: object) -> None:
    out += b"\x60" + _pack_u16(_int(value))


def _enc_timestamp(out: bytearray, value: object) -> None:
    out += b"\x83" + _pack_i64(_int(value))


def _enc_double(out: bytearray, value: object) -> None:
    assert isinstance(value, float)
    out += b"\x82" + _pack_f64(value)


def _enc_uuid(out: bytearray, value: object) -> None:
    assert isinstance(value, uuid.UUID)
    out += b"\x98" + value.bytes


def _enc_variable(out: bytearray, data: bytes, small: int, large: int) -> None:
    if len(data) < 256:
        out += bytes((small, len(data)))
    else:
        out += _pack_u8(large) + _pack_u32(len(data))
    out += data


def _enc_binary(out: bytearray, value: object) -> None:
    assert isinstance(value, bytes | bytearray | memoryview)
    _enc_variable(out, bytes(value), 0xA0, 0xB0)


def _enc_string(out: bytearray, value: object) -> None:
    _enc_variable(out, str(value).encode("utf-8"), 0xA1, 0xB1)


def _enc_symbol(out: bytearray, value: object) -> None:
    _enc_variable(out, str(value).encode("ascii"), 0xA3, 0xB3)


def _enc_compound(out: bytearray, items: Iterable[object], count: int, small: int) -> None:
    body = bytearray()
    for item in items:
        encode_into(body, item)
    if len(body) < 255 and count < 256:
        out += bytes((small, len(body) + 1, count))
    else:
        out += _pack_u8(small + 0x10) + _pack_u32(len(body) + 4) + _pack_u32(count)
    out += body


def _enc_list(out: bytearray, value: object) -> None:
    assert isinstance(value, list | tuple)
    items = list(value)
    if not items:
        out.append(0x45)
    else:
        _enc_compound(out, items, len(items), 0xC0)


def _enc_map(out: bytearray, value: object) -> None:
    assert isinstance(value, dict)
    flat = [part for pair in value.items() for part in pair]
    _enc_compound(out, flat, len(flat), 0xC1)


def _enc_described(out: bytearray, value: object) -> None:
    assert isinstance(value, Described)
    out.append(0x00)
    encode_into(out, value.descriptor)
    encode_into(out, value.value)


def _enc_array(out: bytearray, value: object) -> None:
    assert isinstance(value, Array)
    code = value.element_code
    element = _ARRAY_ELEMENTS[code]
    body = bytearray()
    for item in value:
        element(body, item)
    out += b"\xf0" + _pack_u32(len(body) + 5) + _pack_u32(len(value)) + _pack_u8(code)
    out += body


def _width_encoder(fmt: str) -> Callable[[bytearray, object], None]:
    pack = struct.Struct(fmt).pack

    def element(out: bytearray, value: object) -> None:
        out += pack(value)

    return element


def _long_text(encoding: str) -> Callable[[bytearray, object], None]:
    def element(out: bytearray, value: object) -> None:
        data = value if isinstance(value, bytes) else str(value).encode(encoding)
        out += _pack_u32(len(data)) + data

    return element


# Array elements are always written in their widest form (sym32, str32, ...).
_ARRAY_ELEMENTS: dict[int, Callable[[bytearray, object], None]] = {
    0xB3: _long_text("ascii"),
    0xB1: _long_text("utf-8"),
    0xB0: _long_text("latin-1"),
    0x70: _width_encoder(">I"),
    0x80: _width_encoder(">Q"),
    0x81: _width_encoder(">q"),
    0x71: _width_encoder(">i"),
    0x83: _width_encoder(">q"),
    0x50: _width_encoder(">B"),
    0x60: _width_encoder(">H"),
}

_ENCODERS: dict[type, Callable[[bytearray, object], None]] = {
    type(None): _enc_null,
    bool: _enc_bool,
    Symbol: _enc_symbol,
    Timestamp: _enc_timestamp,
    UByte: _enc_ubyte,
    UShort: _enc_ushort,
    UInt: _enc_uint,
    ULong: _enc_ulong,
    Int: _enc_int,
    int: _enc_long,
    float: _enc_double,
    uuid.UUID: _enc_uuid,
    bytes: _enc_binary,
    bytearray: _enc_binary,
    memoryview: _enc_binary,
    str: _enc_string,
    Array: _enc_array,
    list: _enc_list,
    tuple: _enc_list,
    dict: _enc_map,
    Described: _enc_described,
}
