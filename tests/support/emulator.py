"""The emulator as a process, and events sent and received with the unmodified SDK."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient

from . import ROOT
from .factories import event_body
from .ports import wait_for_port
from .processes import stop_process


@contextlib.contextmanager
def emulator_process(port: int, *options: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -m emulator emulator`` with ``options``; stop it by PID at the end."""
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "emulator", "--port", str(port), *options],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, 20, process)
        yield process
    finally:
        stop_process(process)


async def send(connection_string: str, bodies: list[str], **batch_options: Any) -> None:
    """Send ``bodies`` as one batch with the SDK producer."""
    async with EventHubProducerClient.from_connection_string(connection_string) as producer:
        await _send_batch(producer, bodies, **batch_options)


async def send_each(connection_string: str, per_partition: dict[str, list[str]]) -> None:
    """Send one batch to each partition, concurrently, with one SDK producer."""
    async with EventHubProducerClient.from_connection_string(connection_string) as producer:
        await asyncio.gather(
            *(_send_batch(producer, bodies, partition_id=p) for p, bodies in per_partition.items())
        )


async def send_all(connection_string: str, per_partition: dict[str, list[str]]) -> None:
    """Send each partition's event ids as ``event_body`` events, in order, in batches of 200."""
    async with EventHubProducerClient.from_connection_string(connection_string) as producer:

        async def one(partition: str, ids: list[str]) -> None:
            for start in range(0, len(ids), 200):
                bodies = map(event_body, ids[start : start + 200])
                await _send_batch(producer, bodies, partition_id=partition)

        await asyncio.gather(*(one(p, ids) for p, ids in per_partition.items()))


async def _send_batch(
    producer: EventHubProducerClient, bodies: Iterable[str], **batch_options: Any
) -> None:
    batch = await producer.create_batch(**batch_options)
    for body in bodies:
        batch.add(EventData(body))
    await producer.send_batch(batch)


async def receive(
    connection_string: str,
    count: int,
    *,
    timeout_s: float = 20,
    settle_s: float = 0.0,
    client_options: dict[str, Any] | None = None,
    **receive_options: Any,
) -> list[EventData]:
    """Receive with the SDK consumer until ``count`` events arrived (then ``settle_s`` more)."""
    options: dict[str, Any] = {"consumer_group": "$Default", **(client_options or {})}
    client = EventHubConsumerClient.from_connection_string(connection_string, **options)
    events: list[EventData] = []
    enough = asyncio.Event()

    async def on_event(_: object, event: EventData | None) -> None:
        if event is not None:
            events.append(event)
            if len(events) >= count:
                enough.set()

    task = asyncio.create_task(client.receive(on_event, **receive_options))
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(enough.wait(), timeout_s)
        await asyncio.sleep(settle_s)
    finally:
        await client.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return events
