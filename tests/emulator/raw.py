"""A bare AMQP client built on the emulator's codec, for what the SDK cannot be made to do."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

from emulator.amqp import (
    AMQP_HEADER,
    Attach,
    Begin,
    Flow,
    Open,
    Source,
    Target,
    Transfer,
    UInt,
    decode_performative,
    encode_frame,
    encode_performative,
    read_frame,
    transfer_performative,
)


class RawClient:
    """One plain-AMQP connection (no SASL, no CBS) with one session on channel 0."""

    def __init__(self, port: int, max_frame_size: int = 1024 * 1024) -> None:
        self.port = port
        self.max_frame_size = max_frame_size
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Self:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(AMQP_HEADER)
        self.send(Open("raw", max_frame_size=UInt(self.max_frame_size)))
        self.send(Begin(None, UInt(0), UInt(1 << 20), UInt(1 << 20)))
        assert await self.reader.readexactly(8) == AMQP_HEADER
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self.writer is not None
        self.writer.close()
        await self.writer.wait_closed()

    def send(self, performative: tuple[object, ...], payload: bytes = b"") -> None:
        """Write one frame on channel 0."""
        assert self.writer is not None
        body = encode_performative(performative) + payload
        if not self.writer.transport.is_closing():
            self.writer.write(encode_frame(0, body))

    def attach_sender(self, address: str) -> None:
        """Attach a sender link (handle 0) to ``address``."""
        self.send(Attach("raw-sender", UInt(0), False, target=Target(address)))

    def attach_receiver(self, address: str, credit: int) -> None:
        """Attach a receiver link (handle 1) reading ``address`` from the start; grant credit."""
        self.send(Attach("raw-receiver", UInt(1), True, source=Source(address), target=Target("r")))
        self.send(
            Flow(UInt(0), UInt(1 << 20), UInt(0), UInt(1 << 20), UInt(1), UInt(0), UInt(credit))
        )

    async def receive_delivery(self, timeout_s: float = 5) -> tuple[list[Transfer], bytes]:
        """Read transfer frames until a delivery is complete; return its frames and payload."""
        assert self.reader is not None
        frames: list[Transfer] = []
        payload = bytearray()
        async with asyncio.timeout(timeout_s):
            while not frames or frames[-1].more:
                frame = await read_frame(self.reader, self.max_frame_size)
                if not frame.body:
                    continue
                performative, start = decode_performative(frame.body)
                if isinstance(performative, Transfer):
                    frames.append(performative)
                    payload += frame.body[start:]
        return frames, bytes(payload)

    def transfer(self, payload: bytes, frame_size: int) -> None:
        """Send one unsettled delivery (id 0), split into frames of ``frame_size`` bytes."""
        assert self.writer is not None
        chunks = [payload[i : i + frame_size] for i in range(0, len(payload), frame_size)]
        for index, chunk in enumerate(chunks):
            first = index == 0
            perf = transfer_performative(
                0,
                0 if first else None,
                b"\x00" if first else None,
                settled=False,
                more=index < len(chunks) - 1,
            )
            self.writer.write(encode_frame(0, perf + chunk))

    async def next_of(self, kind: type[tuple[object, ...]], timeout_s: float = 5) -> object:
        """Read frames until one of type ``kind`` arrives; return it."""
        assert self.reader is not None
        async with asyncio.timeout(timeout_s):
            while True:
                frame = await read_frame(self.reader, 2 * 1024 * 1024)
                if frame.body:
                    performative, _ = decode_performative(frame.body)
                    if isinstance(performative, kind):
                        return performative
