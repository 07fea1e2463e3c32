"""The per-event pipeline: decode, match, carry out actions, dead-letter what fails.

``Handler.handle`` is shared by the worker and by ``deadletter replay``. It never raises
(but for cancellation at shutdown): an undecodable body and an action that fails
permanently, or runs out of retries, are parked in the dead-letter store with the reason,
and the event counts as finished. Only a dead-letter store that cannot be written keeps an
event unfinished; the handler keeps trying, so its checkpoint never moves past it.
One log line per event says what happened.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

import structlog

from rules import Decision, DecodeError, Event, RuleTable, decode_body, plan

from .actions import Executors, action_type
from .deadletters import DeadLetter, DeadLetterStore
from .errors import ActionError, ConsumerError, PermanentActionError
from .retrying import RetryPolicy, attempts_of

DEAD_LETTER_RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Received:
    """One Event Hubs message as the worker received it."""

    partition: str
    body: bytes
    sequence_number: int
    offset: str
    enqueued_time: datetime | None = None
    properties: Mapping[str, object] = field(default_factory=dict)


class HandlerMetrics(Protocol):
    """What the handler counts (``consumer.metrics.Metrics`` provides it)."""

    def received(self, partition: str) -> None: ...
    def decoded(self, partition: str) -> None: ...
    def failed(self, partition: str, reason: str) -> None: ...
    def matched(self, rule: str) -> None: ...
    def action(self, type: str, outcome: str) -> None: ...
    def retry(self, type: str) -> None: ...
    def dead_lettered(self, reason: str) -> None: ...


@dataclass(slots=True, kw_only=True)
class Handler:
    """Decodes, matches and acts on received messages; see the module docstring."""

    rules: Callable[[], RuleTable]
    """The current rule table (a reload swaps what this returns)."""
    executors: Executors
    dead_letters: DeadLetterStore
    metrics: HandlerMetrics
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    log: structlog.typing.FilteringBoundLogger = field(
        default_factory=lambda: structlog.get_logger("mlevents.handler")
    )
    dry_run: bool = False
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    handled: int = field(default=0, init=False)
    """Messages handled to the end so far."""

    async def handle(self, received: Received, *, only: tuple[str, int] | None = None) -> int:
        """Process one message to the end (acted on, or dead-lettered).

        Args:
            received: the message.
            only: (rule name, action position): carry out just that action, as a replay of
                a dead-lettered action does, so actions that succeeded are not repeated.

        Returns:
            How many dead letters this message produced (0 when everything succeeded).
        """
        log = self.log.bind(partition=received.partition, sequence_number=received.sequence_number)
        self.metrics.received(received.partition)
        try:
            events = decode_body(received.body)
        except DecodeError as exc:
            self.metrics.failed(received.partition, "decode")
            await self._park(received, reason="decode", error=str(exc))
            log.warning("event.undecodable", error=str(exc))
            self.handled += 1
            return 1
        self.metrics.decoded(received.partition)
        table = self.rules()
        parked = 0
        for event in events:
            parked += await self._event(received, event, table, log, only)
        self.handled += 1
        return parked

    async def _event(
        self,
        received: Received,
        event: Event,
        table: RuleTable,
        log: structlog.typing.FilteringBoundLogger,
        only: tuple[str, int] | None,
    ) -> int:
        decisions = plan(table, event)
        if only is not None:
            decisions = tuple(d for d in decisions if (d.rule.name, d.index) == only)
        matched = [rule.name for rule in table.match(event)]
        for name in matched:
            self.metrics.matched(name)
        outcomes = [await self._act(received, decision) for decision in decisions]
        log.info(
            "event.processed",
            event_id=event.id,
            event_type=event.type,
            subject=event.subject,
            matched=matched,
            actions=[outcome for outcome, _ in outcomes],
        )
        return sum(1 for _, parked in outcomes if parked)

    async def _act(self, received: Received, decision: Decision) -> tuple[str, bool]:
        """Carry out one decision; returns what happened and whether it was dead-lettered."""
        kind = action_type(decision)
        where = f"{decision.rule.name}:{kind}#{decision.index}"
        if self.dry_run:
            self.metrics.action(kind, "dry_run")
            return f"{where} would run", False
        executor = self.executors.get(kind)
        try:
            if executor is None:
                raise PermanentActionError(f"no executor for action type {kind!r} here")
            detail, _ = await self.retry.call(
                lambda: executor(decision),
                on_retry=lambda attempt, error, wait: self._retrying(kind, attempt, error, wait),
            )
        except ActionError as exc:
            return await self._failed(received, decision, kind, where, str(exc), exc)
        except Exception as exc:
            self.log.exception("action.crashed", action=where)
            return await self._failed(
                received, decision, kind, where, f"{type(exc).__name__}: {exc}", exc
            )
        self.metrics.action(kind, "ok")
        return f"{where} ok: {detail}", False

    async def _failed(
        self,
        received: Received,
        decision: Decision,
        kind: str,
        where: str,
        error: str,
        exc: BaseException,
    ) -> tuple[str, bool]:
        self.metrics.action(kind, "dead_lettered")
        await self._park(
            received, reason="action", error=error, decision=decision, attempts=attempts_of(exc)
        )
        return f"{where} dead-lettered: {error}", True

    def _retrying(self, kind: str, attempt: int, error: BaseException, wait_s: float) -> None:
        self.metrics.retry(kind)
        self.log.info(
            "action.retry_scheduled",
            action=kind,
            attempt=attempt,
            error=str(error),
            wait_s=round(wait_s, 3),
        )

    async def _park(
        self,
        received: Received,
        *,
        reason: Literal["decode", "action"],
        error: str,
        decision: Decision | None = None,
        attempts: int = 1,
    ) -> None:
        properties: dict[str | bytes, object] = dict(received.properties.items())
        letter = DeadLetter.create(
            created=self.clock(), reason=reason, error=error, body=received.body,
            partition=received.partition, attempts=attempts, offset=received.offset,
            sequence_number=received.sequence_number, enqueued_time=received.enqueued_time,
            event_id=decision.event.id if decision else None,
            rule=decision.rule.name if decision else None,
            action=f"{action_type(decision)}#{decision.index}" if decision else None,
            properties=properties,
        )  # fmt: skip
        self.metrics.dead_lettered(reason)
        for wait_s in itertools.chain(
            DEAD_LETTER_RETRY_S, itertools.repeat(DEAD_LETTER_RETRY_S[-1])
        ):
            try:
                await self.dead_letters.put(letter)
                return
            except ConsumerError as exc:
                # Nothing may be lost: until the letter is stored the event stays unfinished,
                # so its partition's checkpoint cannot pass it. Shutdown cancels this wait.
                self.log.error("deadletter.store_failed", error=str(exc), retry_in_s=wait_s)
                await asyncio.sleep(wait_s)
