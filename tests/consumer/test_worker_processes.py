"""The worker as real processes: SIGKILL and restart, replicas sharing partitions on blob
checkpoints, and a blob storage outage, with the emulator and a webhook receiver in the test."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubProducerClient
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

from consumer.sqlitestore import SqliteCheckpointStore
from emulator import Emulator, HubSpec

from ..emulator.peers import AZURITE, Azurite, free_port
from .peers import WebhookReceiver, event_body, webhook_rules, worker_config

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = ("0", "1", "2", "3")
BLOB_ENV = "CHECKPOINT_STORAGE_CONNECTION_STRING"


# --- processes -----------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    """One ``mlevents run`` process; its JSON log lines go to ``log_path``."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (a line cut short by SIGKILL is skipped)."""
        found: list[dict[str, Any]] = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    found.append(record)
        return found

    def logged(self, event: str) -> list[dict[str, Any]]:
        """The log lines whose event is ``event``."""
        return [line for line in self.lines() if line.get("event") == event]

    def owned(self) -> set[str]:
        """The partitions claimed and not closed since, by this process's log."""
        owned: set[str] = set()
        for line in self.lines():
            if line.get("event") == "partition.claimed":
                owned.add(str(line["partition"]))
            elif line.get("event") == "partition.closed":
                owned.discard(str(line["partition"]))
        return owned

    def claimed(self) -> set[str]:
        """Every partition this process ever claimed."""
        return {str(line["partition"]) for line in self.logged("partition.claimed")}


