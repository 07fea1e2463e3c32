"""``mlevents send``: publish recorded event files with the SDK's producer.

It works the same against the emulator and a real Event Hub, so recorded traffic
can be replayed anywhere. Records are grouped into as few batches as the hub's
size limit allows; their order is kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from azure.eventhub import EventData, EventHubProducerClient
from azure.eventhub.exceptions import EventHubError

from consumer.eventfiles import EventRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class SendTarget:
    """Where to send: a connection string, and optionally a hub, partition id or partition key."""

    connection_string: str
    eventhub: str | None = None
    partition_id: str | None = None
    partition_key: str | None = None


def send_records(target: SendTarget, records: Iterable[EventRecord]) -> int:
    """Send every record in order; return how many were sent.

    Raises:
        EventHubError: the SDK could not connect or the hub refused an event.
        consumer.errors.EventFileError: a record could not be read.
    """
    producer = EventHubProducerClient.from_connection_string(
        target.connection_string, eventhub_name=target.eventhub
    )
    sent = 0
    with producer:
        batch = producer.create_batch(
            partition_id=target.partition_id, partition_key=target.partition_key
        )
        for record in records:
            event = EventData(record.body)
            if record.properties:
                event.properties = cast("dict[str | bytes, Any]", dict(record.properties))
            try:
                batch.add(event)
            except ValueError:  # the batch is full: send it and start the next one
                if len(batch) == 0:
                    message = f"{record.where}: event is larger than the hub allows"
                    raise EventHubError(message) from None
                producer.send_batch(batch)
                sent += len(batch)
                batch = producer.create_batch(
                    partition_id=target.partition_id, partition_key=target.partition_key
                )
                batch.add(event)
        if len(batch):
            producer.send_batch(batch)
            sent += len(batch)
    return sent
