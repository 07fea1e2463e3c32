"""The worker as real processes: SIGKILL and restart, replicas sharing partitions on blob
checkpoints, and a blob storage outage, with the emulator and a webhook receiver in the test."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import signal
import socket
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubProducerClient
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

from consumer.stores.checkpoints import SqliteCheckpointStore
from emulator import Emulator
from tests.support.azurite import AZURITE_KEY, Azurite
from tests.support.emulator import send_all
from tests.support.factories import event_body
from tests.support.ports import free_port
from tests.support.processes import exit_code, kill
from tests.support.waiting import until
from tests.support.webhooks import WebhookReceiver, webhook_rules
from tests.support.workers import (
    BLOB_ENV,
    PARTITIONS,
    Processes,
    WorkerProcess,
    blob_checkpoints,
    blob_storage,
    repeats,
    start_azurite,
    unexplained,
    worker_config,
)

# --- events --------------------------------------------------------------------------------


@dataclass
class Flow:
    """Sends three events to every partition every ``every_s`` while the block runs, and
    until ``stop``; ``sent`` holds the ids the hub accepted."""

    connection_string: str
    prefix: str
    every_s: float = 0.1
    sent: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Flow:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> list[str]:
        """Stop sending (after the batch on its way); the ids sent."""
        self._stop.set()
        if self._task is not None:
            await self._task
        return self.sent

    async def _run(self) -> None:
        n = 0
        async with EventHubProducerClient.from_connection_string(self.connection_string) as p:
            while not self._stop.is_set():
                for partition in PARTITIONS:
                    ids = [f"{self.prefix}-{partition}-{n + i}" for i in range(3)]
                    batch = await p.create_batch(partition_id=partition)
                    for event_id in ids:
                        batch.add(EventData(event_body(event_id)))
                    await p.send_batch(batch)
                    self.sent.extend(ids)  # only once the hub accepted them
                n += 3
                await asyncio.sleep(self.every_s)


async def blob_checkpoint_sequences(
    account: Azurite, container: str, emu: Emulator
) -> dict[str, int]:
    """Each partition's checkpointed sequence number in the blob container."""
    store = BlobCheckpointStore.from_connection_string(account.connection_string, container)
    async with store:
        found = await store.list_checkpoints(f"{emu.host}:{emu.port}", "hub", "$Default")
    return {str(c["partition_id"]): int(c["sequence_number"]) for c in found}


# --- tests ---------------------------------------------------------------------------------