@dataclass
class Processes:
    """Starts worker and Azurite processes; the fixture kills whatever is still running."""

    folder: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def worker(self, config: Path, name: str, env: dict[str, str]) -> WorkerProcess:
        log_path = self.folder / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "consumer", "run", "--config", str(config)],
                cwd=ROOT,
                env={**os.environ, "MLEVENTS_LOG_FORMAT": "json", **env},
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.started.append(process)
        return WorkerProcess(process, log_path)

    def azurite(self, port: int, location: Path) -> subprocess.Popen[bytes]:
        """Azurite blob on ``port``, persisting to ``location``, accepting any API version
        (the installed storage SDK asks for a newer one than Azurite knows)."""
        process = subprocess.Popen(
            [
                str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port),
                "--location", str(location), "--disableTelemetry", "--silent",
                "--skipApiVersionCheck",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.started.append(process)
        return process

    def kill_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(10)


async def start_azurite(processes: Processes, port: int, location: Path) -> subprocess.Popen[bytes]:
    """Start Azurite (see ``Processes.azurite``) and wait until it listens."""
    process = processes.azurite(port, location)
    await until(lambda: _listening(port, process), 30, f"Azurite listening on {port}")
    return process


def _listening(port: int, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"process exited with {process.returncode} before listening")
    try:
        with socket.create_connection(("127.0.0.1", port), 0.2):
            return True
    except OSError:
        return False


async def until(check: Any, timeout_s: float, what: str) -> None:
    """Poll ``check()`` without blocking the loop (the emulator and receiver run on it)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"no {what} after {timeout_s} s")
        await asyncio.sleep(0.05)


async def exit_code(process: subprocess.Popen[bytes], timeout_s: float) -> int:
    """Wait for ``process`` to exit without blocking the loop; its exit code."""
    await until(lambda: process.poll() is not None, timeout_s, f"exit of pid {process.pid}")
    return process.returncode


async def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``process`` by its PID and reap it."""
    os.kill(process.pid, signal.SIGKILL)
    await exit_code(process, 10)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Processes started by a test, all killed at its end."""
    running = Processes(tmp_path)
    try:
        yield running
    finally:
        running.kill_all()


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    """An in-process emulator serving ``hub`` with four partitions."""
    async with Emulator([HubSpec("hub", len(PARTITIONS))]) as running:
        yield running


# --- events --------------------------------------------------------------------------------


async def send_all(connection_string: str, per_partition: dict[str, list[str]]) -> None:
    """Send each partition's event ids, in order, in batches of 200."""
    async with EventHubProducerClient.from_connection_string(connection_string) as producer:

        async def one(partition: str, ids: list[str]) -> None:
            for start in range(0, len(ids), 200):
                batch = await producer.create_batch(partition_id=partition)
                for event_id in ids[start : start + 200]:
                    batch.add(EventData(event_body(event_id)))
                await producer.send_batch(batch)

        await asyncio.gather(*(one(p, ids) for p, ids in per_partition.items()))


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


def blob_checkpoints(container: str) -> str:
    """The [checkpoints] lines of a blob store whose connection string is in ``BLOB_ENV``."""
    return f'store = "blob"\ncontainer = "{container}"\nconnection_string_env = "{BLOB_ENV}"\n'


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
async def test_sigkill_mid_stream_then_restart_acts_on_every_event(
    tmp_path: Path, emu: Emulator, processes: Processes
) -> None:
    """After SIGKILL and a restart on the same state, every event is acted on; only events past
    the last checkpoint are acted on again."""
    per_partition = {p: [f"k{p}-{i}" for i in range(1_000)] for p in PARTITIONS}
    everything = {event_id for ids in per_partition.values() for event_id in ids}
    await send_all(emu.connection_string("hub"), per_partition)
    state = tmp_path / "state" / "checkpoints.sqlite3"
    env = {"EVENTHUB_CONNECTION_STRING": emu.connection_string()}

    async with WebhookReceiver(behaviour=lambda _id, _seen: (200, 0.005)) as receiver:
        config = worker_config(tmp_path, webhook_rules(tmp_path / "rules.toml", receiver.url))
        first = processes.worker(config, "first", env)
        await receiver.wait_for(len(everything) // 3, timeout_s=60)
        await kill(first.process)
        before_kill = Counter(receiver.acted)
        async with SqliteCheckpointStore(state) as store:
            found = await store.list_checkpoints(f"{emu.host}:{emu.port}", "hub", "$Default")
        checkpointed = {str(c["partition_id"]): int(c["sequence_number"]) for c in found}

        second = processes.worker(config, "second", env)
        await receiver.wait_for(len(everything), timeout_s=60)
        await asyncio.sleep(1)  # anything acted on again late shows up too
        acted = Counter(receiver.acted)
        os.kill(second.process.pid, signal.SIGTERM)
        assert await exit_code(second.process, 30) == 0

    assert len(before_kill) < len(everything)  # killed mid-stream
    assert set(acted) == everything
    # Sequence numbers are the positions the ids were sent at (a fresh hub starts at 0).
    for line in first.logged("event.processed") + second.logged("event.processed"):
        assert line["event_id"] == f"k{line['partition']}-{line['sequence_number']}"
    # Acted on twice: only what the first process had not checkpointed when it died.
    again = {event_id for event_id, count in acted.items() if count > 1}
    for event_id in again:
        partition, sequence = event_id[1:].split("-")
        assert int(sequence) > checkpointed.get(partition, -1), event_id
    assert len(again) < len(before_kill)
    # The restart resumed from the checkpoints: nothing at or below them was read again.
    resumed = {line["event_id"] for line in second.logged("event.processed")}
    for event_id in resumed:
        partition, sequence = event_id[1:].split("-")
        assert int(sequence) > checkpointed.get(partition, -1), event_id


@pytest.mark.timeout(150)
async def test_three_replicas_share_partitions_and_the_last_takes_over(
    tmp_path: Path, emu: Emulator, processes: Processes
) -> None:
    """Three replicas on blob checkpoints split the partitions; after SIGTERM of one and SIGKILL
    of another the third owns all four and every event sent meanwhile is acted on."""
    location = tmp_path / "azurite"
    location.mkdir()
    account = Azurite(free_port())
    await start_azurite(processes, account.port, location)
    container = f"checkpoints-{uuid.uuid4().hex[:12]}"
    env = {
        "EVENTHUB_CONNECTION_STRING": emu.connection_string(),
        BLOB_ENV: account.connection_string,
    }
    async with WebhookReceiver() as receiver:
        rules = webhook_rules(tmp_path / "rules.toml", receiver.url)
        workers: list[WorkerProcess] = []
        for name in ("a", "b", "c"):
            folder = tmp_path / name
            folder.mkdir()
            config = worker_config(
                folder, rules, checkpoints=blob_checkpoints(container),
                load_balancing_interval_s=1, ownership_expiration_s=4,
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

        async with Flow(emu.connection_string("hub"), "r") as flow:
            await until(balanced, 40, "partitions split over three replicas")
            shared = [w.owned() for w in workers]
            await until(lambda: len(receiver.acted) >= 100, 20, "events acted on while shared")

            os.kill(a.process.pid, signal.SIGTERM)
            a_exit = await exit_code(a.process, 30)
            await kill(b.process)

            await until(lambda: c.owned() == set(PARTITIONS), 40, "the last replica owning all")
            await asyncio.sleep(1)  # a little more flow after the takeover
        sent = flow.sent
        await receiver.wait_for(len(sent), timeout_s=40)
        os.kill(c.process.pid, signal.SIGTERM)
        assert await exit_code(c.process, 30) == 0

    assert all(0 < len(o) < len(PARTITIONS) for o in shared), shared
    assert a_exit == 0
    assert a.logged("worker.stopped")
    assert a.owned() == set()  # every partition closed (drained, checkpointed) on the way out
    assert set(receiver.acted) == set(sent)
    assert c.claimed() == set(PARTITIONS)


@pytest.mark.timeout(150)
async def test_blob_storage_outage_does_not_stop_consuming(
    tmp_path: Path, emu: Emulator, processes: Processes
) -> None:
    """With blob storage down for 30 s the worker keeps acting on events and logs failed
    checkpoints; once storage is back, checkpoints move again and every event is acted on."""
    location = tmp_path / "azurite"
    location.mkdir()
    account = Azurite(free_port())
    storage = await start_azurite(processes, account.port, location)
    container = f"checkpoints-{uuid.uuid4().hex[:12]}"
    env = {
        "EVENTHUB_CONNECTION_STRING": emu.connection_string(),
        BLOB_ENV: account.connection_string,
    }
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
