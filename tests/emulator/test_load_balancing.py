"""Checkpointing and load balancing: BlobCheckpointStore on Azurite with the emulator."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient
from azure.eventhub.exceptions import ConnectionLostError
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

from emulator import Emulator, HubSpec
from tests.support.emulator import send, send_each


@dataclass(eq=False)
class Member:
    """One load-balanced consumer client and what it received."""

    client: EventHubConsumerClient
    seen: list[tuple[str, int]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @classmethod
    def start(cls, cs: str, store: BlobCheckpointStore) -> Member:
        """Start receiving from the whole hub, checkpointing every event."""
        client = EventHubConsumerClient.from_connection_string(
            cs,
            "$Default",
            checkpoint_store=store,
            load_balancing_interval=1,
            # Renewals come every second; a claim expires only when its owner has been silent
            # for ten, so a busy test machine does not make live owners look gone.
            partition_ownership_expiration_interval=10,
        )
        member = cls(client)

        async def on_event(context: object, event: EventData | None) -> None:
            if event is not None:
                partition: str = context.partition_id  # type: ignore[attr-defined]
                member.seen.append((partition, int(str(event.sequence_number))))
                await context.update_checkpoint(event)  # type: ignore[attr-defined]

        member.task = asyncio.create_task(client.receive(on_event, starting_position="-1"))
        return member

    async def stop(self) -> None:
        """Close the client (releasing its partitions) and end its receive task."""
        await self.client.close()
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def wait_until(predicate: object, timeout_s: float) -> None:
    """Poll ``predicate()`` until it is true; fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def owners(store: BlobCheckpointStore, emulator: Emulator) -> Counter[str]:
    """How many partitions each owner id holds right now."""
    listed = await store.list_ownership(f"127.0.0.1:{emulator.port}", "hub", "$Default")
    return Counter(o["owner_id"] for o in listed if o.get("owner_id"))


