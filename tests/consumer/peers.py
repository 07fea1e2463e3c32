"""Local peers for worker tests: a webhook receiver and config files for the worker."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web

from consumer.actions.http import client_session
from consumer.config import ProcessingConfig
from consumer.worker.metrics import Metrics

from ..emulator.peers import free_port

_T = TypeVar("_T")

Behaviour = Callable[[str, int], "tuple[int, float]"]
"""(event id, how many times it was seen) -> (HTTP status to answer, seconds to wait first)."""


def action_session(client: str = "webhook") -> aiohttp.ClientSession:
    """An HTTP session for executors made as the worker makes them (``consumer.actions.http``)."""
    return client_session(client, Metrics(clock=lambda: 0.0), per_host=100)


def always_ok(event_id: str, seen: int) -> tuple[int, float]:
    """Answer 200 at once."""
    return 200, 0.0


class Gate:
    """Lets peers hold requests: while closed, a request waits; once open again, every request
    held is carried out, even one whose client went away meanwhile. A real server (an SMTP
    server, Data Factory) keeps what it received: a worker killed while waiting for the
    answer never learns the outcome, but the effect happened all the same."""

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._held: set[asyncio.Task[Any]] = set()
        self.held = 0
        """Requests held so far, carried out or not."""

    @property
    def waiting(self) -> int:
        """Requests held now, not carried out yet."""
        return len(self._held)

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    async def passage(self, work: Callable[[], Awaitable[_T]]) -> _T:
        """Carry out ``work`` (what the request does, and its answer): now if the gate is
        open, else once it opens. A caller cancelled meanwhile (its connection was lost) does
        not stop it: the work runs in a task of its own."""
        if self._open.is_set():
            return await work()
        task = asyncio.create_task(self._when_open(work))
        self._held.add(task)
        self.held += 1
        task.add_done_callback(self._done)
        return await asyncio.shield(task)

    async def _when_open(self, work: Callable[[], Awaitable[_T]]) -> _T:
        await self._open.wait()
        return await work()

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._held.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: its caller may be gone


@dataclass
class WebhookReceiver:
    """An HTTP server on loopback that records the Event Grid bodies POSTed to it."""

    behaviour: Behaviour = always_ok
    calls: Counter[str] = field(default_factory=Counter)
    """How many POSTs arrived per event id (failed ones included)."""
    acted: Counter[str] = field(default_factory=Counter)
    """How many POSTs per event id were taken with a 2xx answer (the effects), whether or not
    the client was still there to read it."""
    bodies: list[Any] = field(default_factory=list)
    """The JSON bodies taken with 2xx, in order."""
    port: int = 0
    gate: Gate | None = None
    """Holds requests while closed (see ``Gate``)."""
    _runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def __aenter__(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        body: Any = json.loads(await request.read())
        event = body[0] if isinstance(body, list) else body
        event_id = str(event.get("id"))
        self.calls[event_id] += 1
        status, delay_s = self.behaviour(event_id, self.calls[event_id])
        if delay_s:
            await asyncio.sleep(delay_s)

        async def commit() -> web.Response:
            if 200 <= status < 300:
                self.acted[event_id] += 1
                self.bodies.append(body)
            return web.Response(status=status)

        if self.gate is None:
            return await commit()
        return await self.gate.passage(commit)

    async def wait_for(self, count: int, timeout_s: float = 60.0) -> None:
        """Wait until ``count`` distinct events were acted on."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(self.acted) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{len(self.acted)} of {count} events acted on")
            await asyncio.sleep(0.05)


def event_body(event_id: str, *, run_status: str = "Failed", **data: Any) -> str:
    """An Event Hubs body as Event Grid writes it: a RunStatusChanged event in an array."""
    event = {
        "topic": "/subscriptions/s/resourceGroups/rg/providers/"
        "Microsoft.MachineLearningServices/workspaces/ws",
        "subject": f"experiments/e/runs/{event_id}",
        "eventType": "Microsoft.MachineLearningServices.RunStatusChanged",
        "eventTime": "2026-01-01T00:00:00Z",
        "id": event_id,
        "data": {"runId": event_id, "runStatus": run_status, **data},
        "dataVersion": "",
        "metadataVersion": "1",
    }
    return json.dumps([event])


def webhook_rules(path: Path, url: str, *, extra: str = "", timeout_s: float = 10) -> Path:
    """A rules file: every RunStatusChanged event goes to ``url``."""
    path.write_text(
        "[[rules]]\n"
        'name = "hook"\n'
        "[rules.filter]\n"
        'includedEventTypes = ["Microsoft.MachineLearningServices.RunStatusChanged"]\n'
        "[[rules.actions]]\n"
        'type = "webhook"\n'
        f'url = "{url}"\n'
        f"timeout_s = {timeout_s}\n" + extra
    )
    return path


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
