"""The per-event pipeline: decode, match, act, retry and dead-letter."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from consumer.actions.preview import Previewer
from consumer.errors import DeadLetterError, LedgerError, PermanentActionError, TransientActionError
from consumer.stores.deadletters import DeadLetter, DirectoryDeadLetterStore
from consumer.stores.ledger import Claim, Entry, MemoryLedger
from consumer.worker.handler import Handler, Received
from consumer.worker.metrics import Metrics
from consumer.worker.retrying import RetryPolicy
from rules import Decision, LogAction, RuleTable
from tests.support.factories import event_json, make_table
from tests.support.metrics import samples, value


class Executor:
    """Records decisions; raises the queued errors first."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.done: list[str] = []

    async def __call__(self, decision: Decision) -> str:
        if self.errors:
            raise self.errors.pop(0)
        self.done.append(decision.key)
        return "ok"


async def _no_sleep(seconds: float) -> None:
    return None


def _table() -> RuleTable:
    return make_table(
        {"name": "hook", "actions": [{"type": "log"}, {"type": "webhook", "url": "http://x"}]}
    )


def _handler(store: object, log: Executor, hook: Executor, **options: object) -> Handler:
    table = _table()
    return Handler(
        rules=lambda: table,
        executors={"log": log, "webhook": hook},
        dead_letters=store,  # type: ignore[arg-type]
        metrics=Metrics(clock=lambda: 0.0),
        retry=RetryPolicy(sleep=_no_sleep),
        log=structlog.get_logger("test"),
        **options,  # type: ignore[arg-type]
    )


def _received(body: bytes, seq: int = 7) -> Received:
    return Received(partition="1", body=body, sequence_number=seq, offset="700",
                    properties={"aeg-event-type": "Notification"})  # fmt: skip


BODY = json.dumps([event_json(id="ev-1")]).encode()


async def test_every_action_of_every_match_runs(tmp_path: Path) -> None:
    """A matching event runs its actions in order and nothing is dead-lettered."""
    log, hook = Executor(), Executor()
    async with DirectoryDeadLetterStore(tmp_path) as store:
        parked = await _handler(store, log, hook).handle(_received(BODY))
        assert parked == 0
        assert (log.done, hook.done) == (["ev-1/hook/0"], ["ev-1/hook/1"])
        assert await store.count() == 0


async def test_undecodable_body_is_dead_lettered_with_its_reason(tmp_path: Path) -> None:
    """A body that is not JSON is parked byte for byte with the decode error."""
    async with DirectoryDeadLetterStore(tmp_path) as store:
        parked = await _handler(store, Executor(), Executor()).handle(_received(b"\xffnope"))
        (letter,) = await store.list()
    assert parked == 1
    assert (letter.reason, letter.body, letter.partition, letter.sequence_number) == (
        "decode", b"\xffnope", "1", 7)  # fmt: skip
    assert "not UTF-8" in letter.error
    assert letter.properties == {"aeg-event-type": "Notification"}


async def test_a_body_known_not_to_hold_events_is_dead_lettered_undecoded(tmp_path: Path) -> None:
    """A message whose body_error is set is parked with that error, even if its body would
    decode, and no action runs."""
    log, hook = Executor(), Executor()
    received = Received(partition="1", body=BODY, body_error="not a data body", sequence_number=7,
                        offset="700")  # fmt: skip
    async with DirectoryDeadLetterStore(tmp_path) as store:
        parked = await _handler(store, log, hook).handle(received)
        (letter,) = await store.list()
    assert parked == 1
    assert (letter.reason, letter.error, letter.body) == ("decode", "not a data body", BODY)
    assert log.done == hook.done == []


async def test_transient_failures_are_retried_then_succeed(tmp_path: Path) -> None:
    """Two 503s then success: the action is done once and nothing is parked."""
    hook = Executor(TransientActionError("503"), TransientActionError("503"))
    async with DirectoryDeadLetterStore(tmp_path) as store:
        assert await _handler(store, Executor(), hook).handle(_received(BODY)) == 0
    assert hook.done == ["ev-1/hook/1"]


