"""The SQLite conventions the embedded stores share (checkpoints, the ledger).

One file per store in WAL mode, opened without Python's implicit transactions, and every
write in one transaction that takes the write lock up front (``BEGIN IMMEDIATE``), so several
processes on one machine can share a file and a writer waits for another instead of failing
half-way. Each store's connection lives on a thread of its own (``StoreThread``), which opens
it, runs every operation and closes it: nothing of SQLite runs on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable, Hashable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

_T = TypeVar("_T")
_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]"]

BUSY_TIMEOUT_S = 10.0
"""How long one operation waits for another process's write lock before failing."""


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction that takes the lock up front; rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def connect(path: Path, schema: str) -> sqlite3.Connection:
    """Open (creating if missing) the database file in WAL mode with ``schema`` in place.

    In WAL mode, ``synchronous=NORMAL`` survives process crashes; a power cut may undo the
    last few writes, which for these stores only means work is done again (delivery is
    at-least-once anyway).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        with transaction(conn):
            for statement in schema.split(";"):
                if statement.strip():
                    conn.execute(statement)
    except BaseException:
        conn.close()
        raise
    return conn


class StoreThread:
    """The one thread that opens, uses and closes a store's connection, so that the event
    loop never waits on the disk: operations run in the order asked, writes of one key are
    coalesced.

    The thread starts with the first operation, sleeps in a C queue while there is nothing to
    do (it is woken only then), and ends with ``close``. Each round opens the connection if
    it is not open yet (``open`` asks for that at once; a failure goes to the round's callers,
    and the next round tries again), takes every write waiting (one per key, the latest
    asked) and every call waiting, writes with ``write_rows``, runs the calls in the order
    they came, and hands the results to each caller's event loop in one callback per loop.
    The hand-off costs far less than ``asyncio.to_thread`` (see ``consumer.stores.checkpoints``).
    """

    def __init__(
        self,
        path: Path,
        opener: Callable[[], sqlite3.Connection],
        write_rows: Callable[[sqlite3.Connection, Sequence[tuple[Any, ...]]], None] | None = None,
    ) -> None:
        self._path = path
        self._opener = opener
        self._write_rows = write_rows
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._wakeups: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._idle = True
        self._writes: dict[Hashable, tuple[tuple[Any, ...], list[_Waiter]]] = {}
        self._calls: list[tuple[Callable[[sqlite3.Connection], Any], _Waiter]] = []
        self._closing: list[_Waiter] | None = None
        self._thread: threading.Thread | None = None

    async def open(self) -> None:
        """Open the connection now, rather than with the first operation: raises what opening
        raises (``sqlite3.Error``, ``OSError``)."""
        await self.call(lambda conn: None)

    async def call(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` with the connection on this thread, after what was asked before."""
        waiter = self._waiter()
        with self._lock:
            self._refuse_if_closed()
            self._calls.append((work, waiter))
            self._wake()
        result: _T = await waiter[1]
        return result

    async def write(self, key: Hashable, values: tuple[Any, ...]) -> None:
        """Write the row ``values`` with ``write_rows``; a later write of the same ``key`` that
        comes before this one is written replaces it (the last write wins anyway), and both
        callers hear of the one written."""
        waiter = self._waiter()
        with self._lock:
            self._refuse_if_closed()
            waiting = self._writes.get(key)
            if waiting is None:
                self._writes[key] = (values, [waiter])
            else:  # not written yet: the later row replaces it, for both callers
                self._writes[key] = (values, [*waiting[1], waiter])
            self._wake()
        await waiter[1]

    async def close(self) -> None:
        """Close the connection after every operation asked before; idempotent."""
        waiter = self._waiter()
        with self._lock:
            if self._closed:
                return
            if self._closing is None:
                self._closing = []
            self._closing.append(waiter)
            self._wake()
        await waiter[1]

    def _waiter(self) -> _Waiter:
        loop = asyncio.get_running_loop()
        return loop, loop.create_future()

    def _refuse_if_closed(self) -> None:
        """Under ``_lock``: operations asked after ``close`` fail as a closed connection's."""
        if self._closing is not None or self._closed:
            raise sqlite3.ProgrammingError(f"store {self._path} is closed")

    def _wake(self) -> None:
        """Under ``_lock``: start the thread, or wake it if it sleeps."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._serve, name=f"sqlite-store-{self._path.name}", daemon=True
            )
            self._thread.start()
        if self._idle:
            self._idle = False
            self._wakeups.put(None)

    def _serve(self) -> None:
        while True:
            self._wakeups.get()
            while True:
                with self._lock:
                    writes, self._writes = self._writes, {}
                    calls, self._calls = self._calls, []
                    closing = self._closing if not (writes or calls) else None
                    if closing is not None:
                        self._shut()
                    elif not (writes or calls):
                        self._idle = True
                        break
                if closing is not None:
                    _settle_all([(waiter, None, None) for waiter in closing])
                    return
                self._round(writes, calls)

    def _round(
        self,
        writes: dict[Hashable, tuple[tuple[Any, ...], list[_Waiter]]],
        calls: list[tuple[Callable[[sqlite3.Connection], Any], _Waiter]],
    ) -> None:
        done: list[tuple[_Waiter, Any, BaseException | None]] = []
        if self._conn is None:
            try:
                self._conn = self._opener()
            except Exception as exc:  # noqa: BLE001 - each caller of this round raises it
                done.extend((waiter, None, exc) for _, ws in writes.values() for waiter in ws)
                done.extend((waiter, None, exc) for _, waiter in calls)
                _settle_all(done)
                return
        if writes:
            error = self._write([values for values, _ in writes.values()])
            done.extend((waiter, None, error) for _, ws in writes.values() for waiter in ws)
        for work, waiter in calls:
            done.append((waiter, *self._call(work)))
        _settle_all(done)

    def _write(self, rows: Sequence[tuple[Any, ...]]) -> BaseException | None:
        assert self._conn is not None and self._write_rows is not None
        try:
            self._write_rows(self._conn, rows)
        except Exception as exc:  # noqa: BLE001 - each caller raises it
            return exc
        return None

    def _call(self, work: Callable[[sqlite3.Connection], Any]) -> tuple[Any, Exception | None]:
        assert self._conn is not None
        try:
            return work(self._conn), None
        except Exception as exc:  # noqa: BLE001 - the caller raises it
            return None, exc

    def _shut(self) -> None:
        self._closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _settle_all(done: list[tuple[_Waiter, Any, BaseException | None]]) -> None:
    """Hand results to their callers: one callback per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, Any]]] = {}
    for (loop, future), result, error in done:
        by_loop.setdefault(loop, []).append((future, result, error))
    for loop, results in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_settle, results)


def _settle(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in results:
        if future.done():  # cancelled: the caller's deadline passed
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
