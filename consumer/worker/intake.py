"""Event Hubs intake: the one place that drives ``EventHubConsumerClient``.

The SDK's processor claims partitions through the checkpoint store and calls back per
event. This adapter turns those callbacks into ``PartitionWorker`` calls:

* a claimed partition gets a worker; if it has no checkpoint yet, one is written at the
  starting position first, so KEDA's ``blobMetadata`` lag never counts the whole retention;
* events arrive in batches (the SDK's cost per callback is paid once per batch) and are
  handed over, in order, to their partition's worker, which may make the SDK wait
  (backpressure);
* a lost or closed partition is drained and given its final checkpoint before the SDK
  releases ownership;
* a hub that stops answering pauses receiving. The SDK reopens a refused connection at once,
  without backoff and without telling anyone, so an unreachable hub would keep a core busy
  for as long as it lasts; intake instead closes every partition (drain, final checkpoint,
  release), asks the hub again with backoff, and receives again once it answers.

Nothing escapes the batch callback: an exception there would stall the partition in the SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import structlog
from azure.core.exceptions import AzureError
from azure.eventhub import EventData
from azure.eventhub.aio import CheckpointStore, EventHubConsumerClient, PartitionContext
from azure.eventhub.amqp import AmqpMessageBodyType
from azure.eventhub.exceptions import EventHubError

from consumer.config import EventHubConfig
from consumer.errors import StartError
from consumer.logs import redact
from consumer.stores.checkpoints import checkpoint_scope
from consumer.worker.handler import Received
from consumer.worker.partition import PartitionWorker

BATCH_SIZE = 100
"""Most events per callback. Shorter callbacks let the SDK's receive loop, which shares the
event loop, read and grant credit again sooner: draining 100,000 events, 100 gave a median
0.89-0.91 of the rate of a bare consumer receiving event by event (``bench.worker_throughput``'s
baseline then, on the standard event loop), 300 (the prefetch) 0.85-0.87, 50 and 1,000 0.87."""
MAX_WAIT_S = 1.0
"""How often an idle partition calls back (the SDK's tick; nothing waits on it here)."""
LAG_EVERY_S = 15.0
"""How often the last enqueued sequence numbers are read for the lag metric (and a claimed
partition's at once, unless its claim read them). Each read opens a management connection
in the SDK, so it is not free: 15 ms of CPU on the emulator, emulator included (60 ms before
the worker gave the client one TLS context); at 5 s and 60 ms it cost the worker ~3% of its
throughput with four partitions."""
CONNECT_TIMEOUT_S = 60.0
"""Deadline of the first call to the hub at start, the SDK's retries included (an unknown host
or a refused connection fails sooner: after about 12 s with the SDK's 3 retries, 2.4 s with the
worker's client for questions)."""
MANAGEMENT_TIMEOUT_S = 10.0
"""Deadline of one management call (partition or hub properties), retries included: the
SDK's own retries back off for longer than readiness may wait to hear of an outage."""
CONFIRM_S = 1.0
"""After a management call fails, how long before the hub is asked once more; a second
failure pauses receiving."""
PAUSED_PROBE_S = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Waits between the questions to a hub while receiving is paused; the last one repeats."""


class IntakeMetrics(Protocol):
    """What intake reports (``consumer.worker.metrics.Metrics`` provides it)."""

    def last_enqueued(self, partition: str, sequence_number: int) -> None: ...
    def partition_claimed(self, partition: str) -> None: ...
    def checkpoint_found(self, partition: str, sequence_number: int) -> None: ...
    def forget_partition(self, partition: str) -> None: ...


MakeWorker = Callable[[str, PartitionContext], PartitionWorker]


async def partition_ids(client: EventHubConsumerClient, config: EventHubConfig) -> list[str]:
    """The hub's partition ids, asked for before anything else: the worker's first call to
    the hub, so a hub that cannot be reached stops the start with one line, not a traceback
    (and the client is closed).

    Raises:
        StartError: the hub did not answer within ``CONNECT_TIMEOUT_S`` (the SDK's retries
            included), or refused the connection or the credentials. The message names the
            namespace and hub and gives the SDK's reason, secrets redacted.
    """
    namespace, hub = checkpoint_scope(config)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            ids: list[str] = await client.get_partition_ids()
    except (TimeoutError, EventHubError, AzureError) as exc:
        await client.close()
        # The SDK's text repeats itself over lines ("Error condition: ..."); the first says it.
        text = str(exc).strip()
        reason = (
            f"{type(exc).__name__}: {redact(text.splitlines()[0])}"
            if text and not isinstance(exc, TimeoutError)
            else f"no answer within {CONNECT_TIMEOUT_S:g} s"
        )
        raise StartError(
            f"event hub {hub!r} in {namespace}: cannot connect: {reason} "
            "(check [eventhub] in the config, and that the namespace can be reached from here)"
        ) from exc
    return ids


@dataclass(slots=True)
class Intake:
    """Receives from every partition this process owns until the client is closed."""

    client: EventHubConsumerClient
    config: EventHubConfig
    checkpoint_store: CheckpointStore
    make_worker: MakeWorker
    metrics: IntakeMetrics
    drain_deadline_s: float
    log: structlog.typing.FilteringBoundLogger
    initial_checkpoints: bool = True
    """Write a checkpoint for a claimed partition that has none (off in shadow mode)."""
    monotonic: Callable[[], float] = time.monotonic
    questions: EventHubConsumerClient | None = None
    """The client that asks the hub about itself (lag reads, whether it answers); ``client``
    when ``None``. The worker gives it fewer retries than ``client``, so that a refused
    connection is known in about 2 s rather than at ``MANAGEMENT_TIMEOUT_S``."""
    heard_at: float | None = None
    """When the hub last answered: a batch callback (owned partitions call back at least every
    ``MAX_WAIT_S`` while their links are up) or a successful management call."""
    _workers: dict[str, PartitionWorker] = field(default_factory=dict, init=False)
    _claimed: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _unread: set[str] = field(default_factory=set, init=False)
    """Claimed partitions whose last enqueued sequence number is not known yet."""
    _unreachable: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    """Set when the hub failed two questions in a row: receiving pauses."""
    _reachable: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    """Set when a paused intake hears from the hub again."""

    @property
    def _asking(self) -> EventHubConsumerClient:
        """The client questions go to (``questions``, or ``client`` when there is none)."""
        return self.questions or self.client

    @property
    def paused(self) -> bool:
        """Whether receiving is paused because the hub does not answer."""
        return self._unreachable.is_set()

    @property
    def partitions(self) -> dict[str, PartitionWorker]:
        """The partitions this process owns now, by id."""
        return dict(self._workers)

    async def run(self) -> None:
        """Receive until cancelled or ``client.close()``; pause while the hub is unreachable."""
        lag = asyncio.create_task(self.track_lag(), name="lag")
        try:
            while True:
                receiving = asyncio.create_task(self._receive(), name="receive")
                unreachable = asyncio.create_task(self._unreachable.wait(), name="unreachable")
                try:
                    await asyncio.wait(
                        {receiving, unreachable}, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    unreachable.cancel()
                    if not receiving.done():  # cancelled from outside, or the hub went away
                        receiving.cancel()  # the SDK closes every partition, once
                        await asyncio.gather(receiving, return_exceptions=True)
                if not self._unreachable.is_set():
                    receiving.result()
                    return  # the client was closed
                await self._until_hub_answers()
        finally:
            lag.cancel()

    async def _until_hub_answers(self) -> None:
        """Ask the hub, with backoff, until it answers; then receiving goes on."""
        self.log.warning(
            "eventhub.receiving_paused",
            reason="the event hub did not answer twice in a row",
            partitions_released=True,
        )
        for attempt in itertools.count():
            await asyncio.sleep(PAUSED_PROBE_S[min(attempt, len(PAUSED_PROBE_S) - 1)])
            if await self._ask_hub():
                break
        self._unreachable.clear()
        self._reachable.set()
        self.log.warning("eventhub.receiving_resumed")

    async def _receive(self) -> None:
        # Batches: the SDK's own cost per callback is paid once per batch, not per event.
        await self.client.receive_batch(
            on_event_batch=self._on_batch,
            max_batch_size=BATCH_SIZE,
            on_partition_initialize=self._on_partition_initialize,
            on_partition_close=self._on_partition_close,
            on_error=self._on_error,
            starting_position=_sdk_position(self.config.starting_position),
            prefetch=self.config.prefetch,
            max_wait_time=MAX_WAIT_S,
        )

    async def track_lag(self) -> None:
        """Read each owned partition's last enqueued sequence number every ``LAG_EVERY_S``,
        and a newly claimed partition's at once unless its claim read them already.

        One management call per partition every few seconds costs less than asking the
        service to annotate every event (``track_last_enqueued_event_properties``): measured
        on the emulator with a batch consumer, the annotations cost 2-6 us of CPU per event
        on top of the SDK's ~44 us, while these reads cost the worker about 1%. A claim reads
        only what it lacks: when claims arrive one after another, reading every owned
        partition again for each would open a management connection per owned partition
        per claim.

        These calls are also how an unreachable hub is noticed: when one fails, the hub is
        asked again after ``CONFIRM_S``, and a second failure pauses receiving (``run``).
        """
        loop = asyncio.get_running_loop()
        every_at = loop.time()
        while True:
            if self._unreachable.is_set():  # paused: ``run`` asks the hub until it answers
                self._reachable.clear()
                await self._reachable.wait()
                every_at = loop.time()  # then read every owned partition again
            if loop.time() >= every_at:
                every_at = loop.time() + LAG_EVERY_S
                due = list(self._workers)
                answered = await self._ask_hub() if not due else True
            else:
                due, answered = sorted(self._unread), True
            self._unread.clear()
            for partition in due:
                if answered and partition in self._workers:  # not closed meanwhile
                    answered = await self._read_lag(partition)
            if not answered:  # the hub failed once: ask again before pausing
                await asyncio.sleep(CONFIRM_S)
                if not await self._ask_hub():
                    self._unreachable.set()
                    continue
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation
            # that arrives as its wait ends.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(every_at):
                    await self._claimed.wait()
            self._claimed.clear()

    async def _read_lag(self, partition: str) -> bool:
        """Read one partition's last enqueued sequence number; False when the hub failed."""
        try:
            async with asyncio.timeout(MANAGEMENT_TIMEOUT_S):
                info = await self._asking.get_partition_properties(partition)
        except Exception as exc:  # noqa: BLE001 - a metric must never stop intake
            self.log.debug("partition.lag_unknown", partition=partition, error=str(exc))
            return False
        self.heard_at = self.monotonic()
        self.metrics.last_enqueued(partition, info["last_enqueued_sequence_number"])
        return True

    async def _ask_hub(self) -> bool:
        """Whether the hub answers a question about itself within the deadline."""
        try:
            async with asyncio.timeout(MANAGEMENT_TIMEOUT_S):
                await self._asking.get_eventhub_properties()
        except Exception as exc:  # noqa: BLE001 - readiness reports it
            self.log.debug("eventhub.unreachable", error=str(exc))
            return False
        self.heard_at = self.monotonic()
        return True

    async def _on_partition_initialize(self, context: PartitionContext) -> None:
        partition = context.partition_id
        self.metrics.partition_claimed(partition)
        enqueued: int | None = None
        try:
            sequence, enqueued = await self._checkpoint_at_claim(context)
            if sequence is not None:  # the lag metric is known before the first checkpoint
                self.metrics.checkpoint_found(partition, sequence)
        except Exception as exc:  # noqa: BLE001 - the checkpoint is for KEDA's sake only
            self.log.warning(
                "partition.initial_checkpoint_failed",
                partition=partition,
                error=f"{type(exc).__name__}: {exc}",
            )
        if enqueued is None:
            self._unread.add(partition)  # track_lag reads it at once
        else:
            self.metrics.last_enqueued(partition, enqueued)
        self._workers[partition] = self.make_worker(partition, context)
        self._claimed.set()
        self.log.info("partition.claimed", partition=partition)

    async def _on_batch(self, context: PartitionContext, events: list[EventData]) -> None:
        partition = context.partition_id
        if events:  # an empty batch is the SDK's local timer: it proves nothing about the hub
            self.heard_at = self.monotonic()
        worker = self._workers.get(partition)
        if worker is None:  # initialise failed to run: build the worker now
            worker = self._workers[partition] = self.make_worker(partition, context)
        batch = []
        for event in events:
            try:
                batch.append((_received(partition, event), event))
            except Exception:
                self.log.exception(
                    "partition.on_event_failed",
                    partition=partition,
                    sequence_number=event.sequence_number,
                )
        # The partition may be closed (and claimed again) while this waits for room; its
        # worker then starts nothing more, and the rest is read again from the checkpoint.
        await worker.submit_batch(batch)

    async def _on_partition_close(self, context: PartitionContext, reason: Any) -> None:
        partition = context.partition_id
        worker = self._workers.pop(partition, None)
        if worker is not None:
            await worker.close(self.drain_deadline_s)
        self.metrics.forget_partition(partition)
        self.log.info("partition.closed", partition=partition, reason=str(reason))

    async def _on_error(self, context: PartitionContext | None, error: Exception) -> None:
        partition = context.partition_id if context is not None else None
        self.log.warning(
            "eventhub.error", partition=partition, error=f"{type(error).__name__}: {error}"
        )

    async def _checkpoint_at_claim(
        self, context: PartitionContext
    ) -> tuple[int | None, int | None]:
        """The partition's checkpointed sequence number; when it has none, one is written at
        the starting position (unless ``initial_checkpoints`` is off). Second, its last
        enqueued sequence number when the partition's properties were read for that."""
        namespace = context.fully_qualified_namespace
        hub, group = context.eventhub_name, context.consumer_group
        existing = await self.checkpoint_store.list_checkpoints(namespace, hub, group)
        for checkpoint in existing:
            if checkpoint.get("partition_id") == context.partition_id:
                found = checkpoint.get("sequence_number")
                return (found if isinstance(found, int) else None), None
        position = self.config.starting_position
        if not self.initial_checkpoints:
            return None, None
        if isinstance(position, datetime):
            return None, None  # no sequence number is known for a time until an event arrives
        async with asyncio.timeout(MANAGEMENT_TIMEOUT_S):
            info = await self.client.get_partition_properties(context.partition_id)
        self.heard_at = self.monotonic()
        enqueued: int = info["last_enqueued_sequence_number"]
        if position == "latest" and not info["is_empty"]:
            offset, sequence = (
                str(info["last_enqueued_offset"]),
                info["last_enqueued_sequence_number"],
            )
        else:
            offset, sequence = "-1", info["beginning_sequence_number"] - 1
        await self.checkpoint_store.update_checkpoint({
            "fully_qualified_namespace": namespace, "eventhub_name": hub,
            "consumer_group": group, "partition_id": context.partition_id,
            "offset": offset, "sequence_number": sequence,
        })  # fmt: skip
        self.log.info(
            "partition.initial_checkpoint", partition=context.partition_id, sequence_number=sequence
        )
        return int(sequence), enqueued


def _sdk_position(position: str | datetime) -> str | datetime:
    if isinstance(position, datetime):
        return position
    return "-1" if position == "earliest" else "@latest"


_DATA = AmqpMessageBodyType.DATA
"""The SDK's enum looks its members up through a metaclass: once here, not per message."""
_SEQUENCE_NUMBER = b"x-opt-sequence-number"
_OFFSET = b"x-opt-offset"
"""The message annotations the SDK reads ``EventData.sequence_number`` and ``.offset`` from."""


def _received(partition: str, event: EventData) -> Received:
    """The worker's view of a received message, each attribute read once.

    The same values as ``EventData.sequence_number``, ``.offset``, ``.body`` and ``.body_type``
    give, read from the AMQP message itself: through the properties, each costs a chain of
    property calls per message."""
    message = event.raw_amqp_message
    annotations = message.annotations or {}
    offset = annotations.get(_OFFSET)
    if message.body_type is _DATA:
        # The data sections: the SDK's list of them when it has one, as ``body`` would give
        # them through a generator (which costs more than the rest of this function).
        sections = getattr(message, "_data_body", None)
        if not isinstance(sections, list):
            sections = message.body
        body, body_error = b"".join(sections), None
    else:
        body, body_error = body_bytes(event), _body_error(event)
    return Received(
        partition=partition,
        body=body,
        body_error=body_error,
        sequence_number=annotations.get(_SEQUENCE_NUMBER) or 0,
        offset=offset.decode("utf-8") if isinstance(offset, bytes) else str(event.offset),
        details=_details,
        source=event,
    )


def _details(event: Any) -> tuple[datetime | None, dict[str, object]]:
    """A message's enqueued time and application properties (``Received.details``)."""
    properties = {_text(k): v for k, v in (event.properties or {}).items()}
    return event.enqueued_time, properties


def _body_error(event: EventData) -> str | None:
    """Why the body cannot hold events, or None: events come in data bodies only."""
    body_type = event.body_type
    if body_type is AmqpMessageBodyType.DATA:
        return None
    return f"not a data body: the message has an AMQP {body_type.value} body"


def body_bytes(event: EventData) -> bytes:
    """The message body as bytes: a data body's sections joined, byte for byte.

    Events arrive as data bodies. An AMQP value or sequence body has no bytes of its own; it
    is rendered as text so that the dead letter it goes to shows a person what was sent.
    """
    try:
        body: Any = event.body
    except Exception:  # noqa: BLE001 - the SDK raises plain errors for odd bodies
        return b""
    body_type = event.body_type
    if body_type is AmqpMessageBodyType.DATA:
        # The SDK gives the data sections as a generator of bytes.
        return bytes(body) if isinstance(body, bytes | bytearray) else b"".join(body)
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if body_type is AmqpMessageBodyType.SEQUENCE:
        body = list(body)  # a generator of sections: its repr would say nothing
    return repr(body).encode("utf-8", "backslashreplace")


def _text(key: Any) -> str:
    return key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
