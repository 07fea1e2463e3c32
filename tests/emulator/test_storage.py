"""Partition logs: append-only segment files, torn-tail recovery, retention; the public API."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.eventhub.aio import EventHubProducerClient

import emulator as emulator_package
from emulator import Emulator, HubSpec
from emulator.errors import StorageError
from emulator.storage import EventLog, Retention, StoredEvent
from tests.support.emulator import receive, send


def events(start: int, count: int, offset: int = 0, ms: int = 1000) -> list[StoredEvent]:
    """``count`` consecutive events of 10 bytes each, starting at sequence number ``start``."""
    return [
        StoredEvent(start + i, offset + 10 * i, ms + i, f"message-{start + i:02d}"[:10].encode())
        for i in range(count)
    ]


def test_reopened_log_has_the_same_events(tmp_path: Path) -> None:
    """A durable log reopened from disk yields the same positions and messages."""
    log = EventLog(tmp_path)
    log.append(events(0, 5))
    log.close()
    again = EventLog(tmp_path)
    assert (again.begin_sequence, again.end_sequence, again.next_offset) == (0, 5, 50)
    assert again.get(3) == events(0, 5)[3]


def test_torn_tail_is_truncated_and_earlier_events_kept(tmp_path: Path) -> None:
    """A half-written last record is dropped on open; earlier records and new appends are fine."""
    log = EventLog(tmp_path)
    log.append(events(0, 3))
    log.close()
    (segment,) = tmp_path.glob("*.log")
    intact = segment.stat().st_size
    with segment.open("ab") as handle:
        handle.write(b"\x00\x00\x00\x40\x12\x34")  # a record header with no body
    again = EventLog(tmp_path)
    assert again.end_sequence == 3 and segment.stat().st_size == intact
    again.append(events(3, 1, offset=30))
    again.close()
    assert EventLog(tmp_path).get(3).message == events(3, 1)[0].message


def test_corrupt_record_at_the_tail_is_detected_by_its_crc(tmp_path: Path) -> None:
    """A last record whose bytes changed is dropped rather than served."""
    log = EventLog(tmp_path)
    log.append(events(0, 2))
    log.close()
    (segment,) = tmp_path.glob("*.log")
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF
    segment.write_bytes(bytes(data))
    assert EventLog(tmp_path).end_sequence == 1


def test_corruption_in_an_older_segment_is_an_error(tmp_path: Path) -> None:
    """Damage before the last segment cannot come from a torn write, so opening fails."""
    log = EventLog(tmp_path, segment_bytes=1)
    log.append(events(0, 1))
    log.append(events(1, 1, offset=10))
    log.close()
    first = sorted(tmp_path.glob("*.log"))[0]
    first.write_bytes(first.read_bytes()[:-1])
    with pytest.raises(StorageError):
        EventLog(tmp_path)


def test_retention_by_count_drops_oldest_and_their_segments(tmp_path: Path) -> None:
    """With a count limit the oldest events go, and fully expired segment files are deleted."""
    log = EventLog(tmp_path, Retention(max_events=2), segment_bytes=1)
    for i in range(5):
        log.append(events(i, 1, offset=10 * i))
        log.expire(now_ms=0)
    assert (log.begin_sequence, log.end_sequence) == (3, 5)
    assert len(list(tmp_path.glob("*.log"))) == 2
    assert log.messages(0, 10) == [e.message for e in events(3, 2)]


def test_retention_by_age_keeps_offsets_monotonic() -> None:
    """Events older than the age limit expire; lookups still use the original offsets."""
    log = EventLog(None, Retention(max_age_s=1.0))
    log.append(events(0, 4, ms=1000))
    log.expire(now_ms=2002)
    assert log.begin_sequence == 2
    assert log.sequence_after_offset(20, inclusive=False) == 3
    assert log.sequence_after_time(1002, inclusive=True) == 2


async def test_retention_through_the_sdk() -> None:
    """With a count limit, the SDK sees the oldest events gone and the rest at their positions."""
    async with Emulator([HubSpec("hub", 1)], retention=Retention(max_events=3)) as emulator:
        cs = emulator.connection_string("hub")
        await send(cs, [f"e{i}" for i in range(5)])
        async with EventHubProducerClient.from_connection_string(cs) as producer:
            props = await producer.get_partition_properties("0")
        events = await receive(cs, 3, starting_position="-1", settle_s=0.3)
    assert props["beginning_sequence_number"] == 2
    assert [(e.sequence_number, e.body_as_str()) for e in events] == [
        (2, "e2"),
        (3, "e3"),
        (4, "e4"),
    ]


def test_public_api_is_exported() -> None:
    """Every name in emulator.__all__ exists, and the package exports nothing else public.
    (The names load on first use: each is looked up before the package's names are read.)"""
    for name in emulator_package.__all__:
        getattr(emulator_package, name)
    public = {name for name in vars(emulator_package) if not name.startswith("_")}
    modules = {
        n for n in public if isinstance(getattr(emulator_package, n), type(emulator_package))
    }
    assert set(emulator_package.__all__) == public - modules
