"""CPU per event of the worker's batch path, on top of the SDK, by part, in one process.

``bench.worker_throughput`` tells how much slower ``mlevents run`` drains than a bare SDK
consumer; this tells where the worker's own CPU goes. It receives ``EVENTS`` real
``EventData`` once from an in-process emulator (``worker_throughput``'s bodies, spread over
its 4 partitions, in the batches the SDK hands over), then feeds them, batch by batch and
partition by partition, through the worker's parts and times each with the process's CPU
clock (worker threads included):

* receive: the SDK's own receive path, as the bare consumer pays it (for scale);
* received: ``consumer.worker.intake`` turning an ``EventData`` into a ``Received``;
* decode, match: ``rules.decode_body`` and the rule table's ``match`` (100 rules with
  ``log`` actions at ``debug``, as ``worker_throughput`` runs them);
* handler: ``Handler.start`` with the bodies' events and their matches served from what
  decode and match gave before: metrics, decisions, the inline log actions;
* submit: ``PartitionWorker.submit`` and its progress and flusher, checkpoints written nowhere;
* checkpoints: the SDK's ``PartitionContext.update_checkpoint`` into the guarded SQLite
  store, at the worker's cadence (every 100 events per partition);
* batch path: all of it at once through ``Intake``'s batch callback, as ``mlevents run``
  wires it; ``ours`` is what that costs on top of the SDK.

Each part runs ``REPEATS`` times on fresh objects; the least CPU is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, cast
from unittest import mock

import msgspec
import structlog
from azure.eventhub import EventData
from azure.eventhub.aio import CheckpointStore, EventHubConsumerClient, PartitionContext

from bench.worker_throughput import HUB, PARTITIONS, event_bodies, preload, rules_document
from consumer.actions.log import LogExecutor
from consumer.commands.run import run_fast
from consumer.config import EventHubConfig
from consumer.logs import configure_logging
from consumer.stores.checkpoints import SqliteCheckpointStore
from consumer.stores.deadletters import DeadLetterStore
from consumer.stores.deadlines import Dependencies, Guard, GuardedCheckpointStore
from consumer.worker.handler import Handler, Received
from consumer.worker.intake import BATCH_SIZE, MAX_WAIT_S, Intake, _received
from consumer.worker.metrics import Metrics
from consumer.worker.partition import Cadence, PartitionWorker
from consumer.worker.wiring import GC_THRESHOLD
from emulator import Emulator, HubSpec
from rules import Event, Rule, RuleSource, RuleTable, decode_body, load_table

EVENTS = 25_000
PREFETCH = EventHubConfig().prefetch
REPEATS = 3
GROUP = "$Default"

Batches = list[tuple[str, list[EventData]]]


async def receive(count: int = EVENTS) -> tuple[Batches, float]:
    """``count`` events from a fresh emulator, as the SDK's batches, and the CPU seconds the
    SDK spent receiving them (the bare consumer's cost)."""
    batches: Batches = []
    seen = 0
    done = asyncio.Event()
    cpu_first = cpu_last = 0.0
    async with Emulator([HubSpec(HUB, PARTITIONS, (GROUP,))]) as emulator:
        await preload(emulator.connection_string(HUB), event_bodies(count))
        client = EventHubConsumerClient.from_connection_string(
            emulator.connection_string(HUB), GROUP
        )

        async def on_batch(context: PartitionContext, events: list[EventData]) -> None:
            nonlocal seen, cpu_first, cpu_last
            if not events:
                return
            if not batches:
                cpu_first = time.process_time()
            batches.append((context.partition_id, events))
            seen += len(events)
            if seen >= count:
                cpu_last = time.process_time()
                done.set()

        task = asyncio.create_task(
            client.receive_batch(
                on_batch, max_batch_size=BATCH_SIZE, max_wait_time=MAX_WAIT_S,
                starting_position="-1", prefetch=PREFETCH,
            )
        )  # fmt: skip
        await asyncio.wait_for(done.wait(), 120)
        await client.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # The emulator shares the process: its CPU is in the span too, so this overstates the SDK.
    return batches, cpu_last - cpu_first


def _table() -> RuleTable:
    text = msgspec.json.Encoder(decimal_format="number").encode(rules_document()).decode()
    return load_table([RuleSource("rules.json", text)]).table


def _handler(table: RuleTable, metrics: Metrics) -> Handler:
    log: structlog.typing.FilteringBoundLogger = structlog.get_logger("mlevents").bind()
    return Handler(
        rules=lambda: table,
        executors={"log": cast(Any, LogExecutor(log))},
        dead_letters=cast(DeadLetterStore, None),  # every body decodes, every action is inline
        metrics=metrics,
        log=log,
    )


async def _nowhere(_: object) -> None:
    """Where the submit part's checkpoints go."""


def _partition_worker(
    partition: str,
    start: Callable[[Received], Coroutine[Any, Any, object] | None],
    checkpoint: Callable[[Any], Any],
    metrics: Metrics,
) -> PartitionWorker:
    return PartitionWorker(
        partition,
        start=start,
        checkpoint=checkpoint,
        cadence=Cadence(),
        metrics=metrics,
        log=structlog.get_logger("mlevents").bind(),
    )


def _store(folder: Path) -> GuardedCheckpointStore:
    metrics = Metrics(clock=time.time)
    guard = Guard("checkpoints", 10.0, Dependencies(metrics, structlog.get_logger().bind()))
    return GuardedCheckpointStore(SqliteCheckpointStore(folder / "checkpoints.sqlite3"), guard)


def _context(partition: str, store: CheckpointStore | None) -> PartitionContext:
    return PartitionContext("bench.example", HUB, GROUP, partition, store)


async def _close_store(store: GuardedCheckpointStore) -> None:
    await cast(SqliteCheckpointStore, store._store).close()


class _Served:
    """Each body's events and each event's matches, worked out before (a stand-in for
    ``decode_body`` and the table, to time the handler without them)."""

    def __init__(self, bodies: list[bytes], table: RuleTable) -> None:
        self._events = {id(body): decode_body(body) for body in bodies}  # each kept alive
        self._matches = {
            id(event): table.match(event) for events in self._events.values() for event in events
        }

    def decode(self, body: bytes) -> Sequence[Event]:
        return self._events[id(body)]

    def match(self, event: Event) -> Sequence[Rule]:
        return self._matches[id(event)]


class _Parts:
    """Each part of the batch path as a coroutine over every batch, on fresh objects."""

    def __init__(self, batches: Batches, table: RuleTable) -> None:
        self.batches, self.table = batches, table
        self.received = [(p, [_received(p, e) for e in events]) for p, events in batches]
        self.bodies = [r.body for _, rs in self.received for r in rs]
        self.decoded = [event for body in self.bodies for event in decode_body(body)]
        self.partitions = sorted({p for p, _ in batches})
        self.served = _Served(self.bodies, table)

    async def received_(self) -> None:
        for partition, events in self.batches:
            for event in events:
                _received(partition, event)

    async def decode(self) -> None:
        for body in self.bodies:
            decode_body(body)

    async def match(self) -> None:
        for event in self.decoded:
            self.table.match(event)

    async def start(self) -> None:
        """``Handler.start`` on its own: decode and match answer from a dictionary."""
        handler = _handler(cast(RuleTable, self.served), Metrics(clock=time.time))
        with mock.patch("consumer.worker.handler.decode_body", self.served.decode):
            for _, events in self.received:
                for one in events:
                    handler.start(one)

    async def submit(self) -> None:
        metrics = Metrics(clock=time.time)
        workers = {
            p: _partition_worker(p, lambda _: None, _nowhere, metrics) for p in self.partitions
        }
        for (partition, events), (_, ours) in zip(self.batches, self.received, strict=True):
            worker = workers[partition]
            for event, one in zip(events, ours, strict=True):
                await worker.submit(one, event)
            await asyncio.sleep(0)  # the SDK's receive loop runs between callbacks
        for worker in workers.values():
            await worker.close(1.0)

    async def checkpoints(self) -> None:
        with tempfile.TemporaryDirectory(prefix="mlevents-bench-") as name:
            store = _store(Path(name))
            contexts = {p: _context(p, store) for p in self.partitions}
            for partition, events in self.batches:
                await contexts[partition].update_checkpoint(events[-1])
            await _close_store(store)

    async def batch_path(self) -> None:
        with tempfile.TemporaryDirectory(prefix="mlevents-bench-") as name:
            store = _store(Path(name))
            metrics = Metrics(clock=time.time)
            handler = _handler(self.table, metrics)

            def make_worker(partition: str, context: PartitionContext) -> PartitionWorker:
                return _partition_worker(
                    partition, handler.start, context.update_checkpoint, metrics
                )

            intake = Intake(
                client=cast(EventHubConsumerClient, None), config=cast(EventHubConfig, None),
                checkpoint_store=store, make_worker=make_worker, metrics=metrics,
                drain_deadline_s=1.0, log=structlog.get_logger("mlevents").bind(),
            )  # fmt: skip
            contexts = {p: _context(p, store) for p in self.partitions}
            for partition in self.partitions:
                intake._workers[partition] = make_worker(partition, contexts[partition])
            for partition, events in self.batches:
                await intake._on_batch(contexts[partition], events)
                await asyncio.sleep(0)
            for partition in self.partitions:
                await intake._on_partition_close(contexts[partition], "done")
            await _close_store(store)


async def measure(batches: Batches, table: RuleTable) -> dict[str, float]:
    """CPU seconds of each part over every batch (the least of ``REPEATS`` runs)."""
    parts = _Parts(batches, table)
    runs: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
        "received": parts.received_,
        "decode": parts.decode,
        "match": parts.match,
        "handler.start": parts.start,
        "submit": parts.submit,
        "checkpoints": parts.checkpoints,
        "batch path": parts.batch_path,
    }
    cpu: dict[str, float] = {}
    for name, part in runs.items():
        spent = []
        for _ in range(REPEATS):
            before = time.process_time()
            await part()
            spent.append(time.process_time() - before)
        cpu[name] = min(spent)
    return cpu


