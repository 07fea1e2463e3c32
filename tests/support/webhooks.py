"""A webhook receiver on loopback, and a rules file that sends every event to it."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .gate import Gate
from .http import serve

Behaviour = Callable[[str, int], "tuple[int, float]"]
"""(event id, how many times it was seen) -> (HTTP status to answer, seconds to wait first)."""


def always_ok(event_id: str, seen: int) -> tuple[int, float]:
    """Answer 200 at once."""
    return 200, 0.0


@dataclass(frozen=True)
class Request:
    """One POST as it arrived: what the client sent, byte for byte in its body."""

    method: str
    target: str
    """The path and query, as sent (percent-encoding kept)."""
    headers: dict[str, str]
    body: bytes


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
    requests: list[Request] = field(default_factory=list)
    """Every POST that arrived, in order."""
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
        self._runner, self.port = await serve(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _hook(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.requests.append(Request(request.method, request.raw_path, dict(request.headers), raw))
        body: Any = json.loads(raw)
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
