"""The worker end to end: the emulator, a real webhook receiver, checkpoints and dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubProducerClient
from azure.eventhub.amqp import AmqpAnnotatedMessage
from structlog.testing import capture_logs

from consumer.commands.deadletter import replay_letters
from consumer.config import Config, load_config
from consumer.stores.checkpoints import SqliteCheckpointStore
from consumer.stores.deadletters import DeadLetter, DirectoryDeadLetterStore
from consumer.worker import intake
from consumer.worker.wiring import build
from emulator import Emulator, HubSpec
from tests.support.emulator import send_each
from tests.support.factories import event_body
from tests.support.metrics import metric, scrape
from tests.support.waiting import until, until_async
from tests.support.webhooks import WebhookReceiver, webhook_rules
from tests.support.workers import PARTITIONS, running, worker_config

LOG_ONLY_RULES = (
    "[[rules]]\n"
    'name = "logs"\n'
    "[rules.filter]\n"
    'includedEventTypes = ["Microsoft.MachineLearningServices.RunStatusChanged"]\n'
    "[[rules.actions]]\n"
    'type = "log"\n'
    'message = "seen"\n'
)


# --- peers and helpers ---------------------------------------------------------------------


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    """An in-process emulator serving ``hub`` with four partitions."""
    async with Emulator([HubSpec("hub", len(PARTITIONS))]) as running:
        yield running


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    """A webhook receiver on loopback that answers 200 at once unless told otherwise."""
    async with WebhookReceiver() as running:
        yield running


def make_config(
    folder: Path, emu: Emulator, receiver: WebhookReceiver, *, max_in_flight: int = 64
) -> Config:
    """A worker config for ``hub`` whose one rule posts every RunStatusChanged to ``receiver``."""
    rules = webhook_rules(folder / "rules.toml", receiver.url)
    path = worker_config(folder, rules, max_in_flight=max_in_flight)
    return load_config(path, {"EVENTHUB_CONNECTION_STRING": emu.connection_string()})


async def stored_checkpoints(folder: Path, emu: Emulator) -> dict[str, int]:
    """The sequence number of each partition's checkpoint in the worker's SQLite store."""
    async with SqliteCheckpointStore(folder / "state" / "checkpoints.sqlite3") as store:
        found = await store.list_checkpoints(f"{emu.host}:{emu.port}", "hub", "$Default")
    return {c["partition_id"]: c["sequence_number"] for c in found}


async def dead_letters(folder: Path) -> list[DeadLetter]:
    """Every entry in the worker's dead-letter folder, oldest first."""
    async with DirectoryDeadLetterStore(folder / "state" / "deadletters") as store:
        return await store.list()


async def send_in_batches(
    connection_string: str, per_partition: Mapping[str, list[str]], size: int
) -> None:
    """``send_each`` in rounds of at most ``size`` bodies per partition (batches stay < 1 MiB)."""
    longest = max(len(bodies) for bodies in per_partition.values())
    for start in range(0, longest, size):
        chunk = {p: b[start : start + size] for p, b in per_partition.items()}
        await send_each(connection_string, {p: b for p, b in chunk.items() if b})


# --- tests ---------------------------------------------------------------------------------


async def test_ten_thousand_events_are_acted_on_once_and_fully_checkpointed(
    tmp_path: Path, emu: Emulator, receiver: WebhookReceiver
) -> None:
    """10,000 events on 4 partitions: each is posted once, decoded once, checkpointed to the end."""
    config = make_config(tmp_path, emu, receiver)
    per_partition = {p: [event_body(f"p{p}-{i}") for i in range(2_500)] for p in PARTITIONS}
    async with running(config) as worker:
        await send_in_batches(emu.connection_string("hub"), per_partition, 500)
        await receiver.wait_for(10_000, timeout_s=90)
        assert await metric(worker, "mlevents_events_decoded_total") == 10_000
        assert await metric(worker, "mlevents_events_received_total") == 10_000
        await asyncio.sleep(0.5)  # a duplicate delivery would arrive by now
    expected = Counter({f"p{p}-{i}": 1 for p in PARTITIONS for i in range(2_500)})
    assert receiver.acted == expected
    assert receiver.calls == expected
    assert await stored_checkpoints(tmp_path, emu) == dict.fromkeys(PARTITIONS, 2_499)


