"""Contract tests: the unmodified azure-eventhub SDK against the emulator (send, receive, info)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from azure.eventhub import EventData
from azure.eventhub import EventHubConsumerClient as SyncConsumer
from azure.eventhub import EventHubProducerClient as SyncProducer
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.exceptions import ConnectError, EventDataSendError, EventHubError

from emulator import Emulator
from tests.support.emulator import receive, send


async def test_batch_to_partition_is_read_back_in_order(emulator: Emulator) -> None:
    """A batch sent to one partition comes back in order, with consecutive sequence numbers."""
    cs = emulator.connection_string("hub")
    await send(cs, [f"event-{i}" for i in range(20)], partition_id="2")
    events = await receive(cs, 20, partition_id="2", starting_position="-1")
    assert [e.body_as_str() for e in events] == [f"event-{i}" for i in range(20)]
    assert [e.sequence_number for e in events] == list(range(20))
    offsets = [int(str(e.offset)) for e in events]
    assert offsets == sorted(offsets) and len(set(offsets)) == 20
    assert all(e.enqueued_time is not None for e in events)


async def test_single_events_and_round_robin_batches_reach_the_hub(emulator: Emulator) -> None:
    """send_event and batches without a partition are all stored and readable."""
    cs = emulator.connection_string("hub")
    async with EventHubProducerClient.from_connection_string(cs) as producer:
        await producer.send_event(EventData("single"))
        for n in range(3):
            batch = await producer.create_batch()
            batch.add(EventData(f"batch-{n}"))
            await producer.send_batch(batch)
    events = await receive(cs, 4, starting_position="-1")
    assert sorted(e.body_as_str() for e in events) == ["batch-0", "batch-1", "batch-2", "single"]


async def test_partition_key_keeps_events_together(emulator: Emulator) -> None:
    """Events sent with one partition key land in a single partition and carry the key."""
    cs = emulator.connection_string("hub")
    await send(cs, ["a", "b", "c"], partition_key="job-42")
    async with EventHubProducerClient.from_connection_string(cs) as producer:
        await producer.send_event(EventData("d"), partition_key="job-42")
    events = await receive(cs, 4, starting_position="-1", settle_s=0.5)
    assert [e.body_as_str() for e in events] == ["a", "b", "c", "d"]
    assert {e.partition_key for e in events} == {b"job-42"}


async def test_properties_survive_the_round_trip(emulator: Emulator) -> None:
    """Application properties and the body set by the producer are delivered unchanged."""
    cs = emulator.connection_string("solo")
    async with EventHubProducerClient.from_connection_string(cs) as producer:
        event = EventData(b'{"eventType": "ModelRegistered"}')
        event.properties = {"source": "aml", "attempt": 3}
        event.content_type = "application/json"
        await producer.send_event(event)
    (received,) = await receive(cs, 1, starting_position="-1")
    assert received.body_as_json() == {"eventType": "ModelRegistered"}
    assert received.properties == {b"source": b"aml", b"attempt": 3}
    assert received.content_type == "application/json"


async def test_sequence_number_and_offset_positions(emulator: Emulator) -> None:
    """Sequence-number and offset starting positions are exclusive unless told otherwise."""
    cs = emulator.connection_string("solo")
    await send(cs, [str(i) for i in range(5)])
    everything = await receive(cs, 5, starting_position="-1")
    offset_of_2 = everything[2].offset
    cases: list[tuple[object, bool, list[int]]] = [
        (2, False, [3, 4]),
        (2, True, [2, 3, 4]),
        (offset_of_2, False, [3, 4]),
        (offset_of_2, True, [2, 3, 4]),
    ]
    # Independent clients, read concurrently: the SDK's connection set-up is mostly waiting.
    results = await asyncio.gather(
        *(
            receive(
                cs,
                len(want),
                starting_position=pos,
                starting_position_inclusive=incl,
                settle_s=0.3,
            )
            for pos, incl, want in cases
        )
    )
    assert [e.sequence_number for e in everything] == [0, 1, 2, 3, 4]
    for (_, _, want), events in zip(cases, results, strict=True):
        assert [e.sequence_number for e in events] == want


async def test_enqueued_time_position(emulator: Emulator) -> None:
    """A datetime starting position skips events enqueued before it."""
    cs = emulator.connection_string("solo")
    await send(cs, ["old"])
    await asyncio.sleep(0.05)
    cut = dt.datetime.now(dt.UTC)
    await asyncio.sleep(0.05)
    await send(cs, ["new"])
    events = await receive(cs, 1, starting_position=cut, settle_s=0.3)
    assert [e.body_as_str() for e in events] == ["new"]


async def test_enqueued_time_of_an_event_is_inclusive_or_exclusive(emulator: Emulator) -> None:
    """Starting at an event's own enqueued time includes it only when inclusive."""
    cs = emulator.connection_string("solo")
    async with EventHubProducerClient.from_connection_string(cs) as producer:
        for body in ("a", "b", "c"):
            await producer.send_event(EventData(body))
            await asyncio.sleep(0.02)  # distinct enqueued times
    everything = await receive(cs, 3, starting_position="-1")
    at = everything[1].enqueued_time
    inclusive = await receive(
        cs, 2, starting_position=at, starting_position_inclusive=True, settle_s=0.3
    )
    exclusive = await receive(cs, 1, starting_position=at, settle_s=0.3)
    assert [e.body_as_str() for e in inclusive] == ["b", "c"]
    assert [e.body_as_str() for e in exclusive] == ["c"]


