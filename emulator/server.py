"""The ``Emulator``: a listening socket on loopback and its lifecycle, for tests and the CLI.

It owns the asyncio server and the connection tasks; the broker owns the data.
Use it as ``async with Emulator([HubSpec("hub", 4)]) as emulator:`` and connect with
``emulator.connection_string("hub")``. Port 0 (the default) picks a free port.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from emulator.addresses import DEFAULT_KEY, SasKey, connection_string
from emulator.broker import Broker
from emulator.connection import Connection
from emulator.faults import Faults
from emulator.hub import Clock, HubSpec
from emulator.storage import Retention

STOP_WAIT_S = 1.0
"""How long ``stop`` lets aborted connections end by themselves before cancelling them."""


class Emulator:
    """A local Event Hubs namespace that speaks AMQP 1.0 to the azure-eventhub SDK."""

    def __init__(
        self,
        hubs: list[HubSpec],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        data_dir: Path | None = None,
        retention: Retention | None = None,
        sas_key: SasKey = DEFAULT_KEY,
        verify_sas: bool = False,
        idle_timeout_s: float | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.host = host
        self.port = port
        self.sas_key = sas_key
        self.broker = Broker(
            hubs,
            data_dir=data_dir,
            retention=retention,
            sas_key=sas_key if verify_sas else None,
            idle_timeout_ms=int(idle_timeout_s * 1000) if idle_timeout_s else None,
            clock=clock,
        )
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def faults(self) -> Faults:
        """Fault injection switches for this emulator."""
        return self.broker.faults

    def connection_string(self, hub: str | None = None) -> str:
        """A connection string the SDK accepts (``UseDevelopmentEmulator=true``: plain AMQP)."""
        return connection_string(self.host, self.port, self.sas_key, hub)

    async def start(self) -> None:
        """Start listening; afterwards ``port`` is the actual port."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, drop every connection and close the data files. Idempotent."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self.broker.drop_connections()
        if self._tasks:
            # An aborted connection's reader sees the end at once and its task ends by itself;
            # cancelling such a task instead makes asyncio's server log a CancelledError.
            await asyncio.wait(set(self._tasks), timeout=STOP_WAIT_S)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.broker.close()

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        assert self._server is not None
        await self._server.serve_forever()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        connection = Connection(self.broker, reader, writer)
        self.broker.connections.add(connection)
        self.broker.connections_accepted += 1
        try:
            await connection.run()
        finally:
            self._tasks.discard(task)
