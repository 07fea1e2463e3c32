"""Dead letters: the record's JSON form, and both stores against a folder and a real Azurite."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob.aio import ContainerClient
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer.commands.deadletter import replay_letters
from consumer.commands.progress import Progress
from consumer.config import load_config
from consumer.errors import ConsumerError, DeadLetterError, UnreadableEntryError
from consumer.stores.deadletters import (
    BLOB_PREFIX,
    BlobDeadLetterStore,
    DeadLetter,
    DeadLetterStore,
    DirectoryDeadLetterStore,
)
from tests.support import ROOT
from tests.support.azurite import AZURITE_KEY, Azurite, azurite, create_container
from tests.support.factories import event_json
from tests.support.terminal import Terminal

# Azurite 3.37.0 (package-lock.json) speaks blob API versions up to this one; the SDK's
# default is newer, and Azurite refuses it.
AZURITE_API = "2026-06-06"
BASE = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ZONES = [UTC, timezone(-timedelta(hours=9)), timezone(timedelta(hours=5, minutes=30))]
NOT_UTF8 = b"\xff\xfe\x00{not json}\x80"


def letter(
    *,
    after: timedelta = timedelta(),
    body: bytes = b'[{"eventType":"Microsoft.MachineLearningServices.RunFailed"}]',
    partition: str = "0",
    sequence_number: int | None = 7,
) -> DeadLetter:
    """A letter made ``after`` the base time."""
    return DeadLetter.create(
        created=BASE + after,
        reason="action",
        error="PermanentActionError: HTTP 404 from webhook",
        body=body,
        partition=partition,
        attempts=3,
        offset="4096",
        sequence_number=sequence_number,
        enqueued_time=BASE - timedelta(seconds=2),
        event_id="3f6c1a2e-0000-4000-8000-000000000001",
        rule="notify-on-failure",
        action="webhook#0",
        properties={b"source": b"eventgrid", "retries": 2},
    )


@pytest.fixture(scope="session")
def deadletter_azurite() -> Iterator[Azurite]:
    """Azurite's blob service, in memory, shared by the blob-store tests of this module."""
    with azurite() as running:
        yield running


