"""What every ledger store shares: the answer to ``reserve`` (``Claim``), a stored entry and
its JSON form (``Entry``), and the rules each store applies to them (``Settings``): who
holds a key, for how long, and when an entry may be forgotten."""

from __future__ import annotations

import contextlib
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal

from consumer.errors import LedgerError

logger = logging.getLogger(__name__)


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


class Settings:
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


def warn_lost(key: str, owner: str) -> None:
    """Say that a done mark found the reservation no longer ours (its lease ended)."""
    logger.warning("ledger: %r is not (or no longer) reserved by %s; not marked done", key, owner)
