"""Recorded event files: what ``match``, ``test`` and ``send`` read.

Formats, chosen by the file name:

* ``*.jsonl``: one Event Hubs body per line (a JSON array of events or one event object);
  blank lines are skipped;
* ``*.avro``: an Event Hubs Capture file; each record's ``Body`` is one body and its
  ``Properties`` the message's application properties (files from ``mlevents record``
  also name the partition: ``x-opt-partition-id`` in ``SystemProperties``);
* anything else (``*.json``): the whole file is one body, found at line 1, or at the line
  where its JSON breaks when it is not valid JSON;
* ``-``: standard input, read as JSON Lines.

Records come out as raw bytes: decoding them is the rule engine's job, so a bad line is
reported where it is found (``file:line``, or ``file#record`` in Capture files) and the rest
of the file still goes through.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import msgspec

from consumer.errors import EventFileError

PARTITION_ID = "x-opt-partition-id"
"""The AMQP annotation name of a message's partition id, as a Capture record's key."""


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One Event Hubs message body read from a file, and where it came from."""

    where: str
    """``file:line`` (JSON Lines and JSON files) or ``file#record`` (Avro)."""
    body: bytes
    properties: Mapping[str, object] = field(default_factory=dict)
    """Application properties, where the file keeps them (Capture files do)."""
    sequence_number: int | None = None
    offset: str | None = None
    enqueued_time: str | None = None
    partition: str | None = None
    """The partition the event was read from: ``x-opt-partition-id`` in a Capture record's
    ``SystemProperties``, as ``mlevents record`` writes it (Capture itself keeps it only in
    the file's path)."""


def read_event_files(paths: Sequence[str], stdin: IO[bytes] | None = None) -> Iterator[EventRecord]:
    """Yield every record of every file, in order.

    Raises:
        EventFileError: a file cannot be opened or is not of its format (raised when that
            file is reached; records of earlier files have been yielded already).
    """
    for path in paths:
        yield from read_event_file(path, stdin)


def read_event_file(path: str, stdin: IO[bytes] | None = None) -> Iterator[EventRecord]:
    """Yield the records of one file (``-`` is standard input, as JSON Lines)."""
    if path == "-":
        yield from _json_lines("<stdin>", stdin if stdin is not None else sys.stdin.buffer)
        return
    suffix = Path(path).suffix.lower()
    try:
        with Path(path).open("rb") as handle:
            if suffix == ".jsonl":
                yield from _json_lines(path, handle)
            elif suffix == ".avro":
                yield from _capture(path, handle)
            else:
                body = handle.read()
                yield EventRecord(f"{path}:{_json_line(body)}", body)
    except OSError as exc:
        raise EventFileError(f"{path}: cannot read: {exc.strerror or exc}") from exc


def _json_lines(name: str, handle: IO[bytes]) -> Iterator[EventRecord]:
    for number, line in enumerate(handle, start=1):
        if line.strip():
            yield EventRecord(f"{name}:{number}", line.rstrip(b"\r\n"))


def _json_line(body: bytes) -> int:
    """The line to name for a whole-file body: where its JSON breaks, when it does (the rule
    engine says why; this is only where), else 1, where the body starts."""
    try:
        msgspec.json.decode(body)  # fast, and most files are valid
        return 1
    except (msgspec.DecodeError, RecursionError):
        pass
    try:
        json.loads(body)
    except json.JSONDecodeError as exc:
        return exc.lineno
    except (ValueError, RecursionError):  # not UTF-8, nested too deep: no line to tell
        pass
    return 1


def _capture(name: str, handle: IO[bytes]) -> Iterator[EventRecord]:
    import fastavro  # only Capture files need it

    if not handle.read(1):
        return  # Capture writes empty files when there is no data.
    handle.seek(0)
    try:
        reader = fastavro.reader(handle)
    except (ValueError, EOFError) as exc:
        raise EventFileError(f"{name}: not an Avro file: {exc}") from exc
    try:
        for number, record in enumerate(reader, start=1):
            yield _capture_record(f"{name}#{number}", record)
    except (ValueError, EOFError, TypeError) as exc:
        raise EventFileError(f"{name}: damaged Avro data: {exc}") from exc


def _capture_record(where: str, record: Any) -> EventRecord:
    body = record.get("Body") if isinstance(record, dict) else None
    if not isinstance(body, bytes):
        body = b""
    properties = record.get("Properties") or {}
    partition = (record.get("SystemProperties") or {}).get(PARTITION_ID)
    return EventRecord(
        where,
        body,
        properties=dict(properties),
        sequence_number=record.get("SequenceNumber"),
        offset=record.get("Offset"),
        enqueued_time=record.get("EnqueuedTimeUtc"),
        partition=str(partition) if isinstance(partition, str | int) else None,
    )
