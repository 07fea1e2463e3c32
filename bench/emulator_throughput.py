"""Emulator push rate next to one SDK consumer's receive rate, measured in the same run.

The emulator runs as its own process. After preloading 1 KB events into one
partition, a minimal receiver built on the emulator's own codec grants all credit up
front and counts transfers (the emulator's raw push rate); then one
``EventHubConsumerClient`` reads the same events with ``prefetch`` passed to
``receive()``. The emulator must stay at least 5x faster than one consumer, so that a
benchmark of the worker never measures the emulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient

from emulator.amqp import (
    AMQP_HEADER,
    Attach,
    Begin,
    Described,
    Flow,
    Open,
    Source,
    Symbol,
    Target,
    UInt,
    encode_frame,
    encode_performative,
)

EVENTS = 50_000
BODY = json.dumps({"eventType": "Microsoft.MachineLearningServices.RunCompleted", "pad": "x" * 900})
PREFETCH = 3000
REQUIRED_RATIO = 5.0
ROOT = Path(__file__).resolve().parents[1]
SELECTOR = Symbol("apache.org:selector-filter:string")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _preload(cs: str) -> None:
    async with EventHubProducerClient.from_connection_string(cs) as producer:
        batch = await producer.create_batch(partition_id="0")
        for _ in range(EVENTS):
            event = EventData(BODY)
            try:
                batch.add(event)
            except ValueError:
                await producer.send_batch(batch)
                batch = await producer.create_batch(partition_id="0")
                batch.add(event)
        await producer.send_batch(batch)


async def raw_push_rate(port: int) -> float:
    """Events per second the emulator pushes to a receiver that does nothing but count."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    source = Source(
        "amqps://127.0.0.1/bench/ConsumerGroups/$Default/Partitions/0",
        filter={SELECTOR: Described(SELECTOR, "amqp.annotation.x-opt-offset > '-1'")},
    )
    frames = [
        Open("bench", max_frame_size=UInt(1024 * 1024)),
        Begin(None, UInt(0), UInt(1 << 20), UInt(1 << 20)),
        Attach("bench", UInt(0), True, source=source, target=Target("bench")),
        Flow(UInt(0), UInt(1 << 20), UInt(0), UInt(1 << 20), UInt(0), UInt(0), UInt(EVENTS)),
    ]
    writer.write(AMQP_HEADER + b"".join(encode_frame(0, encode_performative(f)) for f in frames))
    await reader.readexactly(8)
    buffer = b""
    count = 0
    started = 0.0
    while count < EVENTS:
        buffer += await reader.read(1 << 20)
        pos = 0
        while pos + 8 <= len(buffer):
            (size,) = struct.unpack_from(">I", buffer, pos)
            if pos + size > len(buffer):
                break
            if size > 10 and buffer[pos + 10] == 0x14:  # a transfer performative
                count += 1
                if count == 1:
                    started = time.perf_counter()
            pos += size
        buffer = buffer[pos:]
    elapsed = time.perf_counter() - started
    writer.close()
    return (EVENTS - 1) / elapsed


async def sdk_receive_rate(cs: str) -> float:
    """Events per second one SDK consumer takes from the same partition."""
    client = EventHubConsumerClient.from_connection_string(cs, "$Default")
    stamps: list[float] = []
    done = asyncio.Event()

    async def on_event(_: object, event: EventData | None) -> None:
        stamps.append(time.perf_counter())
        if len(stamps) >= EVENTS:
            done.set()

    task = asyncio.create_task(
        client.receive(on_event, partition_id="0", starting_position="-1", prefetch=PREFETCH)
    )
    await asyncio.wait_for(done.wait(), 120)
    await client.close()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


async def _run(port: int, pid: int) -> tuple[float, float, float]:
    cs = (
        f"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName=k;SharedAccessKey=k;"
        "UseDevelopmentEmulator=true;EntityPath=bench"
    )
    await _preload(cs)
    push = await raw_push_rate(port)
    cpu_before, wall_before = _cpu_seconds(pid), time.perf_counter()
    sdk = await sdk_receive_rate(cs)
    busy = (_cpu_seconds(pid) - cpu_before) / (time.perf_counter() - wall_before)
    return push, busy, sdk


def main() -> None:
    """Print the emulator's push rate, one SDK consumer's rate, and their ratio."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "emulator", "--hub", "bench:1", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise SystemExit("emulator did not start")
            time.sleep(0.05)
        push, busy, sdk = asyncio.run(_run(port, process.pid))
    finally:
        process.terminate()
        process.wait(10)
    ratio = push / sdk
    print(f"emulator push (raw receiver, {EVENTS} x 1 KB): {push:>10,.0f} events/s")
    print(f"one SDK consumer (prefetch={PREFETCH}):            {sdk:>10,.0f} events/s")
    print(f"emulator CPU while that consumer reads:         {busy:>10.0%} of one core")
    verdict = "ok" if ratio >= REQUIRED_RATIO else f"TOO SLOW (need >= {REQUIRED_RATIO}x)"
    print(f"ratio emulator / consumer:                     {ratio:>10.1f}x  {verdict}")


if __name__ == "__main__":
    main()
