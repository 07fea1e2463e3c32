"""The processes and peers of a chaos run, the faults done to them, and what is seen of them.

The emulator runs as a process of its own, so it outlives worker kills; the replicas share
blob checkpoints and a blob ledger on Azurite; the SMTP, webhook and ARM peers run in this
process's loop. A worker that exits on its own (one started while storage is down cannot
open it) is restarted with a growing delay, as an orchestrator would; a killed one at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from azure.eventhub.aio import EventHubProducerClient
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

from emulator import Emulator, HubSpec
from tests.support.arm import AZ_BIN
from tests.support.azurite import Azurite
from tests.support.emulator import emulator_process
from tests.support.ports import free_port
from tests.support.processes import exit_code
from tests.support.waiting import until
from tests.support.workers import Processes, WorkerProcess, start_azurite

from . import scenario
from .report import Kill, in_flight
from .settings import Settings
from .sinks import Sinks, sinks

BLOB_ENV = "CHAOS_STORAGE_CONNECTION_STRING"
"""The fake ``az`` the Azure CLI credential runs."""
SCRAPE_EVERY_S = 1.0
LAST_SCRAPE_S = 5.0
"""How long the scrape before a kill or a stop may take (a busy worker answers late)."""
RESTART_DELAYS_S = (1.0, 2.0, 4.0, 8.0)
"""Waits before restarting a worker that exited on its own, by how often it did in a row."""
STEADY_S = 30.0
"""A run that lasted this long resets the restart delays."""
CATCH_UP_S = 180.0
"""How long a kill waits for checkpoints to pass a storage outage (``kills_after_storage_s``)."""

Positions = tuple[dict[str, int], dict[str, int]]
"""Each partition's checkpointed sequence number, and its last one."""


@dataclass
class Slot:
    """One replica: its config and metrics port stay, its process is replaced after a kill."""

    name: str
    config: Path
    port: int
    runs: list[WorkerProcess] = field(default_factory=list)
    last_scrape: dict[int, str] = field(default_factory=dict)
    """The last ``/metrics`` text of each run, by its index in ``runs``."""
    exits_in_a_row: int = 0
    """Runs in a row that exited on their own soon after their start."""
    restart_at: float = 0.0
    started_at: float = 0.0

    @property
    def current(self) -> WorkerProcess:
        return self.runs[-1]

    @property
    def running(self) -> bool:
        return bool(self.runs) and self.current.process.poll() is None

    @property
    def last(self) -> str:
        """The current run's last ``/metrics`` text."""
        return self.last_scrape.get(len(self.runs) - 1, "")


