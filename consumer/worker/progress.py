"""Which events of one partition are finished, and how far a checkpoint may go.

Events start in partition order but finish in any order (their actions run concurrently).
A checkpoint may only name an event below which every event has finished, or a crash
would skip the unfinished ones. ``PartitionProgress`` keeps the started events in order
and advances ``safe`` over the finished prefix, the rule faust calls contiguous offsets.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

T = TypeVar("T")


class PartitionProgress(Generic[T]):
    """Started and finished events of one partition, keyed by sequence number."""

    def __init__(self) -> None:
        self._started: OrderedDict[int, list[object]] = OrderedDict()
        self._safe: T | None = None
        self._safe_sequence: int | None = None
        self._last: int | None = None

    @property
    def in_flight(self) -> int:
        """Events started and not yet released by the finished prefix."""
        return len(self._started)

    @property
    def safe(self) -> T | None:
        """The last event of the finished prefix: where a checkpoint may point."""
        return self._safe

    @property
    def safe_sequence(self) -> int | None:
        """The sequence number of ``safe``."""
        return self._safe_sequence

    @property
    def last_started(self) -> int | None:
        """The highest sequence number started so far (finished or not)."""
        return self._last

    def seen(self, sequence_number: int) -> bool:
        """Whether ``sequence_number`` is at or below the last started event: a redelivery
        of an event that is in flight or finished here already."""
        return self._last is not None and sequence_number <= self._last

    def start(self, sequence_number: int, item: T) -> None:
        """Record that the event ``item`` has started; sequence numbers must increase."""
        if self.seen(sequence_number):
            raise ValueError(f"sequence number {sequence_number} is not after the last started")
        self._started[sequence_number] = [item, False]
        self._last = sequence_number

    def start_finished(self, sequence_number: int, item: T) -> None:
        """``start`` and ``finish`` at once, for an event done the moment it arrived."""
        if self._started:
            self.start(sequence_number, item)
            self.finish(sequence_number)
        elif self.seen(sequence_number):
            raise ValueError(f"sequence number {sequence_number} is not after the last started")
        else:  # nothing in flight: this event is the new safe point
            self._safe, self._safe_sequence = item, sequence_number
            self._last = sequence_number

    def finish(self, sequence_number: int) -> bool:
        """Record that an event is finished; returns whether ``safe`` moved."""
        entry = self._started.get(sequence_number)
        if entry is None:
            raise KeyError(sequence_number)
        entry[1] = True
        moved = False
        while self._started:
            first, (item, done) = next(iter(self._started.items()))
            if not done:
                break
            self._started.popitem(last=False)
            self._safe, self._safe_sequence = item, first  # type: ignore[assignment]
            moved = True
        return moved
