"""The idempotency ledger: which actions already ran for which event.

Event Grid delivers at least once, and after a crash or a partition rebalance the worker may
see an event again. Every action of every matched rule has a key (``Decision.key``: event id,
rule name, action position). Before an action runs the worker *reserves* its key; after it
succeeds it marks the key *done*; a redelivered event skips what is done. Two replicas never
both hold the same reservation: reserving is atomic in every store.

An entry is in one of two states, and ``until`` says when it stops counting::

    (none) --reserve--> reserved --mark_done--> done --(expire_after_s)--> (none)
                           |  \\--release (after a failure)--> (none)
                           \\--(lease_s: its owner crashed)--> lapsed: may be reserved again
                                                       --(expire_after_s)--> (none)

* A live reservation, even this owner's (another task holds it), makes ``reserve`` answer
  ``busy`` with the time left on its lease. The one exception: a reservation of this owner
  that no call of this process holds (a reserve that timed out after its write reached the
  store) is taken again at once, instead of blocking its key until the lease ends.
* A live done entry makes ``reserve`` answer ``done`` with the detail recorded (a run id).
* ``mark_done`` and ``release`` act only on a reservation that is still this owner's: after
  a lease ended and another owner took over, a late finisher does not clobber it.
* ``purge`` deletes entries whose time is up: done ones past expiry, and reservations
  ``expire_after_s`` after they were made (as if done then). A lapsed reservation is kept: it
  is what tells the next holder that the outcome is uncertain (below).
* A reservation taken over from another (its lease ended, or it is this owner's orphan) says
  so: ``Claim.earlier`` is when that one was made. Its holder may have carried the action out
  without living to mark it done, so its outcome is uncertain; the handler resolves that.

Stores: ``MemoryLedger`` (one process; tests), ``SqliteLedger`` (one machine, one SQLite file)
and ``BlobLedger`` (replicas sharing a blob container). Storage failures raise ``LedgerError``
naming the store, never a connection string or key, so the caller can retry; a conflict is
never an error, it is ``busy``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, Self, TypeVar

from azure.core import MatchConditions
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob.aio import ContainerClient

from consumer.errors import LedgerError
from consumer.stores.blob import container_client, describe_error, open_container
from consumer.stores.sqlite import connect, transaction

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

BLOB_PREFIX = "ledger/"
_ATTEMPTS = 5
"""How often a blob reserve looks again when the entry changed under it."""


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to ``reserve``."""

    state: Literal["reserved", "done", "busy"]
    detail: str | None = None
    """For ``done``: the detail recorded by ``mark_done`` (e.g. a run id)."""
    retry_after_s: float = 0.0
    """For ``busy``: seconds until the other reservation's lease ends."""
    earlier: float | None = None
    """For ``reserved``: when the reservation this one took over was made (seconds since the
    epoch), if it took one over. Its holder crashed, or timed out, after it may have acted:
    the action's outcome is *uncertain*."""


