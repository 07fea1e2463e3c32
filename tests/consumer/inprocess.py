"""Helpers for tests that run a worker in the test's own event loop, next to an in-process
emulator and local peers: start it, wait on conditions, read its metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from consumer.config import Config
from consumer.worker.lifecycle import Worker
from consumer.worker.wiring import build

PARTITIONS = ("0", "1", "2", "3")


@contextlib.asynccontextmanager
async def running(
    config: Config, *, dry_run: bool = False, partitions: int = len(PARTITIONS)
) -> AsyncIterator[Worker]:
    """A worker built from ``config``, running until the block ends, once it owns
    ``partitions`` partitions."""
    async with contextlib.AsyncExitStack() as stack:
        worker = await build(config, stack, dry_run=dry_run)
        task = asyncio.create_task(worker.run())
        try:
            await until(lambda: len(worker.partitions) == partitions, 20, "partitions claimed")
            yield worker
        finally:
            worker.stop()
            await task


async def until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` until it holds, or fail naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.02)


async def until_async(
    condition: Callable[[], Awaitable[bool]], timeout_s: float, what: str
) -> None:
    """``until`` for a condition that has to await something."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.05)


async def scrape(worker: Worker) -> list[tuple[str, dict[str, str], float]]:
    """Every sample ``GET /metrics`` serves now: (name, labels, value)."""
    assert worker.health is not None
    url = f"http://127.0.0.1:{worker.health.port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        text = await response.text()
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


async def metric(worker: Worker, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        value
        for sample, have, value in await scrape(worker)
        if sample == name and labels.items() <= have.items()
    )
