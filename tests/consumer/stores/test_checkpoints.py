"""SqliteCheckpointStore: claims, checkpoints, races, and the unmodified SDK on the emulator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient, PartitionContext

from consumer.config import EventHubConfig
from consumer.stores.checkpoints import SqliteCheckpointStore, checkpoint_scope
from consumer.stores.ledger import SqliteLedger
from emulator import Emulator, HubSpec
from tests.support import ROOT
from tests.support.clock import FakeClock
from tests.support.emulator import send

NS, HUB, GROUP = "ns.servicebus.windows.net", "hub", "$Default"


def ownership(partition_id: str, owner_id: str, etag: str | None = None) -> dict[str, Any]:
    """An ownership claim as the SDK builds it."""
    claim: dict[str, Any] = {
        "fully_qualified_namespace": NS,
        "eventhub_name": HUB,
        "consumer_group": GROUP,
        "partition_id": partition_id,
        "owner_id": owner_id,
    }
    if etag is not None:
        claim["etag"] = etag
    return claim


def checkpoint(partition_id: str, offset: str, sequence_number: int) -> dict[str, Any]:
    """A checkpoint as ``PartitionContext.update_checkpoint`` builds it."""
    return {
        "fully_qualified_namespace": NS,
        "eventhub_name": HUB,
        "consumer_group": GROUP,
        "partition_id": partition_id,
        "offset": offset,
        "sequence_number": sequence_number,
    }


KEY = "SharedAccessKeyName=k;SharedAccessKey=c2VjcmV0"


@pytest.mark.parametrize(
    ("connection_string", "name", "scope"),
    [
        (f"Endpoint=sb://Ns.servicebus.windows.net/;{KEY};EntityPath=Hub", "",
         ("Ns.servicebus.windows.net", "Hub")),
        (f"endpoint=sb://127.0.0.1:5672;{KEY};entitypath=hub;UseDevelopmentEmulator=true", "",
         ("127.0.0.1:5672", "hub")),
        (f"Endpoint=sb://ns/;{KEY}", "named", ("ns", "named")),
    ],
)  # fmt: skip
def test_the_scope_of_a_connection_string_is_the_sdk_clients(
    connection_string: str, name: str, scope: tuple[str, str]
) -> None:
    """Namespace (host and port) and hub of a connection string, keys in any case, as the
    SDK's own client reads them."""
    config = EventHubConfig(name=name, connection_string=connection_string)
    assert checkpoint_scope(config) == scope
    client = EventHubConsumerClient.from_connection_string(
        connection_string, "$Default", eventhub_name=name or None
    )
    assert (client._address.hostname, client.eventhub_name) == scope


def test_configured_names_win_and_a_malformed_string_says_nothing() -> None:
    named = EventHubConfig(
        name="hub", fully_qualified_namespace="ns.x", connection_string="Endpoint=sb://y/;a=b"
    )
    assert checkpoint_scope(named) == ("ns.x", "hub")
    assert checkpoint_scope(EventHubConfig(name="", connection_string="nonsense")) == ("", "")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteCheckpointStore]:
    """A store on a fresh file, closed after the test."""
    async with SqliteCheckpointStore(tmp_path / "checkpoints.db") as opened:
        yield opened


# --- claims ---------------------------------------------------------------------------------


async def test_first_claim_creates_the_row_with_etag_and_timestamp(tmp_path: Path) -> None:
    """A claim without etag on a new partition wins and gets an etag and the clock's time."""
    clock = FakeClock()
    async with SqliteCheckpointStore(tmp_path / "c.db", clock=clock) as store:
        [won] = await store.claim_ownership([ownership("0", "a")])
        assert won["etag"] and isinstance(won["etag"], str)
        assert won["last_modified_time"] == clock.now
        assert isinstance(won["last_modified_time"], float)
        assert await store.list_ownership(NS, HUB, GROUP) == [won]


async def test_claim_does_not_modify_the_callers_dicts(store: SqliteCheckpointStore) -> None:
    """The returned ownerships are copies; the claims passed in stay as they were."""
    claim = ownership("0", "a")
    [won] = await store.claim_ownership([claim])
    assert claim == ownership("0", "a")
    assert won is not claim