async def test_permanent_failure_parks_only_that_action(tmp_path: Path) -> None:
    """A 400 parks the webhook with rule, action and attempts; the log action still ran."""
    log, hook = Executor(), Executor(PermanentActionError("HTTP 400"))
    async with DirectoryDeadLetterStore(tmp_path) as store:
        assert await _handler(store, log, hook).handle(_received(BODY)) == 1
        (letter,) = await store.list()
    assert log.done == ["ev-1/hook/0"]
    assert (letter.reason, letter.rule, letter.action, letter.attempts, letter.event_id) == (
        "action", "hook", "webhook#1", 1, "ev-1")  # fmt: skip


async def test_a_crashing_executor_is_dead_lettered_not_raised(tmp_path: Path) -> None:
    """An unexpected exception in an executor parks the action and the handler returns."""
    async with DirectoryDeadLetterStore(tmp_path) as store:
        handler = _handler(store, Executor(), Executor(ZeroDivisionError("bug")))
        assert await handler.handle(_received(BODY)) == 1
        (letter,) = await store.list()
    assert letter.error.startswith("ZeroDivisionError")


async def test_dry_run_takes_no_action(tmp_path: Path) -> None:
    """In shadow mode the executors are never called."""
    log, hook = Executor(), Executor()
    async with DirectoryDeadLetterStore(tmp_path) as store:
        assert await _handler(store, log, hook, dry_run=True).handle(_received(BODY)) == 0
    assert log.done == hook.done == []


async def test_only_replays_one_action(tmp_path: Path) -> None:
    """Replaying a dead-lettered action runs just that action, not the ones that succeeded."""
    log, hook = Executor(), Executor()
    async with DirectoryDeadLetterStore(tmp_path) as store:
        await _handler(store, log, hook).handle(_received(BODY), only=("hook", 1))
    assert (log.done, hook.done) == ([], ["ev-1/hook/1"])


class FlakyStore:
    """A dead-letter store that is down for the first puts."""

    def __init__(self, down_for: int) -> None:
        self.down_for = down_for
        self.letters: list[DeadLetter] = []

    async def put(self, letter: DeadLetter) -> None:
        if self.down_for:
            self.down_for -= 1
            raise DeadLetterError("storage unavailable")
        self.letters.append(letter)


async def test_an_unavailable_dead_letter_store_is_retried_until_it_takes_the_letter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing is lost: the handler keeps trying the store and only then finishes."""
    monkeypatch.setattr("consumer.worker.handler.DEAD_LETTER_RETRY_S", (0.01,))
    store = FlakyStore(down_for=3)
    assert await _handler(store, Executor(), Executor()).handle(_received(b"[")) == 1
    assert len(store.letters) == 1


async def test_the_dead_letter_store_is_retried_on_the_handlers_sleep_at_a_fixed_pace() -> None:
    """The waits between tries of the store: the schedule, its last wait repeated, each on the
    handler's own sleep, and each failure logged."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    store = FlakyStore(down_for=8)
    with capture_logs() as logs:
        assert (
            await _handler(store, Executor(), Executor(), sleep=sleep).handle(_received(b"[")) == 1
        )
    assert waits == [0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 30.0, 30.0]
    failed = [line["retry_in_s"] for line in logs if line["event"] == "deadletter.store_failed"]
    assert failed == waits
    assert len(store.letters) == 1


# --- the idempotency ledger ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _ledger(clock: Clock, owner: str = "me", table: dict[str, Entry] | None = None) -> MemoryLedger:
    return MemoryLedger(owner=owner, lease_s=60, expire_after_s=3600, clock=clock, table=table)


async def test_a_redelivered_event_skips_what_was_done(tmp_path: Path) -> None:
    """The second delivery of an event runs none of its actions again."""
    log, hook, clock = Executor(), Executor(), Clock()
    async with DirectoryDeadLetterStore(tmp_path) as store:
        handler = _handler(store, log, hook, ledger=_ledger(clock), sleep=clock.sleep)
        assert await handler.handle(_received(BODY)) == 0
        assert await handler.handle(_received(BODY, seq=8)) == 0
    assert (log.done, hook.done) == (["ev-1/hook/0"], ["ev-1/hook/1"])
    metrics = handler.metrics
    assert isinstance(metrics, Metrics)
    assert "skipped" in metrics.render().decode()


