"""``mlevents record``: live traffic into Capture files that ``match`` and ``send`` read back."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import fastavro
import pytest
from azure.eventhub import EventData, EventDataBatch
from azure.eventhub.aio import EventHubProducerClient
from fastavro.schema import to_parsing_canonical_form

from consumer.commands.main import main
from consumer.commands.progress import Progress
from consumer.commands.record import avro_value, capture_time
from consumer.commands.rules import EXAMPLES
from consumer.eventfiles import EventRecord, read_event_file
from emulator import Emulator, HubSpec
from tests.support.capture import CAPTURE_SCHEMA, write_capture
from tests.support.terminal import Terminal

EVENTS = sorted((EXAMPLES / "events").glob("*.json"))
RULES = EXAMPLES / "rules.toml"
KEY = "emulator-key"  # the emulator's SAS key: never to be printed


@pytest.fixture
async def hubs() -> AsyncIterator[Emulator]:
    """``source`` and ``copy`` (four partitions each) and ``quiet`` (two, never sent to)."""
    specs = [
        HubSpec("source", 4, ("$Default", "recorder")),
        HubSpec("copy", 4),
        HubSpec("quiet", 2),
    ]
    async with Emulator(specs) as running:
        yield running


def _properties(n: int) -> dict[str, Any]:
    return {
        "aeg-event-type": "Notification",
        "n": n,
        "ratio": n / 4,
        "raw": b"\xff\xfe" + bytes([n]),
    }


async def _send_originals(connection_string: str) -> list[tuple[str | None, bytes, dict[str, Any]]]:
    """Each example event to partition n % 4 (the last one by partition key), with properties.

    Returns (partition id or None for the keyed event, body, properties) per event.
    """
    sent: list[tuple[str | None, bytes, dict[str, Any]]] = []
    async with EventHubProducerClient.from_connection_string(connection_string) as producer:
        batches: dict[str | None, EventDataBatch] = {
            p: await producer.create_batch(partition_id=p) for p in map(str, range(4))
        }
        batches[None] = await producer.create_batch(partition_key="run-7")
        for n, path in enumerate(EVENTS):
            partition = None if n == len(EVENTS) - 1 else str(n % 4)
            event = EventData(path.read_bytes())
            event.properties = cast("dict[str | bytes, Any]", _properties(n))
            batches[partition].add(event)
            sent.append((partition, path.read_bytes(), _properties(n)))
        await asyncio.gather(*map(producer.send_batch, batches.values()))
    return sent


async def _cli(*argv: str) -> int:
    code: int = await asyncio.to_thread(main, list(argv))
    return code


def _avro(path: Path) -> tuple[str, list[Any]]:
    """The file's schema in Avro's parsing canonical form, and its records."""
    with path.open("rb") as handle:
        reader = fastavro.reader(handle)
        return to_parsing_canonical_form(reader.writer_schema), list(reader)


def _match(path: str | Path, *more: str | Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    capsys.readouterr()
    code = main(["match", "--rules", str(RULES), "--format", "jsonl", str(path), *map(str, more)])
    assert code == 0
    return sorted(capsys.readouterr().out.splitlines())


async def test_round_trip_keeps_partitions_metadata_properties_and_bodies(
    hubs: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """record keeps everything; send --keep-partitions and record again give the same events."""
    source, copy = hubs.connection_string("source"), hubs.connection_string("copy")
    originals = await _send_originals(source)
    total = len(originals)
    recorded = tmp_path / "source.avro"
    assert await _cli("record", "--connection-string", source, "--count", str(total),
                      "--seconds", "20", "--out", str(recorded)) == 0  # fmt: skip
    assert capsys.readouterr().out == f"recorded {total} events to {recorded}\n"

    schema, raw = _avro(recorded)
    assert schema == to_parsing_canonical_form(CAPTURE_SCHEMA)
    records = list(read_event_file(str(recorded)))
    assert len(records) == total
    log = hubs.broker.hubs["source"].partitions
    by_body = {r.body: r for r in records}
    for partition, body, properties in originals:
        record = by_body[body]
        assert record.properties == properties
        assert record.partition is not None
        if partition is not None:
            assert record.partition == partition
        assert record.sequence_number is not None
        stored = log[int(record.partition)].log.get(record.sequence_number)
        assert record.offset == str(stored.offset)
        moment = datetime.fromtimestamp(stored.enqueued_ms / 1000, UTC)
        assert record.enqueued_time == moment.isoformat(timespec="microseconds")[:26] + "0Z"
    keyed = next(r for r in raw if r["Body"] == originals[-1][1])
    assert keyed["SystemProperties"] == {
        "x-opt-partition-key": "run-7",
        "x-opt-partition-id": by_body[originals[-1][1]].partition,
    }
    assert all(
        r["SystemProperties"] == {"x-opt-partition-id": r["SystemProperties"]["x-opt-partition-id"]}
        for r in raw
        if r is not keyed
    )

    assert await _cli("send", "--connection-string", copy, "--keep-partitions", str(recorded)) == 0
    assert capsys.readouterr().out == f"sent {total} events\n"
    again = tmp_path / "copy.avro"
    assert await _cli("record", "--connection-string", copy, "--count", str(total),
                      "--seconds", "20", "--out", str(again)) == 0  # fmt: skip
    replayed = list(read_event_file(str(again)))

    def essence(r: EventRecord) -> tuple[bytes, str, str | None]:
        return r.body, json.dumps(r.properties, default=repr, sort_keys=True), r.partition

    assert sorted(map(essence, replayed)) == sorted(map(essence, records))
    for partition in map(str, range(4)):
        numbers = [r.sequence_number or 0 for r in replayed if r.partition == partition]
        assert sorted(numbers) == list(range(len(numbers)))  # the new hub's own numbering

    assert _match(recorded, capsys=capsys) == _match(*EVENTS, capsys=capsys)
    assert _match(again, capsys=capsys) == _match(*EVENTS, capsys=capsys)


async def test_seconds_on_a_quiet_hub_writes_an_empty_valid_file(
    hubs: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--seconds 1 with nothing to read exits 0 about a second later; the file has no records."""
    out = tmp_path / "quiet.avro"
    started = time.monotonic()
    code = await _cli("record", "--connection-string", hubs.connection_string("quiet"),
                      "--seconds", "1", "--out", str(out))  # fmt: skip
    elapsed = time.monotonic() - started
    assert code == 0
    assert 1 <= elapsed < 8
    assert capsys.readouterr().out == f"recorded 0 events to {out}\n"
    schema, records = _avro(out)
    assert (schema, records) == (to_parsing_canonical_form(CAPTURE_SCHEMA), [])
    assert list(read_event_file(str(out))) == []


