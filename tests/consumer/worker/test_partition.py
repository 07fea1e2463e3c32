"""One partition's window: ordered intake, bounded concurrency, safe checkpoints."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest
import structlog

from consumer.worker.handler import Received
from consumer.worker.metrics import Metrics
from consumer.worker.partition import Cadence, PartitionWorker


class Checkpoints:
    """Records the checkpoints written; can be told to fail a number of times first."""

    def __init__(self, fail: int = 0) -> None:
        self.written: list[int] = []
        self.fail = fail

    async def __call__(self, marker: object) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("storage is down")
        assert isinstance(marker, int)
        self.written.append(marker)


class Work:
    """Event handling whose duration is chosen per sequence number."""

    def __init__(
        self, delays: dict[int, float] | None = None, inline: set[int] | None = None
    ) -> None:
        self.delays = delays or {}
        self.inline = inline or set()
        self.running = 0
        self.peak = 0
        self.done: list[int] = []

    def start(self, received: Received) -> Coroutine[Any, Any, None] | None:
        """Events listed in ``inline`` finish at once; the others become a coroutine."""
        if received.sequence_number in self.inline:
            self.done.append(received.sequence_number)
            return None
        return self.run(received)

    async def run(self, received: Received) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(self.delays.get(received.sequence_number, 0))
            self.done.append(received.sequence_number)
        finally:
            self.running -= 1


def _worker(work: Work, checkpoints: Checkpoints, **cadence: float) -> PartitionWorker:
    return PartitionWorker(
        "0",
        start=work.start,
        checkpoint=checkpoints,
        cadence=Cadence(**cadence),  # type: ignore[arg-type]
        metrics=Metrics(clock=lambda: 0.0),
        log=structlog.get_logger("test"),
    )


def _received(seq: int) -> Received:
    return Received(partition="0", body=b"{}", sequence_number=seq, offset=str(seq * 10))


async def test_a_slow_event_holds_the_checkpoint_until_it_finishes() -> None:
    """With event 2 slow and 3..9 fast, no checkpoint passes 1 until 2 is done."""
    work, checkpoints = Work({2: 0.5}), Checkpoints()
    worker = _worker(work, checkpoints, every_events=1, every_s=0.05)
    for seq in range(10):
        await worker.submit(_received(seq), seq)
    await asyncio.sleep(0.3)
    assert 2 not in work.done and set(range(3, 10)) <= set(work.done)
    assert checkpoints.written and max(checkpoints.written) <= 1
    await asyncio.sleep(0.4)
    assert checkpoints.written[-1] == 9
    await worker.close(1)


async def test_window_bounds_concurrency_and_applies_backpressure() -> None:
    """No more than max_in_flight events run at once; submit waits for a free slot."""
    work = Work(dict.fromkeys(range(20), 0.05))
    worker = _worker(work, Checkpoints(), max_in_flight=3, every_s=0.05)
    for seq in range(20):
        await worker.submit(_received(seq), seq)
    await worker.close(5)
    assert work.peak == 3
    assert sorted(work.done) == list(range(20))


async def test_count_cadence_writes_before_the_time_cadence() -> None:
    """every_events triggers a checkpoint long before every_s would."""
    checkpoints = Checkpoints()
    worker = _worker(Work(), checkpoints, every_events=5, every_s=60)
    for seq in range(5):
        await worker.submit(_received(seq), seq)
    await asyncio.sleep(0.1)
    assert checkpoints.written == [4]
    await worker.close(1)


async def test_failed_checkpoints_are_retried_at_the_next_flush() -> None:
    """A storage error does not stop processing; a later flush writes the checkpoint."""
    checkpoints = Checkpoints(fail=2)
    worker = _worker(Work(), checkpoints, every_events=1, every_s=0.05)
    for seq in range(3):
        await worker.submit(_received(seq), seq)
    await asyncio.sleep(0.4)
    assert checkpoints.written[-1] == 2
    assert worker.checkpointed_sequence == 2
    await worker.close(1)


async def test_close_drains_within_the_deadline_and_leaves_the_rest_unfinished() -> None:
    """Work that outlives the drain deadline is cancelled and never checkpointed past."""
    work, checkpoints = Work({1: 30}), Checkpoints()
    worker = _worker(work, checkpoints, every_s=60)
    for seq in range(3):
        await worker.submit(_received(seq), seq)
    await asyncio.sleep(0.05)
    await worker.close(0.2)
    assert checkpoints.written == [0]
    assert 1 not in work.done


async def test_inline_events_finish_without_a_slot_and_keep_the_order() -> None:
    """Events done synchronously advance the checkpoint, but never past a slower earlier one."""
    work, checkpoints = Work({0: 0.3}, inline={1, 2, 3}), Checkpoints()
    worker = _worker(work, checkpoints, every_events=1, every_s=0.05, max_in_flight=1)
    for seq in range(4):
        await worker.submit(_received(seq), seq)
    assert work.done == [1, 2, 3]
    await asyncio.sleep(0.15)
    assert checkpoints.written == []
    await asyncio.sleep(0.35)
    assert checkpoints.written[-1] == 3
    await worker.close(1)


async def test_intake_pauses_when_too_much_waits_behind_a_slow_event() -> None:
    """With max_behind=5, a slow first event stops intake at 5 until it finishes."""
    work = Work({0: 0.4}, inline=set(range(1, 20)))
    worker = _worker(work, Checkpoints(), every_s=0.05, max_behind=5)
    feeding = asyncio.create_task(_feed(worker, 20))
    await asyncio.sleep(0.2)
    assert worker.in_flight == 5
    assert not feeding.done()
    await asyncio.wait_for(feeding, 2)
    assert sorted(work.done) == list(range(20))
    await worker.close(1)


async def _feed(worker: PartitionWorker, count: int) -> None:
    for seq in range(count):
        await worker.submit(_received(seq), seq)


async def test_redelivered_events_are_recognised_and_never_leak_a_slot() -> None:
    """After a reconnect the SDK hands over again events started here (in flight or done):
    each is skipped and counted, the window keeps all its slots, nothing runs twice."""
    work = Work(dict.fromkeys(range(8), 0.05))
    metrics = Metrics(clock=lambda: 0.0)
    worker = PartitionWorker(
        "0", start=work.start, checkpoint=Checkpoints(), cadence=Cadence(max_in_flight=4,
        every_s=0.05), metrics=metrics, log=structlog.get_logger("test"),
    )  # fmt: skip
    for seq in range(4):
        assert await worker.submit(_received(seq), seq)
    for _ in range(3):  # three reconnects re-dispatch what was in flight, then what finished
        for seq in range(4):
            assert not await worker.submit(_received(seq), seq)
    for seq in range(4, 8):
        assert await worker.submit(_received(seq), seq)
    await worker.close(5)
    assert sorted(work.done) == list(range(8))
    assert worker.in_flight == 0
    text = metrics.render().decode()
    assert 'mlevents_events_redelivered_total{partition="0"} 12.0' in text


async def test_a_closed_worker_starts_nothing_not_even_a_submit_waiting_for_a_slot() -> None:
    """A batch callback that outlives the partition's close must not start its events: they
    stay unfinished, so the next owner reads them from the checkpoint."""
    work, checkpoints = Work({0: 0.2}), Checkpoints()
    worker = _worker(work, checkpoints, max_in_flight=1, every_s=60)
    assert await worker.submit(_received(0), 0)
    waiting = asyncio.create_task(worker.submit(_received(1), 1))
    await asyncio.sleep(0)  # the submit of 1 runs up to the full window's slot and waits there
    assert worker._slots.locked() and not waiting.done()
    await worker.close(5)
    assert await waiting is False
    assert await worker.submit(_received(2), 2) is False
    assert work.done == [0]
    assert checkpoints.written == [0]


@pytest.mark.parametrize("ticks", range(8))
async def test_close_stops_a_flusher_woken_in_the_same_moment(ticks: int) -> None:
    """Closing just as a flush is wanted, at every step of the flusher's waking up, still
    stops the flusher: a cancellation it swallowed would keep it looping, and ``close``,
    which waits for it, would never return."""
    work, checkpoints = Work(inline={0}), Checkpoints()
    worker = _worker(work, checkpoints, every_events=1, every_s=3600)
    await asyncio.sleep(0)  # the flusher is waiting
    await worker.submit(_received(0), 0)  # finished at once: a flush is wanted
    for _ in range(ticks):
        await asyncio.sleep(0)
    closing = asyncio.create_task(worker.close(1))
    done, _ = await asyncio.wait({closing}, timeout=5)
    closing.cancel()
    assert done, "close is still waiting for the flusher"
    assert checkpoints.written == [0]