@pytest.fixture(params=["directory", "blob"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DeadLetterStore]:
    """An entered, empty store of each kind (a fresh folder, or a fresh container)."""
    chosen: DeadLetterStore
    if request.param == "directory":
        chosen = DirectoryDeadLetterStore(tmp_path / "not" / "yet" / "there")
    else:
        account: Azurite = request.getfixturevalue("deadletter_azurite")
        container = f"dead-{uuid.uuid4().hex[:12]}"
        chosen = BlobDeadLetterStore.from_connection_string(
            account.connection_string, container, api_version=AZURITE_API
        )
    async with chosen:
        yield chosen


# --- both stores -------------------------------------------------------------------------


async def test_put_then_get_returns_the_same_letter(store: DeadLetterStore) -> None:
    """A letter put is read back equal, field for field."""
    original = letter()
    await store.put(original)
    assert await store.get(original.id) == original


async def test_empty_store_lists_nothing_and_counts_zero(store: DeadLetterStore) -> None:
    """A new store (folder or container created on entering) is empty."""
    assert await store.list() == []
    assert await store.count() == 0


async def test_list_is_oldest_first_whatever_the_put_order(store: DeadLetterStore) -> None:
    """Entries come back sorted by creation time, not by the order they were put."""
    letters = [letter(after=timedelta(microseconds=n), partition=str(n % 3)) for n in range(5)]
    for item in [letters[3], letters[0], letters[4], letters[1], letters[2]]:
        await store.put(item)
    assert await store.list() == letters
    assert await store.count() == 5


async def test_list_limit_returns_the_oldest(store: DeadLetterStore) -> None:
    """``limit`` keeps the oldest entries."""
    letters = [letter(after=timedelta(seconds=n)) for n in range(4)]
    for item in reversed(letters):
        await store.put(item)
    assert await store.list(limit=2) == letters[:2]
    assert await store.list(limit=0) == []


async def test_delete_removes_the_entry_and_count_follows(store: DeadLetterStore) -> None:
    """After delete the entry is gone and the others remain."""
    first, second = letter(), letter(after=timedelta(seconds=1))
    await store.put(first)
    await store.put(second)
    await store.delete(first.id)
    assert await store.count() == 1
    assert await store.list() == [second]


async def test_put_with_the_same_id_replaces_the_entry(store: DeadLetterStore) -> None:
    """Putting a letter again (a retried put) keeps one entry, the latest."""
    original = letter()
    await store.put(original)
    again = DeadLetter(**{**_fields(original), "attempts": 4})
    await store.put(again)
    assert await store.list() == [again]


async def test_list_skips_an_entry_that_is_not_a_letter_and_names_it(
    request: pytest.FixtureRequest, store: DeadLetterStore
) -> None:
    """One corrupt entry does not hide the others: it goes to ``on_unreadable``, naming its
    file or blob and why; without a receiver for it, list raises that error."""
    first, last = letter(), letter(after=timedelta(seconds=2))
    broken_id = letter(after=timedelta(seconds=1)).id
    await store.put(first)
    await store.put(last)
    await _put_raw(request, store, broken_id, b"{truncated")
    skipped: list[UnreadableEntryError] = []
    assert await store.list(on_unreadable=skipped.append) == [first, last]
    [error] = skipped
    assert f"{broken_id}.json: not a valid dead letter: " in str(error)
    with pytest.raises(UnreadableEntryError, match=f"{broken_id}.json"):
        await store.list()
    assert await store.count() == 3


async def test_non_utf8_body_round_trips_byte_for_byte(store: DeadLetterStore) -> None:
    """An undecodable body is kept exactly, byte for byte."""
    original = letter(body=NOT_UTF8)
    await store.put(original)
    assert (await store.get(original.id)).body == NOT_UTF8


async def test_get_of_a_missing_id_names_it(store: DeadLetterStore) -> None:
    """get() of an unknown id raises DeadLetterError naming the id."""
    missing = letter().id
    with pytest.raises(DeadLetterError, match=missing):
        await store.get(missing)


async def test_delete_of_a_missing_id_names_it(store: DeadLetterStore) -> None:
    """delete() of an unknown id raises DeadLetterError naming the id."""
    missing = letter().id
    with pytest.raises(DeadLetterError, match=missing):
        await store.delete(missing)


@pytest.mark.parametrize("bad", ["../escape", "a/b", ".hidden", "", "x" * 300])
async def test_ids_that_are_not_safe_names_are_refused(store: DeadLetterStore, bad: str) -> None:
    """Ids with separators, a leading dot or an odd length never reach the file system."""
    with pytest.raises(DeadLetterError, match="not a dead-letter id"):
        await store.get(bad)


# --- the record -------------------------------------------------------------------------


def test_dead_letter_error_is_a_consumer_error() -> None:
    """Callers catching ConsumerError catch dead-letter failures too."""
    assert issubclass(DeadLetterError, ConsumerError)


def test_create_makes_time_sortable_ids_in_utc_and_stringifies_properties() -> None:
    """create() converts to UTC, prefixes the id with the time, decodes byte properties."""
    east = timezone(timedelta(hours=2))
    made = DeadLetter.create(
        created=datetime(2024, 5, 1, 14, 0, tzinfo=east), reason="decode", error="bad JSON",
        body=b"{", partition="p/1", attempts=1, properties={b"k": b"\xffv", "n": 1},
    )  # fmt: skip
    assert made.created == BASE and made.created.tzinfo is UTC
    assert made.id.startswith("20240501T120000000000-p_1-x-")
    assert made.properties == {"k": "\\xffv", "n": "1"}
    later = letter(after=timedelta(microseconds=1), partition="0")
    assert sorted([later.id, made.id]) == [made.id, later.id]


def test_json_has_base64_and_text_for_utf8_bodies_only() -> None:
    """The JSON form carries body_text for people when the body is UTF-8, null otherwise."""
    readable = json.loads(letter(body="café".encode()).to_json())
    assert readable["body_text"] == "café"
    assert json.loads(letter(body=NOT_UTF8).to_json())["body_text"] is None


def test_lone_surrogates_in_text_fields_still_round_trip() -> None:
    """A string that cannot be UTF-8 is escaped in the JSON and read back unchanged."""
    original = DeadLetter(**{**_fields(letter()), "error": "broken \ud800 text"})
    assert DeadLetter.from_json(original.to_json()) == original


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=200),
    error=st.text(max_size=40),
    properties=st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4),
    sequence_number=st.none() | st.integers(min_value=0, max_value=2**63 - 1),
    enqueued=st.none() | st.datetimes(timezones=st.sampled_from(ZONES)),
    reason=st.sampled_from(["decode", "action"]),
)  # fmt: skip
def test_json_round_trips_exactly(
    body: bytes,
    error: str,
    properties: dict[str, str],
    sequence_number: int | None,
    enqueued: datetime | None,
    reason: str,
) -> None:
    """Any letter survives to_json/from_json unchanged, including its time zones."""
    original = DeadLetter(
        **{
            **_fields(letter(sequence_number=sequence_number)),
            "body": body, "error": error, "properties": properties,
            "enqueued_time": enqueued, "reason": reason,
        }
    )  # fmt: skip
    restored = DeadLetter.from_json(original.to_json())
    assert restored == original
    assert _iso(restored.enqueued_time) == _iso(original.enqueued_time)


