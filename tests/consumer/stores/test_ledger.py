"""The idempotency ledger: one contract for the memory, SQLite and blob (Azurite) stores."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AzureNamedKeyCredential
from azure.storage.blob.aio import ContainerClient

from consumer.errors import ConsumerError, LedgerError
from consumer.stores.ledger import (
    BLOB_PREFIX,
    BlobLedger,
    Claim,
    Entry,
    Ledger,
    MemoryLedger,
    SqliteLedger,
    blob_name,
)
from tests.support.azurite import AZURITE_KEY, Azurite, azurite
from tests.support.clock import FakeClock
from tests.support.ports import free_port

# Azurite 3.37.0 (package-lock.json) speaks blob API versions up to this one; the SDK's
# default is newer, and Azurite refuses it.
AZURITE_API = "2026-06-06"
LEASE = 60.0
EXPIRE = 3600.0
KEY = "3f6c1a2e-0000-4000-8000-000000000001/notify-on-failure/0"


START = 1_700_000_000.0
"""When the fake clock starts: the time of a test's first reservation."""


Open = Callable[[str], Awaitable[Ledger]]
"""Opens a ledger for one owner on the test's shared store (entered; closed at the end)."""


@pytest.fixture(scope="module")
def ledger_azurite() -> Iterator[Azurite]:
    """Azurite's blob service, in memory, shared by this module's blob tests."""
    with azurite() as running:
        yield running


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture(params=["memory", "sqlite", "blob"])
async def open_ledger(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Open]:
    """Ledgers of any owner on one fresh store: a dict, a SQLite file or a blob container."""
    table: dict[str, Entry] = {}
    container = f"ledger-{uuid.uuid4().hex[:12]}"
    account: Azurite | None = None
    if request.param == "blob":
        account = request.getfixturevalue("ledger_azurite")

    async with contextlib.AsyncExitStack() as stack:

        async def make(owner: str) -> Ledger:
            ledger: Ledger
            if request.param == "memory":
                ledger = MemoryLedger(
                    owner=owner, lease_s=LEASE, expire_after_s=EXPIRE, clock=clock, table=table
                )
            elif request.param == "sqlite":
                ledger = SqliteLedger(
                    tmp_path / "state" / "ledger.sqlite3",
                    owner=owner, lease_s=LEASE, expire_after_s=EXPIRE, clock=clock,
                )  # fmt: skip
            else:
                assert account is not None
                ledger = BlobLedger.from_connection_string(
                    account.connection_string, container, owner=owner, lease_s=LEASE,
                    expire_after_s=EXPIRE, clock=clock, api_version=AZURITE_API,
                )  # fmt: skip
            return await stack.enter_async_context(ledger)

        yield make


# --- the contract, for every store ---------------------------------------------------------


async def test_a_done_key_answers_done_with_its_detail(open_ledger: Open) -> None:
    """reserve → mark_done → reserve gives "done" and the recorded detail, to any owner."""
    a, b = await open_ledger("a"), await open_ledger("b")
    assert await a.reserve(KEY) == Claim("reserved")
    await a.mark_done(KEY, "run 42")
    assert await a.reserve(KEY) == Claim("done", "run 42")
    assert await b.reserve(KEY) == Claim("done", "run 42")


async def test_a_live_reservation_is_busy_for_everyone_with_the_lease_left(
    open_ledger: Open, clock: FakeClock
) -> None:
    """Another owner, and the holder itself (another task), are told how long to wait."""
    a, b = await open_ledger("a"), await open_ledger("b")
    assert (await a.reserve(KEY)).state == "reserved"
    clock.advance(15)
    for ledger in (a, b):
        claim = await ledger.reserve(KEY)
        assert claim.state == "busy" and claim.detail is None
        assert claim.retry_after_s == pytest.approx(LEASE - 15)


async def test_an_orphaned_reservation_of_this_owner_is_taken_again_at_once(
    open_ledger: Open,
) -> None:
    """A reserve that timed out after its write reached the store leaves a reservation of this
    owner that no call holds. This owner takes it again at once (here: a ledger of the same
    owner that holds nothing, as after the timed-out call); while a call holds it, it stays
    busy, and to any other owner it is busy until its lease ends."""
    holder, orphaned, other = await open_ledger("a"), await open_ledger("a"), await open_ledger("b")
    assert (await holder.reserve(KEY)).state == "reserved"
    assert (await holder.reserve(KEY)).state == "busy"  # its own call still holds it
    assert (await other.reserve(KEY)).state == "busy"
    assert await orphaned.reserve(KEY) == Claim("reserved", earlier=START)
    assert (await orphaned.reserve(KEY)).state == "busy"  # now held by that call
    await orphaned.mark_done(KEY, "ran once")
    assert await other.reserve(KEY) == Claim("done", "ran once")