async def test_latest_reads_only_new_events(emulator: Emulator) -> None:
    """The default '@latest' position skips the backlog and delivers what is sent afterwards."""
    cs = emulator.connection_string("solo")
    await send(cs, ["backlog"])

    async def send_later() -> None:
        await asyncio.sleep(2.5)
        await send(cs, ["fresh"])

    sender = asyncio.create_task(send_later())
    events = await receive(cs, 1, starting_position="@latest", timeout_s=15)
    await sender
    assert [e.body_as_str() for e in events] == ["fresh"]


async def test_hub_and_partition_properties(emulator: Emulator) -> None:
    """get_eventhub_properties, get_partition_ids and get_partition_properties describe the hub."""
    cs = emulator.connection_string("hub")
    await send(cs, ["x", "y"], partition_id="1")
    async with EventHubConsumerClient.from_connection_string(cs, "$Default") as client:
        hub = await client.get_eventhub_properties()
        ids = await client.get_partition_ids()
        one = await client.get_partition_properties("1")
        empty = await client.get_partition_properties("3")
    assert hub["eventhub_name"] == "hub" and hub["partition_ids"] == ["0", "1", "2", "3"]
    assert ids == ["0", "1", "2", "3"]
    assert one["last_enqueued_sequence_number"] == 1 and not one["is_empty"]
    assert one["beginning_sequence_number"] == 0 and int(one["last_enqueued_offset"]) > 0
    assert empty["is_empty"] and empty["last_enqueued_sequence_number"] == -1


async def test_runtime_metrics_track_the_last_enqueued_event(emulator: Emulator) -> None:
    """With track_last_enqueued_event_properties the consumer sees the partition's tail."""
    cs = emulator.connection_string("solo")
    await send(cs, ["a", "b", "c"])
    client = EventHubConsumerClient.from_connection_string(cs, "$Default")
    seen: list[dict[str, object]] = []

    async def on_event(context: object, event: EventData | None) -> None:
        seen.append(context.last_enqueued_event_properties)  # type: ignore[attr-defined]

    task = asyncio.create_task(
        client.receive(on_event, starting_position="-1", track_last_enqueued_event_properties=True)
    )
    for _ in range(200):
        if len(seen) >= 3:
            break
        await asyncio.sleep(0.05)
    await client.close()
    task.cancel()
    assert seen and seen[-1]["sequence_number"] == 2


