"""Links: the state every link shares, the request/response node links, and transfer framing.

The kinds of link, chosen by the client's attach address:

* ``ProducerLink`` (``producer_link.py``): the client sends events to a hub or partition.
* ``ConsumerLink`` (``consumer_link.py``): the client reads a partition.
* ``NodeLink`` (here): either half of a ``$cbs``/``$management`` request/response pair.
* ``RefusedLink`` (here): attached only to be detached at once with the reason.

Sessions, frames on the wire and attach routing are the session's (``session.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from emulator.amqp import (
    Attach,
    Detach,
    Error,
    Flow,
    Symbol,
    UInt,
    encode_frame,
    encode_performative,
    transfer_performative,
)
from emulator.errors import AmqpError

MAX_MESSAGE_SIZE = 1024 * 1024


class Wire(Protocol):
    """The session a link lives in, as the link sees it."""

    channel: int

    @property
    def remote_max_frame(self) -> int: ...

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def take_delivery_ids(self, count: int) -> int: ...

    def session_flow(self) -> Flow: ...


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
