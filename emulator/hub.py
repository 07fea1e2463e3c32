"""Event hubs, partitions and consumer groups: what the emulator stores and who may read it.

This module owns the broker rules: routing a sent event to a partition (partition
id, partition key hash, or round-robin), assigning sequence numbers, offsets and
enqueued times, resolving a consumer's starting position, and the reader rules per
partition and consumer group (epochs steal, at most five non-epoch readers). It
knows nothing about connections or frames.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from emulator.amqp import Symbol, Timestamp, annotate
from emulator.errors import ConfigError, LinkStolen, NotFound, QuotaExceeded
from emulator.storage import EventLog, Retention, StoredEvent

DEFAULT_GROUP = "$Default"
# The service allows five concurrent non-epoch readers per partition and consumer group.
MAX_READERS = 5
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class HubSpec:
    """One event hub to serve: its name, partition count and consumer groups."""

    name: str
    partitions: int = 4
    consumer_groups: tuple[str, ...] = (DEFAULT_GROUP,)

    @classmethod
    def parse(cls, text: str) -> HubSpec:
        """Parse ``NAME:PARTITIONS[:GROUP,...]``; ``$Default`` is always included.

        Raises:
            ConfigError: the text is not a valid hub spec.
        """
        name, _, rest = text.partition(":")
        count_text, _, groups_text = rest.partition(":")
        if not name or "/" in name:
            raise ConfigError(f"hub spec {text!r}: the hub needs a name without '/'")
        try:
            count = int(count_text) if count_text else 4
        except ValueError:
            raise ConfigError(f"hub spec {text!r}: partition count must be a number") from None
        if not 1 <= count <= 1024:
            raise ConfigError(f"hub spec {text!r}: partition count must be 1..1024")
        groups = [g for g in groups_text.split(",") if g]
        return cls(name, count, (DEFAULT_GROUP, *groups))


class Reader(Protocol):
    """A consumer link as the hub sees it: its epoch, and how to take the partition away."""

    @property
    def epoch(self) -> int | None: ...

    def steal(self, error: LinkStolen) -> None: ...


@dataclass(slots=True)
class Partition:
    """One partition: its event log, the readers per consumer group, and waiting consumers."""

    hub: str
    id: str
    log: EventLog
    clock: Clock
    readers: dict[str, list[Reader]] = field(default_factory=dict)
    _arrival: asyncio.Event = field(default_factory=asyncio.Event)

    def append(self, messages: Sequence[bytes], partition_key: str | None) -> None:
        """Store messages: annotate each with its sequence number, offset and enqueued time."""
        now_ms = int(self.clock() * 1000)
        last = self.log.last()
        # Enqueued times never go backwards, so that time lookups can bisect.
        now_ms = max(now_ms, last.enqueued_ms if last else now_ms)
        seq, offset = self.log.end_sequence, self.log.next_offset
        events: list[StoredEvent] = []
        for raw in messages:
            notes: dict[object, object] = {
                Symbol("x-opt-sequence-number"): seq,
                Symbol("x-opt-offset"): str(offset),
                Symbol("x-opt-enqueued-time"): Timestamp(now_ms),
            }
            if partition_key is not None:
                notes[Symbol("x-opt-partition-key")] = partition_key
            stored = annotate(raw, notes)
            events.append(StoredEvent(seq, offset, now_ms, stored))
            seq, offset = seq + 1, offset + len(stored)
        self.log.append(events)
        self.log.expire(now_ms)
        self._arrival.set()
        self._arrival = asyncio.Event()

    async def wait_beyond(self, sequence_number: int) -> None:
        """Return once an event with at least this sequence number exists."""
        while self.log.end_sequence <= sequence_number:
            await self._arrival.wait()

    def start_sequence(self, annotation: str, value: str, inclusive: bool) -> int:
        """Resolve a consumer's selector filter to the first sequence number it reads."""
        self.log.expire(int(self.clock() * 1000))
        if annotation == "offset":
            if value == "@latest":
                return self.log.end_sequence
            if value == "-1":
                return self.log.begin_sequence
            return self.log.sequence_after_offset(int(value), inclusive)
        if annotation == "sequence-number":
            return max(int(value) + (0 if inclusive else 1), self.log.begin_sequence)
        return self.log.sequence_after_time(int(value), inclusive)

    def add_reader(self, group: str, reader: Reader) -> None:
        """Admit a reader under the epoch rules; steal from readers it outranks.

        Raises:
            LinkStolen: a reader with a higher epoch (or any epoch, for a non-epoch reader) exists.
            QuotaExceeded: five non-epoch readers already read this partition in this group.
        """
        current = self.readers.setdefault(group.lower(), [])
        epochs = [r.epoch for r in current if r.epoch is not None]
        new = reader.epoch
        if new is None and epochs:
            raise LinkStolen(
                f"Receiver without epoch cannot attach: a receiver with epoch '{max(epochs)}' "
                "already reads this partition."
            )
        if new is not None and epochs and max(epochs) > new:
            raise LinkStolen(
                f"Receiver with epoch '{new}' cannot attach: a receiver with higher epoch "
                f"'{max(epochs)}' already exists."
            )
        if new is None and len(current) >= MAX_READERS:
            raise QuotaExceeded(
                f"Exceeded the maximum number of allowed receivers per partition in a consumer "
                f"group which is {MAX_READERS}."
            )
        if new is not None:
            for old in list(current):
                current.remove(old)
                old.steal(
                    LinkStolen(
                        f"New receiver with higher epoch of '{new}' is created hence current "
                        f"receiver with epoch '{old.epoch}' is getting disconnected."
                    )
                )
        current.append(reader)

    def remove_reader(self, group: str, reader: Reader) -> None:
        """Forget a reader that detached (no-op if it was already stolen)."""
        current = self.readers.get(group.lower(), [])
        if reader in current:
            current.remove(reader)

    def close(self) -> None:
        """Release the log's file."""
        self.log.close()


