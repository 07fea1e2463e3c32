"""Deadlines on every storage call, and what readiness says about each store.

A store that refuses connections fails fast, but a frozen one (a hung server, a stalled
disk, a full connection pool) answers nothing, and the SDKs' own timeouts and retries add up
to minutes. So every call to the checkpoint store (checkpoints and partition ownership), the
ledger and the dead-letter store goes through a guard here that gives it a deadline
(``timeout_s`` of the store's config section) and turns a miss into
``StorageTimeoutError``, which callers treat as an outage at once.

Each guard reports to ``Dependencies`` whether its store answered: the last call decides.
``/readyz`` is not ready while a store is failing, and says which one and why; the
``mlevents_dependency_up`` gauge says the same to Prometheus. A store whose calls stopped
(the ledger while the handler acts without it, dead letters when nothing fails) is probed
by ``Dependencies.watch`` until it answers again. Checkpoint stores need no probe: the SDK
asks them for partition ownership every load-balancing interval.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import structlog
from azure.eventhub.aio import CheckpointStore

from consumer.errors import (
    CheckpointError,
    ConsumerError,
    StorageTimeoutError,
    UnreadableEntryError,
)
from consumer.stores.blob import describe_error
from consumer.stores.deadletters import DeadLetter, DeadLetterStore
from consumer.stores.ledger import Claim, Ledger

T = TypeVar("T")
PROBE_EVERY_S = 5.0
"""How often a failing store that nothing else calls is asked whether it is back."""
CHECKPOINTS, LEDGER, DEAD_LETTERS = "checkpoints", "ledger", "dead letters"
STORES = (CHECKPOINTS, LEDGER, DEAD_LETTERS)


class DependencyMetrics(Protocol):
    """What dependency health reports (``consumer.worker.metrics.Metrics`` provides it)."""

    def dependency_up(self, name: str, up: bool) -> None: ...


class Dependencies:
    """Whether each store answered its last call; logs each change once."""

    def __init__(
        self,
        metrics: DependencyMetrics,
        log: structlog.typing.FilteringBoundLogger,
        names: Iterable[str] = STORES,
    ) -> None:
        self._metrics, self._log = metrics, log
        self._failing: dict[str, str] = {}
        for name in names:
            metrics.dependency_up(name, True)

    def ok(self, name: str) -> None:
        """``name`` answered."""
        if self._failing.pop(name, None) is not None:
            self._metrics.dependency_up(name, True)
            self._log.info("storage.recovered", store=name)

    def failed(self, name: str, reason: str) -> None:
        """``name`` failed or did not answer in time."""
        if name not in self._failing:
            self._metrics.dependency_up(name, False)
            self._log.warning("storage.unavailable", store=name, error=reason)
        self._failing[name] = reason

    def failing(self, name: str) -> bool:
        return name in self._failing

    def problems(self) -> list[str]:
        """One ``name: reason`` per failing store."""
        return [f"{name}: {reason}" for name, reason in sorted(self._failing.items())]

    async def watch(
        self,
        name: str,
        probe: Callable[[], Awaitable[object]],
        *,
        every_s: float = PROBE_EVERY_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """While ``name`` is failing, call ``probe`` (a guarded call) every ``every_s``; a
        guarded call reports its own outcome. Runs until cancelled."""
        while True:
            await sleep(every_s)
            if self.failing(name):
                with contextlib.suppress(ConsumerError):  # the guard reports it
                    await probe()


class Guard:
    """Runs one store's calls with a deadline and reports how they went."""

    def __init__(self, name: str, timeout_s: float, dependencies: Dependencies) -> None:
        self.name, self.timeout_s, self._dependencies = name, timeout_s, dependencies

    async def __call__(self, call: Awaitable[T], what: str) -> T:
        """Await ``call`` within the deadline.

        Raises:
            StorageTimeoutError: no answer in time.
            Exception: whatever the call raised (the store failed; reported).
        """
        try:
            async with asyncio.timeout(self.timeout_s):
                result = await call
        except TimeoutError:
            reason = f"cannot {what}: no answer within {self.timeout_s:g} s"
            self._dependencies.failed(self.name, reason)
            raise StorageTimeoutError(f"{self.name}: {reason}") from None
        except Exception as exc:
            text = str(exc) if isinstance(exc, ConsumerError) else describe_error(exc)
            self._dependencies.failed(self.name, text)
            raise
        self._dependencies.ok(self.name)
        return result


