"""Processing one partition: ordered intake, a bounded window of concurrent work, and
checkpoints that never pass an unfinished event.

``PartitionWorker.submit`` is called for each event in partition order. It runs the
event's synchronous part at once (``Handler.start``); when I/O is left, it waits while the
window is full (backpressure on the Event Hubs receiver) and runs the rest as a task. When
work finishes, ``PartitionProgress`` advances over the finished prefix and a background
flusher writes a checkpoint at that point every ``every_events`` events or ``every_s``
seconds, whichever comes first. ``close`` drains in-flight work within a deadline, cancels
what is left (those events stay unfinished, so they are read again after a restart) and
writes the final checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from consumer.config import CheckpointConfig, ProcessingConfig, StoreConfig
from consumer.worker.handler import Received
from consumer.worker.progress import PartitionProgress

Checkpoint = Callable[[Any], Awaitable[None]]
"""Writes a checkpoint at the given received event (the SDK's EventData)."""


class PartitionMetrics(Protocol):
    """What a partition reports (``consumer.worker.metrics.Metrics`` provides it)."""

    def set_in_flight(self, partition: str, count: int) -> None: ...
    def redelivered(self, partition: str) -> None: ...
    def checkpointed(self, partition: str, sequence_number: int, at: float) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Cadence:
    """When to write checkpoints and how much work may run at once (by default, as the
    config's defaults say)."""

    max_in_flight: int = ProcessingConfig().max_in_flight
    every_events: int = CheckpointConfig().every_events
    every_s: float = CheckpointConfig().every_s
    checkpoint_timeout_s: float = StoreConfig().timeout_s
    """A checkpoint write slower than this counts as failed (storage outage); the next
    flush tries again, and shutdown is not held by a store that does not answer."""
    max_behind: int = 10_000
    """Events finished behind an unfinished one that may wait for it (memory, and the
    work a crash repeats); intake pauses beyond that until the slow event is done."""


class PartitionWorker:
    """One claimed partition's processing; see the module docstring."""

    def __init__(
        self,
        partition: str,
        *,
        start: Callable[[Received], Coroutine[Any, Any, object] | None],
        checkpoint: Checkpoint,
        cadence: Cadence,
        metrics: PartitionMetrics,
        log: structlog.typing.FilteringBoundLogger,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.partition = partition
        self._start, self._checkpoint, self._cadence = start, checkpoint, cadence
        self._metrics, self._clock = metrics, clock
        self._log = log.bind(partition=partition)
        self._progress: PartitionProgress[Any] = PartitionProgress()
        self._slots = asyncio.Semaphore(cadence.max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._since_flush = 0
        self._written: int | None = None
        self._flush_wanted = asyncio.Event()
        self._moved = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._closed = False
        self._flusher = asyncio.create_task(self._flush_loop(), name=f"flusher-{partition}")

    @property
    def in_flight(self) -> int:
        """Events started whose checkpoint is not yet safe to write."""
        return self._progress.in_flight

    @property
    def checkpointed_sequence(self) -> int | None:
        """The sequence number of the last checkpoint this worker wrote."""
        return self._written

    async def submit(self, received: Received, marker: Any) -> bool:
        """Process the next event of the partition; waits while the window is full.

        Returns whether the event was started. It is not when this worker is closed (the
        partition moved on; the event stays unfinished, so it is read again from the
        checkpoint), nor when it was started here before: after a dropped connection the SDK
        hands over again events it had dispatched already (in flight or finished here), and
        those must neither run twice nor be lost.
        """
        sequence = received.sequence_number
        if self._progress.seen(sequence):
            self._metrics.redelivered(self.partition)
            return False
        while self._progress.in_flight >= self._cadence.max_behind and not self._closed:
            self._moved.clear()
            await self._moved.wait()
        if self._closed:
            return False
        rest = self._begin(received, marker)
        if rest is None:
            return True
        return await self._spawn(received, rest, marker)

    async def submit_batch(self, batch: Sequence[tuple[Received, Any]]) -> None:
        """``submit`` each (event, marker) in order; an event whose ``submit`` fails is
        logged (``partition.on_event_failed``) and the next one goes on. Stops at once when
        the worker is closed: the rest is read again from the checkpoint.

        An event that needs no wait and leaves no I/O (most events: they match nothing, or
        only log) costs no ``await``: one call per batch instead of a coroutine per event.
        """
        progress, max_behind = self._progress, self._cadence.max_behind
        for received, marker in batch:
            if self._closed:
                return
            sequence = received.sequence_number
            try:
                if progress.in_flight >= max_behind or progress.seen(sequence):
                    await self.submit(received, marker)  # waits for room, or skips it
                    continue
                rest = self._begin(received, marker)
                if rest is not None:
                    await self._spawn(received, rest, marker)
            except Exception:  # noqa: BLE001 - nothing may escape into the SDK
                self._log.exception("partition.on_event_failed", sequence_number=sequence)

    def _begin(self, received: Received, marker: Any) -> Coroutine[Any, Any, object] | None:
        """Start the event; when it is done already (nothing to wait for), count it finished
        and return None, else return the rest to run."""
        rest = self._start(received)
        if rest is None:
            self._progress.start_finished(received.sequence_number, marker)
            self._count_finished()
        return rest

    async def _spawn(
        self, received: Received, rest: Coroutine[Any, Any, object], marker: Any
    ) -> bool:
        """Run the rest of a started event as a task once the window has room; False when
        the worker was closed meanwhile (the event is not started)."""
        slot = False
        try:
            await self._slots.acquire()
            slot = True
            if self._closed:  # closed while this waited for a slot: not started
                rest.close()
                self._slots.release()
                return False
            self._progress.start(received.sequence_number, marker)
            task = asyncio.create_task(
                self._run(received, rest), name=f"event-{received.sequence_number}"
            )
        except BaseException:
            # Whatever failed between taking the slot and the task, the slot comes back.
            rest.close()
            if slot:
                self._slots.release()
            raise
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._metrics.set_in_flight(self.partition, self._progress.in_flight)
        return True

    async def _run(self, received: Received, rest: Coroutine[Any, Any, object]) -> None:
        try:
            await rest
        finally:
            self._slots.release()
        # Reached only when the work finished: a cancelled event stays unfinished.
        self._finished(received.sequence_number)
        self._metrics.set_in_flight(self.partition, self._progress.in_flight)

    def _finished(self, sequence_number: int) -> None:
        if self._progress.finish(sequence_number):
            self._moved.set()
        self._count_finished()

    def _count_finished(self) -> None:
        self._since_flush += 1
        if self._since_flush >= self._cadence.every_events:
            self._flush_wanted.set()

    async def _flush_loop(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation
            # that arrives as its wait ends, and this loop would then outlive ``close``.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._cadence.every_s):
                    await self._flush_wanted.wait()
            self._flush_wanted.clear()
            await self.flush()

    async def flush(self) -> bool:
        """Write a checkpoint at the finished prefix if it moved; say whether one was written."""
        async with self._flush_lock:
            marker, sequence = self._progress.safe, self._progress.safe_sequence
            if marker is None or sequence is None or sequence == self._written:
                return False
            self._since_flush = 0
            try:
                async with asyncio.timeout(self._cadence.checkpoint_timeout_s):
                    await self._checkpoint(marker)
            except Exception as exc:  # noqa: BLE001 - storage outages must not stop intake
                # The next flush retries from the same (or a later) safe point; nothing is lost,
                # at worst more events are read again after a crash.
                self._log.warning(
                    "checkpoint.failed",
                    sequence_number=sequence,
                    error=f"{type(exc).__name__}: {exc}",
                )
                return False
            self._written = sequence
            self._metrics.checkpointed(self.partition, sequence, self._clock())
            return True

    async def close(self, deadline_s: float) -> None:
        """Drain in-flight work within ``deadline_s``, cancel the rest, write a last checkpoint.

        From here on ``submit`` starts nothing: a batch callback the SDK left running can
        outlive the partition's close and its next claim."""
        self._closed = True
        self._moved.set()  # a submit waiting for room gives up
        self._flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._flusher
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=deadline_s)
            for task in pending:
                task.cancel()
            if pending:
                self._log.warning("partition.drain_deadline", cancelled=len(pending))
                await asyncio.wait(pending)
        await asyncio.shield(self.flush())
