"""AMQP 1.0 framing: protocol headers, frame headers, and reading frames from a stream.

A frame is a 4-byte size, a data offset (in 4-byte words), a type (0 AMQP, 1 SASL),
a 2-byte channel, then the body. An AMQP frame with an empty body is a heartbeat.
"""

from __future__ import annotations

import asyncio
import struct
from typing import NamedTuple

from emulator.amqp.codec import DecodeError

AMQP_HEADER = b"AMQP\x00\x01\x00\x00"
SASL_HEADER = b"AMQP\x03\x01\x00\x00"
AMQP_FRAME = 0
SASL_FRAME = 1
HEADER_SIZE = 8
# The smallest max-frame-size a peer may announce (section 2.7.1).
MIN_MAX_FRAME_SIZE = 512

_header = struct.Struct(">IBBH")
HEARTBEAT = _header.pack(HEADER_SIZE, 2, AMQP_FRAME, 0)


class Frame(NamedTuple):
    """One frame read from the wire; ``body`` is empty for a heartbeat."""

    frame_type: int
    channel: int
    body: bytes


def frame_header(size: int, channel: int, frame_type: int = AMQP_FRAME) -> bytes:
    """Return the 8-byte header of a frame whose body is ``size`` bytes long."""
    return _header.pack(size + HEADER_SIZE, 2, frame_type, channel)


def encode_frame(channel: int, body: bytes, frame_type: int = AMQP_FRAME) -> bytes:
    """Return a complete frame around ``body``."""
    return frame_header(len(body), channel, frame_type) + body


async def read_frame(reader: asyncio.StreamReader, max_size: int) -> Frame:
    """Read one frame; raise ``DecodeError`` on a malformed or oversized frame.

    Raises:
        asyncio.IncompleteReadError: the peer closed the stream.
    """
    head = await reader.readexactly(HEADER_SIZE)
    size, offset, frame_type, channel = _header.unpack(head)
    if size < HEADER_SIZE or offset < 2 or size > max_size:
        raise DecodeError(f"bad frame header (size {size}, data offset {offset})")
    rest = await reader.readexactly(size - HEADER_SIZE) if size > HEADER_SIZE else b""
    # Extended header bytes (offset beyond 2 words) are reserved; skip them.
    return Frame(frame_type, channel, rest[(offset - 2) * 4 :])
