"""The worker: ``mlevents run``'s lifecycle around intake, partitions and the handler.

``Worker`` receives every collaborator (client, stores, executors, metrics, clock) from one
composition root, ``consumer.worker.wiring``, so tests can give it real peers or honest fakes.

Shutdown, in order (SIGTERM or SIGINT; a second signal exits at once, unless it repeats the
first within a second: see ``wiring.install_signals``):

1. stop intake: the receive call is cancelled, so the SDK stops its processor (once), which
   closes each partition and waits for it;
2. each partition drains its in-flight work within ``drain_deadline_s`` and cancels the rest
   (those events stay unfinished and are read again later);
3. each partition writes its final checkpoint;
4. the SDK releases ownership, so other replicas take the partitions at once;
5. sinks and stores are closed by the composition root.

SIGHUP reloads the rule files; a table that fails validation is logged and the old one
keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import structlog
from azure.eventhub.aio import CheckpointStore, EventHubConsumerClient, PartitionContext

from consumer.config import EventHubConfig
from consumer.errors import StartError
from consumer.rulefiles import load_rule_files
from consumer.stores.deadlines import Dependencies
from consumer.worker.handler import Handler
from consumer.worker.health import HealthServer
from consumer.worker.intake import Intake, partition_ids
from consumer.worker.metrics import Metrics
from consumer.worker.partition import Cadence, PartitionWorker
from rules import RuleTable, RuleTableError

HEARTBEAT_S = 1.0
ALIVE_WITHIN_S = 15.0
READY_WITHIN_S = 30.0
"""Ready while the hub answered within this long (owned partitions call back every second;
with none owned, the hub is asked every 15 s)."""


class WorkerMetrics(Protocol):
    """The metrics calls the worker makes itself."""

    def rules_loaded(self, table: RuleTable) -> None: ...
    def reload(self, outcome: str) -> None: ...


@dataclass(slots=True)
class RuleHolder:
    """The current rule table; ``reload`` swaps it only for a table that validates."""

    files: Sequence[Path]
    table: RuleTable
    log: structlog.typing.FilteringBoundLogger
    metrics: WorkerMetrics
    secrets: Callable[[str], str | None] | None = None
    """Where the environment variables webhooks name are looked up, so a reload cannot
    name a missing or unusable one."""
    allowed_hosts: Sequence[str] = ()
    """``[webhook] allowed_hosts``, so a reload cannot name another host."""

    def __call__(self) -> RuleTable:
        return self.table

    def reload(self) -> bool:
        """Load the files again; keep the old table if the new one has problems."""
        try:
            loaded = load_rule_files(
                self.files, secrets=self.secrets, allowed_hosts=self.allowed_hosts
            )
        except RuleTableError as exc:
            self.metrics.reload("rejected")
            self.log.error("rules.reload_rejected", problems=[p.message_at() for p in exc.problems])
            return False
        self.table = loaded.table
        self.metrics.reload("ok")
        self.metrics.rules_loaded(loaded.table)
        self.log.info(
            "rules.reloaded",
            rules=len(loaded.table),
            warnings=[w.message_at() for w in loaded.warnings],
        )
        return True


@dataclass(slots=True, kw_only=True)
class Worker:
    """Consumes until stopped; see the module docstring for the shutdown order."""

    client: EventHubConsumerClient
    eventhub: EventHubConfig
    checkpoint_store: CheckpointStore
    handler: Handler
    rules: RuleHolder
    cadence: Cadence
    drain_deadline_s: float
    metrics: Metrics
    log: structlog.typing.FilteringBoundLogger
    monotonic: Callable[[], float] = time.monotonic
    questions: EventHubConsumerClient | None = None
    """The client for questions to the hub (``Intake.questions``); closed with ``client``."""
    dependencies: Dependencies | None = None
    """The stores' health, for readiness."""
    health: HealthServer | None = None
    """The health server serving this worker, when there is one (its ``port`` is useful)."""
    ready_within_s: float = READY_WITHIN_S
    _stop: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _connected_at: float | None = field(default=None, init=False)
    _beat: float = field(default=0.0, init=False)
    _intake: Intake | None = field(default=None, init=False)

    def stop(self) -> None:
        """Ask the worker to stop (idempotent); ``run`` then drains and returns."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether a stop was asked for."""
        return self._stop.is_set()

    def alive(self) -> bool:
        """The event loop ran its heartbeat recently."""
        return self.monotonic() - self._beat < ALIVE_WITHIN_S

    def ready(self) -> tuple[bool, str]:
        """Not stopping, receiving (not paused: see ``Intake``), the hub answered within
        ``ready_within_s``, and every store answered its last call in time (rules are loaded
        before the worker exists)."""
        if self.stopping:
            return False, "stopping"
        if self._connected_at is None:
            return False, "not connected to the event hub yet"
        if self._intake is not None and self._intake.paused:
            return False, "the event hub does not answer: receiving is paused"
        heard = self._intake.heard_at if self._intake else None
        silent_s = self.monotonic() - (self._connected_at if heard is None else heard)
        if silent_s > self.ready_within_s:
            return False, f"no answer from the event hub for {silent_s:.0f} s"
        problems = self.dependencies.problems() if self.dependencies else []
        if problems:
            return False, "storage unavailable: " + "; ".join(problems)
        return True, f"ok: {len(self.rules())} rules"

    @property
    def partitions(self) -> dict[str, PartitionWorker]:
        """The partitions this worker owns now."""
        return self._intake.partitions if self._intake else {}

    async def run(self) -> None:
        """Connect, consume until ``stop()``, then shut down in order."""
        self._beat = self.monotonic()
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            try:  # asked with the client for questions, which says "refused" soonest
                ids = await partition_ids(self.questions or self.client, self.eventhub)
            except StartError:
                await self.client.close()  # partition_ids closed the one it asked with
                raise
            self._connected_at = self.monotonic()
            self.log.info(
                "worker.started",
                eventhub=self.eventhub.name,
                partitions=len(ids),
                consumer_group=self.eventhub.consumer_group,
                rules=len(self.rules()),
                dry_run=self.handler.dry_run,
            )
            if self.handler.dry_run:
                self.log.warning(
                    "worker.dry_run",
                    consumer_group=self.eventhub.consumer_group,
                    note="no actions and no checkpoints; partitions are still claimed in this "
                    "consumer group, so give a shadow worker a consumer group of its own",
                )
            self._intake = Intake(
                client=self.client, config=self.eventhub, checkpoint_store=self.checkpoint_store,
                make_worker=self._make_partition, metrics=self.metrics,
                drain_deadline_s=self.drain_deadline_s, log=self.log,
                initial_checkpoints=not self.handler.dry_run, monotonic=self.monotonic,
                questions=self.questions,
            )  # fmt: skip
            receiving = asyncio.create_task(self._intake.run(), name="intake")
            stopping = asyncio.create_task(self._stop.wait(), name="stop")
            await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
            self.log.info("worker.stopping")
            # Cancelling the receive call makes the SDK stop its processor once, which waits
            # for every partition to close: drain, final checkpoint, release. client.close()
            # while receiving would stop it twice, and the second stop returns while a slow
            # partition is still draining (its checkpoint and release would then be lost).
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)
            await self.client.close()
            if self.questions is not None:
                await self.questions.close()
            stopping.cancel()
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            self.log.info("worker.stopped")

    def _make_partition(self, partition: str, context: PartitionContext) -> PartitionWorker:
        return PartitionWorker(
            partition,
            start=self.handler.start,
            # Shadow mode must not move the consumer group's checkpoints: a shadow run in the
            # production group would otherwise make production skip what it only looked at.
            checkpoint=_no_checkpoint if self.handler.dry_run else context.update_checkpoint,
            cadence=self.cadence,
            metrics=self.metrics,
            log=self.log,
        )

    async def _heartbeat(self) -> None:
        while True:
            self._beat = self.monotonic()
            await asyncio.sleep(HEARTBEAT_S)


async def _no_checkpoint(_: object) -> None:
    """Where shadow mode's checkpoints go: nowhere."""
