"""The ledger in a SQLite file: one machine, shareable between its processes."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self, TypeVar

from consumer.errors import LedgerError
from consumer.stores.ledger.shared import Claim, Entry, Settings, warn_lost
from consumer.stores.sqlite import StoreThread, connect, transaction

_T = TypeVar("_T")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    key TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('reserved', 'done')),
    owner TEXT NOT NULL,
    until REAL NOT NULL,
    detail TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ledger_until ON ledger (until);
"""


class SqliteLedger:
    """Entries in a table of their own SQLite file (WAL; shareable between processes).

    The file and its folder are created on entering (``async with``); operations before
    that, or after leaving, raise ``LedgerError`` (not open). Every operation is one short
    transaction on the ledger's own thread; ``reserve`` takes the write lock up front, so two
    processes can never both reserve a key.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        owner: str,
        lease_s: float,
        expire_after_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self._settings = Settings(owner, lease_s, expire_after_s, clock)
        # A thread of its own: a done mark must not queue behind other work on the loop's
        # shared pool (dead-letter files, .eml files), or the window in which a crash leaves
        # an action's outcome uncertain grows with that work.
        self._thread = StoreThread(self.path, lambda: connect(self.path, _SCHEMA))
        self._open = False

    async def __aenter__(self) -> Self:
        try:
            await self._thread.open()
        except (sqlite3.Error, OSError) as exc:
            await self._thread.close()
            raise LedgerError(f"ledger {self.path}: cannot open: {exc}") from exc
        self._open = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._open = False
        await self._thread.close()

    async def _run(self, operation: str, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` on the ledger's thread, one operation at a time; errors as LedgerError."""
        if not self._open:
            raise LedgerError(f"ledger {self.path}: cannot {operation}: not open")
        try:
            return await self._thread.call(work)
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger {self.path}: cannot {operation}: {exc}") from exc

    async def reserve(self, key: str) -> Claim:
        async with self._settings.holding(key) as outcome:
            outcome.append(await self._reserve(key))
        return outcome[0]

    async def _reserve(self, key: str) -> Claim:
        now = self._settings.clock()
        mine = self._settings.reservation(key, now)
        orphans = int(self._settings.holds[key] <= 1)  # our own reservation, held by no call

        def reserve(conn: sqlite3.Connection) -> Claim:
            with transaction(conn):
                before = conn.execute(
                    "SELECT state, owner, until FROM ledger WHERE key = ?", (key,)
                ).fetchone()
                taken = conn.execute(
                    "INSERT INTO ledger (key, state, owner, until) VALUES (?, 'reserved', ?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET state = 'reserved', owner = excluded.owner,"
                    " until = excluded.until, detail = NULL WHERE ledger.until <= ?"
                    " OR (? AND ledger.state = 'reserved' AND ledger.owner = excluded.owner)",
                    (key, mine.owner, mine.until, now, orphans),
                ).rowcount
                if taken == 1:
                    replaced = None if before is None else Entry(key, *before)
                    return self._settings.taken_over(replaced)
                state, owner, until, detail = conn.execute(
                    "SELECT state, owner, until, detail FROM ledger WHERE key = ?", (key,)
                ).fetchone()
            claim = Entry(key, state, owner, until, detail).claim(now)
            assert claim is not None, "a live entry refused the reservation"
            return claim

        return await self._run(f"reserve {key!r}", reserve)

    async def mark_done(self, key: str, detail: str) -> None:
        self._settings.letting_go(key)
        done = self._settings.done(key, detail, self._settings.clock())

        def mark(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                return conn.execute(
                    "UPDATE ledger SET state = 'done', until = ?, detail = ?"
                    " WHERE key = ? AND state = 'reserved' AND owner = ?",
                    (done.until, detail, key, done.owner),
                ).rowcount

        if await self._run(f"mark {key!r} done", mark) == 0:
            warn_lost(key, done.owner)

    async def release(self, key: str) -> None:
        self._settings.letting_go(key)

        def delete(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute(
                    "DELETE FROM ledger WHERE key = ? AND state = 'reserved' AND owner = ?",
                    (key, self._settings.owner),
                )

        await self._run(f"release {key!r}", delete)

    async def check(self) -> None:
        await self._run("check", lambda conn: conn.execute("SELECT 1").fetchone())

    async def purge(self) -> int:
        now = self._settings.clock()
        # A reservation goes expire_after_s after it was made (``forget_at``): its lease
        # ends before this.
        lapsed_before = now - self._settings.expire_after_s + self._settings.lease_s

        def delete(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                return conn.execute(
                    "DELETE FROM ledger WHERE until <= ? AND (state = 'done' OR until <= ?)",
                    (now, lapsed_before),
                ).rowcount

        return await self._run("purge", delete)