async def test_unknown_hub_is_not_found(emulator: Emulator) -> None:
    """Management calls on a hub the emulator does not serve fail with a ConnectError."""
    client = EventHubProducerClient.from_connection_string(
        emulator.connection_string("nope"), retry_total=0
    )
    async with client:
        with pytest.raises(ConnectError, match="could not be found"):
            await client.get_eventhub_properties()


async def test_unknown_partition_is_not_found(emulator: Emulator) -> None:
    """Partition properties and sends for a partition that does not exist fail."""
    cs = emulator.connection_string("hub")
    client = EventHubProducerClient.from_connection_string(cs, retry_total=0)
    async with client:
        with pytest.raises(ConnectError):
            await client.get_partition_properties("9")
        with pytest.raises(EventHubError):
            await client.send_event(EventData("x"), partition_id="9")


async def test_event_over_one_mebibyte_is_rejected(emulator: Emulator) -> None:
    """An event larger than 1 MiB is refused and nothing is stored."""
    cs = emulator.connection_string("solo")
    async with EventHubProducerClient.from_connection_string(cs, retry_total=0) as producer:
        with pytest.raises((EventHubError, ValueError)):
            await producer.send_event(EventData(b"x" * (1024 * 1024 + 10)))
        props = await producer.get_partition_properties("0")
    assert props["is_empty"]


async def test_event_just_under_the_limit_is_accepted_and_delivered(emulator: Emulator) -> None:
    """An event of almost 1 MiB is stored and delivered whole."""
    cs = emulator.connection_string("solo")
    body = bytes(range(256)) * 4000
    async with EventHubProducerClient.from_connection_string(cs) as producer:
        await producer.send_event(EventData(body))
    (event,) = await receive(cs, 1, starting_position="-1")
    assert event.body_as_str(encoding="latin-1").encode("latin-1") == body


EVENT_HUBS_MAX_MESSAGE = 1_048_576
"""The largest message Event Hubs (Standard tier) takes: 1 MiB of the AMQP-encoded message as
the client sent it (sections and all), not of the body alone."""
DATA_SECTION = 8
"""What the SDK's encoding of an event with only a body adds to a body over 255 bytes: the
data section's descriptor (0x00 0x53 0x75) and its vbin32 header (0xb0, four length bytes)."""


async def test_an_event_of_exactly_one_mebibyte_is_accepted_and_delivered(
    emulator: Emulator,
) -> None:
    """An event whose encoded message is exactly the limit is stored and delivered whole."""
    cs = emulator.connection_string("solo")
    body = bytes(range(256)) * 4096
    body = body[: EVENT_HUBS_MAX_MESSAGE - DATA_SECTION]
    async with EventHubProducerClient.from_connection_string(cs, retry_total=0) as producer:
        await producer.send_event(EventData(body))
    (event,) = await receive(cs, 1, starting_position="-1")
    assert event.body_as_str(encoding="latin-1").encode("latin-1") == body


async def test_an_event_one_byte_over_one_mebibyte_is_rejected_as_event_hubs_rejects_it(
    emulator: Emulator,
) -> None:
    """One byte more and the hub rejects the delivery with the service's condition and its
    words ("The received message (…size…1048577 bytes) exceeds the limit (1048576 bytes)
    currently allowed on the link."); nothing is stored. The SDK sends a single event
    without checking its size, so this is the hub's answer, not the client's."""
    cs = emulator.connection_string("solo")
    body = b"x" * (EVENT_HUBS_MAX_MESSAGE - DATA_SECTION + 1)
    async with EventHubProducerClient.from_connection_string(cs, retry_total=0) as producer:
        with pytest.raises(EventDataSendError) as caught:
            await producer.send_event(EventData(body))
        props = await producer.get_partition_properties("0")
    assert caught.value.error == "link:message-size-exceeded"
    assert "1048577 bytes" in str(caught.value)
    assert "exceeds the limit (1048576 bytes) currently allowed on the link" in str(caught.value)
    assert props["is_empty"]


