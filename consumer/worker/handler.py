"""The per-event pipeline: decode, match, carry out actions, dead-letter what fails.

``Handler.start`` does the synchronous part of an event at once (decode, match, plan, and
the actions whose executors are ``inline``, such as ``log``) and returns the rest as a
coroutine only when there is I/O left (a webhook, a dead letter). Most events match no
rule or only log, so they cost no task and no slot in the partition's window.

The handler never raises (but for cancellation at shutdown): an undecodable body and an
action that fails permanently, or runs out of retries, are parked in the dead-letter store
with the reason, and the event counts as finished. Only a dead-letter store that cannot be
written keeps an event unfinished; the handler keeps trying, so its checkpoint never moves
past it. One log line per event says what happened. ``handle`` runs both parts and is what
``deadletter replay`` uses.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

import msgspec
import structlog

from consumer.actions import Executors, Findable, action_type
from consumer.errors import ActionError, ConsumerError, PermanentActionError, StorageTimeoutError
from consumer.stores.deadletters import DeadLetter, DeadLetterStore
from consumer.stores.ledger import Claim, Ledger
from consumer.worker.retrying import OnRetry, RetryPolicy, attempts_of
from rules import Action, Decision, DecodeError, Event, Rule, RuleTable, decode_body

if TYPE_CHECKING:
    from consumer.actions.preview import Preview

DEAD_LETTER_RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Waits between tries of a dead-letter store that fails; the last one repeats until it takes
the letter."""
LEDGER_BUSY_POLL_S = 5.0
"""Longest wait between looks at a decision another worker holds in the ledger."""
LEDGER_RETRY_S = 0.5
"""The wait before a reservation that failed is tried the second and last time."""
LEDGER_OUTAGE_S = 10.0
"""After the ledger's store failed twice in a row, how long actions run unreserved."""
Rest = Coroutine[Any, Any, int]
"""What is left of an event after ``start``: resolves to the number of dead letters."""
Finished = tuple[str, Literal["ok", "skipped", "dead_lettered"]]
"""What became of an action that needed I/O: worded for the event's log line, and its final
outcome as ``mlevents_actions_total`` counts it."""


Details = Callable[[Any], "tuple[datetime | None, Mapping[str, object]]"]
"""Reads a message's enqueued time and application properties from its ``source`` when they
are needed."""


class Received(msgspec.Struct, frozen=True, kw_only=True):
    """One Event Hubs message as the worker received it (a struct: one per message, and a
    frozen dataclass costs ten times as much to make)."""

    partition: str
    body: bytes
    body_error: str | None = None
    """Why ``body`` cannot hold events before it is even decoded (an AMQP value or sequence
    body): the message is dead-lettered with this error, as an undecodable one is."""
    sequence_number: int
    offset: str
    enqueued_time: datetime | None = None
    properties: Mapping[str, object] | None = None
    """Application properties (none when ``None``)."""
    details: Details | None = None
    """When given, reads ``enqueued_time`` and ``properties`` from ``source``, only for a dead
    letter: most messages never need them, and reading them costs per message."""
    source: Any = None
    """What ``details`` reads (the SDK's message): a function and its argument rather than a
    closure, which would be made per message."""

    def metadata(self) -> tuple[datetime | None, Mapping[str, object]]:
        """The enqueued time and application properties, from ``details`` if given."""
        if self.details is not None:
            return self.details(self.source)
        return self.enqueued_time, {} if self.properties is None else self.properties


class HandlerMetrics(Protocol):
    """What the handler counts (``consumer.worker.metrics.Metrics`` provides it)."""

    def received(self, partition: str) -> None: ...
    def decoded(self, partition: str) -> None: ...
    def failed(self, partition: str, reason: str) -> None: ...
    def matched(self, rule: str) -> None: ...
    def matched_inert(self, rules: Sequence[str], actions: Sequence[tuple[str, int]]) -> None: ...
    def action(self, type: str, outcome: str, count: int = 1) -> None: ...
    def action_finished(
        self, type: str, outcome: str, *, seconds: float, since_enqueued_s: float | None
    ) -> None: ...
    def uncertain(self, type: str) -> None: ...
    def done_marked(self, seconds: float) -> None: ...
    def retry(self, type: str) -> None: ...
    def dead_lettered(self, reason: str) -> None: ...