async def test_a_fresh_worker_serves_its_counters_at_zero_and_who_it_is(
    tmp_path: Path, emu: Emulator, receiver: WebhookReceiver
) -> None:
    """Before any event, GET /metrics reports at 0 the counters an alert on increase() reads:
    dead letters by reason, the rule's matches, its action type's outcomes and retries, and
    each claimed partition's events; and the build and process series are there."""
    async with running(make_config(tmp_path, emu, receiver)) as worker:
        scraped = {(name, frozenset(labels.items())): found
                   for name, labels, found in await scrape(worker)}  # fmt: skip

    def at(name: str, **labels: str) -> float | None:
        return scraped.get((name, frozenset(labels.items())))

    for reason in ("decode", "action"):
        assert at("mlevents_dead_letters_total", reason=reason) == 0
        for partition in PARTITIONS:
            assert at("mlevents_events_failed_total", partition=partition, reason=reason) == 0
    for partition in PARTITIONS:
        assert at("mlevents_events_received_total", partition=partition) == 0
    assert at("mlevents_rule_matches_total", rule="hook") == 0
    assert at("mlevents_action_retries_total", type="webhook") == 0
    for outcome in ("ok", "dead_lettered", "skipped", "dry_run"):
        assert at("mlevents_actions_total", type="webhook", outcome=outcome) == 0
    (build,) = [dict(labels) for name, labels in scraped if name == "mlevents_build_info"]
    assert set(build) == {"version", "python"}
    assert (at("process_resident_memory_bytes") or 0) > 0
    assert (at("process_open_fds") or 0) > 0


async def test_events_delivered_twice_are_acted_on_once(
    tmp_path: Path, emu: Emulator, receiver: WebhookReceiver
) -> None:
    """Every event is in the hub twice, one copy right after the other (Event Grid delivers at
    least once), and the hub is read again from scratch once the checkpoints are gone: the
    ledger lets each event be posted once, the copies skipped or waiting for the first."""
    config = make_config(tmp_path, emu, receiver)
    ids = {p: [f"t{p}-{i}" for i in range(50)] for p in PARTITIONS}
    twice = {p: [event_body(i) for i in events for _ in range(2)] for p, events in ids.items()}
    once = Counter(event_id for events in ids.values() for event_id in events)
    await send_each(emu.connection_string("hub"), twice)
    copies = 2 * sum(once.values())

    async with running(config) as worker:
        await until(lambda: worker.handler.handled == copies, 60, "every copy handled")
    assert receiver.acted == once
    assert await stored_checkpoints(tmp_path, emu) == dict.fromkeys(PARTITIONS, 99)

    for path in (tmp_path / "state").glob("checkpoints.sqlite3*"):
        path.unlink()
    async with running(config) as worker:
        await until(lambda: worker.handler.handled == copies, 60, "every copy handled again")
    assert receiver.acted == once


async def test_poison_body_and_failed_action_are_dead_lettered_then_replayed(
    tmp_path: Path, emu: Emulator, receiver: WebhookReceiver
) -> None:
    """A poison body and a 400 are parked, later events go on; a replay acts on the 400 only."""
    failing = {"d-6"}

    def behaviour(event_id: str, seen: int) -> tuple[int, float]:
        if event_id in failing:
            return 400, 0.0
        if event_id == "d-2" and seen <= 2:  # retriable twice, then it passes
            return 503, 0.0
        return 200, 0.0

    receiver.behaviour = behaviour
    config = make_config(tmp_path, emu, receiver)
    bodies = [event_body(f"d-{i}") for i in range(10)]
    bodies[4] = "not json {"
    async with running(config) as worker:
        await send_each(emu.connection_string("hub"), {"0": bodies})
        await receiver.wait_for(8, timeout_s=20)
        partition = worker.partitions["0"]
        await until(lambda: partition.checkpointed_sequence == 9, 10, "checkpoint past both")
        assert await metric(worker, "mlevents_dead_letters_total", reason="decode") == 1
        assert await metric(worker, "mlevents_dead_letters_total", reason="action") == 1
        assert await metric(worker, "mlevents_events_failed_total", reason="decode") == 1
        assert await metric(worker, "mlevents_events_failed_total", reason="action") == 1
        assert await metric(worker, "mlevents_action_retries_total", type="webhook") == 2
    assert receiver.acted == {f"d-{i}": 1 for i in (0, 1, 2, 3, 5, 7, 8, 9)}  # each once
    assert receiver.calls["d-6"] == 1  # a 400 is permanent: not retried
    assert (receiver.calls["d-2"], receiver.acted["d-2"]) == (3, 1)  # 503, 503, 200
    assert (await stored_checkpoints(tmp_path, emu))["0"] == 9

    letters = {letter.reason: letter for letter in await dead_letters(tmp_path)}
    assert sorted(letters) == ["action", "decode"]
    decode, action = letters["decode"], letters["action"]
    assert (decode.partition, decode.sequence_number, decode.body) == ("0", 4, b"not json {")
    assert (decode.rule, decode.action, decode.event_id) == (None, None, None)
    assert "not JSON" in decode.error
    assert (action.partition, action.sequence_number, action.event_id) == ("0", 6, "d-6")
    assert (action.rule, action.action, action.attempts) == ("hook", "webhook#0", 1)
    assert "HTTP 400" in action.error
    assert action.body == bodies[6].encode()

    failing.clear()
    assert await replay_letters(config, []) == 1  # the poison body fails again
    assert receiver.acted["d-6"] == 1
    assert receiver.calls["d-6"] == 2
    assert sum(receiver.acted.values()) == 9  # nothing else was posted again
    [left] = await dead_letters(tmp_path)
    assert (left.reason, left.partition, left.sequence_number) == ("decode", "0", 4)
    assert left.body == b"not json {"
    assert "not JSON" in left.error


