"""A gate peers pass requests through, to hold them and carry them out later."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

_T = TypeVar("_T")


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
