"""The ledger in a dict: one process only (tests, one-off tools)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Self

from consumer.stores.ledger.shared import Claim, Entry, Settings, warn_lost


class MemoryLedger:
    """Entries in a dict: one process only. ``table`` may be shared by several instances
    (one per simulated owner); asyncio runs each operation without interruption."""

    def __init__(
        self,
        *,
        owner: str,
        lease_s: float,
        expire_after_s: float,
        clock: Callable[[], float] = time.time,
        table: dict[str, Entry] | None = None,
    ) -> None:
        self._settings = Settings(owner, lease_s, expire_after_s, clock)
        self.table: dict[str, Entry] = {} if table is None else table

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def reserve(self, key: str) -> Claim:
        async with self._settings.holding(key) as outcome:
            now = self._settings.clock()
            entry = self.table.get(key)
            ahead = None if entry is None else self._settings.answer(entry, now)
            if ahead is None:
                self.table[key] = self._settings.reservation(key, now)
            outcome.append(ahead or self._settings.taken_over(entry))
        return outcome[0]

    async def mark_done(self, key: str, detail: str) -> None:
        self._settings.letting_go(key)
        entry = self.table.get(key)
        if entry is None or not entry.held_by(self._settings.owner):
            warn_lost(key, self._settings.owner)
            return
        self.table[key] = self._settings.done(key, detail, self._settings.clock())

    async def release(self, key: str) -> None:
        self._settings.letting_go(key)
        entry = self.table.get(key)
        if entry is not None and entry.held_by(self._settings.owner):
            del self.table[key]

    async def check(self) -> None:
        return None

    async def purge(self) -> int:
        now, forget_at = self._settings.clock(), self._settings.forget_at
        expired = [
            key for key, entry in self.table.items() if forget_at(entry.state, entry.until) <= now
        ]
        for key in expired:
            del self.table[key]
        return len(expired)