async def test_renewal_with_current_etag_wins_and_changes_the_etag(tmp_path: Path) -> None:
    """Claiming with the stored etag succeeds and yields a new etag and timestamp."""
    clock = FakeClock()
    async with SqliteCheckpointStore(tmp_path / "c.db", clock=clock) as store:
        [first] = await store.claim_ownership([ownership("0", "a")])
        clock.now += 5
        [second] = await store.claim_ownership([ownership("0", "b", first["etag"])])
        assert second["etag"] != first["etag"]
        assert second["last_modified_time"] == clock.now
        [listed] = await store.list_ownership(NS, HUB, GROUP)
        assert (listed["owner_id"], listed["etag"]) == ("b", second["etag"])


async def test_stale_etag_is_rejected(store: SqliteCheckpointStore) -> None:
    """A claim carrying an etag that was since replaced is not claimed and changes nothing."""
    [first] = await store.claim_ownership([ownership("0", "a")])
    [renewed] = await store.claim_ownership([ownership("0", "a", first["etag"])])
    assert await store.claim_ownership([ownership("0", "b", first["etag"])]) == []
    [listed] = await store.list_ownership(NS, HUB, GROUP)
    assert (listed["owner_id"], listed["etag"]) == ("a", renewed["etag"])


async def test_etag_for_a_missing_row_is_rejected(store: SqliteCheckpointStore) -> None:
    """A claim with an etag for a partition nobody has claimed yet is not claimed."""
    assert await store.claim_ownership([ownership("0", "a", "made-up")]) == []
    assert await store.list_ownership(NS, HUB, GROUP) == []


async def test_missing_etag_for_an_existing_row_is_rejected(store: SqliteCheckpointStore) -> None:
    """A claim without etag on a partition that already has an ownership row is not claimed."""
    [first] = await store.claim_ownership([ownership("0", "a")])
    assert await store.claim_ownership([ownership("0", "b")]) == []
    assert await store.claim_ownership([ownership("0", "b", "")]) == []
    assert await store.list_ownership(NS, HUB, GROUP) == [first]


async def test_each_claim_in_a_list_is_judged_on_its_own(store: SqliteCheckpointStore) -> None:
    """Of several claims in one call, only the winners are returned."""
    [zero] = await store.claim_ownership([ownership("0", "a")])
    won = await store.claim_ownership(
        [ownership("0", "b", "stale"), ownership("1", "b"), ownership("2", "b", "none")]
    )
    assert [w["partition_id"] for w in won] == ["1"]
    assert await store.claim_ownership([]) == []
    listed = await store.list_ownership(NS, HUB, GROUP)
    assert {o["partition_id"]: o["owner_id"] for o in listed} == {"0": "a", "1": "b"}
    assert zero in listed


async def test_release_keeps_the_row_with_an_empty_owner(store: SqliteCheckpointStore) -> None:
    """The SDK's release (owner_id "" with the current etag) leaves a claimable row behind."""
    [held] = await store.claim_ownership([ownership("0", "a")])
    [released] = await store.claim_ownership([{**held, "owner_id": ""}])
    [listed] = await store.list_ownership(NS, HUB, GROUP)
    assert listed["owner_id"] == ""
    assert listed["etag"] == released["etag"]
    [taken] = await store.claim_ownership([{**listed, "owner_id": "b"}])
    assert taken["owner_id"] == "b"


async def test_keys_ignore_case_like_the_blob_store(store: SqliteCheckpointStore) -> None:
    """Namespace, hub and group match case-insensitively; listings echo the caller's spelling."""
    await store.claim_ownership([ownership("0", "a")])
    await store.update_checkpoint(checkpoint("0", "10", 1))
    [listed] = await store.list_ownership(NS.upper(), "HUB", "$default")
    assert listed["fully_qualified_namespace"] == NS.upper()
    assert (listed["eventhub_name"], listed["consumer_group"]) == ("HUB", "$default")
    [cp] = await store.list_checkpoints(NS.upper(), "Hub", "$DEFAULT")
    assert (cp["eventhub_name"], cp["offset"]) == ("Hub", "10")


