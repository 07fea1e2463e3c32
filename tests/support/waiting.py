"""Waiting for a condition in a test's event loop, polling without blocking it (the emulator
and the peers run on the same loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def until(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    """Poll ``condition()`` until it is true, or raise ``TimeoutError`` naming ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.05)


async def until_async(
    condition: Callable[[], Awaitable[bool]], timeout_s: float, what: str
) -> None:
    """``until`` for a condition that has to await something."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await condition():
        if loop.time() > deadline:
            raise TimeoutError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.05)
