"""The actions' HTTP clients: the receiver's timeout starts once a request has a connection,
the pool's queue is bounded on its own, and its waits are counted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from consumer.actions.http import answer_within, client_session
from consumer.worker.metrics import Metrics
from tests.support.ports import free_port


class SlowServer:
    """Answers every POST after ``delay_s``; counts the requests it received."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.received = 0
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def handle(self, request: web.Request) -> web.Response:
        self.received += 1
        await asyncio.sleep(self.delay_s)
        return web.Response(text="ok")


@pytest.fixture
async def slow() -> AsyncIterator[SlowServer]:
    server = SlowServer(0.3)
    app = web.Application()
    app.router.add_post("/", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", server.port).start()
    try:
        yield server
    finally:
        await runner.cleanup()


async def _post(session: aiohttp.ClientSession, url: str, timeout_s: float) -> int:
    async with (
        answer_within(timeout_s) as deadline,
        session.post(url, data=b"{}", trace_request_ctx=deadline) as response,
    ):
        await response.read()
        return response.status


async def test_time_in_the_pool_queue_does_not_count_against_the_receiver(
    slow: SlowServer,
) -> None:
    """One connection per host, three requests of 0.3 s each with a 0.5 s timeout: the last
    waits 0.6 s for the connection, and still succeeds; the two waits are counted."""
    metrics = Metrics(clock=lambda: 0.0)
    async with client_session("webhook", metrics, per_host=1) as session:
        statuses = await asyncio.gather(*(_post(session, slow.url, 0.5) for _ in range(3)))
    assert statuses == [200, 200, 200]
    text = metrics.render().decode()
    assert 'mlevents_http_pool_waits_total{client="webhook"} 2.0' in text
    assert 'mlevents_http_pool_queued{client="webhook"} 0.0' in text
    waited = next(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith('mlevents_http_pool_wait_seconds_total{client="webhook"}')
    )
    assert waited >= 0.3 + 0.6 - 0.1  # 0.3 s and 0.6 s in the queue, give or take the clock


async def test_a_receiver_slower_than_the_timeout_times_out(slow: SlowServer) -> None:
    metrics = Metrics(clock=lambda: 0.0)
    async with client_session("webhook", metrics, per_host=4) as session:
        with pytest.raises(TimeoutError):
            await _post(session, slow.url, 0.1)
    assert slow.received == 1


async def test_a_full_pool_past_its_wait_fails_unsent(slow: SlowServer) -> None:
    """When the queue's own bound passes, the request fails before anything is sent, so a
    retry cannot double it."""
    metrics = Metrics(clock=lambda: 0.0)
    async with client_session(
        "webhook", metrics, per_host=1, pool_wait_s=0.05, connect_s=0.05
    ) as session:
        first = asyncio.create_task(_post(session, slow.url, 5))
        while not slow.received:  # noqa: ASYNC110 - until the first holds the one connection
            await asyncio.sleep(0.01)
        with pytest.raises(aiohttp.ConnectionTimeoutError):
            await _post(session, slow.url, 5)
        assert await first == 200
    assert slow.received == 1
    assert 'mlevents_http_pool_queued{client="webhook"} 0.0' in metrics.render().decode()