async def test_a_failed_action_is_released_so_a_replay_runs_it(tmp_path: Path) -> None:
    """A dead-lettered action does not count as done: running it again (a replay) is allowed,
    while the action that succeeded stays done."""
    log, hook, clock = Executor(), Executor(PermanentActionError("HTTP 400")), Clock()
    async with DirectoryDeadLetterStore(tmp_path) as store:
        handler = _handler(store, log, hook, ledger=_ledger(clock), sleep=clock.sleep)
        assert await handler.handle(_received(BODY)) == 1
        assert await handler.handle(_received(BODY), only=("hook", 1)) == 0
        assert await handler.handle(_received(BODY)) == 0
    assert (log.done, hook.done) == (["ev-1/hook/0"], ["ev-1/hook/1"])


async def test_an_action_held_by_another_worker_is_waited_for(tmp_path: Path) -> None:
    """Another owner's live reservation: wait; when its lease ends, take over and run once."""
    log, hook, clock = Executor(), Executor(), Clock()
    shared: dict[str, Entry] = {}
    other = _ledger(clock, owner="other", table=shared)
    assert (await other.reserve("ev-1/hook/1")).state == "reserved"
    async with DirectoryDeadLetterStore(tmp_path) as store:
        handler = _handler(store, log, hook, ledger=_ledger(clock, table=shared), sleep=clock.sleep)
        assert await handler.handle(_received(BODY)) == 0
    assert hook.done == ["ev-1/hook/1"]
    assert sum(clock.sleeps) >= 60  # the other worker's whole lease


async def test_an_action_finished_by_another_worker_meanwhile_is_skipped(tmp_path: Path) -> None:
    log, hook, clock = Executor(), Executor(), Clock()
    shared: dict[str, Entry] = {}
    other = _ledger(clock, owner="other", table=shared)
    await other.reserve("ev-1/hook/1")

    async def other_finishes(seconds: float) -> None:
        await clock.sleep(seconds)
        await other.mark_done("ev-1/hook/1", "HTTP 200")

    async with DirectoryDeadLetterStore(tmp_path) as store:
        handler = _handler(
            store, log, hook, ledger=_ledger(clock, table=shared), sleep=other_finishes
        )
        assert await handler.handle(_received(BODY)) == 0
    assert hook.done == []


class FlakyLedger(MemoryLedger):
    """Cannot be reached for the first ``failures`` reservations."""

    def __init__(self, clock: Clock, failures: int) -> None:
        super().__init__(owner="me", lease_s=60, expire_after_s=3600, clock=clock)
        self.failures = failures

    async def reserve(self, key: str) -> Claim:
        if self.failures:
            self.failures -= 1
            raise LedgerError("ledger container x: HTTP 503")
        return await super().reserve(key)


async def test_an_unreachable_ledger_does_not_stop_actions(tmp_path: Path) -> None:
    """The store fails twice: the actions run unreserved, without trying the store again
    for a while; once it is back, actions are reserved again. Nothing recorded the
    unreserved run, so a redelivery after the outage runs it once more: the price of acting
    through a storage outage."""
    log, hook, clock = Executor(), Executor(), Clock()
    ledger = FlakyLedger(clock, 2)
    async with DirectoryDeadLetterStore(tmp_path) as store:
        handler = _handler(store, log, hook, ledger=ledger, sleep=clock.sleep, monotonic=clock)
        assert await handler.handle(_received(BODY)) == 0
        assert (log.done, hook.done, clock.sleeps) == (["ev-1/hook/0"], ["ev-1/hook/1"], [0.5])
        assert ledger.table == {}
        clock.now += 11
        assert await handler.handle(_received(BODY)) == 0
        assert await handler.handle(_received(BODY)) == 0
    assert hook.done == ["ev-1/hook/1"] * 2
    assert {entry.state for entry in ledger.table.values()} == {"done"}


