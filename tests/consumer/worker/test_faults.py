"""Production faults, end to end: a dropped hub connection mid-drain, a hub that goes away
for a while, a slow receiver behind a full window, frozen storage. Each runs the worker
against the emulator and real local peers, and counts what the peers received per event."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import MutableMapping
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from consumer.config import load_config
from consumer.worker import intake
from consumer.worker.lifecycle import Worker
from emulator import Emulator, HubSpec
from tests.support.azurite import Azurite
from tests.support.emulator import send, send_each
from tests.support.factories import event_body
from tests.support.metrics import metric
from tests.support.ports import free_port
from tests.support.waiting import until, until_async
from tests.support.webhooks import WebhookReceiver, webhook_rules
from tests.support.workers import PARTITIONS, Processes, running, start_azurite, worker_config


async def test_a_dropped_connection_mid_drain_loses_nothing_and_keeps_the_window(
    tmp_path: Path,
) -> None:
    """One partition, a full window of webhooks answered in 0.2 s, and the hub drops every
    connection, twice: the SDK hands over again what it had dispatched; each event is still
    posted once, the window comes back whole (in flight returns to 0) and the rate holds."""
    total, drop_at, drop_again_at = 1_500, 400, 700
    async with (
        Emulator([HubSpec("hub", 1)]) as emu,
        WebhookReceiver(behaviour=lambda event_id, seen: (200, 0.2)) as receiver,
    ):
        rules = webhook_rules(tmp_path / "rules.toml", receiver.url)
        path = worker_config(tmp_path, rules, max_in_flight=64)
        config = load_config(path, {"EVENTHUB_CONNECTION_STRING": emu.connection_string()})
        bodies = [event_body(f"e{i}") for i in range(total)]
        for start in range(0, total, 500):
            await send(emu.connection_string("hub"), bodies[start : start + 500])
        async with running(config, partitions=1) as worker:
            await until(lambda: len(receiver.acted) >= 1, 30, "the first webhook")
            began = time.monotonic()
            await until(lambda: len(receiver.acted) >= drop_at, 60, f"{drop_at} webhooks")
            dropped_at, before = time.monotonic(), len(receiver.acted)
            assert emu.faults.drop_connections() > 0
            await until(lambda: len(receiver.acted) >= drop_again_at, 60, "webhooks after a drop")
            # The SDK reconnects once its buffer has drained: drop that connection as well.
            await until(lambda: emu.faults.drop_connections() > 0, 60, "a new connection")
            await until(lambda: len(receiver.acted) >= total, 90, "every webhook")
            after_s = time.monotonic() - dropped_at
            await until_in_flight_is_zero(worker)
            redelivered = await metric(worker, "mlevents_events_redelivered_total")
    expected = Counter({f"e{i}": 1 for i in range(total)})
    assert receiver.calls == expected  # requested once each: nothing started twice
    assert receiver.acted == expected
    rate_before = before / (dropped_at - began)
    rate_after = (total - before) / after_s
    assert redelivered > 0  # the SDK did hand events over again
    assert rate_after >= rate_before / 2, (rate_before, rate_after)


async def test_links_lost_again_and_again_are_reattached_in_place(tmp_path: Path) -> None:
    """The hub detaches the partition's link six times. The SDK counts every loss since the
    claim and gives the partition up at the fourth with its default retries (an error, a
    close and a claim again from the checkpoint); the worker's client reattaches each time,
    and the events sent meanwhile are each acted on once."""
    async with (
        Emulator([HubSpec("hub", 1)]) as emu,
        WebhookReceiver() as receiver,
    ):
        rules = webhook_rules(tmp_path / "rules.toml", receiver.url)
        path = worker_config(tmp_path, rules)
        config = load_config(path, {"EVENTHUB_CONNECTION_STRING": emu.connection_string()})
        with structlog.testing.capture_logs() as logs:
            async with running(config, partitions=1):
                for i in range(6):
                    await send(emu.connection_string("hub"), [event_body(f"e{i}")])
                    await until(partial(_acted, receiver, i + 1), 30, f"webhook {i}")
                    # The link attached now (the one that just delivered) is the one detached.
                    detached = emu.faults.detach_consumers("amqp:link:detach-forced")
                    assert detached == 1
                await send(emu.connection_string("hub"), [event_body("last")])
                await until(lambda: len(receiver.acted) == 7, 30, "the last webhook")
    assert receiver.acted == Counter({**{f"e{i}": 1 for i in range(6)}, "last": 1})
    given_up = [
        line for line in logs
        if line["event"] == "eventhub.error"
        or (line["event"] == "partition.closed" and "SHUTDOWN" not in line["reason"])
    ]  # fmt: skip
    assert not given_up


async def test_a_hub_that_goes_away_pauses_receiving_without_spinning_then_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub stops listening: the SDK would reopen the refused connection at once, forever,
    logging nothing (and, with a TLS context built per attempt, keeping a core busy). Intake
    notices at its next question to the hub,
    closes its partitions and asks again with backoff, using next to no CPU meanwhile; once
    the hub is back, receiving goes on, and every event is acted on once."""
    monkeypatch.setattr(intake, "LAG_EVERY_S", 1.0)  # notice sooner than production does
    port, data = free_port(), tmp_path / "hub-data"
    hub = Emulator([HubSpec("hub", 2)], port=port, data_dir=data)
    await hub.start()
    try:
        async with WebhookReceiver() as receiver:
            rules = webhook_rules(tmp_path / "rules.toml", receiver.url)
            path = worker_config(tmp_path, rules)
            config = load_config(path, {"EVENTHUB_CONNECTION_STRING": hub.connection_string()})
            with structlog.testing.capture_logs() as logs:
                async with running(config, partitions=2) as worker:
                    first = {"0": [event_body("a0")], "1": [event_body("a1")]}
                    await send_each(hub.connection_string("hub"), first)
                    await until(lambda: len(receiver.acted) == 2, 30, "the first two webhooks")
                    await hub.stop()
                    cpu_before, wall_before = time.process_time(), time.monotonic()
                    await until(lambda: _logged(logs, "eventhub.receiving_paused"), 30, "a pause")
                    # Until the pause the SDK reopens the refused connections without a
                    # pause; with a TLS context built per attempt, that took a whole core.
                    cores = (time.process_time() - cpu_before) / (time.monotonic() - wall_before)
                    assert cores < 0.5, f"{cores:.2f} cores until the pause"
                    await until(lambda: not worker.partitions, 30, "the partitions closed")
                    # Paused: the worker only asks the hub now and then (a spinning SDK used
                    # a whole core here). CPU time cannot grow faster on a busy machine.
                    cpu_before, wall_before = time.process_time(), time.monotonic()
                    await asyncio.sleep(3.0)
                    cores = (time.process_time() - cpu_before) / (time.monotonic() - wall_before)
                    assert cores < 0.3, f"{cores:.2f} cores while the hub was away"
                    assert worker.ready() == (
                        False, "the event hub does not answer: receiving is paused"
                    )  # fmt: skip
                    hub = Emulator([HubSpec("hub", 2)], port=port, data_dir=data)
                    await hub.start()
                    await until(lambda: _logged(logs, "eventhub.receiving_resumed"), 60, "resume")
                    await until(lambda: len(worker.partitions) == 2, 60, "partitions claimed")
                    then = {"0": [event_body("b0")], "1": [event_body("b1")]}
                    await send_each(hub.connection_string("hub"), then)
                    await until(lambda: len(receiver.acted) == 4, 60, "the webhooks after it")
    finally:
        await hub.stop()
    assert receiver.calls == {"a0": 1, "a1": 1, "b0": 1, "b1": 1}
    assert receiver.acted == {"a0": 1, "a1": 1, "b0": 1, "b1": 1}


