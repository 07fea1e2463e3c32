"""Sessions: the links of one AMQP session, and routing each attach to the right kind of link.

A ``Session`` answers Begin, Attach, Flow, Transfer, Detach and End for one channel.
It decides from the attach address what a link is (producer, consumer, or a
``$cbs``/``$management`` node) and applies the hub's rules (unknown entities,
epochs, quotas) and injected faults. Frame I/O belongs to ``connection.py``.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from emulator.addresses import NODES
from emulator.amqp import (
    Accepted,
    Array,
    Attach,
    Begin,
    Detach,
    Disposition,
    Flow,
    Transfer,
    UByte,
    UInt,
    ULong,
    UShort,
    decode_message,
    encode_frame,
    encode_message,
    encode_performative,
)
from emulator.consumer_link import ConsumerLink
from emulator.errors import AmqpError
from emulator.links import MAX_MESSAGE_SIZE, Link, NodeLink, RefusedLink, transfer_frames
from emulator.producer_link import ProducerLink

if TYPE_CHECKING:
    from emulator.connection import Connection

SELECTOR = "apache.org:selector-filter:string"
_SELECTOR_RE = re.compile(
    r"amqp\.annotation\.x-opt-(offset|sequence-number|enqueued-time)\s*(>=|>)\s*'([^']*)'"
)
WINDOW = 0x7FFFFFFF


class Session:
    """One session on a connection; the server uses the client's channel number as its own."""

    def __init__(self, connection: Connection, begin: Begin, channel: int) -> None:
        self.connection = connection
        self.channel = channel
        self.next_incoming_id = begin.next_outgoing_id or 0
        self.next_outgoing_id = 0
        self.links: dict[int, Link] = {}
        self.replies: dict[str, NodeLink] = {}

    @property
    def remote_max_frame(self) -> int:
        """The largest frame the client accepts."""
        return self.connection.remote_max_frame

    def write(self, data: bytes) -> None:
        """Queue bytes for the client."""
        self.connection.write(data)

    async def drain(self) -> None:
        """Wait until the client has taken what was written."""
        await self.connection.drain()

    def take_delivery_ids(self, count: int) -> int:
        """Reserve ``count`` outgoing delivery ids; return the first."""
        first = self.next_outgoing_id
        self.next_outgoing_id = (first + count) & 0xFFFFFFFF
        return first

    def session_flow(self) -> Flow:
        """The session part of a flow frame."""
        return Flow(
            UInt(self.next_incoming_id), UInt(WINDOW), UInt(self.next_outgoing_id), UInt(WINDOW)
        )

    def begin_reply(self) -> Begin:
        """Our answer to the client's Begin: large windows, every handle allowed."""
        return Begin(
            UShort(self.channel),
            UInt(0),
            UInt(WINDOW),
            UInt(WINDOW),
            UInt(0xFFFF),
            None,
            None,
            None,
        )

    def on_attach(self, attach: Attach) -> None:
        """Create the link the client asked for, or attach and detach it with the reason."""
        link, reply = self._create(attach)
        self.links[attach.handle] = link
        self._send(reply)
        if isinstance(link, RefusedLink):
            link.detach(link.refusal)
        elif isinstance(link, ProducerLink):
            link.grant_credit()
        elif isinstance(link, ConsumerLink):
            link.start()
        elif not attach.role:  # the request half of a node pair: let the client send
            self._send(
                self.session_flow()._replace(
                    handle=UInt(link.handle), delivery_count=UInt(0), link_credit=UInt(1000)
                )
            )

    def _create(self, attach: Attach) -> tuple[Link, Attach]:
        client_receives = bool(attach.role)
        address = _address(attach.source if client_receives else attach.target)
        reply = _reply(attach, client_receives)
        if address in NODES:
            link = NodeLink(self, attach, node=address)
            if client_receives:
                self.replies[address] = link
            return link, reply
        broker = self.connection.broker
        try:
            refused = broker.faults.links_refused()
            if refused is not None:
                raise AmqpError("The server is busy (injected fault).", refused)
            if client_receives:
                return broker.open_consumer(self, attach), reply
            return broker.open_producer(self, attach), reply
        except AmqpError as exc:
            return RefusedLink(self, attach, refusal=exc), reply

    def on_flow(self, flow: Flow) -> None:
        """Apply a link flow (session windows are large enough to ignore)."""
        if flow.handle is not None and (link := self.links.get(flow.handle)) is not None:
            link.on_flow(flow)
        elif flow.echo:
            self._send(self.session_flow())

    async def on_transfer(self, transfer: Transfer, payload: bytes) -> None:
        """Hand a transfer frame to its link; answer complete deliveries."""
        self.next_incoming_id = (self.next_incoming_id + 1) & 0xFFFFFFFF
        link = self.links.get(transfer.handle)
        if isinstance(link, ProducerLink):
            await self._produce(link, transfer, payload)
        elif isinstance(link, NodeLink):
            request = link.collect(bool(transfer.more), payload)
            if request is not None:
                await self._answer(link, transfer.delivery_id or 0, request)

    async def _produce(self, link: ProducerLink, transfer: Transfer, payload: bytes) -> None:
        delivery = link.on_transfer(transfer, payload)
        if delivery is None:
            return
        error: AmqpError | None = None
        try:
            link.store(delivery)
        except AmqpError as exc:
            error = exc
        delay = self.connection.broker.faults.response_delay_s
        if delay:
            await asyncio.sleep(delay)
        if not delivery.settled and not link.detached:
            link.acknowledge(delivery.delivery_id, error)

    async def _answer(self, link: NodeLink, delivery_id: int, request: bytes) -> None:
        broker = self.connection.broker
        response = broker.nodes.handle(link.node, decode_message(request))
        delay = broker.faults.response_delay_s
        if delay:
            await asyncio.sleep(delay)
        self._send(Disposition(True, UInt(delivery_id), UInt(delivery_id), True, Accepted(), None))
        reply = self.replies.get(link.node)
        if reply is None or reply.detached:
            return
        delivery = self.take_delivery_ids(1)
        tag = delivery.to_bytes(4, "big")
        self.write(transfer_frames(self, reply.handle, delivery, tag, encode_message(response)))

    def on_detach(self, detach: Detach) -> None:
        """The client detached a link: confirm unless we started the detach."""
        link = self.links.pop(detach.handle, None)
        if link is None:
            return
        if not link.detached:
            link.detached = True
            link.stop()
            self._send(Detach(UInt(link.handle), True, None))

    def close(self) -> None:
        """Stop every link (the session ended or the connection went away)."""
        for link in list(self.links.values()):
            link.detached = True
            link.stop()
        self.links.clear()

    def _send(self, performative: tuple[object, ...]) -> None:
        self.write(encode_frame(self.channel, encode_performative(performative)))