async def test_amqp_value_and_sequence_bodies_are_dead_lettered_and_the_partition_goes_on(
    tmp_path: Path, emu: Emulator, receiver: WebhookReceiver
) -> None:
    """Events come in data bodies: an AMQP value or sequence body is parked as not a data body
    (rendered for people, not taken for bytes), and the events around it are acted on."""
    config = make_config(tmp_path, emu, receiver)
    messages: list[EventData | AmqpAnnotatedMessage] = [
        EventData(event_body("b-0")),
        AmqpAnnotatedMessage(value_body={"id": "v"}),
        AmqpAnnotatedMessage(sequence_body=[[1, "a"], [2]]),
        AmqpAnnotatedMessage(data_body=[event_body("b-3").encode()]),
    ]
    async with running(config) as worker:
        async with EventHubProducerClient.from_connection_string(
            emu.connection_string("hub")
        ) as producer:
            batch = await producer.create_batch(partition_id="0")
            for message in messages:
                batch.add(message)
            await producer.send_batch(batch)
        await receiver.wait_for(2, timeout_s=20)
        partition = worker.partitions["0"]
        await until(lambda: partition.checkpointed_sequence == 3, 10, "checkpoint past both")
        assert await metric(worker, "mlevents_dead_letters_total", reason="decode") == 2
    assert receiver.acted == {"b-0": 1, "b-3": 1}
    value, sequence = sorted(await dead_letters(tmp_path), key=lambda d: d.sequence_number or 0)
    assert (value.reason, value.partition, value.sequence_number) == ("decode", "0", 1)
    assert value.error == "not a data body: the message has an AMQP value body"
    assert value.body == b"{b'id': b'v'}"
    assert (sequence.reason, sequence.sequence_number) == ("decode", 2)
    assert sequence.error == "not a data body: the message has an AMQP sequence body"
    assert sequence.body == b"[[1, b'a'], [2]]"