async def test_a_cancelled_action_keeps_its_reservation_for_an_uncertain_takeover(
    tmp_path: Path,
) -> None:
    """A drain deadline cancels an action in flight, whose request may have reached its sink:
    the reservation is kept, and the worker that takes it over after its lease knows the
    outcome is uncertain (released, it would have run it again as new)."""
    clock = Clock()
    table: dict[str, Entry] = {}
    ledger = _ledger(clock, table=table)
    started = asyncio.Event()

    class Slow(Executor):
        async def __call__(self, decision: Decision) -> str:
            started.set()
            await asyncio.sleep(3600)
            return "never"

    async with DirectoryDeadLetterStore(tmp_path) as store:
        handler = _handler(store, Executor(), Slow(), ledger=ledger, sleep=clock.sleep)
        task = asyncio.create_task(handler.handle(_received(BODY)))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    other = _ledger(clock, owner="other", table=table)
    assert (await other.reserve("ev-1/hook/1")).state == "busy"
    clock.now += 61
    taken = await other.reserve("ev-1/hook/1")
    assert (taken.state, taken.earlier) == ("reserved", 1000.0)


class Sink(Executor):
    """An executor whose sink can be asked (``Findable``): ``has`` holds what it has done."""

    def __init__(self, has: dict[str, str] | None = None) -> None:
        super().__init__()
        self.has = dict(has or {})
        self.asked: list[tuple[str, float]] = []

    def can_find(self, action: object) -> bool:
        return True

    async def find(self, decision: Decision, since: float) -> str | None:
        self.asked.append((decision.key, since))
        return self.has.get(decision.key)


async def _taken_over(
    tmp_path: Path, hook: Executor, *, on_uncertain: str | None = None
) -> tuple[Handler, DirectoryDeadLetterStore, MemoryLedger]:
    """A handler whose webhook decision was reserved by a worker that died: its lease ended."""
    clock = Clock()
    shared: dict[str, Entry] = {}
    await _ledger(clock, owner="crashed", table=shared).reserve("ev-1/hook/1")
    clock.now += 61
    ledger = _ledger(clock, table=shared)
    action: dict[str, object] = {"type": "webhook", "url": "http://x"}
    if on_uncertain is not None:
        action["on_uncertain"] = on_uncertain
    table = make_table({"name": "hook", "actions": [{"type": "log"}, action]})
    store = DirectoryDeadLetterStore(tmp_path)
    handler = Handler(
        rules=lambda: table, executors={"log": Executor(), "webhook": hook},
        dead_letters=store, metrics=Metrics(clock=lambda: 0.0),
        retry=RetryPolicy(sleep=_no_sleep), log=structlog.get_logger("test"),
        ledger=ledger, sleep=clock.sleep, monotonic=clock,
    )  # fmt: skip
    return handler, store, ledger


