"""``mlevents record``: write a hub's live events into an event file.

It reads one hub (the emulator or a real Event Hub) as an observer: it claims no partition
in any store and never writes a checkpoint, so a worker on the same hub is not disturbed
(a consumer group of its own is still kinder: the service allows five readers per
partition and group). It stops after ``--count`` events, after ``--seconds`` of reading,
or on SIGINT/SIGTERM, whichever comes first, and leaves a valid file in each case. The
seconds count from when the first partition opens, not from the connection's setup.

The file is an Event Hubs Capture Avro file, in the record schema Capture writes
(``Microsoft.ServiceBus.Messaging.EventData``: SequenceNumber, Offset, EnqueuedTimeUtc,
SystemProperties, Properties, Body). ``match``, ``test`` and ``send`` read it as they read
Capture files, and tools made for Capture files read ours. JSON Lines was not chosen: a
line of our JSON Lines files is one message body and nothing else, so partition, sequence
number, offset, time and properties would have nowhere to go without changing what the
existing readers take for the body.

What a record keeps:

* ``Body``: the message body, byte for byte (the sections of a data body joined; an AMQP
  value or sequence body, which Event Grid does not send, as its text);
* ``SequenceNumber`` and ``Offset``, as the service gave them;
* ``EnqueuedTimeUtc``: ISO 8601 in UTC with seven fraction digits
  (``2024-05-14T09:21:38.1230000Z``, the .NET round-trip form), so the service's
  milliseconds survive; the text Capture itself writes here is not documented;
* ``Properties``: the application properties. The SDK hands AMQP strings and binaries
  over alike, as bytes, so a value that is valid UTF-8 is written as a string and any
  other as bytes; integers and floats keep their type; values of AMQP types the Capture
  schema has no type for (booleans, UUIDs, ...) are written as their text;
* ``SystemProperties``: the message's annotations and AMQP properties (partition key,
  message id, content type, ...) but the three that have fields of their own, converted
  the same way; and the partition id under ``x-opt-partition-id``, the annotation name
  Event Hubs and Service Bus use for it. Capture keeps the partition only in the blob's
  path (``{Namespace}/{EventHub}/{PartitionId}/...``); a recording spans partitions, so
  each record carries its own.

Exit codes: 0 recorded (maybe nothing); 1 the hub failed while connecting or reading
(what was recorded until then stays in the file); 2 usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import threading
from asyncio import FIRST_COMPLETED
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from consumer.commands import connection
from consumer.commands.progress import Progress
from consumer.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ConfigError, RecordError
from consumer.eventfiles import PARTITION_ID

CAPTURE_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "EventData",
    "namespace": "Microsoft.ServiceBus.Messaging",
    "fields": [
        {"name": "SequenceNumber", "type": "long"},
        {"name": "Offset", "type": "string"},
        {"name": "EnqueuedTimeUtc", "type": "string"},
        {
            "name": "SystemProperties",
            "type": {"type": "map", "values": ["long", "double", "string", "bytes"]},
        },
        {
            "name": "Properties",
            "type": {"type": "map", "values": ["long", "double", "string", "bytes"]},
        },
        {"name": "Body", "type": ["null", "bytes"]},
    ],
}
# The annotations that have record fields of their own.
_OWN_FIELDS = frozenset({b"x-opt-sequence-number", b"x-opt-offset", b"x-opt-enqueued-time"})
_LONG = range(-(2**63), 2**63)
AvroValue = int | float | str | bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Recording:
    """What to record, from where, into which file, and when to stop."""

    connection_string: str = field(repr=False)
    eventhub: str
    out: Path
    consumer_group: str = "$Default"
    start: str | datetime = "earliest"
    """``earliest``, ``latest`` or a time (events enqueued at or after it)."""
    partition: str | None = None
    count: int | None = None
    seconds: float | None = None


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``record``: write a hub's live events into a Capture ``.avro`` file."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "record",
        help="record a hub's events into an event file (Capture .avro)",
        description="Record a hub's events, with partition, sequence number, offset, enqueued "
        "time and application properties, into an Event Hubs Capture .avro file. Stops at "
        "--count, at --seconds or on Ctrl-C; never writes checkpoints.",
    )
    connection.add_options(parser)
    parser.add_argument(
        "--consumer-group",
        default="$Default",
        metavar="GROUP",
        help="the consumer group to read in (default: $Default; one of its own is kinder)",
    )
    parser.add_argument(
        "--start",
        type=_start,
        default="earliest",
        metavar="earliest|latest|TIME",
        help="where to start: earliest (default), latest (new events only), "
        "or an ISO 8601 time with a zone",
    )
    parser.add_argument("--partition", metavar="ID", help="read this partition only")
    parser.add_argument("--count", type=_positive(int), metavar="N", help="stop after N events")
    parser.add_argument(
        "--seconds", type=_positive(float), metavar="T", help="stop after T seconds of reading"
    )
    parser.add_argument(
        "--out", required=True, type=Path, metavar="FILE", help="the .avro file to write"
    )
    parser.set_defaults(func=run_record)
    return parser


def _start(text: str) -> str | datetime:
    if text in ("earliest", "latest"):
        return text
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not earliest, latest or an ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone (add Z or +00:00)")
    return moment


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
        return value

    return parse


def run_record(args: argparse.Namespace) -> int:
    """Record as the parsed arguments say; return the exit code."""
    secret = ""
    try:
        secret = connection.connection_string(args)
        recording = _recording(args, secret)
        count = asyncio.run(record(recording))
    except ConfigError as exc:
        print(f"mlevents record: {connection.scrub(str(exc), secret)}", file=sys.stderr)
        return EXIT_USAGE
    except RecordError as exc:
        print(f"mlevents record: {connection.scrub(str(exc), secret)}", file=sys.stderr)
        return EXIT_FAILED
    print(f"recorded {count} events to {recording.out}")
    return EXIT_OK


def _recording(args: argparse.Namespace, connection_string: str) -> Recording:
    from azure.eventhub import parse_connection_string

    option = connection.option(args)
    try:
        entity = parse_connection_string(connection_string).eventhub_name
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{option}: not an Event Hubs connection string ({exc})") from None
    hub = args.eventhub or entity
    if not hub:
        raise ConfigError(
            "--eventhub: give the hub's name (the connection string has no EntityPath)"
        )
    out: Path = args.out
    if out.suffix.lower() != ".avro":
        raise ConfigError(f"--out: {out} must end in .avro (an Event Hubs Capture file)")
    if not out.parent.is_dir():
        raise ConfigError(f"--out: directory {out.parent} does not exist")
    return Recording(
        connection_string=connection_string,
        eventhub=hub,
        out=out,
        consumer_group=args.consumer_group,
        start=args.start,
        partition=args.partition,
        count=args.count,
        seconds=args.seconds,
    )


async def record(recording: Recording) -> int:
    """Record into ``recording.out`` until a bound is reached; return how many events.

    Raises:
        ConfigError: ``--partition`` names no partition of the hub; ``--out`` cannot be written.
        RecordError: the hub could not be reached, or failed while being read.
    """
    from azure.eventhub.aio import EventHubConsumerClient
    from azure.eventhub.exceptions import EventHubError
    from fastavro import parse_schema
    from fastavro.write import Writer

    client = EventHubConsumerClient.from_connection_string(
        recording.connection_string,
        consumer_group=recording.consumer_group,
        eventhub_name=recording.eventhub,
    )
    async with client:
        try:
            partitions = await client.get_partition_ids()
        except EventHubError as exc:
            raise RecordError(f"cannot read hub {recording.eventhub!r}: {exc}") from None
        if recording.partition is not None and recording.partition not in partitions:
            raise ConfigError(
                f"--partition: hub {recording.eventhub!r} has no partition "
                f"{recording.partition!r} (it has {', '.join(partitions)})"
            )
        try:
            handle = recording.out.open("wb")
        except OSError as exc:
            raise ConfigError(f"--out: cannot write {recording.out}: {exc.strerror}") from None
        with handle:
            recorder = _Recorder(Writer(handle, parse_schema(CAPTURE_SCHEMA)))
            try:
                await recorder.run(client, recording)
            except EventHubError as exc:
                raise RecordError(f"reading hub {recording.eventhub!r} failed: {exc}") from None
            finally:
                recorder.writer.flush()
    if recorder.error is not None:
        raise RecordError(f"reading hub {recording.eventhub!r} failed: {recorder.error}")
    return recorder.written


@dataclass(slots=True)
class _Recorder:
    writer: Any
    written: int = 0
    limit: int | None = None
    error: str | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    partitions: int = 0
    progress: Progress | None = None
    """Events written and partitions read, on a terminal; from the first partition on."""

    async def run(self, client: Any, recording: Recording) -> None:
        self.limit = recording.count
        options: dict[str, Any] = {}
        if isinstance(recording.start, datetime):
            options.update(starting_position=recording.start, starting_position_inclusive=True)
        else:
            options.update(starting_position="@latest" if recording.start == "latest" else "-1")
        if recording.partition is not None:
            options["partition_id"] = recording.partition
        with _stop_on_signals(self.done):
            receiving = asyncio.create_task(
                client.receive(
                    self.on_event,
                    on_error=self.on_error,
                    on_partition_initialize=self.on_open,
                    **options,
                )
            )
            stopping = asyncio.create_task(self.done.wait())
            opening = asyncio.create_task(self.opened.wait())
            try:
                # --seconds counts from the first partition opened (events flow from then);
                # should none open in that time, it counts from the start.
                ends = {receiving, stopping}
                await asyncio.wait(
                    {*ends, opening}, timeout=recording.seconds, return_when=FIRST_COMPLETED
                )
                if opening.done() and not any(task.done() for task in ends):
                    await asyncio.wait(ends, timeout=recording.seconds, return_when=FIRST_COMPLETED)
            finally:
                stopping.cancel()
                opening.cancel()
                await client.close()
                # The processor's loop sleeps out its load-balancing interval before it
                # returns; the partitions are closed already, so nothing is lost.
                if self.progress is not None:
                    self.progress.done()
                if receiving.done():
                    receiving.result()
                receiving.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await receiving

    async def on_open(self, context: Any) -> None:
        if not self.opened.is_set():  # the first partition: events flow from now on
            print(
                f"mlevents record: reading {context.eventhub_name!r}; Ctrl-C stops and keeps "
                "what was read",
                file=sys.stderr,
                flush=True,
            )
            self.progress = Progress(
                lambda: (self.written, self.partitions), ("events", "partitions")
            )
        self.partitions += 1
        self.opened.set()

    async def on_event(self, context: Any, event: Any) -> None:
        if event is None or (self.limit is not None and self.written >= self.limit):
            return
        self.writer.write(capture_record(context.partition_id, event))
        self.written += 1
        if self.progress is not None:
            self.progress.tick()
        if self.limit is not None and self.written >= self.limit:
            self.done.set()

    async def on_error(self, context: Any, error: Exception) -> None:
        if self.error is None:
            where = f"partition {context.partition_id}: " if context is not None else ""
            self.error = f"{where}{type(error).__name__}: {error}"
        self.done.set()


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT and SIGTERM end the recording cleanly (only the main thread gets signals)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def capture_record(partition_id: str, event: Any) -> dict[str, object]:
    """One received ``EventData`` as a Capture record, with its partition id."""
    system = {
        _text(key): avro_value(value)
        for key, value in event.system_properties.items()
        if key not in _OWN_FIELDS
    }
    system[PARTITION_ID] = partition_id
    properties: Mapping[object, object] = event.properties or {}
    return {
        "SequenceNumber": event.sequence_number,
        "Offset": str(event.offset),
        "EnqueuedTimeUtc": capture_time(event.enqueued_time),
        "SystemProperties": system,
        "Properties": {_text(key): avro_value(value) for key, value in properties.items()},
        "Body": _body(event),
    }


def capture_time(moment: datetime) -> str:
    """``2024-05-14T09:21:38.1230000Z``: UTC, seven fraction digits."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def avro_value(value: object) -> AvroValue:
    """A property value as one of the Capture map's types (long, double, string, bytes)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return value if value in _LONG else str(value)
    if isinstance(value, float | str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    return str(value)


def _text(key: object) -> str:
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)


def _body(event: Any) -> bytes:
    from azure.eventhub.amqp import AmqpMessageBodyType

    if event.body_type == AmqpMessageBodyType.DATA:
        body = event.body
        return body if isinstance(body, bytes) else b"".join(body)
    return str(event.body_as_str()).encode("utf-8")