async def test_replay_keeps_a_failed_action_whose_rule_is_gone(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """Replaying a failed action whose rule no longer exists runs nothing, so keeps the entry."""
    rules = webhook_rules(tmp_path / "rules.toml", receiver.url)
    rules.write_text(rules.read_text().replace('name = "hook"', 'name = "renamed-hook"'))
    path = worker_config(tmp_path, rules)
    config = load_config(path, {"EVENTHUB_CONNECTION_STRING": "Endpoint=sb://127.0.0.1:9/"})
    letter = DeadLetter.create(
        created=datetime.now(UTC), reason="action", error="webhook to x answered HTTP 400",
        body=event_body("gone-1").encode(), partition="0", attempts=1, offset="0",
        sequence_number=0, event_id="gone-1", rule="hook", action="webhook#0",
    )  # fmt: skip
    async with DirectoryDeadLetterStore(tmp_path / "state" / "deadletters") as store:
        await store.put(letter)

    code = await replay_letters(config, [])

    assert receiver.calls == Counter()  # the action was not carried out ...
    assert [kept.id for kept in await dead_letters(tmp_path)] == [letter.id]  # ... so it stays
    assert code == 1


async def test_slow_action_holds_the_checkpoint_until_it_finishes(
    tmp_path: Path, emu: Emulator, receiver: WebhookReceiver
) -> None:
    """While event 3 is in flight the checkpoint stays below it; then it reaches the last event."""
    receiver.behaviour = lambda event_id, seen: (200, 3.0 if event_id == "s-3" else 0.0)
    config = make_config(tmp_path, emu, receiver)
    async with running(config) as worker:
        await send_each(
            emu.connection_string("hub"), {"0": [event_body(f"s-{i}") for i in range(10)]}
        )
        await until(lambda: receiver.calls["s-3"] >= 1, 20, "event 3 posted")
        partition = worker.partitions["0"]
        samples: list[int | None] = []
        while not receiver.acted["s-3"]:
            samples.append(partition.checkpointed_sequence)
            await asyncio.sleep(0.05)
        overtaken = set(receiver.acted)
        assert len(samples) > 20
        assert all(s is None or s < 3 for s in samples), samples
        assert 2 in samples  # the finished prefix before the slow event was checkpointed
        assert {f"s-{i}" for i in range(4, 10)} <= overtaken
        await until(lambda: partition.checkpointed_sequence == 9, 5, "checkpoint at the last event")
    assert (await stored_checkpoints(tmp_path, emu))["0"] == 9


async def test_stop_waits_for_a_slow_action_then_checkpoints_and_releases(
    tmp_path: Path, emu: Emulator, receiver: WebhookReceiver
) -> None:
    """An action outlasting the SDK's load-balancing pass at shutdown is still drained: when
    run() returns, the partition has written its final checkpoint past it and released
    ownership (the SDK, stopped twice, would return while the partition still drained)."""
    receiver.behaviour = lambda event_id, seen: (200, 4.0 if event_id == "slow-4" else 0.0)
    rules = webhook_rules(tmp_path / "rules.toml", receiver.url)
    # Claims outlive the drain: the SDK releases only a claim it still holds (not expired).
    path = worker_config(tmp_path, rules, load_balancing_interval_s=2, ownership_expiration_s=15)
    config = load_config(path, {"EVENTHUB_CONNECTION_STRING": emu.connection_string()})
    async with contextlib.AsyncExitStack() as stack:
        worker = await build(config, stack)
        task = asyncio.create_task(worker.run())
        await until(lambda: len(worker.partitions) == len(PARTITIONS), 20, "partitions claimed")
        await send_each(
            emu.connection_string("hub"), {"0": [event_body(f"slow-{i}") for i in range(5)]}
        )
        await until(lambda: receiver.calls["slow-4"] >= 1, 20, "the slow post started")
        worker.stop()
        await task
        # Checked before the stores close: run() must not return while a partition drains.
        assert receiver.acted["slow-4"] == 1
        assert (await stored_checkpoints(tmp_path, emu))["0"] == 4
        async with SqliteCheckpointStore(tmp_path / "state" / "checkpoints.sqlite3") as store:
            owners = await store.list_ownership(f"{emu.host}:{emu.port}", "hub", "$Default")
        assert {o["partition_id"]: o["owner_id"] for o in owners} == dict.fromkeys(PARTITIONS, "")


async def test_rule_reload_rejects_a_broken_table_and_swaps_in_a_good_one(
    tmp_path: Path, emu: Emulator, receiver: WebhookReceiver
) -> None:
    """A broken rules file is rejected and the old table keeps acting; a good one replaces it."""
    config = make_config(tmp_path, emu, receiver)
    hub = emu.connection_string("hub")
    rules_file = tmp_path / "rules.toml"

    def one_each(prefix: str) -> dict[str, list[str]]:
        return {p: [event_body(f"{prefix}-{p}")] for p in PARTITIONS}

    async with running(config) as worker:
        await send_each(hub, one_each("before"))
        await receiver.wait_for(4, timeout_s=20)

        rules_file.write_text('[[rules]]\nname = "hook"\n[rules.filter\n')  # not TOML
        assert worker.rules.reload() is False
        assert await metric(worker, "mlevents_rules_reloads_total", outcome="rejected") == 1
        assert await metric(worker, "mlevents_rules_reloads_total", outcome="ok") == 0
        await send_each(hub, one_each("rejected"))
        await receiver.wait_for(8, timeout_s=20)  # still posted: the old table runs

        rules_file.write_text(LOG_ONLY_RULES)
        assert worker.rules.reload() is True
        assert [rule.name for rule in worker.rules().rules] == ["logs"]
        assert await metric(worker, "mlevents_rules_reloads_total", outcome="ok") == 1
        assert await metric(worker, "mlevents_rules_loaded") == 1
        await send_each(hub, one_each("after"))

        async def logged_all() -> bool:
            return await metric(worker, "mlevents_rule_matches_total", rule="logs") == 4

        await until_async(logged_all, 20, "the new rule matched the new events")
        await asyncio.sleep(0.3)
    assert not [e for e in receiver.calls if e.startswith("after-")]
    assert len(receiver.acted) == 8


async def test_dry_run_matches_but_takes_no_action(
    tmp_path: Path, emu: Emulator, receiver: WebhookReceiver
) -> None:
    """With dry_run the events match, the webhook gets nothing, actions count as dry_run, each
    logs the request it would send, and the consumer group's checkpoints stay where they were
    (none here)."""
    config = make_config(tmp_path, emu, receiver)
    with capture_logs() as logs:
        async with running(config, dry_run=True) as worker:
            await send_each(
                emu.connection_string("hub"),
                {p: [event_body(f"dry-{p}-{i}") for i in range(5)] for p in PARTITIONS},
            )

            async def counted_all() -> bool:
                dry = await metric(worker, "mlevents_actions_total", outcome="dry_run")
                return dry == 20

            await until_async(counted_all, 20, "20 dry-run actions counted")
            assert await metric(worker, "mlevents_rule_matches_total", rule="hook") == 20
            assert await metric(worker, "mlevents_actions_total", outcome="ok") == 0
            await asyncio.sleep(0.5)  # a post would have arrived by now
    assert receiver.calls == Counter()
    assert await stored_checkpoints(tmp_path, emu) == {}
    would_run = [line for line in logs if line["event"] == "action.would_run"]
    assert sorted(line["event_id"] for line in would_run) == sorted(
        f"dry-{p}-{i}" for p in PARTITIONS for i in range(5)
    )
    for line in would_run:
        (request,) = line["sends"]
        assert (line["rule"], line["action"]) == ("hook", "webhook#0")
        assert (request["method"], request["url"]) == ("POST", receiver.url)
        assert request["headers"]["aeg-event-type"] == "Notification"
        assert request["body"][0]["id"] == line["event_id"]


@dataclass
class ConcurrencyReceiver(WebhookReceiver):
    """A ``WebhookReceiver`` that also counts the requests it is answering, per partition.

    Event ids look like ``b<partition>-<n>``.
    """

    open_now: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    most_open: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))

    async def _hook(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())  # aiohttp keeps the body for the next read
        partition = str(body[0]["id"]).removeprefix("b").split("-")[0]
        self.open_now[partition] += 1
        self.most_open[partition] = max(self.most_open[partition], self.open_now[partition])
        try:
            return await super()._hook(request)
        finally:
            self.open_now[partition] -= 1