class Ledger(Protocol):
    """Reservations and done marks of idempotency keys. Ledgers are async context managers."""

    async def reserve(self, key: str) -> Claim:
        """Take ``key`` if nobody holds it and it is not done; else say who is ahead."""
        ...

    async def mark_done(self, key: str, detail: str) -> None:
        """Turn our reservation of ``key`` into a done entry remembered for a while."""
        ...

    async def release(self, key: str) -> None:
        """Drop our reservation of ``key`` (after a failure) so it may be reserved again."""
        ...

    async def purge(self) -> int:
        """Delete entries whose time is up; returns how many."""
        ...

    async def check(self) -> None:
        """Ask the store for something cheap: returns when it answers (``LedgerError`` if it
        answers with an error); used to notice that a store that failed is back."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored key: its state, who holds it, and until when (seconds since the epoch)."""

    key: str
    state: Literal["reserved", "done"]
    owner: str
    until: float
    detail: str | None = None

    def claim(self, now: float) -> Claim | None:
        """What this entry answers a ``reserve`` at ``now``; ``None`` if it may be taken."""
        if self.until <= now:
            return None
        if self.state == "done":
            return Claim("done", self.detail)
        return Claim("busy", retry_after_s=self.until - now)

    def held_by(self, owner: str) -> bool:
        """Whether this is a reservation of ``owner`` (live or not)."""
        return self.state == "reserved" and self.owner == owner

    def to_json(self) -> bytes:
        document = {
            "key": self.key,
            "state": self.state,
            "owner": self.owner,
            "until": self.until,
            "detail": self.detail,
        }
        return json.dumps(document).encode("ascii")

    @classmethod
    def from_json(cls, data: bytes, *, where: str) -> Entry:
        try:
            document = json.loads(data)
            state = document["state"]
            if state not in ("reserved", "done"):
                raise ValueError(f"unknown state {state!r}")
            detail = document.get("detail")
            return cls(
                key=str(document["key"]),
                state=state,
                owner=str(document["owner"]),
                until=float(document["until"]),
                detail=None if detail is None else str(detail),
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise LedgerError(f"{where}: not a valid ledger entry: {exc}") from exc


class _Settings:
    """What every ledger is told: who we are, how long things hold, and the time."""

    def __init__(
        self, owner: str, lease_s: float, expire_after_s: float, clock: Callable[[], float]
    ) -> None:
        if not owner:
            raise ValueError("a ledger needs an owner")
        if lease_s <= 0 or expire_after_s <= 0:
            raise ValueError("lease_s and expire_after_s must be positive")
        self.owner = owner
        self.lease_s = float(lease_s)
        self.expire_after_s = float(expire_after_s)
        self.clock = clock
        self.holds: Counter[str] = Counter()
        """Calls of this process that hold, or are taking, each key."""

    def taken_over(self, entry: Entry | None) -> Claim:
        """The answer when our reservation replaced ``entry`` (or filled an empty key)."""
        if entry is None or entry.state != "reserved":
            return Claim("reserved")
        return Claim("reserved", earlier=entry.until - self.lease_s)

    def forget_at(self, state: str, until: float) -> float:
        """When ``purge`` may delete an entry in ``state`` that counts ``until``: a done one
        when it expires; a reservation ``expire_after_s`` after it was made. Purged with its
        lease, a reservation whose holder died would leave no trace, and a redelivery would
        run the action again without knowing that it may have happened."""
        if state == "done":
            return until
        return until - self.lease_s + self.expire_after_s

    def answer(self, entry: Entry, now: float) -> Claim | None:
        """What ``entry`` answers our ``reserve`` at ``now``; ``None`` if we may take it: its
        time is up, or it is our own reservation that no call of ours holds (an orphan)."""
        if entry.held_by(self.owner) and self.holds[entry.key] <= 1:
            return None
        return entry.claim(now)

    @contextlib.asynccontextmanager
    async def holding(self, key: str) -> AsyncIterator[list[Claim]]:
        """Count a call that takes or holds ``key`` while it runs; a ``reserve`` that ends
        ``reserved`` (appended to the yielded list) keeps its count until ``release`` or
        ``mark_done`` (see ``letting_go``)."""
        self.holds[key] += 1
        outcome: list[Claim] = []
        try:
            yield outcome
        finally:
            if not outcome or outcome[0].state != "reserved":
                self.letting_go(key)

    def letting_go(self, key: str) -> None:
        """A call that held ``key`` is over."""
        self.holds[key] -= 1
        if self.holds[key] <= 0:
            del self.holds[key]

    def reservation(self, key: str, now: float) -> Entry:
        return Entry(key, "reserved", self.owner, now + self.lease_s)

    def done(self, key: str, detail: str, now: float) -> Entry:
        return Entry(key, "done", self.owner, now + self.expire_after_s, detail)


def _lost(key: str, owner: str) -> None:
    logger.warning("ledger: %r is not (or no longer) reserved by %s; not marked done", key, owner)


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
        self._settings = _Settings(owner, lease_s, expire_after_s, clock)
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
            _lost(key, self._settings.owner)
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

    The file and its folder are created on entering (``async with``). Every operation is one
    short transaction on a worker thread; ``reserve`` takes the write lock up front, so two
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
        self._settings = _Settings(owner, lease_s, expire_after_s, clock)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        # A thread of its own: a done mark must not queue behind other work on the loop's
        # shared pool (dead-letter files, .eml files), or the window in which a crash leaves
        # an action's outcome uncertain grows with that work.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")

    async def __aenter__(self) -> Self:
        try:
            conn = await self._in_thread(connect, self.path, _SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise LedgerError(f"ledger {self.path}: cannot open: {exc}") from exc
        with self._lock:
            self._conn = conn
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._in_thread(self._close)
        self._thread.shutdown(wait=False)

    async def _in_thread(self, work: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, *args)

    def _close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def _run(self, operation: str, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` on a worker thread, one operation at a time; errors as LedgerError."""

        def locked() -> _T:
            with self._lock:
                if self._conn is None:
                    raise LedgerError(f"ledger {self.path}: cannot {operation}: not open")
                try:
                    return work(self._conn)
                except sqlite3.Error as exc:
                    raise LedgerError(f"ledger {self.path}: cannot {operation}: {exc}") from exc

        if self._conn is None:  # closed (its thread is gone too)
            raise LedgerError(f"ledger {self.path}: cannot {operation}: not open")
        return await self._in_thread(locked)

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
            _lost(key, done.owner)

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


class BlobLedger:
    """One blob ``ledger/<sha256 of the key>`` per entry in an Azure blob container.

    Reserving uploads the blob only if none exists; an entry whose time is up is taken over
    with an upload conditional on the etag read, so of two replicas racing exactly one wins.
    ``mark_done`` and ``release`` are conditional on the etag too. The container is created on
    entering if missing. A credential passed in stays the caller's to close.
    """

    def __init__(
        self,
        client: ContainerClient,
        *,
        owner: str,
        lease_s: float,
        expire_after_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._settings = _Settings(owner, lease_s, expire_after_s, clock)

    @classmethod
    def from_connection_string(
        cls,
        connection_string: str,
        container: str,
        *,
        owner: str,
        lease_s: float,
        expire_after_s: float,
        clock: Callable[[], float] = time.time,
        api_version: str | None = None,
        retry_total: int | None = None,
    ) -> BlobLedger:
        """A ledger on ``container`` of the account the connection string names."""
        try:
            client = container_client(
                container, connection_string=connection_string,
                retry_total=retry_total, api_version=api_version,
            )  # fmt: skip
        except ValueError as exc:
            raise LedgerError(f"ledger container {container}: {exc}") from exc
        return cls(client, owner=owner, lease_s=lease_s, expire_after_s=expire_after_s, clock=clock)

    @classmethod
    def from_account_url(
        cls,
        account_url: str,
        container: str,
        *,
        credential: AsyncTokenCredential | AzureNamedKeyCredential | AzureSasCredential,
        owner: str,
        lease_s: float,
        expire_after_s: float,
        clock: Callable[[], float] = time.time,
        api_version: str | None = None,
        retry_total: int | None = None,
    ) -> BlobLedger:
        """A ledger on ``container`` at ``account_url``, signed in with ``credential``."""
        try:
            client = container_client(
                container, account_url=account_url, credential=credential,
                retry_total=retry_total, api_version=api_version,
            )  # fmt: skip
        except ValueError as exc:
            raise LedgerError(f"ledger container {container}: {exc}") from exc
        return cls(client, owner=owner, lease_s=lease_s, expire_after_s=expire_after_s, clock=clock)

    @property
    def container(self) -> str:
        """The container's name."""
        name: str = self._client.container_name
        return name

    async def __aenter__(self) -> Self:
        try:
            await open_container(self._client)
        except AzureError as exc:
            raise self._error("open the container", exc) from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.close()

    async def reserve(self, key: str) -> Claim:
        async with self._settings.holding(key) as outcome:
            outcome.append(await self._reserve(key))
        return outcome[0]

    async def _reserve(self, key: str) -> Claim:
        name = blob_name(key)
        try:
            for _ in range(_ATTEMPTS):
                now = self._settings.clock()
                mine = self._settings.reservation(key, now)
                with contextlib.suppress(ResourceExistsError):
                    await self._upload(name, mine, overwrite=False)
                    return Claim("reserved")  # a new entry: nobody held it before
                found = await self._read(name)
                if found is None:
                    continue  # released or purged since: try to create it again
                entry, etag = found
                ahead = self._settings.answer(entry, now)
                if ahead is not None:
                    return ahead
                if await self._replace(name, mine, etag):
                    return self._settings.taken_over(entry)
                # Another replica changed it first; look again at what it wrote.
        except AzureError as exc:
            raise self._error(f"reserve {key!r}", exc) from exc
        return Claim("busy", retry_after_s=0.1)  # the key keeps changing: look again soon

    async def mark_done(self, key: str, detail: str) -> None:
        self._settings.letting_go(key)
        name = blob_name(key)
        try:
            found = await self._read(name)
            if found is not None and found[0].held_by(self._settings.owner):
                done = self._settings.done(key, detail, self._settings.clock())
                if await self._replace(name, done, found[1]):
                    return
        except AzureError as exc:
            raise self._error(f"mark {key!r} done", exc) from exc
        _lost(key, self._settings.owner)

    async def release(self, key: str) -> None:
        self._settings.letting_go(key)
        name = blob_name(key)
        try:
            found = await self._read(name)
            if found is not None and found[0].held_by(self._settings.owner):
                await self._delete(name, found[1])
        except AzureError as exc:
            raise self._error(f"release {key!r}", exc) from exc

    async def check(self) -> None:
        try:
            await self._client.get_container_properties()
        except AzureError as exc:
            raise self._error("check the container", exc) from exc

    async def purge(self) -> int:
        """Delete expired entries: state and ``until`` are in each blob's metadata, so a
        listing suffices."""
        now = self._settings.clock()
        purged = 0
        try:
            async for blob in self._client.list_blobs(
                name_starts_with=BLOB_PREFIX, include=["metadata"]
            ):
                times = _metadata_times(blob.metadata)
                if times is None:  # not written by us: read the entry itself
                    found = await self._read(blob.name)
                    if found is None:
                        continue
                    times = found[0].state, found[0].until
                due = self._settings.forget_at(*times) <= now
                if due and await self._delete(blob.name, blob.etag):
                    purged += 1
        except AzureError as exc:
            raise self._error("purge", exc) from exc
        return purged

    async def _read(self, name: str) -> tuple[Entry, str] | None:
        """The entry and its etag, or ``None`` if there is none."""
        try:
            downloader = await self._client.download_blob(name)
            data: bytes = await downloader.readall()
        except ResourceNotFoundError:
            return None
        etag: str = downloader.properties.etag
        return Entry.from_json(data, where=f"ledger container {self.container}, {name}"), etag

    async def _replace(self, name: str, entry: Entry, etag: str) -> bool:
        """Overwrite the blob if it still has ``etag``; whether it did."""
        try:
            await self._upload(
                name,
                entry,
                overwrite=True,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    async def _upload(self, name: str, entry: Entry, **conditions: Any) -> None:
        """Write ``entry``; its state and ``until`` go into the metadata as well, for ``purge``."""
        metadata = {"state": entry.state, "until": repr(entry.until)}
        await self._client.upload_blob(name, entry.to_json(), metadata=metadata, **conditions)

    async def _delete(self, name: str, etag: str) -> bool:
        """Delete the blob if it still has ``etag``; whether it did."""
        try:
            await self._client.delete_blob(
                name, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    def _error(self, operation: str, exc: AzureError) -> LedgerError:
        """Describe a storage failure by type and status only: SDK texts may echo signed URLs."""
        return LedgerError(
            f"ledger container {self.container}: cannot {operation}: {describe_error(exc)}"
        )


def blob_name(key: str) -> str:
    """The blob of ``key``: keys may hold any character, hashes are safe blob names."""
    digest = hashlib.sha256(key.encode("utf-8", errors="surrogatepass")).hexdigest()
    return f"{BLOB_PREFIX}{digest}"


def _metadata_times(metadata: dict[str, str] | None) -> tuple[str, float] | None:
    """(state, until) from a blob's metadata; ``None`` when either is missing."""
    try:
        return (metadata or {})["state"], float((metadata or {})["until"])
    except (KeyError, ValueError):
        return None