async def balanced(
    store: BlobCheckpointStore, emulator: Emulator, shares: list[int], timeout_s: float = 90
) -> None:
    """Wait until the owners hold ``shares`` partitions (sorted); fail with the last split."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    split = sorted((await owners(store, emulator)).values())
    while split != shares and loop.time() < deadline:
        await asyncio.sleep(0.2)
        split = sorted((await owners(store, emulator)).values())
    assert split == shares, f"partitions split {split} after {timeout_s} s, not {shares}"


def keys(members: list[Member]) -> set[tuple[str, int]]:
    """Every (partition, sequence number) any member received."""
    return {key for member in members for key in member.seen}


async def test_checkpoints_let_a_restarted_consumer_resume(
    emulator: Emulator, checkpoint_store: BlobCheckpointStore
) -> None:
    """After a restart, a consumer resumes from its checkpoints without re-reading events."""
    cs = emulator.connection_string("hub")
    await send_each(cs, {pid: [f"{pid}-{i}" for i in range(5)] for pid in "0123"})
    first = Member.start(cs, checkpoint_store)
    await wait_until(lambda: len(first.seen) >= 20, 30)
    await asyncio.sleep(0.5)  # let the last checkpoints land
    await first.stop()
    await send(cs, ["later-0", "later-1"], partition_id="1")
    second = Member.start(cs, checkpoint_store)
    await wait_until(lambda: len(second.seen) >= 2, 30)
    await asyncio.sleep(1.0)
    await second.stop()
    assert len(set(first.seen)) == 20
    assert second.seen == [("1", 5), ("1", 6)]


@pytest.mark.timeout(180)
async def test_two_consumers_split_partitions_and_take_over(
    emulator: Emulator, checkpoint_store: BlobCheckpointStore
) -> None:
    """Two clients in one group own two partitions each; when one closes the other takes all."""
    cs = emulator.connection_string("hub")
    a = Member.start(cs, checkpoint_store)
    b = Member.start(cs, checkpoint_store)
    try:
        await balanced(checkpoint_store, emulator, [2, 2])
        await send_each(cs, {pid: [f"{pid}-{i}" for i in range(10)] for pid in "0123"})
        await wait_until(lambda: len(keys([a, b])) >= 40, 30)
        assert {p for p, _ in a.seen}.isdisjoint({p for p, _ in b.seen})
        await a.stop()
        await send_each(cs, {pid: [f"{pid}-late-{i}" for i in range(5)] for pid in "0123"})
        await wait_until(lambda: len(keys([a, b])) >= 60, 40)
        assert keys([a, b]) == {(p, s) for p in "0123" for s in range(15)}
        assert {p for p, s in b.seen if s >= 10} == set("0123")
    finally:
        await a.stop()
        await b.stop()


@pytest.mark.timeout(180)
async def test_three_consumers_share_four_partitions(
    emulator: Emulator, checkpoint_store: BlobCheckpointStore
) -> None:
    """Three clients split four partitions 2/1/1 and lose no event when one leaves."""
    cs = emulator.connection_string("hub")
    members = [Member.start(cs, checkpoint_store) for _ in range(3)]
    try:
        await balanced(checkpoint_store, emulator, [1, 1, 2])
        await send_each(cs, {pid: [f"{pid}-{i}" for i in range(5)] for pid in "0123"})
        await wait_until(lambda: len(keys(members)) >= 20, 30)
        await members[0].stop()
        await send_each(cs, {pid: [f"{pid}-late-{i}" for i in range(5)] for pid in "0123"})
        await wait_until(lambda: len(keys(members)) >= 40, 40)
        assert keys(members) == {(p, s) for p in "0123" for s in range(10)}
    finally:
        for member in members:
            await member.stop()


async def test_equal_epoch_steals_the_partition(emulator: Emulator) -> None:
    """A second receiver with the same owner level takes the partition; the first is told why."""
    cs = emulator.connection_string("solo")
    await send(cs, ["a"])
    errors: list[Exception] = []
    first = EventHubConsumerClient.from_connection_string(cs, "$Default")
    second = EventHubConsumerClient.from_connection_string(cs, "$Default")
    got_second: list[str] = []

    async def on_error(_: object, error: Exception) -> None:
        errors.append(error)

    async def on_event_second(_: object, event: EventData | None) -> None:
        if event is not None:
            got_second.append(event.body_as_str())

    async def ignore(_: object, __: EventData | None) -> None:
        return None

    t1 = asyncio.create_task(
        first.receive(
            ignore, partition_id="0", owner_level=0, on_error=on_error, starting_position="-1"
        )
    )
    await asyncio.sleep(2.0)
    t2 = asyncio.create_task(
        second.receive(on_event_second, partition_id="0", owner_level=0, starting_position="-1")
    )
    await wait_until(lambda: got_second == ["a"] and errors, 20)
    for client, task in ((first, t1), (second, t2)):
        await client.close()
        task.cancel()
    assert isinstance(errors[0], ConnectionLostError)
    assert "epoch" in str(errors[0])


async def test_checkpoints_stay_valid_across_a_durable_restart(
    checkpoint_store: BlobCheckpointStore, tmp_path: Path
) -> None:
    """A durable emulator restarted on the same port resumes consumers at their checkpoints."""
    hubs = [HubSpec("hub", 4)]
    async with Emulator(hubs, data_dir=tmp_path) as first_run:
        port = first_run.port
        cs = first_run.connection_string("hub")
        await send_each(cs, {pid: [f"{pid}-{i}" for i in range(3)] for pid in "0123"})
        before = Member.start(cs, checkpoint_store)
        await wait_until(lambda: len(before.seen) >= 12, 30)
        await asyncio.sleep(0.5)  # let the last checkpoints land
        await before.stop()
    async with Emulator(hubs, port=port, data_dir=tmp_path) as second_run:
        await send(cs, ["after-restart"], partition_id="3")
        after = Member.start(cs, checkpoint_store)
        await wait_until(lambda: len(after.seen) >= 1, 30)
        await asyncio.sleep(1.0)
        await after.stop()
        assert second_run.broker.hubs["hub"].partitions[3].log.end_sequence == 4
    assert after.seen == [("3", 3)]
