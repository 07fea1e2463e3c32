"""Intake details: initial checkpoints and lower-case names (KEDA relies on both), lag reads,
and pausing while the hub does not answer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest
import structlog
from azure.eventhub import EventData
from azure.eventhub._pyamqp.message import Message
from azure.eventhub.aio import CheckpointStore, EventHubConsumerClient, PartitionContext
from azure.eventhub.amqp import AmqpMessageBodyType
from azure.eventhub.exceptions import AuthenticationError
from structlog.testing import capture_logs

from consumer.config import EventHubConfig, load_config
from consumer.errors import StartError
from consumer.stores.checkpoints import SqliteCheckpointStore
from consumer.worker import intake
from consumer.worker.intake import Intake, _received, body_bytes, partition_ids
from consumer.worker.partition import PartitionWorker
from consumer.worker.wiring import build, warn_if_not_lower_case
from emulator import Emulator, HubSpec
from tests.support.emulator import send_each
from tests.support.waiting import until
from tests.support.webhooks import webhook_rules
from tests.support.workers import worker_config


async def test_claimed_partitions_without_checkpoints_get_one_at_the_start(tmp_path: Path) -> None:
    """With starting_position latest, each claimed partition is checkpointed at its last event."""
    async with Emulator([HubSpec("hub", 2)]) as emu:
        await send_each(emu.connection_string("hub"), {"0": ["a", "b", "c"], "1": []})
        rules = webhook_rules(tmp_path / "rules.toml", "http://127.0.0.1:9/unused")
        path = worker_config(tmp_path, rules, starting_position="latest")
        config = load_config(path, {"EVENTHUB_CONNECTION_STRING": emu.connection_string()})
        async with contextlib.AsyncExitStack() as stack:
            worker = await build(config, stack)
            task = asyncio.create_task(worker.run())
            for _ in range(100):
                if len(worker.partitions) == 2:
                    break
                await asyncio.sleep(0.1)
            worker.stop()
            await task
        async with SqliteCheckpointStore(tmp_path / "state" / "checkpoints.sqlite3") as store:
            namespace = f"{emu.host}:{emu.port}"
            checkpoints = await store.list_checkpoints(namespace, "hub", "$Default")
    by_partition = {c["partition_id"]: c["sequence_number"] for c in checkpoints}
    assert by_partition == {"0": 2, "1": -1}


async def test_lag_is_reported_from_the_checkpoint_found_at_claim(tmp_path: Path) -> None:
    """A partition claimed with a backlog behind an earlier checkpoint shows its lag before
    this process writes any checkpoint of its own (its cadence is far off)."""
    async with Emulator([HubSpec("hub", 1)]) as emu:
        await send_each(emu.connection_string("hub"), {"0": [f"e{i}" for i in range(8)]})
        namespace = f"{emu.host}:{emu.port}"
        async with SqliteCheckpointStore(tmp_path / "state" / "checkpoints.sqlite3") as store:
            await store.update_checkpoint({
                "fully_qualified_namespace": namespace, "eventhub_name": "hub",
                "consumer_group": "$Default", "partition_id": "0",
                "offset": "-1", "sequence_number": 2,
            })  # fmt: skip
        rules = webhook_rules(tmp_path / "rules.toml", "http://127.0.0.1:9/unused")
        path = worker_config(tmp_path, rules, every_events=1000, every_s=600)
        config = load_config(path, {"EVENTHUB_CONNECTION_STRING": emu.connection_string()})
        async with contextlib.AsyncExitStack() as stack:
            worker = await build(config, stack)
            task = asyncio.create_task(worker.run())
            try:
                text = ""
                for _ in range(200):
                    text = worker.metrics.render().decode()
                    if 'mlevents_partition_lag{partition="0"}' in text:
                        break
                    await asyncio.sleep(0.1)
            finally:
                worker.stop()
                await task
    assert 'mlevents_partition_lag{partition="0"} 5.0' in text
    assert "mlevents_checkpoint_age_seconds{" not in text


class ClaimingHub:
    """A consumer client that claims partitions one after another, each with its last
    enqueued sequence number, and records the management calls made."""

    def __init__(self, last_enqueued: dict[str, int]) -> None:
        self.last_enqueued = last_enqueued
        self.reads: list[str] = []
        self.claimed = asyncio.Event()

    async def receive_batch(
        self, *, on_partition_initialize: Callable[[PartitionContext], Awaitable[None]], **_: Any
    ) -> None:
        for partition in self.last_enqueued:
            await on_partition_initialize(PartitionContext("ns", "hub", "$Default", partition))
            await asyncio.sleep(0.01)  # the lag reader runs between claims
        self.claimed.set()
        await asyncio.Event().wait()  # receives until cancelled

    async def get_partition_properties(self, partition: str) -> dict[str, Any]:
        self.reads.append(partition)
        await asyncio.sleep(0)
        last = self.last_enqueued[partition]
        return {
            "beginning_sequence_number": 0, "last_enqueued_sequence_number": last,
            "last_enqueued_offset": str(last * 100), "is_empty": False,
        }  # fmt: skip

    async def get_eventhub_properties(self) -> dict[str, Any]:
        return {}


class Checkpointed:
    """A checkpoint store holding checkpoints for some partitions."""

    def __init__(self, sequences: dict[str, int]) -> None:
        self.sequences = sequences

    async def list_checkpoints(self, *_: str) -> list[dict[str, Any]]:
        return [{"partition_id": p, "sequence_number": s} for p, s in self.sequences.items()]

    async def update_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.sequences[checkpoint["partition_id"]] = checkpoint["sequence_number"]


class LagMetrics:
    def __init__(self) -> None:
        self.enqueued: dict[str, int] = {}

    def last_enqueued(self, partition: str, sequence_number: int) -> None:
        self.enqueued[partition] = sequence_number

    def partition_claimed(self, partition: str) -> None:
        pass

    def checkpoint_found(self, partition: str, sequence_number: int) -> None:
        pass

    def forget_partition(self, partition: str) -> None:
        pass


async def test_claims_read_each_partition_once_not_every_owned_one_per_claim() -> None:
    """Four partitions claimed one after another (one of them with a checkpoint) cost four
    property reads: the initial checkpoint's read gives the lag metric its last enqueued
    sequence number, and only the partition that needed no initial checkpoint is read for
    the lag."""
    hub = ClaimingHub({"0": 10, "1": 11, "2": 12, "3": 13})
    metrics = LagMetrics()
    intake = Intake(
        client=cast(EventHubConsumerClient, hub),
        config=EventHubConfig(name="hub", starting_position="earliest"),
        checkpoint_store=cast(CheckpointStore, Checkpointed({"2": 5})),
        make_worker=lambda partition, context: cast(PartitionWorker, object()),
        metrics=metrics,
        drain_deadline_s=1.0,
        log=structlog.get_logger("test"),
    )
    receiving = asyncio.create_task(intake.run())
    try:
        await asyncio.wait_for(hub.claimed.wait(), 5)
        for _ in range(100):
            if len(metrics.enqueued) == 4:
                break
            await asyncio.sleep(0.01)
    finally:
        receiving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiving
    assert metrics.enqueued == {"0": 10, "1": 11, "2": 12, "3": 13}
    assert sorted(hub.reads) == ["0", "1", "2", "3"]
    assert intake.heard_at is not None


class SilentHub:
    """A consumer client whose management calls fail while ``failing`` is above zero (each
    failure counts it down) or ``down`` is set; records how often receiving started and how
    often it was cancelled."""

    def __init__(self) -> None:
        self.failing = 0
        self.down = False
        self.asked = 0
        self.started = 0
        self.cancelled = 0

    async def receive_batch(self, **_: Any) -> None:
        self.started += 1
        try:
            await asyncio.Event().wait()  # receives until cancelled
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def get_eventhub_properties(self) -> dict[str, Any]:
        self.asked += 1
        await asyncio.sleep(0)
        if self.down or self.failing > 0:
            self.failing -= 1
            raise ConnectionRefusedError("refused")
        return {}


def _paced(monkeypatch: pytest.MonkeyPatch) -> None:
    """Intake's waits, shortened for a test."""
    monkeypatch.setattr(intake, "LAG_EVERY_S", 0.05)
    monkeypatch.setattr(intake, "CONFIRM_S", 0.01)
    monkeypatch.setattr(intake, "PAUSED_PROBE_S", (0.01, 0.02))


