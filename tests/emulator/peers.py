"""Local peers for emulator tests: free ports, Azurite and emulator processes, SDK send/receive."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import hashlib
import hmac
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient

ROOT = Path(__file__).resolve().parents[2]
AZURITE = ROOT / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account; the key is a public constant.
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout_s: float, process: subprocess.Popen[bytes]) -> None:
    """Block until something accepts connections on ``port``, or fail."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout_s} s")


def stop_process(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    """Stop a child process by its PID and reap it."""
    if process.poll() is None:
        os.kill(process.pid, sig)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)


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


@dataclass(frozen=True, slots=True)
class Azurite:
    """A running Azurite blob service."""

    port: int

    @property
    def connection_string(self) -> str:
        """The explicit connection string the vendored storage SDK accepts."""
        return (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{self.port}/devstoreaccount1;"
        )


def create_container(account: Azurite, name: str) -> None:
    """Create a blob container with a SharedKey-signed REST call (the store does not create it)."""
    date = email.utils.formatdate(usegmt=True)
    version = "2021-08-06"
    standard_headers = ["PUT"] + [""] * 11  # verb, then eleven empty standard headers
    string_to_sign = "\n".join(
        [
            *standard_headers,
            f"x-ms-date:{date}",
            f"x-ms-version:{version}",
            f"/devstoreaccount1/devstoreaccount1/{name}\nrestype:container",
        ]
    )
    key = base64.b64decode(AZURITE_KEY)
    signature = base64.b64encode(hmac.new(key, string_to_sign.encode(), hashlib.sha256).digest())
    request = urllib.request.Request(
        f"http://127.0.0.1:{account.port}/devstoreaccount1/{name}?restype=container",
        method="PUT",
        headers={
            "x-ms-date": date,
            "x-ms-version": version,
            "Authorization": f"SharedKey devstoreaccount1:{signature.decode()}",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 201:
            raise RuntimeError(f"creating container {name}: HTTP {response.status}")


@contextlib.contextmanager
def azurite() -> Iterator[Azurite]:
    """Run ``azurite-blob`` in memory on a free port for the duration of the block."""
    if not AZURITE.exists():
        raise RuntimeError(f"{AZURITE} is missing: run `npm ci` (make setup)")
    port = free_port()
    process = subprocess.Popen(
        [
            str(AZURITE),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, 30, process)
        yield Azurite(port)
    finally:
        stop_process(process)


async def send(connection_string: str, bodies: list[str], **batch_options: Any) -> None:
    """Send ``bodies`` as one batch with the SDK producer."""
    async with EventHubProducerClient.from_connection_string(connection_string) as producer:
        batch = await producer.create_batch(**batch_options)
        for body in bodies:
            batch.add(EventData(body))
        await producer.send_batch(batch)


async def send_each(connection_string: str, per_partition: dict[str, list[str]]) -> None:
    """Send one batch to each partition, concurrently, with one SDK producer."""
    async with EventHubProducerClient.from_connection_string(connection_string) as producer:

        async def one(partition_id: str, bodies: list[str]) -> None:
            batch = await producer.create_batch(partition_id=partition_id)
            for body in bodies:
                batch.add(EventData(body))
            await producer.send_batch(batch)

        await asyncio.gather(*(one(pid, bodies) for pid, bodies in per_partition.items()))


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