Inline = tuple[Rule, int, str, str]
"""An action carried out inline: (rule, action position, action type, detail); worded only if
the event's log line is written (see ``_worded``)."""
Outcome = str | Inline
Step = tuple[int, Action, str, "Callable[[Decision], str] | None", Inline | None]
"""One action of a rule as the handler runs it: (position, action, type, inline runner, and
the outcome when the executor says running it inline does nothing, as a log action below the
log level: then no decision is made nor the runner called)."""
Plan = tuple[tuple[Step, ...], "tuple[tuple[Inline, ...], tuple[tuple[str, int], ...]] | None"]
"""A rule's steps, and when every one of them is inert, their outcomes and how many actions of
each type they are: what an event matching the rule adds, worked out once."""
InertResult = tuple[
    tuple[Rule, ...],
    "tuple[tuple[Inline, ...], tuple[str, ...], tuple[tuple[str, int], ...]] | None",
]
"""A match result, and when every action of its rules is inert: their outcomes, the rules'
names and how many actions of each type, which is all an event matching them adds."""
MAX_INERT_RESULTS = 4096
"""Match results whose inert outcome is remembered (``RuleTable.MAX_COMBINATIONS`` too)."""


def _worded(outcome: Outcome) -> str:
    if isinstance(outcome, str):
        return outcome
    rule, index, kind, detail = outcome
    return f"{rule.name}:{kind}#{index} ok: {detail}"