def _acted(receiver: WebhookReceiver, count: int) -> bool:
    return len(receiver.acted) == count


def _logged(logs: list[MutableMapping[str, Any]], event: str) -> bool:
    return any(line["event"] == event for line in logs)


async def until_in_flight_is_zero(worker: Worker) -> None:
    """Wait until the worker reports no event in flight on any partition."""
    deadline = asyncio.get_running_loop().time() + 30
    while await metric(worker, "mlevents_in_flight") != 0:
        assert asyncio.get_running_loop().time() < deadline, "in flight never returned to 0"
        await asyncio.sleep(0.05)


async def test_a_slow_receiver_behind_a_full_window_is_asked_once_per_event(
    tmp_path: Path,
) -> None:
    """Four partitions with 64 webhooks in flight each, a receiver that takes 2 s, a 5 s
    timeout: the requests that wait for a pooled connection are not timed against the
    receiver, so none times out, none is retried, none is dead-lettered, and each event is
    requested once. The pool's waits show in the metrics."""
    per_partition = 192  # three windows' worth
    async with (
        Emulator([HubSpec("hub", len(PARTITIONS))]) as emu,
        WebhookReceiver(behaviour=lambda event_id, seen: (200, 2.0)) as receiver,
    ):
        rules = webhook_rules(tmp_path / "rules.toml", receiver.url, timeout_s=5)
        path = worker_config(tmp_path, rules, max_in_flight=64)
        config = load_config(path, {"EVENTHUB_CONNECTION_STRING": emu.connection_string()})
        await send_each(
            emu.connection_string("hub"),
            {p: [event_body(f"p{p}-{i}") for i in range(per_partition)] for p in PARTITIONS},
        )
        async with running(config) as worker:
            total = per_partition * len(PARTITIONS)
            await until(lambda: len(receiver.acted) >= total, 120, "every webhook")
            await until_in_flight_is_zero(worker)
            retries = await metric(worker, "mlevents_action_retries_total")
            dead = await metric(worker, "mlevents_dead_letters_total")
            waits = await metric(worker, "mlevents_http_pool_waits_total", client="webhook")
    expected = Counter({f"p{p}-{i}": 1 for p in PARTITIONS for i in range(per_partition)})
    assert receiver.calls == expected
    assert (retries, dead) == (0, 0)
    assert waits > 0  # more requests than connections: some waited, and it shows


