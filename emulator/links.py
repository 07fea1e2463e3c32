"""Links: what happens on a link once it is attached.

Four kinds, chosen by the client's attach address:

* ``ProducerLink``: the client sends events to a hub or partition; each delivery is
  stored and then acknowledged (accepted, or rejected with the reason).
* ``ConsumerLink``: the client reads a partition; a task pushes pre-settled
  transfers while the client grants credit.
* ``NodeLink``: either half of a ``$cbs``/``$management`` request/response pair.

Sessions, frames on the wire and attach routing are the server's (``session.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from emulator.amqp import (
    BATCH_FORMAT,
    Accepted,
    Attach,
    Detach,
    Disposition,
    Error,
    Flow,
    Rejected,
    Symbol,
    Timestamp,
    Transfer,
    UInt,
    add_delivery_annotations,
    encode_frame,
    encode_performative,
    read_annotations,
    split_batch,
    transfer_performative,
)
from emulator.errors import AmqpError, LinkStolen, MessageTooLarge
from emulator.hub import Hub, Partition

MAX_MESSAGE_SIZE = 1024 * 1024
# Producer credit is granted in windows; topped up when half is used.
PRODUCER_CREDIT = 1000
# Upper bound on transfers written before yielding to the event loop.
PUSH_CHUNK = 256
_tag = struct.Struct(">I").pack


class Delivery(NamedTuple):
    """A complete delivery received from a producer."""

    delivery_id: int
    message: bytes
    message_format: int
    settled: bool
    size: int


class Wire(Protocol):
    """The session a link lives in, as the link sees it."""

    channel: int

    @property
    def remote_max_frame(self) -> int: ...

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def take_delivery_ids(self, count: int) -> int: ...

    def session_flow(self) -> Flow: ...

    def forget(self, link: Link) -> None: ...


@dataclass(eq=False, slots=True)
class Link:
    """Common state: the client's attach and whether the link is being torn down."""

    wire: Wire
    attach: Attach
    handle: int = field(init=False)
    detached: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.handle = self.attach.handle

    def send(self, performative: tuple[object, ...]) -> None:
        """Write one performative on this link's session."""
        self.wire.write(encode_frame(self.wire.channel, encode_performative(performative)))

    def detach(self, error: AmqpError | None = None) -> None:
        """Close the link from the server side, with an error condition if given."""
        if self.detached:
            return
        self.detached = True
        amqp_error = Error(Symbol(error.error_condition), error.description) if error else None
        self.send(Detach(UInt(self.handle), True, amqp_error))
        self.stop()

    def stop(self) -> None:
        """Release what the link holds (tasks, reader slots)."""

    def on_flow(self, flow: Flow) -> None:
        """React to a link flow from the client."""


@dataclass(eq=False, slots=True, kw_only=True)
class RefusedLink(Link):
    """A link the server attached only to detach it at once with the reason."""

    refusal: AmqpError


@dataclass(eq=False, slots=True)
class ProducerLink(Link):
    """A client sender whose deliveries are stored in a hub."""

    hub: Hub | None = None
    partition: Partition | None = None
    received: int = 0
    credit: int = 0
    _pending: bytearray = field(default_factory=bytearray)
    _size: int = 0
    _first: Transfer | None = None

    def grant_credit(self) -> None:
        """Give the client a fresh window of credit."""
        self.credit = PRODUCER_CREDIT
        session = self.wire.session_flow()
        self.send(
            session._replace(
                handle=UInt(self.handle),
                delivery_count=UInt(self.received),
                link_credit=UInt(self.credit),
            )
        )

    def on_transfer(self, transfer: Transfer, payload: bytes) -> Delivery | None:
        """Collect one transfer frame; return the delivery once its last frame arrived."""
        if self._first is None:
            self._first = transfer
            self._pending, self._size = bytearray(), 0
        self._size += len(payload)
        if self._size <= MAX_MESSAGE_SIZE:  # past the limit only the size matters
            self._pending += payload
        if transfer.more:
            return None
        first, self._first = self._first, None
        self.received += 1
        self.credit -= 1
        if self.credit < PRODUCER_CREDIT // 2:
            self.grant_credit()
        return Delivery(
            first.delivery_id or 0,
            bytes(self._pending),
            first.message_format or 0,
            bool(first.settled),
            self._size,
        )

    def store(self, delivery: Delivery) -> None:
        """Split a batch if needed, route it, and append it to a partition.

        Raises:
            MessageTooLarge: the delivery is over the size limit.
        """
        if delivery.size > MAX_MESSAGE_SIZE:
            raise MessageTooLarge(
                f"The received message (size {delivery.size} bytes) exceeds the limit "
                f"({MAX_MESSAGE_SIZE} bytes) currently allowed on the link."
            )
        message = delivery.message
        if delivery.message_format == BATCH_FORMAT:
            messages, outer = split_batch(message)
        else:
            messages, outer = [message], read_annotations(message)
        key = outer.get("x-opt-partition-key")
        partition_key = str(key) if key is not None else None
        assert self.hub is not None
        target = self.partition or self.hub.route(partition_key)
        if messages:
            target.append(messages, partition_key)

    def acknowledge(self, delivery_id: int, error: AmqpError | None) -> None:
        """Settle a delivery as accepted, or rejected with the error."""
        state: tuple[object, ...] = Accepted()
        if error is not None:
            state = Rejected(Error(Symbol(error.error_condition), error.description))
        self.send(Disposition(True, UInt(delivery_id), UInt(delivery_id), True, state, None))


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


def transfer_frames(
    wire: Wire, handle: int, delivery_id: int, tag: bytes, payload: bytes, *, settled: bool = True
) -> bytes:
    """Encode one delivery as one or more transfer frames that fit the peer's frame size."""
    first = transfer_performative(handle, delivery_id, tag, settled=settled, more=False)
    room = wire.remote_max_frame - 8 - len(first) - 8  # frame header, performative, slack
    if len(payload) <= room:
        return encode_frame(wire.channel, first + payload)
    out = bytearray()
    pos = 0
    while pos < len(payload):
        chunk = payload[pos : pos + room]
        pos += len(chunk)
        more = pos < len(payload)
        perf = transfer_performative(
            handle,
            delivery_id if not out else None,
            tag if not out else None,
            settled=settled,
            more=more,
        )
        out += encode_frame(wire.channel, perf + chunk)
    return bytes(out)


@dataclass(eq=False, slots=True)
class NodeLink(Link):
    """One half of a $cbs or $management link pair."""

    node: str = ""
    credit: int = 0
    _pending: bytearray = field(default_factory=bytearray)

    def on_flow(self, flow: Flow) -> None:
        if flow.link_credit is not None:
            self.credit = flow.link_credit

    def collect(self, more: bool, payload: bytes) -> bytes | None:
        """Collect a request frame; return the whole request message when complete."""
        self._pending += payload
        if more:
            return None
        message, self._pending = bytes(self._pending), bytearray()
        return message
