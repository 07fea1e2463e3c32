"""``mlevents send``: publish recorded event files with the SDK's producer.

It works the same against the emulator and a real Event Hub, so recorded traffic
can be replayed anywhere. Records are grouped into as few batches as the hub's
size limit allows; their order is kept (per partition, with ``keep_partitions``).
Application properties go along with each body.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from consumer.commands import connection
from consumer.commands.progress import Progress
from consumer.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ConfigError, EventFileError
from consumer.eventfiles import PARTITION_ID, EventRecord, read_event_files


def add_parser(commands: Any) -> None:
    """Add ``send``: publish recorded event files with the SDK's producer."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "send", help="publish recorded event files to an Event Hub (or the emulator)"
    )
    connection.add_options(parser)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--partition", metavar="ID", help="send every event to this partition id")
    where.add_argument(
        "--partition-key", metavar="KEY", help="send every event with this partition key"
    )
    where.add_argument(
        "--keep-partitions",
        action="store_true",
        help="send each event to the partition it was recorded from (mlevents record files)",
    )
    parser.add_argument(
        "events",
        nargs="+",
        metavar="EVENTS",
        help="event files (.json, .jsonl, Capture .avro, - for stdin)",
    )
    parser.set_defaults(func=run_send)


def run_send(args: argparse.Namespace) -> int:
    """Send the event files; return the exit code."""
    from azure.eventhub.exceptions import EventHubError

    secret = ""
    try:
        secret = connection.connection_string(args)
    except ConfigError as exc:
        print(f"mlevents send: {exc}", file=sys.stderr)
        return EXIT_USAGE
    target = SendTarget(
        connection_string=secret,
        eventhub=args.eventhub,
        partition_id=args.partition,
        partition_key=args.partition_key,
        keep_partitions=args.keep_partitions,
    )
    tally = Tally()
    progress = Progress(lambda: (tally.read, tally.sent), ("events read", "sent"))
    tally.tick = progress.tick
    try:
        sent = send_records(target, read_event_files(args.events), tally)
    except EventFileError as exc:
        return _failed(progress, str(exc))
    except (EventHubError, ValueError) as exc:  # the SDK's: they may quote the string
        return _failed(progress, connection.scrub(str(exc), secret))
    progress.done()
    print(f"sent {sent} events")
    return EXIT_OK


def _failed(progress: Progress, message: str) -> int:
    progress.done()
    print(f"mlevents send: {message}", file=sys.stderr)
    return EXIT_FAILED


@dataclass(frozen=True, slots=True, kw_only=True)
class SendTarget:
    """Where to send: a connection string, and optionally a hub, partition id or partition key,
    or each record's own partition (``keep_partitions``)."""

    connection_string: str
    eventhub: str | None = None
    partition_id: str | None = None
    partition_key: str | None = None
    keep_partitions: bool = False


@dataclass(slots=True)
class Tally:
    """How far a send got: records read from the files, events the hub accepted; ``tick``
    is called after each record (the progress line's)."""

    read: int = 0
    sent: int = 0
    tick: Callable[[], None] = lambda: None


def send_records(
    target: SendTarget, records: Iterable[EventRecord], tally: Tally | None = None
) -> int:
    """Send every record in order, counting in ``tally``; return how many were sent.

    Raises:
        EventHubError: the SDK could not connect or the hub refused an event.
        consumer.errors.EventFileError: a record could not be read, or has no partition
            and ``keep_partitions`` is set.
    """
    from azure.eventhub import EventData, EventHubProducerClient
    from azure.eventhub.exceptions import EventHubError

    producer = EventHubProducerClient.from_connection_string(
        target.connection_string, eventhub_name=target.eventhub
    )
    tally = Tally() if tally is None else tally
    batches: dict[str | None, Any] = {}  # one open batch per partition sent to
    with producer:
        for record in records:
            tally.read += 1
            partition = _partition(record) if target.keep_partitions else target.partition_id
            event = EventData(record.body)
            if record.properties:
                event.properties = cast("dict[str | bytes, Any]", dict(record.properties))
            batch = batches.get(partition)
            if batch is None:
                batch = batches[partition] = producer.create_batch(
                    partition_id=partition, partition_key=target.partition_key
                )
            try:
                batch.add(event)
            except ValueError:  # the batch is full: send it and start the next one
                if len(batch) == 0:
                    message = f"{record.where}: event is larger than the hub allows"
                    raise EventHubError(message) from None
                producer.send_batch(batch)
                tally.sent += len(batch)
                batch = batches[partition] = producer.create_batch(
                    partition_id=partition, partition_key=target.partition_key
                )
                batch.add(event)
            tally.tick()
        for batch in batches.values():
            if len(batch):
                producer.send_batch(batch)
                tally.sent += len(batch)
    return tally.sent


def _partition(record: EventRecord) -> str:
    if record.partition is None:
        raise EventFileError(
            f"{record.where}: no partition recorded ({PARTITION_ID} in SystemProperties); "
            "send it without --keep-partitions"
        )
    return record.partition