@pytest.mark.parametrize("taken_before", [False, True], ids=["new-key", "lapsed-lease"])
async def test_racing_reserves_from_two_owners_reserve_exactly_once(
    open_ledger: Open, clock: FakeClock, taken_before: bool
) -> None:
    """20 concurrent reserves from two ledgers on one store: one "reserved", the rest "busy".

    Also when the key holds a reservation whose lease ended (its owner crashed), where every
    racer sees an entry it may take over and only one takeover may win.
    """
    a, b = await open_ledger("a"), await open_ledger("b")
    if taken_before:
        crashed = await open_ledger("crashed")
        assert (await crashed.reserve(KEY)).state == "reserved"
        clock.advance(LEASE)
    claims = await asyncio.gather(*(ledger.reserve(KEY) for ledger in [a, b] * 10))
    assert Counter(claim.state for claim in claims) == {"reserved": 1, "busy": 19}
    assert all(c.retry_after_s > 0 for c in claims if c.state == "busy")


async def test_a_lapsed_lease_lets_another_owner_take_over(
    open_ledger: Open, clock: FakeClock
) -> None:
    """Busy until the lease ends; at its end another owner reserves, and holds it, told when
    the reservation it took over was made (that holder may have acted: uncertain)."""
    a, b = await open_ledger("a"), await open_ledger("b")
    assert (await a.reserve(KEY)).state == "reserved"
    clock.advance(LEASE - 0.5)
    assert (await b.reserve(KEY)).retry_after_s == pytest.approx(0.5)
    clock.advance(0.5)
    assert await b.reserve(KEY) == Claim("reserved", earlier=START)
    assert (await a.reserve(KEY)).retry_after_s == pytest.approx(LEASE)


async def test_a_done_entry_expires(open_ledger: Open, clock: FakeClock) -> None:
    """A done entry is remembered for expire_after_s, then the key may be reserved again."""
    a, b = await open_ledger("a"), await open_ledger("b")
    await a.reserve(KEY)
    await a.mark_done(KEY, "ok")
    clock.advance(EXPIRE - 1)
    assert await b.reserve(KEY) == Claim("done", "ok")
    clock.advance(1)
    assert await b.reserve(KEY) == Claim("reserved")


async def test_release_lets_the_key_be_reserved_again(open_ledger: Open) -> None:
    """After a failure the holder releases; the next reserve (a replay) takes it at once."""
    a, b = await open_ledger("a"), await open_ledger("b")
    await a.reserve(KEY)
    await a.release(KEY)
    assert await b.reserve(KEY) == Claim("reserved")
    await b.release(KEY)
    assert await a.reserve(KEY) == Claim("reserved")


