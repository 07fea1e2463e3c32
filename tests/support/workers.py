"""The worker for tests: in the test's own event loop (``running``), or as ``mlevents run``
processes with their JSON logs (``Processes``); its config file; and Azurite for processes
that keep blob checkpoints across a restart of it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from azure.core.credentials_async import AsyncTokenCredential

from consumer.config import Config, ProcessingConfig
from consumer.worker.lifecycle import Worker
from consumer.worker.wiring import build
from emulator import Emulator

from . import ROOT, azurite
from .azurite import Azurite
from .ports import free_port, listening
from .processes import stop_process
from .waiting import until

PARTITIONS = ("0", "1", "2", "3")
BLOB_ENV = "CHECKPOINT_STORAGE_CONNECTION_STRING"
"""Where ``blob_checkpoints`` has the worker find the blob connection string."""


@contextlib.asynccontextmanager
async def running(
    config: Config,
    *,
    dry_run: bool = False,
    partitions: int = len(PARTITIONS),
    credential: AsyncTokenCredential | None = None,
) -> AsyncIterator[Worker]:
    """A worker built from ``config`` in this loop, running until the block ends, once it owns
    ``partitions`` partitions; ``credential`` stands in for Azure AD."""
    async with contextlib.AsyncExitStack() as stack:
        worker = await build(config, stack, dry_run=dry_run, credential=credential)
        task = asyncio.create_task(worker.run())
        try:
            await until(lambda: len(worker.partitions) == partitions, 20, "partitions claimed")
            yield worker
        finally:
            worker.stop()
            await task


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

    def processed(self) -> Counter[str]:
        """How many ``event.processed`` lines this process wrote per event id: an event's
        actions were all carried out (or skipped, or dead-lettered) and settled in the ledger
        before its line."""
        return Counter(str(line["event_id"]) for line in self.logged("event.processed"))


def repeats(workers: Iterable[WorkerProcess]) -> Counter[str]:
    """Per decision key, how often a worker carried it out again because its outcome was
    uncertain (``action.uncertain`` with resolution ``repeat``): its earlier holder died
    after reserving it, so it may have happened already. Only these may duplicate an effect.
    """
    return Counter(
        str(line["decision"])
        for worker in workers
        for line in worker.logged("action.uncertain")
        if line["resolution"] == "repeat"
    )


def unexplained(
    effects: Counter[str], action: str, workers: Iterable[WorkerProcess]
) -> dict[str, int]:
    """The event ids with more effects than one plus the repeats the workers logged for the
    decision ``<event id>/<action>`` (``action`` is ``<rule>/<action index>``): duplicates
    that nothing accounts for."""
    repeated = repeats(workers)
    return {
        event_id: count
        for event_id, count in effects.items()
        if count > 1 + repeated[f"{event_id}/{action}"]
    }


@dataclass
class Processes:
    """Starts worker and Azurite processes; the fixture kills whatever is still running."""

    folder: Path
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    """Process groups started (by their leader's id): killed whole, children included."""

    def worker(
        self, config: Path, name: str, env: dict[str, str], *, parent: Sequence[str] = ()
    ) -> WorkerProcess:
        """``mlevents run --config config``; under ``parent`` (a command that runs its
        arguments, such as ``bin/forward-sigint``), the two lead a process group of their own,
        as a terminal's foreground job does. Standard output goes to ``name.out``."""
        log_path = self.folder / f"{name}.log"
        with log_path.open("wb") as log, (self.folder / f"{name}.out").open("wb") as out:
            process = subprocess.Popen(
                [*parent, sys.executable, "-m", "consumer", "run", "--config", str(config)],
                cwd=ROOT,
                env={**os.environ, "MLEVENTS_LOG_FORMAT": "json", **env},
                stdout=out,
                stderr=log,
                start_new_session=bool(parent),
            )
        self.started.append(process)
        if parent:
            self.groups.append(process.pid)
        return WorkerProcess(process, log_path)

    def azurite(self, port: int, location: Path) -> subprocess.Popen[bytes]:
        """Azurite blob on ``port``, persisting to ``location``, accepting any API version
        (the installed storage SDK asks for a newer one than Azurite knows)."""
        process = subprocess.Popen(
            azurite.command(port, "--location", str(location), "--skipApiVersionCheck"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.started.append(process)
        return process

    def kill_all(self) -> None:
        for group in self.groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
        for process in self.started:
            stop_process(process, signal.SIGKILL)


async def start_azurite(processes: Processes, port: int, location: Path) -> subprocess.Popen[bytes]:
    """Start Azurite (see ``Processes.azurite``) and wait until it listens."""
    process = processes.azurite(port, location)
    await until(lambda: listening(port, process), 30, f"Azurite listening on {port}")
    return process


class BlobStorage(NamedTuple):
    """Azurite for worker processes: its account, data folder and process, a fresh checkpoint
    container, and the environment a worker on ``blob_checkpoints(container)`` needs."""

    account: Azurite
    location: Path
    process: subprocess.Popen[bytes]
    container: str
    env: dict[str, str]


async def blob_storage(tmp_path: Path, emu: Emulator, processes: Processes) -> BlobStorage:
    """Start Azurite under ``tmp_path`` and name a checkpoint container no test shares."""
    location = tmp_path / "azurite"
    location.mkdir()
    account = Azurite(free_port())
    process = await start_azurite(processes, account.port, location)
    env = {
        "EVENTHUB_CONNECTION_STRING": emu.connection_string(),
        BLOB_ENV: account.connection_string,
    }
    return BlobStorage(account, location, process, f"checkpoints-{uuid.uuid4().hex[:12]}", env)


def blob_checkpoints(container: str) -> str:
    """The [checkpoints] lines of a blob store whose connection string is in ``BLOB_ENV``."""
    return f'store = "blob"\ncontainer = "{container}"\nconnection_string_env = "{BLOB_ENV}"\n'


def worker_config(
    folder: Path,
    rules: Path,
    *,
    hub: str = "hub",
    checkpoints: str = 'store = "local"\npath = "state/checkpoints.sqlite3"\n',
    deadletters: str = 'store = "local"\npath = "state/deadletters"\n',
    every_events: int = 50,
    every_s: float = 0.5,
    max_in_flight: int = ProcessingConfig().max_in_flight,
    drain_deadline_s: float = 5,
    starting_position: str = "earliest",
    load_balancing_interval_s: float = 1,
    ownership_expiration_s: float = 4,
) -> Path:
    """A config.toml for a worker reading ``hub`` with the connection string in
    ``EVENTHUB_CONNECTION_STRING``, metrics on a free port, state under ``folder``."""
    path = folder / "config.toml"
    path.write_text(
        f'[rules]\nfiles = ["{rules}"]\n'
        f'[eventhub]\nname = "{hub}"\nconnection_string_env = "EVENTHUB_CONNECTION_STRING"\n'
        f'starting_position = "{starting_position}"\n'
        f"load_balancing_interval_s = {load_balancing_interval_s}\n"
        f"ownership_expiration_s = {ownership_expiration_s}\n"
        f"[checkpoints]\n{checkpoints}every_events = {every_events}\nevery_s = {every_s}\n"
        f"[deadletters]\n{deadletters}"
        # A killed worker's reservations lapse quickly, so a restart need not wait long.
        "[ledger]\nlease_s = 2\n"
        f"[processing]\nmax_in_flight = {max_in_flight}\ndrain_deadline_s = {drain_deadline_s}\n"
        '[http]\nhost = "127.0.0.1"\nport = 0\n'
        '[logging]\nformat = "json"\nlevel = "info"\n'
    )
    return path
