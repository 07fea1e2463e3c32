"""One client connection: protocol headers, SASL, Open/Close, heartbeats, and frame dispatch.

A ``Connection`` reads frames from its socket in order and hands session-level
performatives to the right ``Session``. It owns the socket, the idle-timeout
heartbeats and the connection's lifetime, not what links do.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from emulator.amqp import (
    AMQP_HEADER,
    HEARTBEAT,
    MIN_MAX_FRAME_SIZE,
    SASL_FRAME,
    SASL_HEADER,
    Array,
    Attach,
    Begin,
    Close,
    DecodeError,
    Detach,
    Disposition,
    End,
    Error,
    Flow,
    Open,
    SaslMechanisms,
    SaslOutcome,
    Symbol,
    Transfer,
    UByte,
    UInt,
    UShort,
    decode_performative,
    encode_frame,
    encode_performative,
    read_frame,
)
from emulator.session import Session

if TYPE_CHECKING:
    from emulator.broker import Broker

# Our own max-frame-size: big enough that a 1 MiB event usually arrives in one frame.
MAX_FRAME_SIZE = 1024 * 1024 + 1024
CONTAINER_ID = "mlevents-emulator"


class Connection:
    """Serves one TCP connection until the client closes it or the server drops it."""

    def __init__(
        self, broker: Broker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.broker = broker
        self.remote_max_frame = MIN_MAX_FRAME_SIZE
        self.sessions: dict[int, Session] = {}
        self._reader = reader
        self._writer = writer
        self._last_read = time.monotonic()
        self._heartbeat: asyncio.Task[None] | None = None

    def write(self, data: bytes) -> None:
        """Queue bytes for the client (dropped silently once the socket is closing)."""
        if not self._writer.is_closing():
            self._writer.write(data)

    async def drain(self) -> None:
        """Wait for the socket's write buffer to empty enough."""
        await self._writer.drain()

    def abort(self) -> None:
        """Drop the connection at once, without a Close (a simulated network failure)."""
        transport = self._writer.transport
        transport.abort()

    async def run(self) -> None:
        """Serve the connection; return when it is over."""
        try:
            if await self._negotiate():
                await self._serve()
        except (asyncio.IncompleteReadError, ConnectionError, DecodeError):
            pass  # the client went away or sent garbage: either way the connection is over
        finally:
            self._teardown()

    async def _negotiate(self) -> bool:
        header = await self._reader.readexactly(8)
        if header == SASL_HEADER:
            self.write(SASL_HEADER)
            # The SDK checks that ANONYMOUS is offered; it authenticates with a CBS token later.
            names = Array([Symbol("ANONYMOUS"), Symbol("MSSBCBS"), Symbol("PLAIN")], 0xB3)
            self._write_sasl(SaslMechanisms(names))
            await read_frame(self._reader, MAX_FRAME_SIZE)  # sasl-init: any mechanism is fine
            self._write_sasl(SaslOutcome(UByte(0), None))
            header = await self._reader.readexactly(8)
        self.write(AMQP_HEADER)
        return header == AMQP_HEADER

    def _write_sasl(self, performative: SaslMechanisms | SaslOutcome) -> None:
        self.write(encode_frame(0, encode_performative(performative), SASL_FRAME))

    async def _serve(self) -> None:
        while True:
            frame = await read_frame(self._reader, MAX_FRAME_SIZE)
            self._last_read = time.monotonic()
            if not frame.body:
                continue  # heartbeat
            performative, payload_start = decode_performative(frame.body)
            if isinstance(performative, Close):
                self._send(0, Close(None))
                await self.drain()
                return
            await self._dispatch(frame.channel, performative, frame.body[payload_start:])

    async def _dispatch(self, channel: int, performative: object, payload: bytes) -> None:
        session = self.sessions.get(channel)
        if isinstance(performative, Transfer) and session is not None:
            await session.on_transfer(performative, payload)
        elif isinstance(performative, Flow) and session is not None:
            session.on_flow(performative)
        elif isinstance(performative, Attach) and session is not None:
            session.on_attach(performative)
        elif isinstance(performative, Detach) and session is not None:
            session.on_detach(performative)
        elif isinstance(performative, Disposition):
            pass  # deliveries to clients are pre-settled; nothing waits for their outcome
        elif isinstance(performative, Begin):
            self.sessions[channel] = Session(self, performative, channel)
            self._send(channel, self.sessions[channel].begin_reply())
        elif isinstance(performative, End) and session is not None:
            session.close()
            del self.sessions[channel]
            self._send(channel, End(None))
        elif isinstance(performative, Open):
            self._open(performative)

    def _open(self, open_: Open) -> None:
        self.remote_max_frame = max(MIN_MAX_FRAME_SIZE, open_.max_frame_size or MAX_FRAME_SIZE)
        idle_ms = self.broker.idle_timeout_ms
        self._send(
            0,
            Open(
                CONTAINER_ID,
                None,
                UInt(MAX_FRAME_SIZE),
                UShort(open_.channel_max or 0xFFFF),
                UInt(idle_ms) if idle_ms else None,
                None,
                None,
                None,
                None,
                {Symbol("product"): CONTAINER_ID},
            ),
        )
        if open_.idle_time_out or idle_ms:
            self._heartbeat = asyncio.get_running_loop().create_task(
                self._keep_alive((open_.idle_time_out or 0) / 1000, (idle_ms or 0) / 1000)
            )

    async def _keep_alive(self, remote_idle_s: float, local_idle_s: float) -> None:
        """Send heartbeats within half the client's idle timeout; enforce our own."""
        periods = [s / 2 for s in (remote_idle_s, local_idle_s) if s]
        period = min(periods)
        while True:
            await asyncio.sleep(period)
            if remote_idle_s:
                self.write(HEARTBEAT)
            if local_idle_s and time.monotonic() - self._last_read > local_idle_s:
                error = Error(Symbol("amqp:resource-limit-exceeded"), "Idle timeout exceeded.")
                self._send(0, Close(error))
                self._writer.close()
                return

    def _send(self, channel: int, performative: tuple[object, ...]) -> None:
        self.write(encode_frame(channel, encode_performative(performative)))

    def _teardown(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        for session in self.sessions.values():
            session.close()
        self.sessions.clear()
        with contextlib.suppress(RuntimeError):
            self._writer.close()
        self.broker.connections.discard(self)