class GuardedCheckpointStore(CheckpointStore):
    """The SDK's checkpoint store, every call (ownership included) under a deadline, its
    failures turned into ``CheckpointError``: the SDK logs what its load balancing catches,
    and our logs print what a flush caught, so neither may carry the store's own message."""

    def __init__(self, store: CheckpointStore, guard: Guard) -> None:
        self._store, self._guard = store, guard

    async def list_ownership(self, *args: Any, **kwargs: Any) -> Iterable[dict[str, Any]]:
        result: Iterable[dict[str, Any]] = await self._call(
            self._store.list_ownership(*args, **kwargs), "list partition ownership"
        )
        return result

    async def claim_ownership(self, *args: Any, **kwargs: Any) -> Iterable[dict[str, Any]]:
        result: Iterable[dict[str, Any]] = await self._call(
            self._store.claim_ownership(*args, **kwargs), "claim partitions"
        )
        return result

    async def update_checkpoint(self, *args: Any, **kwargs: Any) -> None:
        await self._call(self._store.update_checkpoint(*args, **kwargs), "write a checkpoint")

    async def list_checkpoints(self, *args: Any, **kwargs: Any) -> Iterable[dict[str, Any]]:
        result: Iterable[dict[str, Any]] = await self._call(
            self._store.list_checkpoints(*args, **kwargs), "list checkpoints"
        )
        return result

    async def _call(self, call: Awaitable[T], what: str) -> T:
        try:
            return await self._guard(call, what)
        except ConsumerError:
            raise
        except Exception as exc:
            message = f"{self._guard.name}: cannot {what}: {describe_error(exc)}"
            raise CheckpointError(message) from exc


class GuardedLedger:
    """A ledger whose every call has a deadline (a ``Ledger``)."""

    def __init__(self, ledger: Ledger, guard: Guard) -> None:
        self._ledger, self._guard = ledger, guard

    async def __aenter__(self) -> Self:
        await self._ledger.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._ledger.__aexit__(*exc)

    async def reserve(self, key: str) -> Claim:
        return await self._guard(self._ledger.reserve(key), "reserve an action")

    async def mark_done(self, key: str, detail: str) -> None:
        await self._guard(self._ledger.mark_done(key, detail), "mark an action done")

    async def release(self, key: str) -> None:
        await self._guard(self._ledger.release(key), "release an action")

    async def purge(self) -> int:
        # A purge lists every entry: it gets ten deadlines, and reports only a failure.
        try:
            async with asyncio.timeout(self._guard.timeout_s * 10):
                return await self._ledger.purge()
        except TimeoutError:
            raise StorageTimeoutError(f"{self._guard.name}: purge took too long") from None

    async def check(self) -> None:
        await self._guard(self._ledger.check(), "read the store")


class GuardedDeadLetters:
    """A dead-letter store whose every call has a deadline (a ``DeadLetterStore``)."""

    def __init__(self, store: DeadLetterStore, guard: Guard) -> None:
        self._store, self._guard = store, guard

    async def __aenter__(self) -> Self:
        await self._store.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._store.__aexit__(exc_type, exc, tb)

    async def put(self, letter: DeadLetter) -> None:
        await self._guard(self._store.put(letter), "write a dead letter")

    async def list(
        self,
        *,
        limit: int | None = None,
        on_unreadable: Callable[[UnreadableEntryError], None] | None = None,
    ) -> builtins.list[DeadLetter]:
        listing = self._store.list(limit=limit, on_unreadable=on_unreadable)
        return await self._guard(listing, "list dead letters")

    async def get(self, letter_id: str) -> DeadLetter:
        return await self._guard(self._store.get(letter_id), "read a dead letter")

    async def delete(self, letter_id: str) -> None:
        await self._guard(self._store.delete(letter_id), "delete a dead letter")

    async def count(self) -> int:
        return await self._guard(self._store.count(), "count dead letters")

    async def check(self) -> None:
        await self._guard(self._store.check(), "read the store")