@pytest.mark.timeout(150)
async def test_sigkill_mid_stream_then_restart_acts_on_every_event_once(
    tmp_path: Path, emu: Emulator, processes: Processes
) -> None:
    """After SIGKILL and a restart on the same state, every event is acted on once. Events
    past the last checkpoint are read again: what the killed worker finished is skipped (the
    ledger), and only a decision it held unfinished may be repeated, where the restart logged
    it as uncertain."""
    per_partition = {p: [f"k{p}-{i}" for i in range(1_000)] for p in PARTITIONS}
    everything = Counter(event_id for ids in per_partition.values() for event_id in ids)
    await send_all(emu.connection_string("hub"), per_partition)
    state = tmp_path / "state" / "checkpoints.sqlite3"
    env = {"EVENTHUB_CONNECTION_STRING": emu.connection_string()}

    async with WebhookReceiver(behaviour=lambda _id, _seen: (200, 0.005)) as receiver:
        config = worker_config(tmp_path, webhook_rules(tmp_path / "rules.toml", receiver.url))
        first = processes.worker(config, "first", env)
        await receiver.wait_for(len(everything) // 3, timeout_s=60)
        await kill(first.process)
        before_kill = Counter(receiver.acted)
        finished_first = first.processed()
        async with SqliteCheckpointStore(state) as store:
            found = await store.list_checkpoints(f"{emu.host}:{emu.port}", "hub", "$Default")
        checkpointed = {str(c["partition_id"]): int(c["sequence_number"]) for c in found}

        second = processes.worker(config, "second", env)
        await until(
            lambda: set(everything) <= set(finished_first + second.processed()),
            90,
            "every event processed",
        )
        os.kill(second.process.pid, signal.SIGTERM)
        assert await exit_code(second.process, 30) == 0
        acted = Counter(receiver.acted)

    assert len(before_kill) < len(everything)  # killed mid-stream
    assert everything - acted == Counter()  # nothing lost
    assert set(acted) <= set(everything)
    # Sequence numbers are the positions the ids were sent at (a fresh hub starts at 0).
    for line in first.logged("event.processed") + second.logged("event.processed"):
        assert line["event_id"] == f"k{line['partition']}-{line['sequence_number']}"
    # Acted on twice: only a decision the restart logged repeating, of an event the killed
    # worker had not finished; so past the checkpoint.
    assert unexplained(acted, "hook/0", [first, second]) == {}
    repeated = {key.split("/")[0] for key in repeats([second])}
    assert not repeated & set(finished_first)
    for event_id in repeated:
        partition, sequence = event_id[1:].split("-")
        assert int(sequence) > checkpointed.get(partition, -1), event_id
    # The restart resumed from the checkpoints: nothing at or below them was read again; what
    # it read again that the killed worker had finished, it skipped.
    for line in second.logged("event.processed"):
        partition, sequence = line["event_id"][1:].split("-")
        assert int(sequence) > checkpointed.get(partition, -1), line["event_id"]
        if line["event_id"] in finished_first:
            assert all("skipped, done before" in outcome for outcome in line["actions"]), line


@pytest.mark.timeout(150)
async def test_three_replicas_share_partitions_and_the_last_takes_over(
    tmp_path: Path, emu: Emulator, processes: Processes
) -> None:
    """Three replicas on blob checkpoints (and a ledger in the same container) split the
    partitions; after SIGTERM of one and SIGKILL of another the third owns all four. Every
    event sent meanwhile is acted on once; again only where a replica logged repeating an
    uncertain decision that a killed or departed one held."""
    _, _, _, container, env = await blob_storage(tmp_path, emu, processes)
    async with WebhookReceiver() as receiver:
        rules = webhook_rules(tmp_path / "rules.toml", receiver.url)
        workers: list[WorkerProcess] = []
        for name in ("a", "b", "c"):
            folder = tmp_path / name
            folder.mkdir()
            config = worker_config(
                folder, rules, checkpoints=blob_checkpoints(container),
                load_balancing_interval_s=1, ownership_expiration_s=4, max_in_flight=16,
            )  # fmt: skip
            workers.append(processes.worker(config, name, env))
        a, b, c = workers

        def balanced() -> bool:
            owned = [w.owned() for w in workers]
            return (
                all(owned)
                and set().union(*owned) == set(PARTITIONS)
                and sum(map(len, owned)) == len(PARTITIONS)
            )

        def processed() -> set[str]:
            return {event_id for worker in workers for event_id in worker.processed()}

        # Every action costs three calls to Azurite (the ledger); a flow within what one
        # replica can act on, and a small window per partition, keep Azurite answering within
        # the ledger's deadline on a busy machine. Past it, a worker would act unreserved.
        async with Flow(emu.connection_string("hub"), "r", every_s=0.5) as flow:
            await until(balanced, 40, "partitions split over three replicas")
            shared = [w.owned() for w in workers]
            await until(lambda: len(receiver.acted) >= 100, 20, "events acted on while shared")

            os.kill(a.process.pid, signal.SIGTERM)
            a_exit = await exit_code(a.process, 30)
            await kill(b.process)

            await until(lambda: c.owned() == set(PARTITIONS), 40, "the last replica owning all")
            taken_over = len(flow.sent)
            await until(lambda: len(flow.sent) >= taken_over + 48, 30, "flow after the takeover")
        sent = Counter(flow.sent)
        await until(lambda: set(sent) <= processed(), 60, "every event sent processed")
        os.kill(c.process.pid, signal.SIGTERM)
        assert await exit_code(c.process, 30) == 0
        acted = Counter(receiver.acted)

    assert all(0 < len(o) < len(PARTITIONS) for o in shared), shared
    assert a_exit == 0
    assert a.logged("worker.stopped")
    assert a.owned() == set()  # every partition closed (drained, checkpointed) on the way out
    assert c.claimed() == set(PARTITIONS)
    assert sent - acted == Counter()  # nothing lost
    assert set(acted) <= set(sent)
    assert unexplained(acted, "hook/0", workers) == {}


async def test_a_store_refusing_the_account_key_stops_the_start_with_one_line(
    tmp_path: Path, emu: Emulator, processes: Processes
) -> None:
    """With a wrong AccountKey (Azurite answers 403), ``mlevents run`` exits 2 at start with
    one line naming the store's section and container: no traceback, and no key."""
    account, _, _, container, env = await blob_storage(tmp_path, emu, processes)
    wrong_key = base64.b64encode(os.urandom(64)).decode()
    env[BLOB_ENV] = account.connection_string.replace(AZURITE_KEY, wrong_key)
    blob = f'store = "blob"\ncontainer = "{container}"\nconnection_string_env = "{BLOB_ENV}"\n'
    rules = webhook_rules(tmp_path / "rules.toml", "http://127.0.0.1:9/unused")
    local = worker_config(tmp_path, rules).read_text()
    texts = {
        "checkpoints": worker_config(tmp_path, rules, checkpoints=blob).read_text(),
        "deadletters": local.replace('store = "local"\npath = "state/deadletters"\n', blob),
        "ledger": local.replace("[ledger]\n", f"[ledger]\n{blob}"),
    }
    for section, text in texts.items():
        config = tmp_path / f"{section}.toml"
        config.write_text(text)
        worker = processes.worker(config, section, env)
        assert await exit_code(worker.process, 60) == 2, section
        output = worker.log_path.read_text()
        [line] = output.splitlines()
        assert line.startswith(f"mlevents: {section} store: "), line
        assert f"container {container}" in line
        assert "HTTP 403, AuthorizationFailure" in line
        for secret in (wrong_key, wrong_key[:16], AZURITE_KEY[:16], "AccountKey"):
            assert secret not in output, section


async def test_a_hub_not_listening_or_a_port_in_use_stops_the_start_with_one_line(
    tmp_path: Path, emu: Emulator, processes: Processes
) -> None:
    """An event hub nobody listens for, or an [http] port another process holds: ``mlevents
    run`` exits 2 with one line saying which and why, no traceback and no key."""
    rules = webhook_rules(tmp_path / "rules.toml", "http://127.0.0.1:9/unused")
    config = worker_config(tmp_path, rules)
    nobody = emu.connection_string().replace(f":{emu.port}", f":{free_port()}")
    worker = processes.worker(config, "no-hub", {"EVENTHUB_CONNECTION_STRING": nobody})
    assert await exit_code(worker.process, 60) == 2
    lines = [line for line in worker.log_path.read_text().splitlines() if line.startswith("m")]
    assert len(lines) == 1 and "Traceback" not in worker.log_path.read_text()
    assert lines[0].startswith("mlevents: event hub 'hub' in 127.0.0.1:"), lines
    assert "cannot connect: ConnectError: " in lines[0] and "Connection refused" in lines[0]
    assert emu.sas_key.key not in worker.log_path.read_text()

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config.write_text(config.read_text().replace("port = 0", f"port = {port}"))
        env = {"EVENTHUB_CONNECTION_STRING": emu.connection_string()}
        worker = processes.worker(config, "port-taken", env)
        assert await exit_code(worker.process, 60) == 2
    assert worker.log_path.read_text() == (
        f"mlevents: cannot serve /healthz and /metrics on 127.0.0.1:{port}: Address already "
        "in use; choose another port ([http] port in the config, or mlevents dev --http-port)\n"
    )


@pytest.mark.timeout(150)
async def test_blob_storage_outage_does_not_stop_consuming(
    tmp_path: Path, emu: Emulator, processes: Processes
) -> None:
    """With blob storage down for 30 s the worker keeps acting on events and logs failed
    checkpoints; once storage is back, checkpoints move again and every event is acted on."""
    account, location, storage, container, env = await blob_storage(tmp_path, emu, processes)
    resumed: dict[str, int] = {}
    final: dict[str, int] = {}

    async def checkpoints_past(floor: dict[str, int], into: dict[str, int]) -> None:
        while not all(into.get(p, -1) >= floor[p] for p in PARTITIONS):
            with contextlib.suppress(Exception):
                into.update(await blob_checkpoint_sequences(account, container, emu))
            await asyncio.sleep(0.5)

    async with WebhookReceiver() as receiver:
        config = worker_config(
            tmp_path,
            webhook_rules(tmp_path / "rules.toml", receiver.url),
            checkpoints=blob_checkpoints(container),
            every_s=0.5,
        )
        worker = processes.worker(config, "worker", env)
        async with Flow(emu.connection_string("hub"), "o") as flow:
            await until(lambda: worker.owned() == set(PARTITIONS), 30, "all partitions claimed")
            await until(lambda: len(receiver.acted) >= 100, 20, "events acted on")
            await asyncio.sleep(1.5)  # a checkpoint or two
            before = await blob_checkpoint_sequences(account, container, emu)

            os.kill(storage.pid, signal.SIGTERM)
            await exit_code(storage, 20)
            counts = [len(receiver.acted)]
            for _ in range(6):  # 30 s of outage
                await asyncio.sleep(5)
                counts.append(len(receiver.acted))
            failed_while_down = worker.logged("checkpoint.failed")
            alive_while_down = worker.process.poll() is None

            await start_azurite(processes, account.port, location)
            floor = {p: before.get(p, -1) + 1 for p in PARTITIONS}
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(checkpoints_past(floor, resumed), 40)
            await asyncio.sleep(1)
        sent = flow.sent
        await receiver.wait_for(len(sent), timeout_s=40)
        last = dict.fromkeys(PARTITIONS, len(sent) // len(PARTITIONS) - 1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(checkpoints_past(last, final), 30)
        os.kill(worker.process.pid, signal.SIGTERM)
        assert await exit_code(worker.process, 60) == 0

    assert set(before) == set(PARTITIONS)
    assert alive_while_down
    assert all(x < y for x, y in itertools.pairwise(counts)), counts  # acting went on
    assert set(receiver.acted) == set(sent)
    assert all(resumed.get(p, -1) >= floor[p] for p in PARTITIONS), (before, resumed)
    assert final == last  # checkpoints reached the last event
    assert failed_while_down, "no checkpoint.failed logged during a 30 s storage outage"