def _silent_intake(hub: SilentHub) -> Intake:
    return Intake(
        client=cast(EventHubConsumerClient, hub),
        config=EventHubConfig(name="hub"),
        checkpoint_store=cast(CheckpointStore, Checkpointed({})),
        make_worker=lambda partition, context: cast(PartitionWorker, object()),
        metrics=LagMetrics(),
        drain_deadline_s=1.0,
        log=structlog.get_logger("test"),
    )


async def test_one_unanswered_question_to_the_hub_does_not_pause_receiving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hub that fails one question and answers the next (a blip) keeps receiving going."""
    _paced(monkeypatch)
    hub = SilentHub()
    hub.failing = 1
    receiving = asyncio.create_task(_silent_intake(hub).run())
    try:
        await until(lambda: hub.asked >= 5, 10, "five questions")
    finally:
        receiving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiving
    assert (hub.started, hub.cancelled) == (1, 1)  # cancelled only by the test


async def test_a_hub_that_fails_twice_pauses_receiving_until_it_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two failed questions in a row cancel receiving (the SDK then closes every partition);
    the hub is asked again until it answers, and then receiving starts once more."""
    _paced(monkeypatch)
    hub = SilentHub()
    taken = _silent_intake(hub)
    receiving = asyncio.create_task(taken.run())
    try:
        with capture_logs() as logs:
            await until(lambda: hub.started == 1, 10, "receiving")
            hub.down = True
            await until(lambda: taken.paused, 10, "a pause")
            assert hub.cancelled == 1
            asked = hub.asked
            await until(lambda: hub.asked >= asked + 3, 10, "questions while paused")
            assert hub.started == 1  # nothing received while the hub is silent
            hub.down = False
            await until(lambda: hub.started == 2, 10, "receiving again")
            assert not taken.paused
    finally:
        receiving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiving
    events = [line["event"] for line in logs if line["event"].startswith("eventhub.receiving")]
    assert events == ["eventhub.receiving_paused", "eventhub.receiving_resumed"]
    assert hub.cancelled == 2  # the pause, then the test


