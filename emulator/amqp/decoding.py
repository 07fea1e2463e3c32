"""AMQP 1.0 type system, the reading half: bytes to Python values, and skipping values.

Decoded values use the wrappers of :mod:`emulator.amqp.codec`, so that re-encoding
a decoded value keeps its AMQP types. ``skip`` walks over a value without building
it, which the delivery hot path uses to find message sections.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable

from emulator.amqp.codec import (
    Array,
    DecodeError,
    Described,
    Int,
    Symbol,
    Timestamp,
    UByte,
    UInt,
    ULong,
    UShort,
)

Buffer = bytes | bytearray | memoryview
_Decoder = Callable[[Buffer, int], tuple[object, int]]

_u8 = struct.Struct(">B").unpack_from
_u16 = struct.Struct(">H").unpack_from
_u32 = struct.Struct(">I").unpack_from
_u64 = struct.Struct(">Q").unpack_from
_i8 = struct.Struct(">b").unpack_from
_i16 = struct.Struct(">h").unpack_from
_i32 = struct.Struct(">i").unpack_from
_i64 = struct.Struct(">q").unpack_from
_f32 = struct.Struct(">f").unpack_from
_f64 = struct.Struct(">d").unpack_from


def decode(buf: Buffer, pos: int = 0) -> tuple[object, int]:
    """Decode one value at ``pos``; return it and the position after it."""
    try:
        code = buf[pos]
        decoder = _DECODERS[code]
        return decoder(buf, pos + 1)
    except (IndexError, KeyError, struct.error, UnicodeDecodeError) as exc:
        raise DecodeError(f"bad AMQP value at byte {pos}") from exc


def skip(buf: Buffer, pos: int) -> int:
    """Return the position just after the value that starts at ``pos``."""
    code = buf[pos]
    pos += 1
    if code == 0x00:
        return skip(buf, skip(buf, pos))
    width = _FIXED_WIDTH.get(code >> 4)
    if width is not None:
        return pos + (16 if code == 0x98 else width)
    if code >> 4 in (0xA, 0xC, 0xE):
        return pos + 1 + buf[pos]
    if code >> 4 in (0xB, 0xD, 0xF):
        return pos + 4 + int(_u32(buf, pos)[0])
    raise DecodeError(f"unknown AMQP constructor 0x{code:02x}")


_FIXED_WIDTH = {0x4: 0, 0x5: 1, 0x6: 2, 0x7: 4, 0x8: 8, 0x9: 16}


def _fixed(width: int, convert: Callable[[Buffer, int], object]) -> _Decoder:
    def decoder(buf: Buffer, pos: int) -> tuple[object, int]:
        return convert(buf, pos), pos + width

    return decoder


def _const(value: object) -> _Decoder:
    def decoder(_: Buffer, pos: int) -> tuple[object, int]:
        return value, pos

    return decoder


def _variable(size_width: int, convert: Callable[[bytes], object]) -> _Decoder:
    size_of = _u8 if size_width == 1 else _u32

    def decoder(buf: Buffer, pos: int) -> tuple[object, int]:
        size = int(size_of(buf, pos)[0])
        start = pos + size_width
        if start + size > len(buf):
            raise DecodeError("value runs past the end of the buffer")
        return convert(bytes(buf[start : start + size])), start + size

    return decoder


def _compound(size_width: int, as_map: bool) -> _Decoder:
    size_of = _u8 if size_width == 1 else _u32

    def decoder(buf: Buffer, pos: int) -> tuple[object, int]:
        size = int(size_of(buf, pos)[0])
        count = int(size_of(buf, pos + size_width)[0])
        end = pos + size_width + size
        cursor = pos + 2 * size_width
        items: list[object] = []
        for _ in range(count):
            item, cursor = decode(buf, cursor)
            items.append(item)
        if cursor != end:
            raise DecodeError("compound size does not match its contents")
        if as_map:
            return dict(zip(items[::2], items[1::2], strict=True)), end
        return items, end

    return decoder


def _array(size_width: int) -> _Decoder:
    size_of = _u8 if size_width == 1 else _u32

    def decoder(buf: Buffer, pos: int) -> tuple[object, int]:
        size = int(size_of(buf, pos)[0])
        count = int(size_of(buf, pos + size_width)[0])
        end = pos + size_width + size
        cursor = pos + 2 * size_width
        code = buf[cursor]
        element = _DECODERS[code]
        cursor += 1  # one constructor byte for all elements; they carry none of their own
        items: list[object] = []
        for _ in range(count):
            item, cursor = element(buf, cursor)
            items.append(item)
        return Array(items, _WIDE.get(code, code)), end

    return decoder


def _described(buf: Buffer, pos: int) -> tuple[object, int]:
    descriptor, pos = decode(buf, pos)
    value, pos = decode(buf, pos)
    return Described(descriptor, value), pos


_WIDE = {0xA3: 0xB3, 0xA1: 0xB1, 0xA0: 0xB0}


def _utf8(data: bytes) -> object:
    return data.decode("utf-8")


def _ascii(data: bytes) -> object:
    return Symbol(data.decode("ascii"))


def _binary(data: bytes) -> object:
    return data


_DECODERS: dict[int, _Decoder] = {
    0x00: _described,
    0x40: _const(None),
    0x41: _const(True),
    0x42: _const(False),
    0x56: _fixed(1, lambda b, p: b[p] != 0),
    0x43: _const(UInt(0)),
    0x52: _fixed(1, lambda b, p: UInt(b[p])),
    0x70: _fixed(4, lambda b, p: UInt(_u32(b, p)[0])),
    0x44: _const(ULong(0)),
    0x53: _fixed(1, lambda b, p: ULong(b[p])),
    0x80: _fixed(8, lambda b, p: ULong(_u64(b, p)[0])),
    0x50: _fixed(1, lambda b, p: UByte(b[p])),
    0x60: _fixed(2, lambda b, p: UShort(_u16(b, p)[0])),
    0x51: _fixed(1, lambda b, p: int(_i8(b, p)[0])),
    0x61: _fixed(2, lambda b, p: int(_i16(b, p)[0])),
    0x54: _fixed(1, lambda b, p: Int(_i8(b, p)[0])),
    0x71: _fixed(4, lambda b, p: Int(_i32(b, p)[0])),
    0x55: _fixed(1, lambda b, p: int(_i8(b, p)[0])),
    0x81: _fixed(8, lambda b, p: int(_i64(b, p)[0])),
    0x72: _fixed(4, lambda b, p: float(_f32(b, p)[0])),
    0x82: _fixed(8, lambda b, p: float(_f64(b, p)[0])),
    0x73: _fixed(4, lambda b, p: chr(_u32(b, p)[0])),
    0x83: _fixed(8, lambda b, p: Timestamp(_i64(b, p)[0])),
    0x98: _fixed(16, lambda b, p: uuid.UUID(bytes=bytes(b[p : p + 16]))),
    0x74: _fixed(4, lambda b, p: bytes(b[p : p + 4])),
    0x84: _fixed(8, lambda b, p: bytes(b[p : p + 8])),
    0x94: _fixed(16, lambda b, p: bytes(b[p : p + 16])),
    0xA0: _variable(1, _binary),
    0xB0: _variable(4, _binary),
    0xA1: _variable(1, _utf8),
    0xB1: _variable(4, _utf8),
    0xA3: _variable(1, _ascii),
    0xB3: _variable(4, _ascii),
    0x45: lambda _, pos: ([], pos),
    0xC0: _compound(1, as_map=False),
    0xD0: _compound(4, as_map=False),
    0xC1: _compound(1, as_map=True),
    0xD1: _compound(4, as_map=True),
    0xE0: _array(1),
    0xF0: _array(4),
}
