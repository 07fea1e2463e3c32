"""Partition event logs: in memory, or append-only files that survive a crash.

An ``EventLog`` owns the events of one partition: their sequence numbers, offsets,
enqueued times and stored message bytes, the lookups a consumer's starting position
needs, and retention. It does not know about AMQP or consumers.

Durable format (one directory per partition, one file per segment, named after the
segment's first sequence number)::

    <data-dir>/<hub>/<partition>/00000000000000000000.log
    record := u32 body_length | u32 crc32(body) | body
    body   := i64 sequence_number | i64 offset | i64 enqueued_time_ms | message bytes

Every acknowledged batch is written with one ``os.write`` before the producer is
told it was accepted, so a killed process loses nothing it acknowledged. A write
torn by a crash leaves a short or CRC-mismatched record at the end of the last
segment; opening the log truncates it, and earlier records are untouched.
"""

from __future__ import annotations

import bisect
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from emulator.errors import StorageError

_RECORD_HEAD = struct.Struct(">II")
_BODY_HEAD = struct.Struct(">qqq")
SEGMENT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Retention:
    """How long a partition keeps events; ``None`` means no limit."""

    max_events: int | None = None
    max_age_s: float | None = None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event as stored: its position in the partition and its message bytes."""

    sequence_number: int
    offset: int
    enqueued_ms: int
    message: bytes


class EventLog:
    """The events of one partition, optionally backed by segment files."""

    def __init__(
        self,
        directory: Path | None = None,
        retention: Retention | None = None,
        *,
        segment_bytes: int = SEGMENT_BYTES,
        fsync: bool = False,
    ) -> None:
        self.retention = retention or Retention()
        self._directory = directory
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        self._base = 0  # sequence number of self._messages[0]
        self._offsets: list[int] = []
        self._times: list[int] = []
        self._messages: list[bytes] = []
        self._next_offset = 0
        self._segments: list[tuple[int, Path]] = []
        self._fd: int | None = None
        self._fd_size = 0
        if directory is not None:
            self._open(directory)

    @property
    def begin_sequence(self) -> int:
        """Sequence number of the oldest retained event (the next one when empty)."""
        return self._base

    @property
    def end_sequence(self) -> int:
        """Sequence number the next appended event will get."""
        return self._base + len(self._messages)

    @property
    def next_offset(self) -> int:
        """Offset the next appended event will get."""
        return self._next_offset

    def __len__(self) -> int:
        return len(self._messages)

    def last(self) -> StoredEvent | None:
        """Return the newest event, if any."""
        return self.get(self.end_sequence - 1) if self._messages else None

    def get(self, sequence_number: int) -> StoredEvent:
        """Return the event with this sequence number (it must be retained)."""
        i = sequence_number - self._base
        return StoredEvent(sequence_number, self._offsets[i], self._times[i], self._messages[i])

    def messages(self, start: int, limit: int) -> list[bytes]:
        """Return up to ``limit`` stored messages from sequence number ``start`` on."""
        i = max(start - self._base, 0)
        return self._messages[i : i + limit]

    def append(self, events: Sequence[StoredEvent]) -> None:
        """Append events whose sequence numbers continue the log; persist them first."""
        if self._directory is not None:
            self._write(events)
        for event in events:
            self._offsets.append(event.offset)
            self._times.append(event.enqueued_ms)
            self._messages.append(event.message)
            self._next_offset = event.offset + len(event.message)

    def sequence_after_offset(self, offset: int, inclusive: bool) -> int:
        """First sequence number whose offset is greater than (or equal to) ``offset``."""
        find = bisect.bisect_left if inclusive else bisect.bisect_right
        return self._base + find(self._offsets, offset)

    def sequence_after_time(self, enqueued_ms: int, inclusive: bool) -> int:
        """First sequence number enqueued after (or at) ``enqueued_ms``."""
        find = bisect.bisect_left if inclusive else bisect.bisect_right
        return self._base + find(self._times, enqueued_ms)

    def expire(self, now_ms: int) -> None:
        """Drop events outside the retention limits, oldest first."""
        drop = 0
        if self.retention.max_events is not None:
            drop = max(0, len(self._messages) - self.retention.max_events)
        if self.retention.max_age_s is not None:
            cutoff = now_ms - int(self.retention.max_age_s * 1000)
            drop = max(drop, bisect.bisect_left(self._times, cutoff))
        if drop:
            del self._offsets[:drop], self._times[:drop], self._messages[:drop]
            self._base += drop
            self._remove_old_segments()

    def close(self) -> None:
        """Close the segment file; the log is unusable afterwards."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _write(self, events: Sequence[StoredEvent]) -> None:
        if self._fd is None or self._fd_size >= self._segment_bytes:
            self._roll(events[0].sequence_number)
        assert self._fd is not None
        data = b"".join(_record(event) for event in events)
        written = os.write(self._fd, data)
        if written != len(data):
            raise StorageError(f"short write to {self._segments[-1][1]}")
        self._fd_size += written
        if self._fsync:
            os.fsync(self._fd)

    def _roll(self, first_sequence: int) -> None:
        self.close()
        assert self._directory is not None
        path = self._directory / f"{first_sequence:020d}.log"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._fd_size = path.stat().st_size
        self._segments.append((first_sequence, path))

    def _remove_old_segments(self) -> None:
        # A segment can go once the next segment starts at or before the oldest retained event.
        while len(self._segments) > 1 and self._segments[1][0] <= self._base:
            self._segments.pop(0)[1].unlink(missing_ok=True)

    def _open(self, directory: Path) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            paths = sorted(directory.glob("*.log"))
        except OSError as exc:
            raise StorageError(f"cannot open {directory}: {exc}") from exc
        for index, path in enumerate(paths):
            last = index == len(paths) - 1
            events = list(_read_segment(path, truncate_torn_tail=last))
            if events and not self._messages:
                self._base = events[0].sequence_number
            if events and events[0].sequence_number != self.end_sequence:
                raise StorageError(f"{path} does not continue the previous segment")
            self._segments.append((int(path.stem), path))
            self._append_loaded(events)
        if self._segments:
            self._roll_reopen()

    def _append_loaded(self, events: list[StoredEvent]) -> None:
        directory, self._directory = self._directory, None
        try:
            self.append(events)
        finally:
            self._directory = directory

    def _roll_reopen(self) -> None:
        # Reopen the newest segment for appending; _roll records it again.
        first, _ = self._segments.pop()
        self._roll(first)


def _record(event: StoredEvent) -> bytes:
    body = _BODY_HEAD.pack(event.sequence_number, event.offset, event.enqueued_ms) + event.message
    return _RECORD_HEAD.pack(len(body), zlib.crc32(body)) + body


def _read_segment(path: Path, *, truncate_torn_tail: bool) -> Iterator[StoredEvent]:
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        intact = pos + _RECORD_HEAD.size <= len(data)
        if intact:
            size, crc = _RECORD_HEAD.unpack_from(data, pos)
            body = data[pos + _RECORD_HEAD.size : pos + _RECORD_HEAD.size + size]
            intact = len(body) == size >= _BODY_HEAD.size and zlib.crc32(body) == crc
        if not intact:
            if not truncate_torn_tail:
                raise StorageError(f"{path} is corrupt at byte {pos}")
            os.truncate(path, pos)  # a torn write from a crash: drop it, keep what came before
            return
        seq, offset, enqueued = _BODY_HEAD.unpack_from(body)
        yield StoredEvent(seq, offset, enqueued, body[_BODY_HEAD.size :])
        pos += _RECORD_HEAD.size + size