@dataclass(slots=True)
class _EventWork:
    """One decoded event on its way through: what matched, what ran, what waits for I/O."""

    event: Event
    matched: Sequence[Rule]
    outcomes: list[Outcome] = field(default_factory=list)
    pending: list[Decision] = field(default_factory=list)


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
    ledger: Ledger | None = None
    """Where actions are reserved before they run and marked done after; ``None`` runs
    every action every time (tests, one-off tools)."""
    ledger_up: Callable[[], bool] = lambda: True
    """False while the ledger's store is known to be down (``consumer.stores.deadlines``
    probes it and says when it is back): actions then run unreserved without waiting on it."""
    dry_run: bool = False
    preview: Callable[[Decision], Preview] | None = None
    """In a dry run, what each action would send (``consumer.actions.preview``), logged as
    ``action.would_run``; an action that would fail before sending is logged as
    ``action.would_fail``."""
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    monotonic: Callable[[], float] = time.monotonic
    _ledger_down_until: float = field(default=float("-inf"), init=False)
    _steps: dict[int, Plan] = field(default_factory=dict, init=False)
    """Each rule's actions with their types and inline runners, by ``id(rule)`` of the rules
    of ``_steps_of`` (worked out once per rule, not per event)."""
    _steps_of: RuleTable | None = field(default=None, init=False)
    _inert: dict[int, InertResult] = field(default_factory=dict, init=False)
    """What each match result of ``_steps_of`` adds when all its actions are inert, by the
    result's ``id`` (see ``_remember_inert``)."""
    _info: bool = field(default=False, init=False)
    """Whether info lines are written: a filtering logger's level is fixed when it is made."""
    _ledger_retry: RetryPolicy = field(init=False)
    _dead_letter_retry: RetryPolicy = field(init=False)
    handled: int = field(default=0, init=False)
    """Messages handled to the end so far."""

    def __post_init__(self) -> None:
        self._info = self.log.is_enabled_for(logging.INFO)
        # The storage calls' own policies, waiting with the handler's sleep. A reservation is
        # tried twice, or once when the store did not answer in time (an outage, not a
        # blip); a dead letter until the store takes it.
        self._ledger_retry = RetryPolicy(
            attempts=2, waits=(LEDGER_RETRY_S,), retry_on=_may_be_a_blip, sleep=self.sleep
        )
        self._dead_letter_retry = RetryPolicy(
            attempts=None, total_s=math.inf, waits=DEAD_LETTER_RETRY_S,
            retry_on=_is_store_error, sleep=self.sleep,
        )  # fmt: skip

    async def handle(self, received: Received, *, only: tuple[str, int] | None = None) -> int:
        """Process one message to the end (acted on, or dead-lettered).

        Args:
            received: the message.
            only: (rule name, action position): carry out just that action, as a replay of
                a dead-lettered action does, so actions that succeeded are not repeated.

        Returns:
            How many dead letters this message produced (0 when everything succeeded).
        """
        rest = self.start(received, only=only)
        return 0 if rest is None else await rest

    def start(self, received: Received, *, only: tuple[str, int] | None = None) -> Rest | None:
        """Do the synchronous part of a message; return the rest, or None when it is done."""
        metrics, partition = self.metrics, received.partition
        metrics.received(partition)
        try:
            if received.body_error is not None:
                raise DecodeError(received.body_error)
            events = decode_body(received.body)
        except DecodeError as exc:
            metrics.failed(partition, "decode")
            self._log_event(received, None, (), (), error=str(exc))
            return self._park_rest(received, str(exc))
        metrics.decoded(partition)
        table = self.rules()
        if table is not self._steps_of:  # a reload: the cached steps belong to the old rules
            self._steps, self._inert, self._steps_of = {}, {}, table
        if only is None and not self.dry_run and len(events) == 1:
            # The hot path: one event whose matched rules only do inert things (or nothing).
            event = events[0]
            matched = table.match(event)
            inert = self._inert.get(id(matched))
            if inert is None or inert[0] is not matched:
                inert = self._remember_inert(matched)
            if inert[1] is not None:
                outcomes, rules, actions = inert[1]
                metrics.matched_inert(rules, actions)
                if self._info:
                    self._log_event(received, event, matched, outcomes)
                self.handled += 1
                return None
            works = [self._start_event(event, table, only, matched)]
        else:
            works = [self._start_event(event, table, only) for event in events]
        for work in works:
            if work.pending:
                return self._rest(received, works)
        for work in works:
            self._log_event(received, work.event, work.matched, work.outcomes)
        self.handled += 1
        return None

    def _remember_inert(self, matched: tuple[Rule, ...]) -> InertResult:
        """What an event matching ``matched`` adds when every action of those rules is inert
        (their outcomes, the rules and action counts for the metrics), else None; kept by
        the result's identity (``RuleTable.match`` hands the same tuple out again)."""
        plans = [self._plan(rule) for rule in matched]
        inert: InertResult
        if all(inert_all is not None for _, inert_all in plans):
            outcomes = tuple(o for _, inert_all in plans if inert_all for o in inert_all[0])
            kinds: Counter[str] = Counter()
            for _, inert_all in plans:
                assert inert_all is not None
                for kind, count in inert_all[1]:
                    kinds[kind] += count
            names = tuple(rule.name for rule in matched)
            inert = (matched, (outcomes, names, tuple(kinds.items())))
        else:
            inert = (matched, None)
        if len(self._inert) < MAX_INERT_RESULTS:
            self._inert[id(matched)] = inert  # holding ``matched`` keeps its id from reuse
        return inert

    def _plan(self, rule: Rule) -> Plan:
        plan = self._steps.get(id(rule))
        if plan is None:
            plan = self._steps[id(rule)] = self._rule_steps(rule)
        return plan

    def _start_event(
        self,
        event: Event,
        table: RuleTable,
        only: tuple[str, int] | None,
        matched: tuple[Rule, ...] | None = None,
    ) -> _EventWork:
        """Match one event (unless ``matched`` is given) and run its inline actions now; keep
        the ones that need I/O."""
        work = _EventWork(event, table.match(event) if matched is None else matched)
        metrics, outcomes = self.metrics, work.outcomes
        everything = only is None and not self.dry_run
        for rule in work.matched:
            metrics.matched(rule.name)
            steps, inert_all = self._plan(rule)
            if inert_all is not None and everything:
                outcomes.extend(inert_all[0])
                for kind, count in inert_all[1]:
                    metrics.action(kind, "ok", count)
                continue
            for index, action, kind, run_inline, inert in steps:
                if only is not None and (rule.name, index) != only:
                    continue
                if self.dry_run:
                    metrics.action(kind, "dry_run")
                    outcomes.append(self._would_run(Decision(event, rule, index, action), kind))
                    continue
                if inert is not None:
                    metrics.action(kind, "ok")
                    outcomes.append(inert)
                    continue
                decision = Decision(event, rule, index, action)
                if run_inline is not None:
                    try:
                        detail = run_inline(decision)
                    except Exception:  # noqa: BLE001 - the I/O path retries it, dead-letters it
                        work.pending.append(decision)
                        continue
                    metrics.action(kind, "ok")
                    outcomes.append((rule, index, kind, detail))
                else:
                    work.pending.append(decision)
        return work

    def _would_run(self, decision: Decision, kind: str) -> str:
        """Log what a dry run's action would send (with ``preview``); its outcome."""
        where = f"{decision.rule.name}:{kind}#{decision.index}"
        if self.preview is None:
            return f"{where} would run"
        try:
            preview = self.preview(decision)
        except ActionError as exc:
            self.log.warning(
                "action.would_fail", event_id=decision.event.id, rule=decision.rule.name,
                action=f"{kind}#{decision.index}", error=str(exc),
            )  # fmt: skip
            return f"{where} would be dead-lettered: {exc}"
        self.log.info("action.would_run", event_id=decision.event.id, **preview.fields())
        return f"{where} would run"

    def _rule_steps(self, rule: Rule) -> Plan:
        """The rule's actions with their types, inline runners (None: needs I/O) and, for an
        action its executor says does nothing inline (``inert_detail``), its outcome; and what
        they add together when all of them are inert."""
        steps: list[Step] = []
        for index, action in enumerate(rule.actions):
            kind = str(action.__struct_config__.tag)
            executor = self.executors.get(kind)
            run_inline = getattr(executor, "run_inline", None)
            inert_detail = getattr(executor, "inert_detail", None)
            detail = None if run_inline is None or inert_detail is None else inert_detail(action)
            inert: Inline | None = None if detail is None else (rule, index, kind, detail)
            steps.append((index, action, kind, run_inline, inert))
        inerts = [inert for *_, inert in steps if inert is not None]
        if len(inerts) < len(steps):
            return tuple(steps), None
        kinds = Counter(kind for _, _, kind, _ in inerts)
        return tuple(steps), (tuple(inerts), tuple(kinds.items()))

    async def _rest(self, received: Received, works: Sequence[_EventWork]) -> int:
        """The I/O part of a message: its remaining actions, one after the other."""
        parked = 0
        for work in works:
            parked_here = 0
            for decision in work.pending:
                outcome, was_parked = await self._act(received, decision)
                work.outcomes.append(outcome)
                parked_here += was_parked
            if parked_here:
                self.metrics.failed(received.partition, "action")
            parked += parked_here
            self._log_event(received, work.event, work.matched, work.outcomes)
        self.handled += 1
        return parked

    async def _park_rest(self, received: Received, error: str) -> int:
        await self._park(received, reason="decode", error=error)
        self.handled += 1
        return 1

    def _log_event(
        self,
        received: Received,
        event: Event | None,
        matched: Sequence[Rule],
        outcomes: Sequence[Outcome],
        error: str | None = None,
    ) -> None:
        # One line per event; skip building it when nobody reads info lines (the hot path).
        if error is None and not self._info:
            return
        fields: dict[str, Any] = {
            "partition": received.partition,
            "sequence_number": received.sequence_number,
        }
        if event is None:
            self.log.warning("event.undecodable", error=error, **fields)
            return
        self.log.info(
            "event.processed",
            event_id=event.id,
            event_type=event.type,
            subject=event.subject,
            matched=[rule.name for rule in matched],
            actions=[_worded(outcome) for outcome in outcomes],
            **fields,
        )

    async def _act(self, received: Received, decision: Decision) -> tuple[str, bool]:
        """Carry out one decision (``_carry_out``), then count and time it; returns what
        happened and whether it was dead-lettered. A cancelled one is neither counted nor
        timed: it has no outcome."""
        kind = action_type(decision)
        started = self.monotonic()
        worded, outcome = await self._carry_out(received, decision, kind)
        seconds = self.monotonic() - started
        enqueued_at = _enqueued_at(received)
        since = None if enqueued_at is None else self.clock().timestamp() - enqueued_at
        self.metrics.action_finished(kind, outcome, seconds=seconds, since_enqueued_s=since)
        return worded, outcome == "dead_lettered"

    async def _carry_out(self, received: Received, decision: Decision, kind: str) -> Finished:
        """Carry out one decision of type ``kind``.

        With a ledger, the decision is reserved first: one done before (a redelivery) is
        skipped, one reserved elsewhere is waited for, and one taken over from a holder that
        may have done it is resolved first (``_uncertain``). Success marks it done at once;
        failure releases it, so a replay of the dead letter may run it again; cancellation
        keeps it until its lease ends.
        """
        where = f"{decision.rule.name}:{kind}#{decision.index}"
        reserved = False
        outcome: Finished | None = None
        if self.ledger is not None:
            claim = await self._reserve(decision, wait=self._askable(decision, kind))
            if claim is not None and claim.state == "done":
                return f"{where} skipped, done before: {claim.detail or 'done'}", "skipped"
            reserved = claim is not None
            if claim is None:  # the ledger is down: it cannot say whether this was done
                enqueued_at = _enqueued_at(received)
                since = self.clock().timestamp() if enqueued_at is None else enqueued_at
                outcome = await self._uncertain(
                    received, decision, kind, where, since, ledger_down=True
                )
            elif claim.earlier is not None:
                outcome = await self._uncertain(received, decision, kind, where, claim.earlier)
        try:
            if outcome is None:
                outcome = await self._run(received, decision, kind, where)
        finally:
            # Cancelled (a drain deadline, shutdown), the action may have taken effect with
            # nobody left to hear of it: the reservation stays until its lease ends, and
            # whoever reserves the decision next takes it over as uncertain. Released, it
            # would run again as a new decision: a duplicate that no log line explains.
            if reserved and outcome is not None:
                started = self.monotonic()
                await asyncio.shield(self._settle(decision, outcome))
                if outcome[1] != "dead_lettered":
                    self.metrics.done_marked(self.monotonic() - started)
        return outcome

    async def _uncertain(
        self,
        received: Received,
        decision: Decision,
        kind: str,
        where: str,
        earlier: float,
        *,
        ledger_down: bool = False,
    ) -> Finished | None:
        """Resolve an action whose earlier holder may have done it: the outcome to record
        instead of running it, or ``None`` to run it.

        A sink that can be asked (``Findable``) is asked about what happened since
        ``earlier``, and what it has is not done again. Otherwise the action's
        ``on_uncertain`` decides: ``repeat`` (the default) runs it again with the same
        identity, ``skip`` records it done, ``deadletter`` parks it. Each is logged
        (``action.uncertain``, with the decision key) and counted.

        With ``ledger_down``, the ledger could not be asked at all (a storage outage; the
        message may be one read again after a crash): a sink that can be asked is asked
        since the message was enqueued, and any other action runs, logged as a repeat, since
        skipping or parking every action of an outage would lose them.
        """
        self.metrics.uncertain(kind)
        resolution = "repeat" if ledger_down else getattr(decision.action, "on_uncertain", "repeat")
        found: str | None = None
        if self._askable(decision, kind):
            asker = cast(Findable, self.executors[kind])
            try:
                found, _ = await self.retry.call(
                    lambda: asker.find(decision, earlier),
                    on_retry=self._on_retry(received, decision, kind),
                )
            except ActionError as exc:
                unknown = "unknown: " + str(exc)
                self._log_uncertain(received, decision, kind, earlier, unknown, ledger_down)
                error = f"outcome uncertain, and the sink could not say: {exc}"
                return await self._failed(received, decision, kind, where, error, exc)
            resolution = "found" if found is not None else "not found: running it"
        self._log_uncertain(received, decision, kind, earlier, resolution, ledger_down)
        if found is not None:
            return f"{where} skipped, done by an earlier holder: {found}", "skipped"
        if resolution == "skip":
            return f"{where} skipped, outcome uncertain (on_uncertain = skip)", "skipped"
        if resolution == "deadletter":
            error = (
                "outcome uncertain: an earlier holder may have done it (on_uncertain = deadletter)"
            )
            return await self._failed(received, decision, kind, where, error, None)
        return None

    def _askable(self, decision: Decision, kind: str) -> bool:
        """Whether the decision's sink can be asked what happened (``Findable``)."""
        executor = self.executors.get(kind)
        can_find = getattr(executor, "can_find", None)
        return can_find is not None and bool(can_find(decision.action))

    def _log_uncertain(
        self,
        received: Received,
        decision: Decision,
        kind: str,
        earlier: float,
        resolution: str,
        ledger_down: bool,
    ) -> None:
        self.log.warning(
            "action.uncertain",
            cause="ledger unavailable" if ledger_down else "reservation taken over",
            decision=decision.key,
            event_id=decision.event.id,
            rule=decision.rule.name,
            action=f"{kind}#{decision.index}",
            partition=received.partition,
            sequence_number=received.sequence_number,
            reserved_at=datetime.fromtimestamp(earlier, UTC).isoformat(),
            resolution=resolution,
        )

    async def _run(self, received: Received, decision: Decision, kind: str, where: str) -> Finished:
        executor = self.executors.get(kind)
        try:
            if executor is None:
                raise PermanentActionError(f"no executor for action type {kind!r} here")
            detail, _ = await self.retry.call(
                lambda: executor(decision), on_retry=self._on_retry(received, decision, kind)
            )
        except ActionError as exc:
            return await self._failed(received, decision, kind, where, str(exc), exc)
        except Exception as exc:
            self.log.exception("action.crashed", action=where)
            return await self._failed(
                received, decision, kind, where, f"{type(exc).__name__}: {exc}", exc
            )
        return f"{where} ok: {detail}", "ok"

    async def _reserve(self, decision: Decision, *, wait: bool = False) -> Claim | None:
        """Reserve the decision in the ledger: the ledger's ``reserved`` or ``done`` answer, or
        ``None`` when it runs unreserved.

        Waits while another worker (or task) holds it, until that one finishes or its lease
        ends. When the ledger's store cannot be reached (tried twice, or once when it did not
        answer within its deadline), the action runs unreserved, and so do the others for
        ``LEDGER_OUTAGE_S`` and until the store answers again: a storage outage must not stop
        alerts. With ``wait`` (a sink that can be asked, which is exactly once), it waits for
        the ledger instead: two workers reading one partition during an outage could each ask
        the sink, find nothing, and both act.
        """
        ledger = self.ledger
        assert ledger is not None
        while True:
            if self.monotonic() < self._ledger_down_until or not self.ledger_up():
                if not wait:
                    return None
                await self.sleep(LEDGER_BUSY_POLL_S)
                continue
            try:
                claim, _ = await self._ledger_retry.call(lambda: ledger.reserve(decision.key))
            except ConsumerError as exc:
                self._ledger_down_until = self.monotonic() + LEDGER_OUTAGE_S
                self.log.warning(
                    "ledger.unavailable", error=str(exc), acting_unreserved_s=LEDGER_OUTAGE_S
                )
                continue
            if claim.state != "busy":
                return claim
            self.log.info("ledger.busy", decision=decision.key, retry_in_s=claim.retry_after_s)
            await self.sleep(min(max(claim.retry_after_s, 0.05), LEDGER_BUSY_POLL_S))

    async def _settle(self, decision: Decision, outcome: Finished) -> None:
        """Mark a successful (or skipped) decision done; release a failed one."""
        assert self.ledger is not None
        try:
            if outcome[1] != "dead_lettered":
                await self.ledger.mark_done(decision.key, outcome[0])
            else:
                await self.ledger.release(decision.key)
        except ConsumerError as exc:
            # The action's effect stands; only the record is missing. Its reservation ends
            # with its lease, and a redelivery after that runs the action again.
            self.log.error("ledger.settle_failed", decision=decision.key, error=str(exc))

    async def _failed(
        self,
        received: Received,
        decision: Decision,
        kind: str,
        where: str,
        error: str,
        exc: BaseException | None,
    ) -> Finished:
        attempts = 0 if exc is None else attempts_of(exc)
        await self._park(
            received, reason="action", error=error, decision=decision, attempts=attempts
        )
        return f"{where} dead-lettered: {error}", "dead_lettered"

    def _on_retry(self, received: Received, decision: Decision, kind: str) -> OnRetry:
        """What each retry of the decision's action does: count it, and log it with the event,
        rule, action and message it belongs to."""

        def retrying(attempt: int, error: BaseException, wait_s: float) -> None:
            self.metrics.retry(kind)
            self.log.info(
                "action.retry_scheduled",
                event_id=decision.event.id,
                rule=decision.rule.name,
                action=f"{kind}#{decision.index}",
                partition=received.partition,
                sequence_number=received.sequence_number,
                attempt=attempt,
                error=str(error),
                wait_s=round(wait_s, 3),
            )

        return retrying

    async def _park(
        self,
        received: Received,
        *,
        reason: Literal["decode", "action"],
        error: str,
        decision: Decision | None = None,
        attempts: int = 1,
    ) -> None:
        enqueued_time, metadata = received.metadata()
        properties: dict[str | bytes, object] = dict(metadata.items())
        letter = DeadLetter.create(
            created=self.clock(), reason=reason, error=error, body=received.body,
            partition=received.partition, attempts=attempts, offset=received.offset,
            sequence_number=received.sequence_number, enqueued_time=enqueued_time,
            event_id=decision.event.id if decision else None,
            rule=decision.rule.name if decision else None,
            action=f"{action_type(decision)}#{decision.index}" if decision else None,
            properties=properties,
        )  # fmt: skip
        if self.dry_run:  # shadow mode takes no action, parking included
            self.log.warning(
                "deadletter.would_park",
                reason=reason,
                error=error,
                partition=received.partition,
                sequence_number=received.sequence_number,
            )
            return
        self.metrics.dead_lettered(reason)
        # Nothing may be lost: until the letter is stored the event stays unfinished, so its
        # partition's checkpoint cannot pass it. Shutdown cancels the waits.
        await self._dead_letter_retry.call(
            lambda: self.dead_letters.put(letter),
            on_retry=lambda attempt, error, wait_s: self.log.error(
                "deadletter.store_failed",
                error=str(error),
                retry_in_s=wait_s,
                reason=reason,
                event_id=letter.event_id,
                rule=letter.rule,
                action=letter.action,
                partition=received.partition,
                sequence_number=received.sequence_number,
            ),
        )


def _may_be_a_blip(error: BaseException) -> bool:
    """A storage error worth one more look; no answer in time is an outage, not a blip."""
    return isinstance(error, ConsumerError) and not isinstance(error, StorageTimeoutError)


def _is_store_error(error: BaseException) -> bool:
    """A store failed (anything else is a bug, and is not retried)."""
    return isinstance(error, ConsumerError)


def _enqueued_at(received: Received) -> float | None:
    """When the message was enqueued (seconds since the epoch; ``None``: unknown): nothing it
    caused can have happened before."""
    enqueued_time, _ = received.metadata()
    return None if enqueued_time is None else enqueued_time.timestamp()