@pytest.mark.parametrize(
    "data",
    [b"not json", b"[]", b'{"id": "x"}', b'{"id": "a", "reason": "lost"}'],
    ids=["not-json", "not-object", "missing-fields", "bad-reason"],
)
def test_from_json_rejects_what_is_not_a_letter(data: bytes) -> None:
    """Anything but a well-formed letter is a DeadLetterError naming where it was read."""
    with pytest.raises(DeadLetterError, match="somewhere: not a valid dead letter"):
        DeadLetter.from_json(data, where="somewhere")


# --- the directory store ----------------------------------------------------------------


async def test_directory_temp_file_is_complete_before_the_entry_appears(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The entry is written whole under a hidden name; no *.json exists until the rename."""
    seen: list[tuple[list[str], bytes]] = []
    real_replace = os.replace

    def spying_replace(source: Any, target: Any) -> None:
        seen.append((sorted(p.name for p in tmp_path.glob("*.json")), Path(source).read_bytes()))
        real_replace(source, target)

    original = letter()
    monkeypatch.setattr(os, "replace", spying_replace)
    async with DirectoryDeadLetterStore(tmp_path) as store:
        await store.put(original)
    assert seen == [([], original.to_json())]
    assert _names(tmp_path) == [f"{original.id}.json"]


async def test_directory_interrupted_write_leaves_no_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails before the rename leaves neither an entry nor a temp file."""

    def failing_replace(source: Any, target: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    async with DirectoryDeadLetterStore(tmp_path) as store:
        with pytest.raises(DeadLetterError, match="No space left on device"):
            await store.put(letter())
        assert await store.count() == 0
    assert _names(tmp_path) == []


async def test_directory_ignores_a_half_written_temp_file_left_by_a_crash(tmp_path: Path) -> None:
    """A crash remnant (hidden *.tmp) is not an entry: list and count skip it."""
    kept = letter()
    (tmp_path / f".{kept.id}.json.0badc0de.tmp").write_bytes(kept.to_json()[:20])
    async with DirectoryDeadLetterStore(tmp_path) as store:
        assert await store.count() == 0
        await store.put(kept)
        assert await store.list() == [kept]


async def test_directory_corrupt_entry_names_the_file(tmp_path: Path) -> None:
    """An entry file that is not a letter raises DeadLetterError naming that file."""
    broken = letter()
    (tmp_path / f"{broken.id}.json").write_bytes(b"{truncated")
    async with DirectoryDeadLetterStore(tmp_path) as store:
        with pytest.raises(DeadLetterError, match=f"{broken.id}.json: not a valid dead letter"):
            await store.get(broken.id)


# --- the blob store ---------------------------------------------------------------------


async def test_blob_entries_live_under_the_prefix_and_others_are_ignored(
    deadletter_azurite: Azurite,
) -> None:
    """Each letter is one blob deadletters/<id>.json; blobs elsewhere are not entries."""
    name = f"shared-{uuid.uuid4().hex[:12]}"
    create_container(deadletter_azurite, name)  # exists already: entering tolerates it
    cs = deadletter_azurite.connection_string
    kept = letter()
    client = ContainerClient.from_connection_string(cs, name, api_version=AZURITE_API)
    async with client:
        await client.upload_blob("checkpoints/0", b"not a letter")
        store = BlobDeadLetterStore.from_connection_string(cs, name, api_version=AZURITE_API)
        async with store:
            await store.put(kept)
            assert await store.list() == [kept]
        names = [blob async for blob in client.list_blob_names()]
    assert sorted(names) == sorted(["checkpoints/0", f"{BLOB_PREFIX}{kept.id}.json"])


async def test_blob_store_on_a_stopped_azurite_raises_without_the_key() -> None:
    """With Azurite stopped every operation raises DeadLetterError, never quoting the key."""
    with azurite() as short_lived:
        cs = short_lived.connection_string
        store = BlobDeadLetterStore.from_connection_string(
            cs, "dead", retry_total=0, api_version=AZURITE_API
        )
        await store.__aenter__()
    try:  # the with-block above has stopped the Azurite process
        kept = letter()
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: store.put(kept), lambda: store.get(kept.id), lambda: store.delete(kept.id),
            store.count, store.list,
        ]  # fmt: skip
        for call in calls:
            with pytest.raises(DeadLetterError) as caught:
                await call()
            _assert_secret_free(str(caught.value))
    finally:
        await store.__aexit__(None, None, None)
    reopened = BlobDeadLetterStore.from_connection_string(
        cs, "dead", retry_total=0, api_version=AZURITE_API
    )
    with pytest.raises(DeadLetterError, match="cannot open container dead") as caught:
        await reopened.__aenter__()
    _assert_secret_free(str(caught.value))


async def test_blob_list_skips_a_blob_whose_name_is_not_an_id(
    deadletter_azurite: Azurite,
) -> None:
    """A blob under the prefix whose name could not be an entry's is skipped and named."""
    name = f"odd-{uuid.uuid4().hex[:12]}"
    cs = deadletter_azurite.connection_string
    kept = letter()
    async with BlobDeadLetterStore.from_connection_string(
        cs, name, api_version=AZURITE_API
    ) as store:
        await store.put(kept)
        client = ContainerClient.from_connection_string(cs, name, api_version=AZURITE_API)
        async with client:
            await client.upload_blob(f"{BLOB_PREFIX}a b.json", kept.to_json())
        skipped: list[UnreadableEntryError] = []
        assert await store.list(on_unreadable=skipped.append) == [kept]
    assert [str(error) for error in skipped] == [
        f"{name}/{BLOB_PREFIX}a b.json: not a dead-letter name"
    ]


# --- the deadletter commands --------------------------------------------------------------


def test_list_command_names_a_corrupt_file_and_lists_the_rest(tmp_path: Path) -> None:
    """``deadletter list`` warns on stderr naming the corrupt file and why, lists the
    others and exits 0 (the listing itself worked)."""
    folder, kept = _letters_folder(tmp_path)
    broken = folder / "20240501T120001000000-0-8-0badc0de.json"
    broken.write_bytes(b"{truncated")

    done = _mlevents(tmp_path, "list")

    assert done.returncode == 0, done.stderr
    assert f"warning: {broken}: not a valid dead letter: " in done.stderr
    assert done.stdout.startswith(kept.id)
    assert done.stdout.splitlines()[-1] == "1 dead letter(s), 1 unreadable"
    assert "Traceback" not in done.stderr


def test_replay_command_replays_the_rest_and_keeps_a_corrupt_file(tmp_path: Path) -> None:
    """``deadletter replay`` replays every readable entry, names the corrupt one on stderr,
    keeps it, and exits 1 as for any entry kept."""
    folder, kept = _letters_folder(tmp_path)
    broken = folder / "20240501T120001000000-0-8-0badc0de.json"
    broken.write_text("[]")

    done = _mlevents(tmp_path, "replay")

    assert done.returncode == 1, done.stderr
    assert f"warning: {broken}: not a valid dead letter: not a JSON object; skipped" in done.stderr
    assert f"{kept.id}: done" in done.stdout
    assert "replayed 1: 1 done, 0 failed again; 1 unreadable, kept" in done.stdout
    assert sorted(p.name for p in folder.glob("*.json")) == [broken.name]
    named = _mlevents(tmp_path, "replay", broken.stem)
    assert named.returncode == 1
    assert f"warning: {broken}: not a valid dead letter" in named.stderr
    assert "replayed 0: 0 done, 0 failed again; 1 unreadable, kept" in named.stdout


async def test_replay_draws_its_progress_below_each_letter_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a terminal, replay counts letters and failures on a progress line, erased before
    each letter's line and drawn again after it; the letters' lines stay on stdout."""
    folder, kept = _letters_folder(tmp_path)
    second = DeadLetter.create(
        created=BASE + timedelta(seconds=1), reason="decode", error="then", partition="1",
        attempts=1, body=json.dumps([event_json(id="ev-2")]).encode(), sequence_number=8,
    )  # fmt: skip
    (folder / f"{second.id}.json").write_bytes(second.to_json())
    monkeypatch.setattr(Progress, "AFTER_S", 0.0)
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)

    assert await replay_letters(load_config(tmp_path / "config.toml"), []) == 0

    line = r"\r{} letters, [\d,]+/s, 0 failed again"
    erase = re.escape("\r\x1b[K")
    assert re.fullmatch(f"{line.format(1)}{erase}{line.format(2)}\n", terminal.getvalue())
    out = capsys.readouterr().out
    assert f"{kept.id}: done" in out and f"{second.id}: done" in out


# --- helpers ----------------------------------------------------------------------------


async def _put_raw(
    request: pytest.FixtureRequest, store: DeadLetterStore, letter_id: str, data: bytes
) -> None:
    """Store ``data`` as is where ``store`` (the ``store`` fixture's) keeps entry ``letter_id``."""
    if isinstance(store, DirectoryDeadLetterStore):
        (store.path / f"{letter_id}.json").write_bytes(data)
        return
    assert isinstance(store, BlobDeadLetterStore)
    account: Azurite = request.getfixturevalue("deadletter_azurite")
    client = ContainerClient.from_connection_string(
        account.connection_string, store.container, api_version=AZURITE_API
    )
    async with client:
        await client.upload_blob(f"{BLOB_PREFIX}{letter_id}.json", data)


def _letters_folder(folder: Path) -> tuple[Path, DeadLetter]:
    """A config.toml in ``folder`` whose one rule logs every event, and a local dead-letter
    folder holding one letter that replays (an event that failed to decode before)."""
    (folder / "rules.toml").write_text('[[rules]]\nname = "all"\n[[rules.actions]]\ntype = "log"\n')
    (folder / "config.toml").write_text(
        f'[rules]\nfiles = ["{folder / "rules.toml"}"]\n'
        f'[checkpoints]\nstore = "local"\npath = "{folder / "checkpoints.sqlite3"}"\n'
        f'[deadletters]\nstore = "local"\npath = "{folder / "deadletters"}"\n'
    )
    kept = DeadLetter.create(
        created=BASE, reason="decode", error="was not JSON then", partition="0", attempts=1,
        body=json.dumps([event_json(id="ev-1")]).encode(), sequence_number=7,
    )  # fmt: skip
    (folder / "deadletters").mkdir()
    (folder / "deadletters" / f"{kept.id}.json").write_bytes(kept.to_json())
    return folder / "deadletters", kept


def _mlevents(folder: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """``mlevents deadletter --config folder/config.toml COMMAND...`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "consumer", "deadletter", "--config", str(folder / "config.toml"),
         *command],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _fields(item: DeadLetter) -> dict[str, Any]:
    return {name: getattr(item, name) for name in DeadLetter.__dataclass_fields__}


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _assert_secret_free(message: str) -> None:
    assert AZURITE_KEY not in message
    assert AZURITE_KEY[:16] not in message
    assert "AccountKey" not in message
