"""Fault injection through the API: the SDK sees failures a real service could produce."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time

import pytest
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.exceptions import EventHubError

from emulator import Emulator
from tests.support.emulator import send


class Reader:
    """A consumer client on one partition that records bodies and errors."""

    def __init__(self, cs: str, partition_id: str = "0") -> None:
        self.client = EventHubConsumerClient.from_connection_string(cs, "$Default")
        self.bodies: list[str] = []
        self.errors: list[Exception] = []
        self.task = asyncio.create_task(
            self.client.receive(
                self._on_event,
                partition_id=partition_id,
                starting_position="-1",
                on_error=self._on_error,
            )
        )

    async def _on_event(self, _: object, event: EventData | None) -> None:
        if event is not None:
            self.bodies.append(event.body_as_str())

    async def _on_error(self, _: object, error: Exception) -> None:
        self.errors.append(error)

    async def wait_for(self, count: int, timeout_s: float = 20) -> None:
        """Wait until ``count`` bodies arrived."""
        deadline = time.monotonic() + timeout_s
        while len(self.bodies) < count:
            assert time.monotonic() < deadline, f"only {len(self.bodies)} of {count} arrived"
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        """Close the client and end its task."""
        await self.client.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


# The SDK does not close its socket object after the peer aborts the connection; Python
# reports that when the socket is collected. That is the client's leak, not the emulator's.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_dropped_connections_are_reestablished(emulator: Emulator) -> None:
    """After every connection is dropped, the consumer reconnects and receives new events."""
    cs = emulator.connection_string("solo")
    await send(cs, ["before"])
    reader = Reader(cs)
    try:
        await reader.wait_for(1)
        assert emulator.faults.drop_connections() >= 1
        await send(cs, ["after"])
        await reader.wait_for(2)
    finally:
        await reader.close()
        gc.collect()  # collect the SDK's dropped socket while the warning filter applies
    assert reader.bodies[-1] == "after"


async def test_delayed_responses_slow_management_calls(emulator: Emulator) -> None:
    """With a response delay, a management call takes at least that long."""
    emulator.faults.delay_responses(1.0)
    async with EventHubProducerClient.from_connection_string(
        emulator.connection_string("hub")
    ) as producer:
        started = time.monotonic()
        assert await producer.get_partition_ids() == ["0", "1", "2", "3"]
        # Two delayed responses: the CBS token and the READ itself.
        assert time.monotonic() - started >= 2.0


async def test_refused_links_fail_with_the_chosen_condition(emulator: Emulator) -> None:
    """While links are refused a send fails with the injected condition; afterwards it works."""
    cs = emulator.connection_string("solo")
    emulator.faults.refuse_links(60, condition="com.microsoft:entity-disabled")
    async with EventHubProducerClient.from_connection_string(cs, retry_total=0) as producer:
        with pytest.raises(EventHubError, match="entity-disabled"):
            await producer.send_event(EventData("refused"))
    emulator.faults.reset()
    await send(cs, ["accepted"])
    async with EventHubProducerClient.from_connection_string(cs) as producer:
        props = await producer.get_partition_properties("0")
    assert props["last_enqueued_sequence_number"] == 0


async def test_detached_consumer_reports_a_stolen_link(emulator: Emulator) -> None:
    """Detaching a consumer with amqp:link:stolen surfaces to on_error at once."""
    cs = emulator.connection_string("solo")
    await send(cs, ["one"])
    reader = Reader(cs)
    try:
        await reader.wait_for(1)
        assert emulator.faults.detach_consumers("amqp:link:stolen", "taken", hub="solo") == 1
        for _ in range(100):
            if reader.errors:
                break
            await asyncio.sleep(0.05)
    finally:
        await reader.close()
    assert "taken" in str(reader.errors[0])


async def test_consumer_recovers_from_a_retryable_detach(emulator: Emulator) -> None:
    """A consumer detached with a retryable condition reattaches and keeps receiving."""
    cs = emulator.connection_string("solo")
    await send(cs, ["one"])
    reader = Reader(cs)
    try:
        await reader.wait_for(1)
        assert emulator.faults.detach_consumers("amqp:link:detach-forced") == 1
        await send(cs, ["two"])
        await reader.wait_for(2)
    finally:
        await reader.close()
    assert reader.bodies[:1] == ["one"] and reader.bodies[-1] == "two"