@dataclass
class Cluster:
    """The processes and peers of one run, and what happened to them."""

    settings: Settings
    folder: Path
    processes: Processes
    emulator: subprocess.Popen[bytes]
    hub: str
    """The namespace's connection string."""
    storage: Azurite
    storage_process: subprocess.Popen[bytes]
    container: str
    sinks: Sinks
    rng: random.Random
    slots: list[Slot] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    storage_back_at: float = field(default_factory=time.monotonic)
    storage_down: bool = False
    """Whether Azurite is stopped or frozen now."""
    _caught_up_at: float | None = None
    """``storage_back_at`` of the outage checkpoints were last seen past."""
    _kill_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _storage_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def now_s(self) -> float:
        return time.monotonic() - self.started

    def env(self) -> dict[str, str]:
        return {
            "EVENTHUB_CONNECTION_STRING": self.hub,
            BLOB_ENV: self.storage.connection_string,
            "PATH": f"{AZ_BIN}{os.pathsep}{os.environ['PATH']}",
            "MLEVENTS_TEST_TOKEN": self.sinks.arm.token,
        }

    def start(self, slot: Slot) -> None:
        slot.started_at = time.monotonic()
        slot.runs.append(
            self.processes.worker(slot.config, f"{slot.name}-{len(slot.runs)}", self.env())
        )

    def note(self, text: str) -> None:
        self.faults.append(f"{self.now_s():6.1f} s {text}")

    def balanced(self) -> bool:
        """Every worker owns a share of the partitions, and no partition has two owners."""
        owned = [slot.current.owned() for slot in self.slots if slot.running]
        shares = min(len(self.slots), scenario.PARTITIONS)
        return (
            sum(1 for partitions in owned if partitions) == shares
            and sum(map(len, owned)) == scenario.PARTITIONS
            and len(set().union(*owned)) == scenario.PARTITIONS
        )

    # --- faults ----------------------------------------------------------------------------

    async def kill(self) -> None:
        """SIGKILL a random worker with events in flight (any running one if none has),
        scraped just before, and start it again at once."""
        async with self._kill_lock:
            quiet_s = self.settings.timeline.kills_after_storage_s
            if quiet_s is not None:
                await self._storage_settled(quiet_s)
            with contextlib.suppress(TimeoutError):
                await until(lambda: any(s.running for s in self.slots), 30, "a running worker")
            running = [slot for slot in self.slots if slot.running]
            if not running:
                self.note("kill skipped: no worker running")
                return
            await asyncio.gather(*(self.scrape(slot, timeout_s=LAST_SCRAPE_S) for slot in running))
            slot = self.rng.choice([s for s in running if in_flight(s.last)] or running)
            flight = in_flight(slot.last)
            os.kill(slot.current.process.pid, signal.SIGKILL)
            await exit_code(slot.current.process, 10)
            self.kills.append(Kill(self.now_s(), slot.name, flight))
            self.start(slot)

    async def _storage_settled(self, quiet_s: float) -> None:
        """Wait until storage has been back ``quiet_s`` and every checkpoint has passed the
        events sent by then (those a worker may have acted on without the ledger)."""
        await until(
            lambda: not self.storage_down and time.monotonic() - self.storage_back_at >= quiet_s,
            3600,
            "storage back a while",
        )
        if self._caught_up_at == self.storage_back_at:
            return
        floor = None
        while floor is None:
            found = await self.positions()
            floor = found[1] if found else None
        deadline = time.monotonic() + CATCH_UP_S
        while not await self.checkpoints_past(floor):
            if time.monotonic() > deadline:
                self.note("kill: checkpoints did not pass the storage outage in time")
                break
            await asyncio.sleep(1)
        self._caught_up_at = self.storage_back_at

    @contextlib.asynccontextmanager
    async def _storage_fault(self) -> AsyncIterator[None]:
        """One storage fault at a time (a freeze needs a running Azurite)."""
        async with self._storage_lock:
            self.storage_down = True
            try:
                yield
            finally:
                self.storage_down = False
                self.storage_back_at = time.monotonic()

    async def stop_storage(self) -> None:
        """Stop Azurite gracefully (it saves its data), then start it on the same port and
        folder after ``storage_stop_s``."""
        async with self._storage_fault():
            self.note(f"storage stopped for {self.settings.storage_stop_s:g} s")
            self.storage_process.terminate()
            await exit_code(self.storage_process, 30)
            await asyncio.sleep(self.settings.storage_stop_s)
            self.storage_process = await start_azurite(
                self.processes, self.storage.port, self.folder / "azurite"
            )
            self.note("storage started again")

    async def freeze_storage(self) -> None:
        async with self._storage_fault():
            self.note(f"storage frozen (SIGSTOP) for {self.settings.storage_freeze_s:g} s")
            self.storage_process.send_signal(signal.SIGSTOP)
            try:
                await asyncio.sleep(self.settings.storage_freeze_s)
            finally:
                self.storage_process.send_signal(signal.SIGCONT)
            self.note("storage thawed (SIGCONT)")

    async def drop_hub(self) -> None:
        self.note("hub connections dropped (SIGUSR1)")
        self.emulator.send_signal(signal.SIGUSR1)

    async def slow_phase(self) -> None:
        settings = self.settings
        self.note(f"slow phase: {settings.slow_request_s:g} s per answer for {settings.slow_s:g} s")
        self.sinks.slow(settings.slow_request_s)
        try:
            await asyncio.sleep(settings.slow_s)
        finally:
            self.sinks.slow(0)
        self.note("slow phase over")

    async def bursts(self) -> None:
        self.note(
            f"error bursts of {self.settings.burst_s:g} s each: webhook 429 then 503, "
            "SMTP 451, ARM 429 (Retry-After) then 503"
        )
        await self.sinks.burst(self.settings.burst_s)

    # --- observing -------------------------------------------------------------------------

    async def scrape(
        self, slot: Slot, session: aiohttp.ClientSession | None = None, timeout_s: float = 1.0
    ) -> None:
        """Keep the worker's ``/metrics`` text, if it answers within ``timeout_s``."""
        run = len(slot.runs) - 1
        url = f"http://127.0.0.1:{slot.port}/metrics"
        try:
            async with contextlib.AsyncExitStack() as stack:
                if session is None:
                    session = await stack.enter_async_context(aiohttp.ClientSession())
                limit = aiohttp.ClientTimeout(total=timeout_s)
                async with session.get(url, timeout=limit) as answer:
                    if answer.status == 200:
                        slot.last_scrape[run] = await answer.text()
        except (aiohttp.ClientError, TimeoutError):
            return

    async def watch(self) -> None:
        """Each second: scrape every running worker, restart one that exited on its own, and
        mark the peers' records (when each effect happened)."""
        async with aiohttp.ClientSession() as session:
            while True:
                self.sinks.mark()
                for slot in self.slots:
                    if slot.running:
                        await self.scrape(slot, session)
                    elif not self._kill_lock.locked():
                        self._restart(slot)
                await asyncio.sleep(SCRAPE_EVERY_S)

    def _restart(self, slot: Slot) -> None:
        now = time.monotonic()
        if now - slot.started_at > STEADY_S:
            slot.exits_in_a_row = 0
        if slot.restart_at == 0.0:
            delay = RESTART_DELAYS_S[min(slot.exits_in_a_row, len(RESTART_DELAYS_S) - 1)]
            slot.exits_in_a_row += 1
            slot.restart_at = now + delay
        elif now >= slot.restart_at:
            slot.restart_at = 0.0
            self.start(slot)

    async def positions(self) -> Positions | None:
        """Each partition's checkpoint and last sequence number (a partition without either
        at -1); ``None`` while the hub or storage does not answer."""
        try:
            async with EventHubProducerClient.from_connection_string(
                self.hub, eventhub_name=scenario.HUB
            ) as producer:
                last = {}
                for partition in await producer.get_partition_ids():
                    properties = await producer.get_partition_properties(partition)
                    last[partition] = int(properties["last_enqueued_sequence_number"])
            store = BlobCheckpointStore.from_connection_string(
                self.storage.connection_string, self.container
            )
            async with store:
                namespace = self.hub.split("sb://")[1].split(";")[0]
                found = await store.list_checkpoints(namespace, scenario.HUB, "$Default")
        except Exception:  # noqa: BLE001 - storage or the hub is down for now
            return None
        done = {str(c["partition_id"]): int(c["sequence_number"]) for c in found}
        return {p: done.get(p, -1) for p in last}, last

    async def checkpoints_past(self, floor: dict[str, int]) -> bool:
        """Whether every partition's checkpoint is at ``floor`` or beyond."""
        found = await self.positions()
        return found is not None and all(found[0][p] >= floor[p] for p in floor)

    async def checkpoints_at_end(self) -> bool:
        """Whether every partition's checkpoint is at its last event."""
        found = await self.positions()
        return found is not None and found[0] == found[1]

    def logs(self) -> list[WorkerProcess]:
        return [run for slot in self.slots for run in slot.runs]

    def last_scrapes(self) -> list[str]:
        return [text for slot in self.slots for text in slot.last_scrape.values()]

    def dead_letters(self) -> list[str]:
        return sorted(
            path.stem
            for slot in self.slots
            for path in (slot.config.parent / "state" / "deadletters").glob("*.json")
        )

    async def stop_workers(self) -> None:
        """Scrape each running worker one last time, then SIGTERM it and wait for it to
        drain."""
        for slot in self.slots:
            if slot.running:
                await self.scrape(slot, timeout_s=LAST_SCRAPE_S)
                slot.current.process.terminate()
        for slot in self.slots:
            with contextlib.suppress(TimeoutError):
                await exit_code(slot.current.process, 60)


