"""The webhook executor against a real HTTP server on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from consumer.actions.webhook import WebhookExecutor
from consumer.errors import PermanentActionError, TransientActionError
from rules import plan

from ..emulator.peers import free_port
from ..factories import make_event, make_table


class Server:
    """Answers with the queued (status, headers); records what it received."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.requests: list[tuple[dict[str, str], Any]] = []
        self.port = free_port()

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), json.loads(await request.read())))
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        return web.Response(status=status, headers=headers)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    peer = Server()
    app = web.Application()
    app.router.add_post("/hook", peer.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", peer.port).start()
    yield peer
    await runner.cleanup()


async def _post(server: Server, **action: Any) -> str:
    url = f"http://127.0.0.1:{server.port}/hook"
    table = make_table({"name": "r", "actions": [{"type": "webhook", "url": url, **action}]})
    (decision,) = plan(table, make_event(id="ev-9", data={"runStatus": "Failed"}))
    async with aiohttp.ClientSession() as session:
        return await WebhookExecutor(session)(decision)


async def test_posts_the_event_grid_body_with_headers(server: Server) -> None:
    """The body is the event in an array, as Event Grid delivers it, with custom headers."""
    assert await _post(server, headers={"X-Team": "risk"}) == "HTTP 200"
    headers, body = server.requests[0]
    assert body[0]["id"] == "ev-9"
    assert body[0]["data"]["runStatus"] == "Failed"
    assert headers["X-Team"] == "risk"
    assert headers["Content-Type"].startswith("application/json")


async def test_cloudevents_format(server: Server) -> None:
    """format = cloudevents posts the CloudEvents 1.0 form of an Event Grid event."""
    await _post(server, format="cloudevents")
    headers, body = server.requests[0]
    assert headers["Content-Type"].startswith("application/cloudevents+json")
    assert (body["specversion"], body["id"], body["type"]) == (
        "1.0", "ev-9", "Microsoft.MachineLearningServices.RunStatusChanged")  # fmt: skip


@pytest.mark.parametrize("status", [408, 429, 500, 503])
async def test_retriable_statuses_are_transient(server: Server, status: int) -> None:
    """408, 429 and 5xx may pass later; Retry-After is passed on."""
    server.answers.append((status, {"Retry-After": "3"}))
    with pytest.raises(TransientActionError) as caught:
        await _post(server)
    assert caught.value.retry_after_s == 3
    assert str(status) in str(caught.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
async def test_other_client_errors_are_permanent(server: Server, status: int) -> None:
    """Any other 4xx will not pass by retrying."""
    server.answers.append((status, {}))
    with pytest.raises(PermanentActionError):
        await _post(server)


async def test_connection_refused_is_transient_and_hides_the_query() -> None:
    """A dead endpoint is retriable; the error names the host, not the URL's secret query."""
    url = f"http://127.0.0.1:{free_port()}/hook?code=SECRET"
    table = make_table({"name": "r", "actions": [{"type": "webhook", "url": url}]})
    (decision,) = plan(table, make_event())
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TransientActionError) as caught:
            await WebhookExecutor(session)(decision)
    assert "SECRET" not in str(caught.value)