class Hub:
    """One event hub: partitions, declared consumer groups, and producer routing."""

    def __init__(
        self,
        spec: HubSpec,
        *,
        data_dir: Path | None = None,
        retention: Retention | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.name = spec.name
        self.created_ms = int(clock() * 1000)
        self.consumer_groups = {g.lower() for g in spec.consumer_groups}
        self.partitions = [
            Partition(
                spec.name,
                str(i),
                EventLog(data_dir / spec.name / str(i) if data_dir else None, retention),
                clock,
            )
            for i in range(spec.partitions)
        ]
        self._round_robin = 0

    @property
    def partition_ids(self) -> list[str]:
        """The partition ids, in order."""
        return [p.id for p in self.partitions]

    def partition(self, partition_id: str) -> Partition:
        """Return a partition by id.

        Raises:
            NotFound: no partition with that id.
        """
        if partition_id.isdigit() and int(partition_id) < len(self.partitions):
            return self.partitions[int(partition_id)]
        raise NotFound(
            f"The specified partition is invalid for an EventHub partition sender or receiver. "
            f"It should be between 0 and {len(self.partitions) - 1}. PartitionId: {partition_id}"
        )

    def check_group(self, group: str) -> None:
        """Raise ``NotFound`` unless the consumer group is declared on this hub."""
        if group.lower() not in self.consumer_groups:
            raise NotFound(
                f"The messaging entity '{self.name}/ConsumerGroups/{group}' could not be found."
            )

    def route(self, partition_key: str | None) -> Partition:
        """Choose a partition for an event sent to the hub itself."""
        if partition_key is not None:
            index = zlib.crc32(partition_key.encode("utf-8")) % len(self.partitions)
        else:
            index = self._round_robin
            self._round_robin = (self._round_robin + 1) % len(self.partitions)
        return self.partitions[index]

    def close(self) -> None:
        """Release every partition's file."""
        for partition in self.partitions:
            partition.close()