def _address(terminus: object) -> str:
    return str(getattr(terminus, "address", "") or "")


def _reply(attach: Attach, client_receives: bool) -> Attach:
    """Our side of the attach. Source and target are echoed: pyamqp refuses a link without."""
    ours = attach._replace(
        handle=UInt(attach.handle),
        role=not client_receives,
        unsettled=None,
        incomplete_unsettled=None,
        initial_delivery_count=None,
        max_message_size=ULong(MAX_MESSAGE_SIZE),
        offered_capabilities=None,
        desired_capabilities=None,
        properties=None,
    )
    if not client_receives:
        return ours
    capabilities = attach.desired_capabilities
    return ours._replace(
        snd_settle_mode=UByte(1),  # settled: the SDK never settles the events it receives
        rcv_settle_mode=UByte(0),
        initial_delivery_count=UInt(0),
        offered_capabilities=capabilities if isinstance(capabilities, Array) else None,
    )


def parse_selector(source: object) -> tuple[str, str, bool]:
    """The (annotation, value, inclusive) of a consumer's selector filter; default: start."""
    filters = getattr(source, "filter", None) or {}
    for key, value in filters.items():
        if str(key) == SELECTOR:
            text = str(getattr(value, "value", value))
            match = _SELECTOR_RE.search(text)
            if match is None:
                raise AmqpError(f"Unsupported selector filter {text!r}.", "amqp:not-implemented")
            return match[1], match[3], match[2] == ">="
    return "offset", "-1", False