@pytest.mark.timeout(180)
async def test_frozen_storage_is_noticed_within_its_deadline_and_loses_nothing(
    tmp_path: Path, processes: Processes
) -> None:
    """Checkpoints, ledger and dead letters in Azurite, which is frozen (SIGSTOP, not
    refused) mid-stream. Within the 2 s deadline the worker logs the outage and /readyz turns
    503 naming the stores; actions go on meanwhile (the ledger's outage path); after SIGCONT
    it is ready again, checkpoints reach the end, and every event was acted on."""
    account = Azurite(free_port())
    azurite = await start_azurite(processes, account.port, tmp_path / "azurite")
    blob = f'store = "blob"\ncontainer = "state"\nconnection_string_env = "{BLOB}"\ntimeout_s = 2\n'
    first, second = 100, 100  # per partition, before and during the freeze
    async with (
        Emulator([HubSpec("hub", len(PARTITIONS))]) as emu,
        WebhookReceiver() as receiver,
    ):
        rules = webhook_rules(tmp_path / "rules.toml", receiver.url)
        path = worker_config(tmp_path, rules, checkpoints=blob, deadletters=blob)
        config = load_config(
            path,
            {
                "EVENTHUB_CONNECTION_STRING": emu.connection_string(),
                BLOB: account.connection_string,
            },
        )
        assert config.ledger.store.kind == "blob" and config.ledger.store.timeout_s == 2
        hub = emu.connection_string("hub")
        with structlog.testing.capture_logs() as logs:
            async with running(config) as worker:
                await send_each(hub, _bodies("a", first))
                await until(lambda: len(receiver.acted) == 4 * first, 60, "the first events")
                # Ready before the freeze (on a busy machine a store call may have run past
                # its deadline meanwhile: the next one that answers makes it ready again).
                await until_async(lambda: _ready(worker), 30, "/readyz before the freeze")

                os.kill(azurite.pid, signal.SIGSTOP)
                frozen_at = time.monotonic()
                await send_each(hub, _bodies("b", second))
                await until_async(
                    lambda: _not_ready(worker), 30, "/readyz to say storage is unavailable"
                )
                noticed_s = time.monotonic() - frozen_at
                status, text = await _readyz(worker)
                outage = [line for line in logs if line["event"] == "storage.unavailable"]
                # Actions go on while the store is frozen.
                await until(lambda: len(receiver.acted) == 4 * (first + second), 60, "actions")

                os.kill(azurite.pid, signal.SIGCONT)
                await until_async(lambda: _ready(worker), 60, "/readyz to be ready again")
                last = first + second - 1
                await until(
                    lambda: all(
                        part.checkpointed_sequence == last for part in worker.partitions.values()
                    ),
                    60,
                    "checkpoints at the end of every partition",
                )
    assert status == 503 and text.startswith("storage unavailable: "), text
    assert "no answer within 2 s" in text
    assert outage, "the outage was not logged"
    assert noticed_s < 2 + 10, noticed_s  # the deadline, and a scrape or two on a busy machine
    expected = {f"{batch}{p}-{i}" for batch, n in (("a", first), ("b", second))
                for p in PARTITIONS for i in range(n)}  # fmt: skip
    assert set(receiver.acted) == expected  # nothing lost
    assert all(count >= 1 for count in receiver.acted.values())


BLOB = "STATE_STORAGE_CONNECTION_STRING"


def _bodies(batch: str, count: int) -> dict[str, list[str]]:
    return {p: [event_body(f"{batch}{p}-{i}") for i in range(count)] for p in PARTITIONS}


async def _readyz(worker: Worker) -> tuple[int, str]:
    assert worker.health is not None
    url = f"http://127.0.0.1:{worker.health.port}/readyz"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


async def _not_ready(worker: Worker) -> bool:
    return (await _readyz(worker))[0] == 503


async def _ready(worker: Worker) -> bool:
    return (await _readyz(worker))[0] == 200
