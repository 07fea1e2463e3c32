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

Stores, a module each: ``MemoryLedger`` (one process; tests), ``SqliteLedger`` (one machine,
one SQLite file) and ``BlobLedger`` (replicas sharing a blob container); ``shared`` holds what
they have in common (the entry, and the rules above). Storage failures raise ``LedgerError``
naming the store, never a connection string or key, so the caller can retry; a conflict is
never an error, it is ``busy``.
"""

from __future__ import annotations

from typing import Protocol, Self

from consumer.stores.ledger.blob import BLOB_PREFIX, BlobLedger, blob_name
from consumer.stores.ledger.memory import MemoryLedger
from consumer.stores.ledger.shared import Claim, Entry
from consumer.stores.ledger.sqlite import SqliteLedger

__all__ = [
    "BLOB_PREFIX",
    "BlobLedger",
    "Claim",
    "Entry",
    "Ledger",
    "MemoryLedger",
    "SqliteLedger",
    "blob_name",
]


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