async def test_count_stops_early_and_options_choose_partition_group_and_secret_source(
    hubs: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--count on one --partition stops long before --seconds; the string comes from the env."""
    await _send_originals(hubs.connection_string("source"))
    monkeypatch.setenv("MLEVENTS_TEST_RECORD_HUB", hubs.connection_string())
    out = tmp_path / "two.avro"
    started = time.monotonic()
    code = await _cli("record", "--connection-string-env", "MLEVENTS_TEST_RECORD_HUB",
                      "--eventhub", "source", "--consumer-group", "recorder", "--partition", "1",
                      "--count", "2", "--seconds", "30", "--out", str(out))  # fmt: skip
    assert code == 0
    assert time.monotonic() - started < 10
    records = list(read_event_file(str(out)))
    assert [(r.partition, r.sequence_number) for r in records] == [("1", 0), ("1", 1)]
    assert [r.body for r in records] == [EVENTS[1].read_bytes(), EVENTS[5].read_bytes()]


async def test_progress_counts_events_and_partitions_on_a_terminal(
    hubs: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal, after the line saying what is read, a progress line counts the events
    written and the partitions read, and ends with a newline before the summary."""
    await _send_originals(hubs.connection_string("source"))
    monkeypatch.setattr(Progress, "AFTER_S", 0.0)
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    code = await _cli("record", "--connection-string", hubs.connection_string("source"),
                      "--partition", "1", "--count", "2", "--seconds", "30",
                      "--out", str(tmp_path / "two.avro"))  # fmt: skip
    assert code == 0
    assert re.fullmatch(
        r"mlevents record: reading 'source'; Ctrl-C stops and keeps what was read\n"
        r"\r1 events, [\d,]+/s, 1 partitions\n",
        terminal.getvalue(),
    )


async def test_without_bounds_it_records_until_sigint_and_leaves_a_valid_file(
    hubs: Emulator, tmp_path: Path
) -> None:
    """With neither --count nor --seconds, SIGINT ends the recording: exit 0, every event it
    says it recorded is in the file, and the file reads back."""
    sent = await _send_originals(hubs.connection_string("source"))
    out = tmp_path / "until-interrupted.avro"
    env = {**os.environ, "MLEVENTS_TEST_RECORD_HUB": hubs.connection_string()}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "consumer", "record", "--connection-string-env",
        "MLEVENTS_TEST_RECORD_HUB", "--eventhub", "source", "--out", str(out),
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    line = await asyncio.wait_for(process.stderr.readline(), 60)
    assert line.decode().startswith("mlevents record: reading 'source'")
    await asyncio.sleep(2)  # nothing stops it but the signal
    assert process.returncode is None
    process.send_signal(signal.SIGINT)
    out_text, err_text = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err_text.decode()
    records = list(read_event_file(str(out)))
    assert out_text.decode() == f"recorded {len(records)} events to {out}\n"
    assert sorted(r.body for r in records) == sorted(body for _, body, _ in sent)
    assert KEY not in out_text.decode() + err_text.decode()


async def _keep_sending(connection_string: str, partition: str, until: asyncio.Task[int]) -> int:
    """Send ``{"new": n}`` to ``partition`` every 0.2 s until ``until`` is done."""
    n = 0
    async with EventHubProducerClient.from_connection_string(connection_string) as producer:
        while not until.done():
            batch = await producer.create_batch(partition_id=partition)
            batch.add(EventData(json.dumps({"new": n})))
            await producer.send_batch(batch)
            n += 1
            await asyncio.sleep(0.2)
    return n


async def test_start_latest_and_start_time_skip_older_events(
    hubs: Emulator, tmp_path: Path
) -> None:
    """--start latest records only events sent after it started; --start TIME those at or after."""
    source = hubs.connection_string("source")
    await _send_originals(source)
    latest = tmp_path / "latest.avro"
    recording = asyncio.create_task(
        _cli("record", "--connection-string", source, "--start", "latest",
             "--count", "1", "--seconds", "20", "--out", str(latest))
    )  # fmt: skip
    assert await _keep_sending(source, "3", recording) > 0
    assert await recording == 0
    (record,) = read_event_file(str(latest))
    assert record.partition == "3"
    assert json.loads(record.body).keys() == {"new"}

    log = hubs.broker.hubs["source"].partitions[2].log
    assert log.last() is not None
    await asyncio.sleep(0.05)  # a later millisecond than every event so far
    async with EventHubProducerClient.from_connection_string(source) as producer:
        batch = await producer.create_batch(partition_id="2")
        batch.add(EventData(b'{"late": true}'))
        await producer.send_batch(batch)
    late = log.last()
    assert late is not None
    since = datetime.fromtimestamp(late.enqueued_ms / 1000, UTC).isoformat()
    later = tmp_path / "later.avro"
    assert await _cli("record", "--connection-string", source, "--start", since,
                      "--count", "1", "--seconds", "20", "--out", str(later)) == 0  # fmt: skip
    records = [(r.partition, r.sequence_number, r.body) for r in read_event_file(str(later))]
    assert records == [("2", late.sequence_number, b'{"late": true}')]


BAD_STRING = "Endpoint=;SharedAccessKeyName=reader;SharedAccessKey=s3cret-Value-42"


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["--connection-string", BAD_STRING], {}, "--connection-string: not an Event Hubs"),
        (["--connection-string", "just-s3cret-Value-42"], {}, "--connection-string: not an"),
        (
            ["--connection-string", "sb://x;SharedAccessKey=s3cret-Value-42"],
            {},
            "--connection-string",
        ),
        (
            ["--connection-string-env", "HUB_CS"],
            {"HUB_CS": BAD_STRING},
            "--connection-string-env HUB_CS: not an Event Hubs connection string",
        ),
        (
            ["--connection-string-env", "HUB_CS"],
            {},
            "--connection-string-env: environment variable HUB_CS is not set",
        ),
        (
            [
                "--connection-string",
                "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=r;SharedAccessKey=s3cret-Value-42",
            ],
            {},
            "--eventhub: give the hub's name",
        ),
    ],
    ids=["malformed", "no-pairs", "no-endpoint", "malformed-env", "unset-env", "no-hub"],
)
def test_usage_errors_name_the_option_and_never_the_secret(
    argv: list[str],
    env: dict[str, str],
    named: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Bad or missing connection strings and hub names exit 2 before anything is written."""
    monkeypatch.delenv("HUB_CS", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "out.avro"
    assert main(["record", *argv, "--seconds", "1", "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"mlevents record: {named}")
    assert "s3cret" not in captured.out + captured.err
    assert not out.exists()


async def test_hub_errors_name_the_option_and_keep_the_key_out(
    hubs: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown partition exits 2, an unknown consumer group 1; neither prints the key."""
    source = hubs.connection_string("source")
    out = tmp_path / "out.avro"
    assert await _cli("record", "--connection-string", source, "--partition", "9",
                      "--seconds", "1", "--out", str(out)) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert (
        err
        == "mlevents record: --partition: hub 'source' has no partition '9' (it has 0, 1, 2, 3)\n"
    )
    assert not out.exists()
    assert await _cli("record", "--connection-string", source, "--consumer-group", "nobody",
                      "--seconds", "20", "--out", str(out)) == 1  # fmt: skip
    captured = capsys.readouterr()
    assert "mlevents record: reading hub 'source' failed: partition " in captured.err
    assert "ConsumerGroups/nobody' could not be found" in captured.err
    assert KEY not in captured.out + captured.err
    assert list(read_event_file(str(out))) == []  # what was recorded (nothing) is a valid file


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--start", "yesterday"], "'yesterday' is not earliest, latest or an ISO 8601 time"),
        (["--start", "2024-05-14T09:00:00"], "has no time zone"),
        (["--count", "0"], "must be more than 0"),
        (["--out", "x.jsonl"], "--out: x.jsonl must end in .avro"),
    ],
)
def test_bad_options_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad positions, bounds and output names are usage errors."""
    cs = "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=r;SharedAccessKey=k;EntityPath=h"
    base = ["record", "--connection-string", cs, "--out", "x.avro"]
    try:
        code = main([*base, *argv])
    except SystemExit as exc:  # argparse's own usage errors
        code = int(str(exc.code))
    assert code == 2
    assert message in capsys.readouterr().err


def test_property_values_take_the_capture_map_types() -> None:
    """long, double, string (valid UTF-8) and bytes stay; other AMQP types become their text."""
    marker = uuid.UUID(int=7)
    values: list[object] = [7, 2.5, "text", b"utf-8 \xc3\xa9", b"\xff\x00", True, 2**64, marker]
    assert [avro_value(v) for v in values] == [
        7, 2.5, "text", "utf-8 é", b"\xff\x00", "true", str(2**64), str(marker)
    ]  # fmt: skip
    moment = datetime(2024, 5, 14, 9, 21, 38, 123000, tzinfo=UTC)
    assert capture_time(moment) == "2024-05-14T09:21:38.1230000Z"


def test_partition_is_read_from_system_properties_only(tmp_path: Path) -> None:
    """x-opt-partition-id in SystemProperties names the partition; in Properties it does not."""
    path = tmp_path / "capture.avro"
    records = [
        {"SequenceNumber": n, "Offset": "0", "EnqueuedTimeUtc": "", "Body": b"{}",
         "SystemProperties": system, "Properties": {"x-opt-partition-id": "3"}}
        for n, system in enumerate([{"x-opt-partition-id": "2"}, {}])
    ]  # fmt: skip
    write_capture(path, records)
    assert [r.partition for r in read_event_file(str(path))] == ["2", None]


def test_keep_partitions_refuses_records_without_a_partition(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """send --keep-partitions on a file with no partitions fails with exit 1 and names the line."""
    events = tmp_path / "plain.jsonl"
    events.write_text('{"a": 1}\n')
    cs = "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=r;SharedAccessKey=k;EntityPath=h"
    cs += ";UseDevelopmentEmulator=true"
    assert main(["send", "--connection-string", cs, "--keep-partitions", str(events)]) == 1
    assert f"{events}:1: no partition recorded" in capsys.readouterr().err