@contextlib.asynccontextmanager
async def cluster(settings: Settings, folder: Path) -> AsyncIterator[Cluster]:
    """Start the emulator, Azurite, the peers and the workers; kill every process at the end."""
    processes = Processes(folder)
    port = free_port()
    location = folder / "azurite"
    location.mkdir(parents=True, exist_ok=True)
    try:
        with emulator_process(port, "--hub", f"{scenario.HUB}:{scenario.PARTITIONS}") as emu:
            storage = Azurite(free_port())
            storage_process = await start_azurite(processes, storage.port, location)
            hub = Emulator([HubSpec(scenario.HUB, scenario.PARTITIONS)], port=port)
            async with sinks(settings.events, f"chaos-{uuid.uuid4().hex[:8]}") as peers:
                running = Cluster(
                    settings, folder, processes, emu, hub.connection_string(), storage,
                    storage_process, f"chaos-{uuid.uuid4().hex[:12]}", peers,
                    random.Random(settings.seed),
                )  # fmt: skip
                _add_workers(running)
                yield running
    finally:
        processes.kill_all()


def _add_workers(running: Cluster) -> None:
    """A home folder, config and metrics port per worker, all on the same rules and peers."""
    rules_folder = running.folder / "rules"
    rules_folder.mkdir(exist_ok=True)
    rules = scenario.rules_file(rules_folder, running.sinks.hooks.url)
    peers = scenario.Peers(
        running.sinks.hooks.url, running.sinks.smtp.port, running.sinks.arm.base_url
    )
    for n in range(running.settings.workers):
        home = running.folder / f"w{n + 1}"
        home.mkdir()
        port = free_port()
        config = home / "config.toml"
        text = scenario.config_text(
            rules, peers, container=running.container, blob_env=BLOB_ENV, http_port=port,
            lease_s=running.settings.lease_s,
        )  # fmt: skip
        config.write_text(text)
        slot = Slot(home.name, config, port)
        running.slots.append(slot)
        running.start(slot)
