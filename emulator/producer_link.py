"""Producer links: deliveries from a client's sender, stored in a hub and then acknowledged.

A ``ProducerLink`` reassembles multi-frame deliveries, enforces the size limit,
splits batch messages, routes them (partition id, partition key, round-robin) and
settles each delivery as accepted or rejected with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from emulator.amqp import (
    BATCH_FORMAT,
    Accepted,
    Disposition,
    Error,
    Rejected,
    Symbol,
    Transfer,
    UInt,
    read_annotations,
    split_batch,
)
from emulator.errors import AmqpError, MessageTooLarge
from emulator.hub import Hub, Partition
from emulator.links import MAX_MESSAGE_SIZE, Link

# Producer credit is granted in windows; topped up when half is used.
PRODUCER_CREDIT = 1000


class Delivery(NamedTuple):
    """A complete delivery received from a producer."""

    delivery_id: int
    message: bytes
    message_format: int
    settled: bool
    size: int


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