async def test_a_batch_holds_exactly_one_mebibyte_and_not_a_byte_more(emulator: Emulator) -> None:
    """The SDK sizes batches by the limit the hub announces when the link attaches: a batch
    filled to exactly 1 MiB is accepted and delivered, and one byte more does not fit."""
    cs = emulator.connection_string("solo")
    # In a batch, the event's encoded message goes into a data section of the batch message.
    body = b"y" * (EVENT_HUBS_MAX_MESSAGE - 2 * DATA_SECTION)
    async with EventHubProducerClient.from_connection_string(cs, retry_total=0) as producer:
        batch = await producer.create_batch()
        batch.add(EventData(body))
        assert (batch.max_size_in_bytes, batch.size_in_bytes) == (EVENT_HUBS_MAX_MESSAGE,) * 2
        await producer.send_batch(batch)
        with pytest.raises(ValueError, match="size limit"):
            (await producer.create_batch()).add(EventData(body + b"y"))
    (event,) = await receive(cs, 1, starting_position="-1")
    assert event.body_as_str(encoding="latin-1").encode("latin-1") == body


async def test_sixth_reader_without_epoch_exceeds_the_quota(emulator: Emulator) -> None:
    """Five non-epoch readers may share a partition; a sixth is refused with the quota error."""
    cs = emulator.connection_string("solo")
    errors: list[Exception] = []
    clients = [
        EventHubConsumerClient.from_connection_string(cs, "$Default", retry_total=0)
        for _ in range(6)
    ]

    async def ignore(_: object, __: EventData | None) -> None:
        return None

    async def on_error(_: object, error: Exception) -> None:
        errors.append(error)

    tasks = [
        asyncio.create_task(client.receive(ignore, partition_id="0", on_error=on_error))
        for client in clients
    ]
    for _ in range(200):
        if errors:
            break
        await asyncio.sleep(0.05)
    for client in clients:
        await client.close()
    for task in tasks:
        task.cancel()
    assert errors and "maximum number of allowed receivers" in str(errors[0])
    assert len(emulator.broker.hubs["solo"].partitions[0].readers["$default"]) == 0


async def test_undeclared_consumer_group_is_not_found(emulator: Emulator) -> None:
    """Reading through a consumer group the hub does not declare fails; a declared one works."""
    cs = emulator.connection_string("hub")
    await send(cs, ["x"], partition_id="0")
    client = EventHubConsumerClient.from_connection_string(cs, "nosuchgroup", retry_total=0)
    errors: list[Exception] = []

    async def ignore(_: object, __: EventData | None) -> None:
        return None

    async def on_error(_: object, error: Exception) -> None:
        errors.append(error)

    task = asyncio.create_task(
        client.receive(ignore, partition_id="0", starting_position="-1", on_error=on_error)
    )
    for _ in range(200):
        if errors:
            break
        await asyncio.sleep(0.05)
    await client.close()
    task.cancel()
    assert errors and "could not be found" in str(errors[0])
    audit = await receive(
        cs, 1, partition_id="0", starting_position="-1", client_options={"consumer_group": "audit"}
    )
    assert [e.body_as_str() for e in audit] == ["x"]


async def test_sync_clients_send_and_receive(emulator: Emulator) -> None:
    """The synchronous producer and consumer work against the emulator too."""
    cs = emulator.connection_string("solo")

    def produce_and_consume() -> list[str]:
        with SyncProducer.from_connection_string(cs) as producer:
            batch = producer.create_batch()
            batch.add(EventData("sync"))
            producer.send_batch(batch)
        consumer = SyncConsumer.from_connection_string(cs, "$Default")
        bodies: list[str] = []

        def on_event(_: object, event: EventData | None) -> None:
            if event is not None:
                bodies.append(event.body_as_str())
                consumer.close()  # stops receive() in this thread

        with consumer:
            consumer.receive(on_event, partition_id="0", starting_position="-1")
        return bodies

    assert await asyncio.wait_for(asyncio.to_thread(produce_and_consume), 30) == ["sync"]
