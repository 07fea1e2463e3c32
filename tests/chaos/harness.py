"""The chaos run: ``mlevents run`` replicas on one hub while everything around them fails.

Once the workers share the partitions, events are sent at a steady pace over ``send_s``
while a timeline drawn from ``seed`` SIGKILLs random busy workers (each restarted at once),
stops Azurite (a graceful stop, so its data persists) and starts it again on the same port
and folder, freezes it with SIGSTOP, makes the emulator drop every connection (SIGUSR1),
slows every peer down and has each refuse everything for a moment (``cluster.Cluster``).

The run ends once every partition's checkpoint reached its last event (nothing can be
delivered again), or after ``settle_s``. The workers are then stopped with SIGTERM, and what
the peers recorded is compared with what the events asked for (``report.Findings``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from azure.eventhub import EventData
from azure.eventhub.aio import EventHubProducerClient
from azure.eventhub.exceptions import EventHubError

from tests.support.waiting import until

from . import scenario
from .cluster import Cluster, cluster
from .report import Findings, done_mark_window, ledger_down, uncertain_metric
from .settings import Settings

SEND_EVERY_S = 0.25
SEND_ATTEMPTS = 120
"""A batch the hub refuses is sent again every 0.5 s, for a minute at most."""
BALANCED_S = 90.0
"""How long the workers may take to share the partitions at the start."""

Step = tuple[float, Callable[[], Awaitable[None]]]


async def run(settings: Settings, folder: Path, say: Callable[[str], None] = print) -> Findings:
    """One chaos run under ``folder`` (logs, worker state, Azurite's data); its findings."""
    async with cluster(settings, folder) as running:
        await until(running.balanced, BALANCED_S, "the partitions shared by the workers")
        say(f"chaos: {settings.workers} workers up, sending {settings.events} events "
            f"over {settings.send_s:g} s (seed {settings.seed}); logs in {folder}")  # fmt: skip
        running.started = time.monotonic()
        watcher = asyncio.create_task(running.watch())
        sending = asyncio.create_task(feed(running.hub, settings.events, settings.send_s))
        await play(timeline(running))
        retried = await sending
        say(f"chaos: faults over at {running.now_s():.0f} s; waiting for the workers to finish")
        settled = await _settle(running)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await running.stop_workers()
        return _findings(running, settled, retried)


def timeline(running: Cluster) -> list[Step]:
    """When each fault starts, in seconds from the first event sent: as ``Timeline`` says,
    the kills at random times drawn from the seed."""
    settings, at = running.settings, running.settings.timeline
    span = settings.send_s
    lasting = [
        (settings.storage_stop_s, at.storage_stop, running.stop_storage),
        (settings.slow_s, at.slow, running.slow_phase),
        (settings.storage_freeze_s, at.storage_freeze, running.freeze_storage),
        (settings.burst_s, at.bursts, running.bursts),
    ]
    steps: list[Step] = [(start * span, step) for seconds, start, step in lasting if seconds > 0]
    steps += [
        ((n + 1) / (settings.hub_drops + 1) * span + 0.02 * span, running.drop_hub)
        for n in range(settings.hub_drops)
    ]
    low, high = at.kills
    steps += [
        (running.rng.uniform(low * span, high * span), running.kill) for _ in range(settings.kills)
    ]
    return sorted(steps, key=lambda step: step[0])


async def play(steps: list[Step]) -> None:
    """Start each step at its time; faults that last overlap what comes after them."""
    start = asyncio.get_running_loop().time()

    async def at(delay_s: float, step: Callable[[], Awaitable[None]]) -> None:
        await asyncio.sleep(max(0.0, start + delay_s - asyncio.get_running_loop().time()))
        await step()

    await asyncio.gather(*(at(delay, step) for delay, step in steps))


async def feed(connection_string: str, events: int, send_s: float) -> int:
    """Send the events evenly over ``send_s``, round-robin over the partitions; a batch the
    hub refuses is sent again (the hub may then hold an event twice, as at-least-once
    delivery allows). Returns how many batches were sent again."""
    retried = 0
    loop = asyncio.get_running_loop()
    start, sent = loop.time(), 0
    async with EventHubProducerClient.from_connection_string(
        connection_string, eventhub_name=scenario.HUB
    ) as producer:
        while sent < events:
            due = min(events, math.ceil(events * (loop.time() - start) / send_s) + 1)
            per_partition: dict[str, list[str]] = {}
            for n in range(sent, due):
                per_partition.setdefault(scenario.partition_of(n), []).append(scenario.body(n))
            for partition, bodies in per_partition.items():
                retried += await _send(producer, partition, bodies)
            sent = due
            await asyncio.sleep(SEND_EVERY_S)
    return retried


async def _send(producer: EventHubProducerClient, partition: str, bodies: list[str]) -> int:
    """Send one batch until the hub takes it; how many times it was sent again."""
    for attempt in range(SEND_ATTEMPTS):
        try:
            batch = await producer.create_batch(partition_id=partition)
            for body in bodies:
                batch.add(EventData(body))
            await producer.send_batch(batch)
            return attempt
        except EventHubError:
            await asyncio.sleep(0.5)
    raise RuntimeError(f"partition {partition}: the hub took no batch in a minute")


async def _settle(running: Cluster) -> bool:
    """Wait until every checkpoint is at its partition's last event (twice in a row, a
    second apart), or ``settle_s`` passed."""
    deadline = time.monotonic() + running.settings.settle_s
    in_a_row = 0
    while time.monotonic() < deadline:
        in_a_row = in_a_row + 1 if await running.checkpoints_at_end() else 0
        if in_a_row >= 2:
            return True
        await asyncio.sleep(1)
    return False


def _findings(running: Cluster, settled: bool, retried: int) -> Findings:
    """What the peers recorded against what the events asked for, with the workers' logs and
    last scrapes."""
    logs = [run.lines() for run in running.logs()]
    scrapes = running.last_scrapes()
    seen = running.sinks.effects()
    with (running.folder / "effects.jsonl").open("w") as out:  # for a closer look afterwards
        for effect in seen:
            record = {"decision": effect.key.decision, "after": effect.after, "by": effect.by}
            out.write(json.dumps(record) + "\n")
    return Findings(
        expected=scenario.expected(running.settings.events),
        seen=seen,
        uncertain=[line for lines in logs for line in lines if line["event"] == "action.uncertain"],
        uncertain_metric=uncertain_metric(scrapes),
        window=done_mark_window(scrapes),
        kills=running.kills,
        faults=running.faults,
        dead_letters=running.dead_letters(),
        deployment_updates=running.sinks.deployment_updates(),
        ledger_down=ledger_down(logs),
        settled=settled,
        notes=[
            f"batches sent again: {retried}",
            f"worker starts: {sum(len(slot.runs) for slot in running.slots)} "
            f"({len(running.slots)} first, {len(running.kills)} after kills, the rest after "
            "an exit of their own)",
            f"finished {running.now_s():.0f} s after the first event",
        ],
    )