async def test_questions_to_the_hub_go_to_the_questions_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given a client for questions (the worker's gives up sooner), the receiving client is
    asked nothing: its failing questions would pause nothing."""
    _paced(monkeypatch)
    receiving_client, questions = SilentHub(), SilentHub()
    receiving_client.down = True
    taken = _silent_intake(receiving_client)
    taken.questions = cast(EventHubConsumerClient, questions)
    receiving = asyncio.create_task(taken.run())
    try:
        await until(lambda: questions.asked >= 3, 10, "three questions")
        assert not taken.paused
        questions.down = True
        await until(lambda: taken.paused, 10, "a pause")
    finally:
        receiving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiving
    assert receiving_client.asked == 0


class UnreachableHub:
    """A consumer client whose first call fails with ``error``, or never answers."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error
        self.closed = False

    async def get_partition_ids(self) -> list[str]:
        if self.error is not None:
            raise self.error
        await asyncio.Event().wait()
        return []

    async def close(self) -> None:
        self.closed = True


async def test_a_hub_that_refuses_or_does_not_answer_at_start_is_one_start_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first call to the hub failing, or not answering in time, is a ``StartError``
    naming the namespace and hub and the SDK's first line, secrets redacted; the client is
    closed."""
    config = EventHubConfig(
        name="mlevents",
        connection_string="Endpoint=sb://ns.example.net/;SharedAccessKeyName=k;SharedAccessKey=s3cret",
    )
    refused = AuthenticationError(
        "CBS token refused for SharedAccessKey=s3cret\nError condition: amqp:unauthorized-access"
    )
    hub = UnreachableHub(refused)
    with pytest.raises(StartError) as raised:
        await partition_ids(cast(EventHubConsumerClient, hub), config)
    assert str(raised.value).startswith(
        "event hub 'mlevents' in ns.example.net: cannot connect: AuthenticationError: "
        "CBS token refused for SharedAccessKey=*** (check [eventhub]"
    )
    assert "s3cret" not in str(raised.value) and hub.closed
    monkeypatch.setattr(intake, "CONNECT_TIMEOUT_S", 0.05)
    silent = UnreachableHub(None)
    with pytest.raises(
        StartError, match=r"ns.example.net: cannot connect: no answer within 0.05 s"
    ):
        await partition_ids(cast(EventHubConsumerClient, silent), config)
    assert silent.closed


def test_upper_case_namespace_or_hub_is_warned_about() -> None:
    """KEDA reads checkpoints under lower-case paths, so mixed case gets a warning."""
    log = structlog.get_logger("test")
    with capture_logs() as logs:
        warn_if_not_lower_case(EventHubConfig(name="Hub", fully_qualified_namespace="Ns.x"), log)
        warn_if_not_lower_case(
            EventHubConfig(name="", connection_string="Endpoint=sb://ns/;EntityPath=hub"), log
        )
    assert [(e["what"], e["name"]) for e in logs] == [("namespace", "Ns.x"), ("event hub", "Hub")]


def _as_received(**message: Any) -> EventData:
    """An ``EventData`` as the SDK makes one from a message it received."""
    return EventData._from_message(Message(**message))


_ANNOTATIONS = {
    b"x-opt-sequence-number": 41,
    b"x-opt-offset": b"8192",
    b"x-opt-enqueued-time": 1_767_225_600_000,
}
RECEIVED_MESSAGES: dict[str, dict[str, Any]] = {
    "one data section": {"data": [b'[{"id": "a"}]']},
    "data sections": {"data": [b'[{"id": ', b'"b"}]']},
    "value body": {"value": {"id": "v"}},
    "sequence body": {"sequence": [[1, "a"], [2]]},
    "empty data section": {"data": [b""]},
}


@pytest.mark.parametrize("annotations", [_ANNOTATIONS, None], ids=["annotated", "bare"])
@pytest.mark.parametrize("kind", list(RECEIVED_MESSAGES))
def test_received_reads_what_the_sdk_properties_give(
    kind: str, annotations: dict[bytes, Any] | None
) -> None:
    event = _as_received(
        message_annotations=annotations,
        application_properties={b"source": "aml", "n": 3},
        **RECEIVED_MESSAGES[kind],
    )
    received = _received("2", event)
    assert received.partition == "2"
    assert received.body == body_bytes(event)
    assert received.sequence_number == (event.sequence_number or 0)
    assert received.offset == str(event.offset)
    data = event.body_type is AmqpMessageBodyType.DATA
    assert (received.body_error is None) == data
    if not data:
        assert received.body_error == (
            f"not a data body: the message has an AMQP {event.body_type.value} body"
        )
    assert received.metadata() == (event.enqueued_time, {"source": "aml", "n": 3})


def test_received_data_body_is_its_sections_byte_for_byte() -> None:
    event = _as_received(message_annotations=_ANNOTATIONS, data=[b"\xff\x00", b"", b"tail"])
    received = _received("0", event)
    assert received.body == b"\xff\x00tail"
    assert (received.sequence_number, received.offset) == (41, "8192")
