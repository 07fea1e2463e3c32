"""Connection-level behaviour: SAS verification, heartbeats and the server's idle timeout."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.exceptions import AuthenticationError, EventHubError

from emulator import Emulator, HubSpec, SasKey
from emulator.amqp import (
    AMQP_HEADER,
    Accepted,
    Attach,
    Disposition,
    Message,
    Open,
    Rejected,
    decode_message,
    encode_frame,
    encode_message,
    encode_performative,
)
from tests.support.emulator import receive, send

from .raw import RawClient


async def test_wrong_sas_key_is_rejected_when_verification_is_on() -> None:
    """With verify_sas, a token signed with the right key works and a wrong key fails."""
    key = SasKey("sender", "right-key")
    async with Emulator([HubSpec("hub", 1)], sas_key=key, verify_sas=True) as emulator:
        good = emulator.connection_string("hub")
        await send(good, ["signed"])
        bad = good.replace("right-key", "wrong-key")
        async with EventHubProducerClient.from_connection_string(bad, retry_total=0) as producer:
            with pytest.raises(AuthenticationError):
                await producer.get_eventhub_properties()
            with pytest.raises(EventHubError):
                await producer.send_event(EventData("forged"))
        assert [e.body_as_str() for e in await receive(good, 1, starting_position="-1")] == [
            "signed"
        ]


async def test_heartbeats_keep_a_quiet_connection_open(emulator: Emulator) -> None:
    """A consumer with a 1 s idle timeout stays on one connection through 4 quiet seconds."""
    cs = emulator.connection_string("solo")
    client = EventHubConsumerClient.from_connection_string(cs, "$Default", idle_timeout=1)
    bodies: list[str] = []

    async def on_event(_: object, event: EventData | None) -> None:
        if event is not None:
            bodies.append(event.body_as_str())

    task = asyncio.create_task(client.receive(on_event, partition_id="0"))
    try:
        await asyncio.sleep(1.5)  # the receiver is attached
        accepted = emulator.broker.connections_accepted
        await asyncio.sleep(4)
        assert emulator.broker.connections_accepted == accepted
        await send(cs, ["after the quiet"])
        for _ in range(100):
            if bodies:
                break
            await asyncio.sleep(0.05)
    finally:
        await client.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert bodies == ["after the quiet"]


async def test_server_closes_connections_silent_past_its_idle_timeout() -> None:
    """A peer that opens and then sends nothing is closed after the advertised idle timeout."""
    async with Emulator([HubSpec("hub", 1)], idle_timeout_s=0.5) as emulator:
        reader, writer = await asyncio.open_connection("127.0.0.1", emulator.port)
        writer.write(AMQP_HEADER + encode_frame(0, encode_performative(Open("silent"))))
        await writer.drain()
        received = await asyncio.wait_for(reader.read(), 5)  # returns at EOF
        writer.close()
    assert received.startswith(AMQP_HEADER)
    assert b"amqp:resource-limit-exceeded" in received


async def test_oversized_delivery_is_rejected_by_the_server(emulator: Emulator) -> None:
    """A delivery over 1 MiB, sent in several frames, is rejected and nothing is stored."""
    async with RawClient(emulator.port) as client:
        client.attach_sender("amqps://127.0.0.1/solo")
        await client.next_of(Attach)
        message = encode_message(Message(body="x" * (1024 * 1024 + 100)))
        client.transfer(message, 256 * 1024)
        outcome = await client.next_of(Disposition)
    assert isinstance(outcome, Disposition) and isinstance(outcome.state, Rejected)
    assert "amqp:link:message-size-exceeded" in str(outcome.state.error)
    assert len(emulator.broker.hubs["solo"].partitions[0].log) == 0


async def test_multi_frame_delivery_under_the_limit_is_stored(emulator: Emulator) -> None:
    """A delivery split over several frames is reassembled and accepted."""
    async with RawClient(emulator.port) as client:
        client.attach_sender("amqps://127.0.0.1/solo/Partitions/0")
        await client.next_of(Attach)
        client.transfer(encode_message(Message(body="y" * 300_000)), 64 * 1024)
        outcome = await client.next_of(Disposition)
    assert isinstance(outcome, Disposition) and outcome.state == Accepted()
    (stored,) = emulator.broker.hubs["solo"].partitions[0].log.messages(0, 10)
    assert decode_message(stored).body == "y" * 300_000


async def test_large_delivery_is_split_to_the_clients_frame_size(emulator: Emulator) -> None:
    """An event bigger than the client's max-frame-size arrives in several frames, intact."""
    body = "z" * 20_000
    await send(emulator.connection_string("solo"), [body])
    async with RawClient(emulator.port, max_frame_size=4096) as client:
        client.attach_receiver("amqps://127.0.0.1/solo/ConsumerGroups/$Default/Partitions/0", 10)
        frames, payload = await client.receive_delivery()
    assert len(frames) >= 5 and all(f.more for f in frames[:-1]) and not frames[-1].more
    assert frames[0].delivery_id is not None and frames[0].settled
    assert decode_message(payload).body == body.encode()