async def test_groups_hubs_and_namespaces_are_separate(store: SqliteCheckpointStore) -> None:
    """Records of one consumer group are invisible to another group, hub or namespace."""
    await store.claim_ownership([ownership("0", "a")])
    await store.update_checkpoint(checkpoint("0", "10", 1))
    for scope in ((NS, HUB, "audit"), (NS, "other", GROUP), ("other.ns", HUB, GROUP)):
        assert await store.list_ownership(*scope) == []
        assert await store.list_checkpoints(*scope) == []


# --- checkpoints and the file ---------------------------------------------------------------


async def test_checkpoints_round_trip_and_last_write_wins(tmp_path: Path) -> None:
    """Checkpoints come back as str offset and int sequence number with the clock's time when
    written, the latest one per partition."""
    path = tmp_path / "c.db"
    clock = FakeClock()
    async with SqliteCheckpointStore(path, clock=clock) as store:
        await store.update_checkpoint(checkpoint("0", "100", 4))
        clock.now += 3
        await store.update_checkpoint(checkpoint("0", "200", 5))
        await store.update_checkpoint({**checkpoint("1", "", 0), "offset": 7})
        clock.now += 3
    async with SqliteCheckpointStore(path) as reopened:
        listed = await reopened.list_checkpoints(NS, HUB, GROUP)
    written = clock.now - 3
    assert listed == [
        {**checkpoint("0", "200", 5), "last_modified_time": written},
        {**checkpoint("1", "7", 0), "last_modified_time": written},
    ]


async def test_a_file_from_before_checkpoint_times_gains_them(tmp_path: Path) -> None:
    """A file whose checkpoint table has no time column gets one; old rows list a time of
    None, rows written since have theirs."""
    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "CREATE TABLE checkpoint (namespace TEXT NOT NULL, eventhub TEXT NOT NULL,"
            " consumer_group TEXT NOT NULL, partition_id TEXT NOT NULL,"
            " event_offset TEXT NOT NULL, sequence_number INTEGER NOT NULL,"
            " PRIMARY KEY (namespace, eventhub, consumer_group, partition_id)) WITHOUT ROWID"
        )
        conn.execute(
            "INSERT INTO checkpoint VALUES (?, ?, ?, '0', '10', 1)", (NS, HUB, GROUP.lower())
        )
    clock = FakeClock()
    async with SqliteCheckpointStore(path, clock=clock) as store:
        await store.update_checkpoint(checkpoint("1", "20", 2))
        listed = await store.list_checkpoints(NS, HUB, GROUP)
    assert [c["last_modified_time"] for c in listed] == [None, clock.now]


async def test_file_and_folder_are_created_in_wal_mode(tmp_path: Path) -> None:
    """Entering creates missing folders and the database file, journaled with WAL (the
    constructor does no I/O: the file is opened on the store's thread)."""
    path = tmp_path / "new" / "deeper" / "checkpoints.db"
    store = SqliteCheckpointStore(str(path))
    assert not path.exists()
    async with store:
        assert path.is_file()
        with contextlib.closing(sqlite3.connect(path)) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def _opened(kind: str, path: Path) -> contextlib.AbstractAsyncContextManager[object]:
    if kind == "checkpoints":
        return SqliteCheckpointStore(path)
    return SqliteLedger(path, owner="a", lease_s=1, expire_after_s=1)