async def _run() -> int:
    configure_logging("json", "warning", stream=io.StringIO())  # the bench worker's level
    table = _table()
    batches, sdk_s = await receive()
    events = sum(len(events) for _, events in batches)
    # As ``mlevents run`` sets the collector up once started (the events held here too).
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    cpu = await measure(batches, table)
    us = {name: seconds / events * 1e6 for name, seconds in cpu.items()}
    rows = [
        ("receive (SDK + emulator)", sdk_s / events * 1e6),
        ("received", us["received"]),
        ("decode", us["decode"]),
        ("match", us["match"]),
        ("handler", us["handler.start"]),
        ("submit + progress + flusher", us["submit"]),
        ("checkpoints (SQLite)", us["checkpoints"]),
        ("batch path (all of ours)", us["batch path"]),
        ("  ours without decode, match", us["batch path"] - us["decode"] - us["match"]),
    ]
    print(f"{events:,} events in {len(batches):,} batches over {PARTITIONS} partitions; "
          f"CPU per event, least of {REPEATS} runs")  # fmt: skip
    for name, value in rows:
        print(f"  {name:<34} {value:6.2f} us")
    return 0


def main() -> int:
    """Print the CPU per event of each part of the worker's batch path."""
    return run_fast(_run())


if __name__ == "__main__":
    sys.exit(main())