def _uncertain_lines(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [line for line in logs if line["event"] == "action.uncertain"]


def _count(handler: Handler, series: str) -> str:
    metrics = handler.metrics
    assert isinstance(metrics, Metrics)
    lines = metrics.render().decode().splitlines()
    return next(line for line in lines if line.startswith(series))


@pytest.mark.parametrize(
    ("on_uncertain", "runs", "parked"),
    [(None, 1, 0), ("repeat", 1, 0), ("skip", 0, 0), ("deadletter", 0, 1)],
)
async def test_an_action_taken_over_after_its_lease_is_uncertain_and_follows_on_uncertain(
    tmp_path: Path, on_uncertain: str | None, runs: int, parked: int
) -> None:
    """The earlier holder may have sent it: the takeover is logged with the key and counted,
    and a sink that cannot be asked repeats it (the default), skips it, or parks it."""
    hook = Executor()
    handler, store, ledger = await _taken_over(tmp_path, hook, on_uncertain=on_uncertain)
    with structlog.testing.capture_logs() as logs:
        async with store:
            assert await handler.handle(_received(BODY)) == parked
            letters = await store.list()
    (line,) = _uncertain_lines(logs)
    assert line["decision"] == "ev-1/hook/1" and line["action"] == "webhook#1"
    assert line["resolution"] == (on_uncertain or "repeat")
    assert len(hook.done) == runs
    assert [letter.error for letter in letters] == (
        ["outcome uncertain: an earlier holder may have done it (on_uncertain = deadletter)"]
        if parked
        else []
    )
    assert _count(handler, 'mlevents_actions_uncertain_total{type="webhook"}').endswith(" 1.0")
    done = await ledger.reserve("ev-1/hook/1")
    assert done.state == ("reserved" if parked else "done")  # a parked one is released


@pytest.mark.parametrize("has_it", [True, False])
async def test_an_uncertain_action_a_sink_can_be_asked_about_is_looked_up_first(
    tmp_path: Path, has_it: bool
) -> None:
    """The sink is asked since the earlier reservation: what it has is recorded done, not
    repeated; what it lacks is run."""
    sink = Sink({"ev-1/hook/1": "run 7"} if has_it else {})
    handler, store, ledger = await _taken_over(tmp_path, sink)
    with structlog.testing.capture_logs() as logs:
        async with store:
            assert await handler.handle(_received(BODY)) == 0
    assert sink.asked == [("ev-1/hook/1", 1000.0)]  # when the crashed worker reserved it
    assert sink.done == ([] if has_it else ["ev-1/hook/1"])
    (line,) = _uncertain_lines(logs)
    assert line["resolution"] == ("found" if has_it else "not found: running it")
    claim = await ledger.reserve("ev-1/hook/1")
    assert claim.state == "done"
    assert (claim.detail or "").endswith("by an earlier holder: run 7" if has_it else " ok: ok")


async def test_a_fresh_reservation_is_not_uncertain(tmp_path: Path) -> None:
    handler, store, _ = await _taken_over(tmp_path, Executor())
    with structlog.testing.capture_logs() as logs:
        async with store:
            await handler.handle(_received(json.dumps([event_json(id="ev-2")]).encode()))
    assert _uncertain_lines(logs) == []
    assert _count(handler, 'mlevents_actions_uncertain_total{type="webhook"}').endswith(" 0.0")


class InertLog:
    """A log executor whose debug actions do nothing; counts the inline runs it is asked for."""

    def __init__(self) -> None:
        self.runs: list[str] = []

    async def __call__(self, decision: Decision) -> str:
        return self.run_inline(decision)

    def inert_detail(self, action: object) -> str | None:
        assert isinstance(action, LogAction)
        return action.level if action.level == "debug" else None

    def run_inline(self, decision: Decision) -> str:
        assert isinstance(decision.action, LogAction)
        self.runs.append(decision.key)
        return decision.action.level


@pytest.mark.parametrize("dry_run", [False, True])
async def test_inert_inline_actions_count_and_are_worded_as_if_they_ran(
    tmp_path: Path, dry_run: bool
) -> None:
    """An action its executor calls inert is not run, and reads as run: the same outcome in
    the event's line and the same count, whether some or all of its rule's actions are inert;
    the others run inline as before."""
    debug, warning = {"type": "log", "level": "debug"}, {"type": "log", "level": "warning"}
    table = make_table(
        {"name": "quiet", "actions": [debug, warning]},
        {"name": "silent", "actions": [debug, debug]},
    )
    log = InertLog()
    handler = Handler(
        rules=lambda: table, executors={"log": log},
        dead_letters=DirectoryDeadLetterStore(tmp_path), metrics=Metrics(clock=lambda: 0.0),
        log=structlog.get_logger("test"), dry_run=dry_run,
    )  # fmt: skip
    with capture_logs() as logs:
        assert handler.start(_received(BODY)) is None
        assert handler.start(_received(BODY, seq=8), only=("quiet", 0)) is None
        assert handler.start(_received(BODY, seq=9), only=("silent", 1)) is None
    processed = [line["actions"] for line in logs if line["event"] == "event.processed"]
    if dry_run:
        assert processed == [
            ["quiet:log#0 would run", "quiet:log#1 would run",
             "silent:log#0 would run", "silent:log#1 would run"],
            ["quiet:log#0 would run"],
            ["silent:log#1 would run"],
        ]  # fmt: skip
        assert log.runs == []
        assert _count(handler, "mlevents_actions_total") == (
            'mlevents_actions_total{outcome="dry_run",type="log"} 6.0'
        )
        return
    assert processed == [
        ["quiet:log#0 ok: debug", "quiet:log#1 ok: warning",
         "silent:log#0 ok: debug", "silent:log#1 ok: debug"],
        ["quiet:log#0 ok: debug"],
        ["silent:log#1 ok: debug"],
    ]  # fmt: skip
    assert log.runs == ["ev-1/quiet/1"]
    assert _count(handler, "mlevents_actions_total") == (
        'mlevents_actions_total{outcome="ok",type="log"} 6.0'
    )


async def test_events_matching_the_same_inert_rules_count_each_time_and_follow_a_reload(
    tmp_path: Path,
) -> None:
    """Events whose matched rules only have inert actions take a shorter path, remembered per
    set of matched rules: every event still counts each rule and action and gets its line,
    and a reloaded table's rules count as themselves, not as the old table's."""
    debug = {"type": "log", "level": "debug"}
    tables = [
        make_table({"name": "a", "actions": [debug, debug]}, {"name": "b", "actions": [debug]}),
        make_table({"name": "c", "actions": [debug]}),
    ]
    handler = Handler(
        rules=lambda: tables[0], executors={"log": InertLog()},
        dead_letters=DirectoryDeadLetterStore(tmp_path), metrics=Metrics(clock=lambda: 0.0),
        log=structlog.get_logger("test"),
    )  # fmt: skip
    with capture_logs() as logs:
        for seq in range(3):
            assert handler.start(_received(BODY, seq=seq)) is None
        tables.pop(0)
        assert handler.start(_received(BODY, seq=3)) is None
    metrics = handler.metrics
    assert isinstance(metrics, Metrics)
    matched = {name: value(metrics, "mlevents_rule_matches_total", rule=name) for name in "abc"}
    assert matched == {"a": 3.0, "b": 3.0, "c": 1.0}
    assert _count(handler, "mlevents_actions_total") == (
        'mlevents_actions_total{outcome="ok",type="log"} 10.0'
    )
    processed = [line["actions"] for line in logs if line["event"] == "event.processed"]
    three = ["a:log#0 ok: debug", "a:log#1 ok: debug", "b:log#0 ok: debug"]
    assert processed == [three, three, three, ["c:log#0 ok: debug"]]
    assert handler.handled == 4


async def test_a_dry_run_logs_what_each_action_would_send_or_why_it_would_fail(
    tmp_path: Path,
) -> None:
    """In shadow mode each action is previewed: ``action.would_run`` carries the request as
    fields, the secrets redacted; an action that would fail before sending is logged as
    ``action.would_fail`` and read as dead-lettered, and no executor is called."""
    table = make_table(
        {"name": "hook", "actions": [
            {"type": "webhook", "url": "https://example.com/{{ run.id }}?code=s3cret",
             "secret_env": "HOOK_SECRET"},
            {"type": "log", "message": "{{ data.noSuchField }}"},
        ]},
    )  # fmt: skip
    hook, log = Executor(), Executor()
    handler = Handler(
        rules=lambda: table, executors={"log": log, "webhook": hook},
        dead_letters=DirectoryDeadLetterStore(tmp_path), metrics=Metrics(clock=lambda: 0.0),
        log=structlog.get_logger("test"), dry_run=True, preview=Previewer().preview,
    )  # fmt: skip
    with capture_logs() as logs:
        assert await handler.handle(_received(BODY)) == 0
    (would_run,) = [line for line in logs if line["event"] == "action.would_run"]
    (request,) = would_run["sends"]
    assert (would_run["event_id"], would_run["rule"], would_run["action"]) == (
        "ev-1", "hook", "webhook#0")  # fmt: skip
    assert (request["method"], request["url"]) == ("POST", "https://example.com/r1?code=<redacted>")
    assert request["headers"]["webhook-signature"] == "<redacted>"
    assert request["body"][0]["id"] == "ev-1"
    (would_fail,) = [line for line in logs if line["event"] == "action.would_fail"]
    assert (would_fail["rule"], would_fail["action"]) == ("hook", "log#1")
    assert "no key 'noSuchField'" in would_fail["error"]
    (processed,) = [line["actions"] for line in logs if line["event"] == "event.processed"]
    assert processed[0] == "hook:webhook#0 would run"
    assert processed[1].startswith("hook:log#1 would be dead-lettered: log: 'message': template")
    assert hook.done == log.done == []


# --- timing and retry logs -----------------------------------------------------------------


class TimedExecutor(Executor):
    """An Executor each call of which takes ``cost_s`` on ``clock``."""

    def __init__(self, clock: Clock, cost_s: float, *errors: Exception) -> None:
        super().__init__(*errors)
        self.clock, self.cost_s = clock, cost_s

    async def __call__(self, decision: Decision) -> str:
        self.clock.now += self.cost_s
        return await super().__call__(decision)


def _buckets(handler: Handler, name: str, **labels: str) -> dict[str, float]:
    """A histogram's cumulative bucket counts by ``le``, for the series ``labels`` name."""
    metrics = handler.metrics
    assert isinstance(metrics, Metrics)
    found: dict[str, float] = {}
    for (sample, have), count in samples(metrics).items():
        have_labels = dict(have)
        if sample == f"{name}_bucket" and labels.items() <= have_labels.items():
            found[have_labels["le"]] = count
    return found


async def test_an_action_is_timed_and_its_latency_since_enqueueing_observed(
    tmp_path: Path,
) -> None:
    """The duration of an action covers its retries (on the handler's monotonic clock); its
    latency runs from the message's enqueued time to the handler's clock at the outcome; a
    dead-lettered action is timed under its own outcome."""
    clock = Clock()
    hook = TimedExecutor(clock, 0.2, TransientActionError("503"))
    enqueued = datetime(2026, 1, 1, tzinfo=UTC)
    received = Received(partition="1", body=BODY, sequence_number=7, offset="700",
                        enqueued_time=enqueued)  # fmt: skip
    async with DirectoryDeadLetterStore(tmp_path) as store:
        handler = _handler(
            store, Executor(), hook, monotonic=clock, clock=lambda: enqueued + timedelta(seconds=7)
        )
        assert await handler.handle(received) == 0
        duration = _buckets(handler, "mlevents_action_duration_seconds", type="webhook")
        assert (duration["0.25"], duration["0.5"], duration["+Inf"]) == (0, 1, 1)  # 2 × 0.2 s
        latency = _buckets(handler, "mlevents_action_latency_seconds", type="webhook")
        assert (latency["5.0"], latency["10.0"]) == (0, 1)
        hook.errors.append(PermanentActionError("HTTP 400"))
        assert await handler.handle(received) == 1
    parked = _buckets(
        handler, "mlevents_action_duration_seconds", type="webhook", outcome="dead_lettered"
    )
    assert (parked["0.1"], parked["0.25"]) == (0, 1)
    metrics = handler.metrics
    assert isinstance(metrics, Metrics)
    assert value(metrics, "mlevents_actions_total", type="webhook", outcome="ok") == 1


async def test_retry_logs_name_the_event_rule_action_and_message() -> None:
    """A retried action and a retried dead-letter write each log the event id, the rule, the
    action and the partition and sequence number of the message."""
    hook = Executor(TransientActionError("503"), PermanentActionError("HTTP 400"))
    store = FlakyStore(down_for=1)
    with capture_logs() as logs:
        handler = _handler(store, Executor(), hook, sleep=_no_sleep)
        assert await handler.handle(_received(BODY)) == 1
    where = {"event_id": "ev-1", "rule": "hook", "action": "webhook#1", "partition": "1",
             "sequence_number": 7}  # fmt: skip
    (retry,) = [line for line in logs if line["event"] == "action.retry_scheduled"]
    assert where.items() <= retry.items()
    assert (retry["attempt"], retry["error"]) == (1, "503")
    (store_failed,) = [line for line in logs if line["event"] == "deadletter.store_failed"]
    assert {**where, "reason": "action"}.items() <= store_failed.items()