@pytest.mark.parametrize("kind", ["checkpoints", "ledger"])
async def test_opening_waits_for_a_write_lock_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Another process holds the file's write lock while a store opens it: the store waits
    on its own thread, and the event loop runs on meanwhile (here, the timer that lets the
    lock go; were the open on the loop, that timer could not fire before the busy timeout)."""
    monkeypatch.setattr("consumer.stores.sqlite.BUSY_TIMEOUT_S", 5.0)
    path = tmp_path / "store.db"
    async with _opened(kind, path):
        pass  # the file exists, in WAL mode: opening it again takes the write lock only
    loop = asyncio.get_running_loop()
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        loop.call_later(0.3, other.execute, "ROLLBACK")
        started = loop.time()
        async with _opened(kind, path):
            waited_s = loop.time() - started
    assert 0.3 <= waited_s < 5.0


async def test_closed_store_refuses_work_and_close_is_idempotent(tmp_path: Path) -> None:
    """After close() operations raise sqlite3.ProgrammingError; closing again is harmless."""
    store = SqliteCheckpointStore(tmp_path / "c.db")
    await store.close()
    await store.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        await store.list_ownership(NS, HUB, GROUP)


@contextlib.asynccontextmanager
async def store_busy(store: SqliteCheckpointStore) -> AsyncIterator[None]:
    """Keep the store's thread busy until the block ends: what is asked meanwhile waits."""
    release, busy = threading.Event(), threading.Event()

    def hold(_: sqlite3.Connection) -> None:
        busy.set()
        release.wait(10)

    held = asyncio.create_task(store._run(hold))
    await asyncio.to_thread(busy.wait, 10)
    try:
        yield
    finally:
        release.set()
        await held


async def test_waiting_checkpoints_are_coalesced_the_latest_per_partition_wins(
    tmp_path: Path,
) -> None:
    """Checkpoints asked while the store is busy are written together: per partition the
    last one asked, and every caller returns once it is written."""
    async with SqliteCheckpointStore(tmp_path / "c.db") as store:
        async with store_busy(store):
            writes = [
                asyncio.create_task(store.update_checkpoint(checkpoint(p, str(n), n)))
                for n, p in enumerate(["0", "1", "0", "2", "1", "0"])
            ]
            await asyncio.sleep(0.05)
            assert not any(write.done() for write in writes)
        await asyncio.gather(*writes)
        listed = await store.list_checkpoints(NS, HUB, GROUP)
    assert [(c["partition_id"], c["sequence_number"]) for c in listed] == [
        ("0", 5), ("1", 4), ("2", 3),
    ]  # fmt: skip


async def test_a_failed_coalesced_write_fails_each_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("consumer.stores.sqlite.BUSY_TIMEOUT_S", 0.2)
    path = tmp_path / "c.db"
    async with SqliteCheckpointStore(path) as store:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            async with store_busy(store):
                writes = [
                    asyncio.create_task(store.update_checkpoint(checkpoint(p, "1", 1)))
                    for p in ["0", "0", "1"]
                ]
            results = await asyncio.gather(*writes, return_exceptions=True)
            other.execute("ROLLBACK")
        assert all(isinstance(r, sqlite3.OperationalError) for r in results), results
        await store.update_checkpoint(checkpoint("0", "2", 2))  # the store goes on
        listed = await store.list_checkpoints(NS, HUB, GROUP)
    assert [(c["partition_id"], c["sequence_number"]) for c in listed] == [("0", 2)]


async def test_a_caller_that_stops_waiting_leaves_the_write_to_the_others(
    tmp_path: Path,
) -> None:
    """A deadline that cancels one caller's wait does not undo the write nor fail the rest."""
    async with SqliteCheckpointStore(tmp_path / "c.db") as store:
        async with store_busy(store):
            first = asyncio.create_task(store.update_checkpoint(checkpoint("0", "1", 1)))
            second = asyncio.create_task(store.update_checkpoint(checkpoint("0", "2", 2)))
            await asyncio.sleep(0.05)
            first.cancel()
        await second
        assert first.cancelled()
        listed = await store.list_checkpoints(NS, HUB, GROUP)
    assert [c["sequence_number"] for c in listed] == [2]