def slow_head(event_id: str, seen: int) -> tuple[int, float]:
    """0.3 s for every event, 0.9 s for each partition's first, so later ones overtake it."""
    return 200, 0.9 if event_id.endswith("-0") else 0.3


async def test_backpressure_keeps_each_partition_within_max_in_flight(tmp_path: Path) -> None:
    """With max_in_flight=4 and slow webhooks no partition runs more than 4 actions at once."""
    per_partition = 16
    receiver = ConcurrencyReceiver(behaviour=slow_head)
    async with Emulator([HubSpec("hub", len(PARTITIONS))]) as emu, receiver:
        config = make_config(tmp_path, emu, receiver, max_in_flight=4)
        async with running(config):
            await send_each(
                emu.connection_string("hub"),
                {p: [event_body(f"b{p}-{i}") for i in range(per_partition)] for p in PARTITIONS},
            )
            await receiver.wait_for(per_partition * len(PARTITIONS), timeout_s=30)
            await asyncio.sleep(0.3)  # a duplicate delivery would arrive by now
    assert receiver.acted == Counter(
        {f"b{p}-{i}": 1 for p in PARTITIONS for i in range(per_partition)}
    )
    # The receiver sees a request from when it arrives until it is answered, inside the time
    # the worker holds a slot for it: it can only see fewer at once, never more.
    assert dict(receiver.most_open) == dict.fromkeys(PARTITIONS, 4)  # full, never over
    assert await stored_checkpoints(tmp_path, emu) == dict.fromkeys(PARTITIONS, per_partition - 1)


async def test_readiness_follows_the_hub_going_away_and_coming_back(
    tmp_path: Path, emu: Emulator, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/readyz turns 503 when the hub stops answering, and 200 again once it is back."""
    # An idle worker hears from the hub through its lag reads (an empty batch is only the
    # SDK's own timer): every 2 s here, well within the 5 s readiness allows.
    monkeypatch.setattr(intake, "LAG_EVERY_S", 2.0)
    config = make_config(tmp_path, emu, receiver)
    async with running(config) as worker:
        worker.ready_within_s = 5.0
        assert worker.ready()[0]
        await asyncio.sleep(6)  # idle, and still ready
        assert worker.ready() == (True, "ok: 1 rules")
        port = emu.port
        await emu.stop()
        await until(lambda: not worker.ready()[0], 20, "not ready while the hub is gone")
        assert worker.ready()[1].startswith("no answer from the event hub for ")
        async with Emulator([HubSpec("hub", len(PARTITIONS))], port=port):
            await until(lambda: worker.ready()[0], 90, "ready again once the hub is back")
