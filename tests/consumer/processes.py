"""Worker processes for tests: ``mlevents run`` as a subprocess with its JSON log, Azurite,
and the waits that poll without blocking the loop (the emulator and the peers run on it)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..emulator.peers import AZURITE

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = ("0", "1", "2", "3")


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