async def test_a_late_owner_does_not_clobber_the_one_that_took_over(
    open_ledger: Open, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """After a takeover, the old owner's release and mark_done change nothing (and warn)."""
    a, b = await open_ledger("a"), await open_ledger("b")
    await a.reserve(KEY)
    clock.advance(LEASE + 1)
    assert await b.reserve(KEY) == Claim("reserved", earlier=START)
    await a.release(KEY)
    with caplog.at_level(logging.WARNING, logger="consumer.stores.ledger"):
        await a.mark_done(KEY, "late")
    assert "not (or no longer) reserved by a" in caplog.text
    assert (await a.reserve(KEY)).state == "busy"
    await b.mark_done(KEY, "b's run")
    await a.release(KEY)  # a done entry is not a reservation: release leaves it
    assert await a.reserve(KEY) == Claim("done", "b's run")


async def test_release_and_mark_done_of_an_unknown_key_change_nothing(open_ledger: Open) -> None:
    """Without a reservation there is nothing to release or mark; no error either."""
    a = await open_ledger("a")
    await a.release(KEY)
    await a.mark_done(KEY, "never reserved")
    assert await a.reserve(KEY) == Claim("reserved")


async def test_a_lapsed_reservation_still_unclaimed_can_be_marked_done(
    open_ledger: Open, clock: FakeClock
) -> None:
    """A slow action past its lease, with no one else in between, still records its result."""
    a = await open_ledger("a")
    await a.reserve(KEY)
    clock.advance(LEASE * 3)
    await a.mark_done(KEY, "slow but done")
    assert await a.reserve(KEY) == Claim("done", "slow but done")


async def test_purge_removes_only_expired_entries(open_ledger: Open, clock: FakeClock) -> None:
    """Done entries past expiry and reservations as old as that go; live ones stay."""
    a, b = await open_ledger("a"), await open_ledger("b")
    await a.reserve("old-done")
    await a.mark_done("old-done", "old")
    await a.reserve("lapsed")
    clock.advance(EXPIRE - 100)
    await a.reserve("fresh-done")
    await a.mark_done("fresh-done", "fresh")
    clock.advance(100)  # "old-done" expires now
    await a.reserve("live")
    assert await b.purge() == 2
    assert await b.purge() == 0
    assert await b.reserve("fresh-done") == Claim("done", "fresh")
    assert (await b.reserve("live")).state == "busy"
    assert await b.reserve("old-done") == Claim("reserved")
    assert await b.reserve("lapsed") == Claim("reserved")


async def test_purge_keeps_a_lapsed_reservation_so_its_outcome_stays_uncertain(
    open_ledger: Open, clock: FakeClock
) -> None:
    """A reservation whose holder died is purged only ``expire_after_s`` after it was made:
    until then, the next holder still learns that the action may have happened."""
    a, b = await open_ledger("a"), await open_ledger("b")
    await a.reserve(KEY)
    await a.reserve("forgotten")
    clock.advance(EXPIRE - 1)
    assert await b.purge() == 0
    assert await b.reserve(KEY) == Claim("reserved", earlier=START)
    clock.advance(1)
    assert await b.purge() == 1
    assert await b.reserve("forgotten") == Claim("reserved")


async def test_purge_keeps_a_lapsed_reservation_for_an_uncertain_takeover(
    open_ledger: Open, clock: FakeClock
) -> None:
    """A reservation whose holder died stays after its lease: purged, the next reserve would
    take the key as new instead of as uncertain, and the action would run again unasked."""
    a, b = await open_ledger("a"), await open_ledger("b")
    await a.reserve(KEY)
    clock.advance(LEASE + 1)
    assert await b.purge() == 0
    claim = await b.reserve(KEY)
    assert (claim.state, claim.earlier) == ("reserved", clock.now - LEASE - 1)


async def test_any_key_is_its_own_entry(open_ledger: Open) -> None:
    """Slashes, dots, Unicode, case, spaces and long keys: each key is kept apart, exactly."""
    keys = [
        "evt/rule/0", "evt/rule/1", "EVT/rule/0", "évènement/règle ü/0", "日本語/规则/2",
        "🚀/rocket/0", "../../etc/passwd", "with space/and\ttab/0", "x" * 2000, "",
    ]  # fmt: skip
    a = await open_ledger("a")
    for index, key in enumerate(keys):
        assert await a.reserve(key) == Claim("reserved"), key
        await a.mark_done(key, f"detail {index} {key[:20]}")
    for index, key in enumerate(keys):
        assert await a.reserve(key) == Claim("done", f"detail {index} {key[:20]}"), key


async def test_storage_failures_are_consumer_errors() -> None:
    """The handler retries on ConsumerError: LedgerError is one."""
    assert issubclass(LedgerError, ConsumerError)


def test_settings_must_make_sense() -> None:
    """An owner is needed, and both durations must be positive."""
    with pytest.raises(ValueError, match="owner"):
        MemoryLedger(owner="", lease_s=1, expire_after_s=1)
    with pytest.raises(ValueError, match="positive"):
        MemoryLedger(owner="a", lease_s=0, expire_after_s=1)
    with pytest.raises(ValueError, match="positive"):
        SqliteLedger("unused.sqlite3", owner="a", lease_s=1, expire_after_s=-1)


# --- SQLite ------------------------------------------------------------------------------


async def test_sqlite_ledger_survives_reopening(tmp_path: Path, clock: FakeClock) -> None:
    """Done marks and reservations are on disk: a new process (a new ledger) sees them."""
    path = tmp_path / "a" / "b" / "ledger.sqlite3"

    def at(owner: str) -> SqliteLedger:
        return SqliteLedger(path, owner=owner, lease_s=LEASE, expire_after_s=EXPIRE, clock=clock)

    async with at("first") as first:
        await first.reserve("done-key")
        await first.mark_done("done-key", "run 7")
        await first.reserve("held-key")
    async with at("second") as second:
        assert await second.reserve("done-key") == Claim("done", "run 7")
        assert (await second.reserve("held-key")).state == "busy"
    assert path.exists()


async def test_sqlite_failures_raise_ledger_errors(tmp_path: Path) -> None:
    """A path that cannot be a database, or a closed ledger, gives LedgerError naming it."""
    folder = tmp_path / "a-folder"
    folder.mkdir()
    with pytest.raises(LedgerError, match="a-folder: cannot open"):
        await SqliteLedger(folder, owner="a", lease_s=1, expire_after_s=1).__aenter__()
    ledger = SqliteLedger(tmp_path / "l.sqlite3", owner="a", lease_s=1, expire_after_s=1)
    async with ledger:
        pass
    with pytest.raises(LedgerError, match=r"l\.sqlite3: cannot reserve 'k': not open"):
        await ledger.reserve("k")


# --- blobs -------------------------------------------------------------------------------


async def test_blob_entries_are_hashed_names_with_json_content(
    ledger_azurite: Azurite, clock: FakeClock
) -> None:
    """One blob per key, ``ledger/<sha256>``, holding key, state, owner, until and detail."""
    container = f"ledger-{uuid.uuid4().hex[:12]}"
    cs = ledger_azurite.connection_string
    async with BlobLedger.from_connection_string(
        cs, container, owner="me", lease_s=LEASE, expire_after_s=EXPIRE, clock=clock,
        api_version=AZURITE_API,
    ) as ledger:  # fmt: skip
        await ledger.reserve("evt/rule/0")
        await ledger.mark_done("evt/rule/0", "run 1")
        await ledger.reserve("evt/rule/1")
    name = blob_name("evt/rule/0")
    assert name.startswith(BLOB_PREFIX) and len(name) == len(BLOB_PREFIX) + 64
    async with ContainerClient.from_connection_string(
        cs, container, api_version=AZURITE_API
    ) as client:
        names = sorted([blob.name async for blob in client.list_blobs()])
        data = await (await client.download_blob(name)).readall()
    assert names == sorted([name, blob_name("evt/rule/1")])
    assert json.loads(data) == {
        "key": "evt/rule/0",
        "state": "done",
        "owner": "me",
        "until": clock.now + EXPIRE,
        "detail": "run 1",
    }


def _blob_ledger(account: Azurite, container: str, owner: str, clock: FakeClock) -> BlobLedger:
    return BlobLedger.from_connection_string(
        account.connection_string, container, owner=owner, lease_s=LEASE, expire_after_s=EXPIRE,
        clock=clock, api_version=AZURITE_API,
    )  # fmt: skip


async def test_blob_takeovers_racing_after_both_read_let_one_win(
    ledger_azurite: Azurite, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two replicas both read a lapsed reservation before either writes: the etag condition
    lets exactly one take it over; the other is told it is busy for a whole lease."""
    container = f"ledger-{uuid.uuid4().hex[:12]}"
    async with (
        _blob_ledger(ledger_azurite, container, "crashed", clock) as crashed,
        _blob_ledger(ledger_azurite, container, "a", clock) as a,
        _blob_ledger(ledger_azurite, container, "b", clock) as b,
    ):
        await crashed.reserve(KEY)
        clock.advance(LEASE)
        both_read = asyncio.Barrier(2)
        first_reads = {"a", "b"}
        for owner, ledger in [("a", a), ("b", b)]:

            async def read_then_wait(
                name: str, owner: str = owner, read: Any = ledger._read
            ) -> Any:
                found = await read(name)
                if owner in first_reads:  # the first read of each waits for the other's
                    first_reads.discard(owner)
                    await both_read.wait()
                return found

            monkeypatch.setattr(ledger, "_read", read_then_wait)
        claims = sorted(await asyncio.gather(a.reserve(KEY), b.reserve(KEY)), key=str)
    assert claims == [Claim("busy", retry_after_s=LEASE), Claim("reserved", earlier=START)]


async def test_blob_mark_done_racing_a_takeover_leaves_the_new_owner(
    ledger_azurite: Azurite, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old owner reads its lapsed reservation, another takes over, then the old owner's
    conditional write fails: nothing is clobbered."""
    container = f"ledger-{uuid.uuid4().hex[:12]}"
    async with (
        _blob_ledger(ledger_azurite, container, "a", clock) as a,
        _blob_ledger(ledger_azurite, container, "b", clock) as b,
    ):
        await a.reserve(KEY)
        clock.advance(LEASE)
        read = a._read

        async def read_then_b_takes_over(name: str) -> object:
            found = await read(name)
            assert await b.reserve(KEY) == Claim("reserved", earlier=START)
            return found

        monkeypatch.setattr(a, "_read", read_then_b_takes_over)
        await a.mark_done(KEY, "late")
        monkeypatch.undo()
        assert (await a.reserve(KEY)).state == "busy"
        await b.mark_done(KEY, "b's run")
        assert await a.reserve(KEY) == Claim("done", "b's run")


async def test_blob_purge_reads_entries_without_metadata(
    ledger_azurite: Azurite, clock: FakeClock
) -> None:
    """An entry written without the ``until`` metadata is read to decide whether it expired."""
    container = f"ledger-{uuid.uuid4().hex[:12]}"
    cs = ledger_azurite.connection_string
    async with BlobLedger.from_connection_string(
        cs, container, owner="me", lease_s=LEASE, expire_after_s=EXPIRE, clock=clock,
        api_version=AZURITE_API,
    ) as ledger:  # fmt: skip
        async with ContainerClient.from_connection_string(
            cs, container, api_version=AZURITE_API
        ) as client:
            for key, until in [("old", clock.now - 1), ("new", clock.now + 10)]:
                entry = Entry(key, "done", "someone", until, "d")
                await client.upload_blob(blob_name(key), entry.to_json())
        assert await ledger.purge() == 1
        assert await ledger.reserve("new") == Claim("done", "d")
        assert await ledger.reserve("old") == Claim("reserved")


async def test_blob_ledger_with_an_account_url_and_credential(
    ledger_azurite: Azurite, clock: FakeClock
) -> None:
    """The account-URL constructor works the same (a shared-key credential on Azurite)."""
    url = f"http://127.0.0.1:{ledger_azurite.port}/devstoreaccount1"
    credential = AzureNamedKeyCredential("devstoreaccount1", AZURITE_KEY)
    container = f"ledger-{uuid.uuid4().hex[:12]}"

    def at(owner: str) -> BlobLedger:
        return BlobLedger.from_account_url(
            url, container, credential=credential, owner=owner, lease_s=LEASE,
            expire_after_s=EXPIRE, clock=clock, api_version=AZURITE_API,
        )  # fmt: skip

    async with at("a") as a, at("b") as b:
        assert a.container == container
        assert await a.reserve(KEY) == Claim("reserved")
        assert (await b.reserve(KEY)).state == "busy"


def _assert_secret_free(message: str) -> None:
    assert AZURITE_KEY not in message and "AccountKey" not in message, message


async def test_blob_ledger_on_a_stopped_azurite_raises_without_the_key() -> None:
    """With Azurite gone every operation raises LedgerError quickly, never quoting the key."""
    with azurite() as short_lived:
        cs = short_lived.connection_string
        ledger = BlobLedger.from_connection_string(
            cs, "ledger", owner="a", lease_s=LEASE, expire_after_s=EXPIRE, retry_total=0,
            api_version=AZURITE_API,
        )  # fmt: skip
        await ledger.__aenter__()
        assert await ledger.reserve(KEY) == Claim("reserved")
    try:  # the with-block above has stopped the Azurite process
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: ledger.reserve(KEY), lambda: ledger.mark_done(KEY, "x"),
            lambda: ledger.release(KEY), ledger.purge,
        ]  # fmt: skip
        for call in calls:
            started = time.monotonic()
            with pytest.raises(LedgerError, match="ledger container ledger: cannot") as caught:
                await call()
            assert time.monotonic() - started < 5
            _assert_secret_free(str(caught.value))
    finally:
        await ledger.__aexit__(None, None, None)


async def test_blob_ledger_on_a_closed_port_cannot_open() -> None:
    """Nothing listening: entering raises LedgerError naming the container, not the key."""
    cs = Azurite(free_port()).connection_string
    ledger = BlobLedger.from_connection_string(
        cs, "nowhere", owner="a", lease_s=1, expire_after_s=1, retry_total=0,
        api_version=AZURITE_API,
    )  # fmt: skip
    with pytest.raises(
        LedgerError, match="ledger container nowhere: cannot open the container"
    ) as caught:
        await ledger.__aenter__()
    _assert_secret_free(str(caught.value))


def test_blob_ledger_with_a_bad_connection_string_does_not_quote_it() -> None:
    """A connection string the SDK cannot parse is not echoed back."""
    secret = f"AccountKey={AZURITE_KEY};nonsense"
    with pytest.raises(LedgerError, match="connection string is not valid") as caught:
        BlobLedger.from_connection_string(secret, "c", owner="a", lease_s=1, expire_after_s=1)
    _assert_secret_free(str(caught.value))
