"""Consumer links: a client's receiver on one partition, fed by a push task.

A ``ConsumerLink`` tracks link credit, writes pre-settled transfers (the SDK never
settles events), adds runtime-metric delivery annotations when asked, and is the
``Reader`` the hub's epoch rules act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass, field

from emulator.amqp import (
    Flow,
    Symbol,
    Timestamp,
    UInt,
    add_delivery_annotations,
)
from emulator.errors import LinkStolen
from emulator.hub import Partition
from emulator.links import Link, transfer_frames

# Upper bound on transfers written before yielding to the event loop.
PUSH_CHUNK = 256
_tag = struct.Struct(">I").pack


@dataclass(eq=False, slots=True)
class ConsumerLink(Link):
    """A client receiver on one partition; events are pushed while credit lasts."""

    partition: Partition | None = None
    group: str = ""
    next_sequence: int = 0
    epoch_value: int | None = None
    runtime_metrics: bool = False
    delivery_count: int = 0
    credit: int = 0
    _credit_event: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    @property
    def epoch(self) -> int | None:
        """The owner level the client attached with, if any."""
        return self.epoch_value

    def start(self) -> None:
        """Start pushing events."""
        self._task = asyncio.get_running_loop().create_task(self._push())

    def steal(self, error: LinkStolen) -> None:
        """Another reader took the partition: detach with ``amqp:link:stolen``."""
        self.detach(error)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self.partition is not None:
            self.partition.remove_reader(self.group, self)

    def on_flow(self, flow: Flow) -> None:
        if flow.link_credit is None:
            return
        base = flow.delivery_count if flow.delivery_count is not None else self.delivery_count
        self.credit = max(0, base + flow.link_credit - self.delivery_count)
        if flow.drain and self.partition and self.next_sequence >= self.partition.log.end_sequence:
            self.delivery_count += self.credit
            self.credit = 0
            self._send_flow()
        elif flow.echo:
            self._send_flow()
        if self.credit > 0:
            self._credit_event.set()

    def _send_flow(self) -> None:
        self.send(
            self.wire.session_flow()._replace(
                handle=UInt(self.handle),
                delivery_count=UInt(self.delivery_count),
                link_credit=UInt(self.credit),
            )
        )

    async def _push(self) -> None:
        with contextlib.suppress(ConnectionError):  # the client went away; teardown follows
            await self._push_while_connected()

    async def _push_while_connected(self) -> None:
        partition = self.partition
        assert partition is not None
        while True:
            if self.credit <= 0:
                self._credit_event.clear()
                await self._credit_event.wait()
                continue
            await partition.wait_beyond(self.next_sequence)
            self.next_sequence = max(self.next_sequence, partition.log.begin_sequence)
            batch = partition.log.messages(self.next_sequence, min(self.credit, PUSH_CHUNK))
            if batch:
                self._write_deliveries(batch)
                await self.wire.drain()

    def _write_deliveries(self, messages: list[bytes]) -> None:
        assert self.partition is not None
        first_id = self.wire.take_delivery_ids(len(messages))
        metrics = self._metrics() if self.runtime_metrics else None
        out = bytearray()
        for i, message in enumerate(messages):
            payload = add_delivery_annotations(message, metrics) if metrics else message
            tag = _tag((self.delivery_count + i) & 0xFFFFFFFF)
            out += transfer_frames(
                self.wire, self.handle, (first_id + i) & 0xFFFFFFFF, tag, payload
            )
        self.next_sequence += len(messages)
        self.delivery_count += len(messages)
        self.credit -= len(messages)
        self.wire.write(bytes(out))

    def _metrics(self) -> dict[object, object]:
        assert self.partition is not None
        last = self.partition.log.last()
        now = Timestamp(int(self.partition.clock() * 1000))
        return {
            Symbol("last_enqueued_sequence_number"): last.sequence_number if last else -1,
            Symbol("last_enqueued_offset"): str(last.offset) if last else "-1",
            Symbol("last_enqueued_time_utc"): Timestamp(last.enqueued_ms if last else 0),
            Symbol("runtime_info_retrieval_time_utc"): now,
        }