async def test_close_writes_what_was_asked_before_it_and_refuses_the_rest(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    store = SqliteCheckpointStore(path)
    async with store_busy(store):
        write = asyncio.create_task(store.update_checkpoint(checkpoint("0", "9", 9)))
        await asyncio.sleep(0)
        closing = asyncio.create_task(store.close())
        await asyncio.sleep(0.05)
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            await store.update_checkpoint(checkpoint("1", "1", 1))
    await asyncio.gather(write, closing)
    async with SqliteCheckpointStore(path) as reopened:
        listed = await reopened.list_checkpoints(NS, HUB, GROUP)
    assert [(c["partition_id"], c["sequence_number"]) for c in listed] == [("0", 9)]


async def test_a_blocked_claim_raises_after_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim blocked on another writer past the busy timeout raises (the SDK retries it)."""
    monkeypatch.setattr("consumer.stores.sqlite.BUSY_TIMEOUT_S", 0.2)
    path = tmp_path / "c.db"
    async with SqliteCheckpointStore(path) as store:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                await store.claim_ownership([ownership("0", "a")])
            other.execute("ROLLBACK")
        assert len(await store.claim_ownership([ownership("0", "a")])) == 1


# --- races ----------------------------------------------------------------------------------


async def test_two_stores_on_one_file_race_and_exactly_one_wins(tmp_path: Path) -> None:
    """Two stores on one file racing (new claim, then same-etag steal): exactly one wins each."""
    path = tmp_path / "c.db"
    async with SqliteCheckpointStore(path) as a, SqliteCheckpointStore(path) as b:
        for round_ in range(20):
            pid = str(round_)
            won_a, won_b = await asyncio.gather(
                a.claim_ownership([ownership(pid, "a")]), b.claim_ownership([ownership(pid, "b")])
            )
            assert len(won_a) + len(won_b) == 1
            listed = await b.list_ownership(NS, HUB, GROUP)
            etag = next(o["etag"] for o in listed if o["partition_id"] == pid)
            steal_a, steal_b = await asyncio.gather(
                a.claim_ownership([ownership(pid, "a", etag)]),
                b.claim_ownership([ownership(pid, "b", etag)]),
            )
            assert len(steal_a) + len(steal_b) == 1


RACER = textwrap.dedent(
    """
    import asyncio, json, pathlib, sys, time
    from consumer.stores.checkpoints import SqliteCheckpointStore

    async def main(path, owner, go):
        async with SqliteCheckpointStore(path) as store:
            print("ready", flush=True)
            while not pathlib.Path(go).exists():
                time.sleep(0.005)
            won = []
            for i in range(64):
                claim = {"fully_qualified_namespace": "ns", "eventhub_name": "hub",
                         "consumer_group": "$Default", "partition_id": str(i), "owner_id": owner}
                won += await store.claim_ownership([claim])
            print(json.dumps([w["partition_id"] for w in won]), flush=True)

    asyncio.run(main(*sys.argv[1:]))
    """
)


async def test_processes_racing_on_one_file_win_each_partition_once(tmp_path: Path) -> None:
    """Four OS processes claiming the same 64 partitions at once: each has exactly one winner."""
    path, go = tmp_path / "shared.db", tmp_path / "go"
    racers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", RACER, str(path), f"owner-{i}", str(go),
            cwd=ROOT, stdout=subprocess.PIPE,
        )
        for i in range(4)
    ]  # fmt: skip
    for racer in racers:
        assert racer.stdout is not None
        assert await asyncio.wait_for(racer.stdout.readline(), 20) == b"ready\n"
    go.touch()
    outputs = [await asyncio.wait_for(racer.communicate(), 20) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0, 0, 0]
    won = [pid for stdout, _ in outputs for pid in json.loads(stdout)]
    assert sorted(won, key=int) == [str(i) for i in range(64)]
    async with SqliteCheckpointStore(path) as store:
        listed = await store.list_ownership("ns", "hub", "$Default")
    owners = {o["partition_id"]: o["owner_id"] for o in listed}
    for racer_id, (stdout, _) in enumerate(outputs):
        assert all(owners[pid] == f"owner-{racer_id}" for pid in json.loads(stdout))


# --- the unmodified SDK on the emulator -----------------------------------------------------


@dataclass(eq=False)
class Member:
    """One load-balanced consumer client with its own store on the shared file."""

    client: EventHubConsumerClient
    store: SqliteCheckpointStore
    seen: list[tuple[str, int]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @classmethod
    def start(cls, connection_string: str, path: Path) -> Member:
        """Start receiving from the whole hub, checkpointing every event."""
        store = SqliteCheckpointStore(path)
        client = EventHubConsumerClient.from_connection_string(
            connection_string,
            "$Default",
            checkpoint_store=store,
            load_balancing_interval=1,
            partition_ownership_expiration_interval=4,
        )
        member = cls(client, store)

        async def on_event(context: PartitionContext, event: EventData | None) -> None:
            if event is not None:
                member.seen.append((context.partition_id, int(str(event.sequence_number))))
                await context.update_checkpoint(event)

        member.task = asyncio.create_task(client.receive(on_event, starting_position="-1"))
        return member

    async def stop(self) -> None:
        """Close the client (releasing its partitions), end its task, close its store."""
        await self.client.close()
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.store.close()


async def wait_until(predicate: Callable[[], bool], timeout_s: float) -> None:
    """Poll ``predicate()`` until it is true; fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def owner_counts(path: Path, emulator: Emulator) -> list[int]:
    """How many partitions each active owner holds, smallest first."""
    async with SqliteCheckpointStore(path) as store:
        listed = await store.list_ownership(f"127.0.0.1:{emulator.port}", "hub", "$Default")
    return sorted(Counter(o["owner_id"] for o in listed if o["owner_id"]).values())


async def send_each(connection_string: str, count: int, prefix: str = "") -> None:
    """Send ``count`` events to each of partitions 0-3 over one producer connection."""
    async with EventHubProducerClient.from_connection_string(connection_string) as producer:
        for pid in "0123":
            batch = await producer.create_batch(partition_id=pid)
            for i in range(count):
                batch.add(EventData(f"{pid}-{prefix}{i}"))
            await producer.send_batch(batch)


def keys(members: list[Member]) -> set[tuple[str, int]]:
    """Every (partition, sequence number) any member received."""
    return {key for member in members for key in member.seen}


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """An in-memory emulator serving ``hub`` with four partitions."""
    async with Emulator([HubSpec("hub", 4)]) as running:
        yield running


async def test_sdk_resumes_from_sqlite_checkpoints_after_restart(
    emulator: Emulator, tmp_path: Path
) -> None:
    """A restarted consumer (new client, new store on the file) resumes without re-reading."""
    cs, path = emulator.connection_string("hub"), tmp_path / "state" / "checkpoints.db"
    await send_each(cs, 5)
    first = Member.start(cs, path)
    try:
        await wait_until(lambda: len(first.seen) >= 20, 20)
        await asyncio.sleep(0.5)  # let the last checkpoints land
    finally:
        await first.stop()
    await send(cs, ["later-0", "later-1"], partition_id="1")
    second = Member.start(cs, path)
    try:
        await wait_until(lambda: len(second.seen) >= 2, 20)
        await asyncio.sleep(1.0)  # anything re-read would arrive by now
    finally:
        await second.stop()
    assert sorted(first.seen) == [(p, s) for p in "0123" for s in range(5)]
    assert second.seen == [("1", 5), ("1", 6)]


async def test_sdk_clients_split_partitions_and_one_takes_over(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Two clients split four partitions 2/2; when one closes the other takes all, losing none."""
    cs, path = emulator.connection_string("hub"), tmp_path / "checkpoints.db"
    a = Member.start(cs, path)
    b = Member.start(cs, path)
    try:
        for _ in range(100):
            if await owner_counts(path, emulator) == [2, 2]:
                break
            await asyncio.sleep(0.2)
        assert await owner_counts(path, emulator) == [2, 2]
        await send_each(cs, 10)
        await wait_until(lambda: len(keys([a, b])) >= 40, 20)
        assert {p for p, _ in a.seen}.isdisjoint({p for p, _ in b.seen})
        await a.stop()
        await send_each(cs, 5, "late-")
        await wait_until(lambda: len(keys([a, b])) >= 60, 20)
        assert keys([a, b]) == {(p, s) for p in "0123" for s in range(15)}
        assert {p for p, s in b.seen if s >= 10} == set("0123")
        assert await owner_counts(path, emulator) == [4]
    finally:
        await a.stop()
        await b.stop()
