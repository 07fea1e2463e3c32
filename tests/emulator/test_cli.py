"""The ``emulator`` and ``send`` commands, run through ``python -m emulator``'s parser."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest

from emulator import ConfigError, Emulator, HubSpec
from emulator.__main__ import main
from emulator.amqp import Begin, Detach
from tests.support.emulator import emulator_process, receive
from tests.support.ports import free_port

from .raw import RawClient


def test_hub_specs_parse_partitions_and_groups() -> None:
    """NAME:PARTITIONS:GROUPS adds groups to $Default; bad specs are rejected."""
    assert HubSpec.parse("events:8:audit,replay") == HubSpec(
        "events", 8, ("$Default", "audit", "replay")
    )
    assert HubSpec.parse("events") == HubSpec("events", 4)
    for bad in ("", ":4", "events:many", "events:0"):
        with pytest.raises(ConfigError):
            HubSpec.parse(bad)


async def test_send_publishes_recorded_events_in_order(emulator: Emulator, tmp_path: Path) -> None:
    """``send`` replays a JSON Lines file and a JSON file to one partition, in order."""
    lines = tmp_path / "recorded.jsonl"
    lines.write_text("".join(json.dumps({"n": n}) + "\n" for n in range(3)))
    single = tmp_path / "single.json"
    single.write_text(json.dumps({"n": 3}))
    cs = emulator.connection_string("hub")
    argv = ["send", "--connection-string", cs, "--partition", "2", str(lines), str(single)]
    assert await asyncio.to_thread(main, argv) == 0
    events = await receive(cs, 4, partition_id="2", starting_position="-1")
    assert [e.body_as_json() for e in events] == [{"n": n} for n in range(4)]


async def test_send_with_a_partition_key(emulator: Emulator, tmp_path: Path) -> None:
    """``send --partition-key`` stamps the key on every event."""
    lines = tmp_path / "recorded.jsonl"
    lines.write_text('{"a": 1}\n{"a": 2}\n')
    cs = emulator.connection_string("hub")
    argv = ["send", "--connection-string", cs, "--partition-key", "run-7", str(lines)]
    assert await asyncio.to_thread(main, argv) == 0
    events = await receive(cs, 2, starting_position="-1")
    assert {e.partition_key for e in events} == {b"run-7"}


async def test_send_reports_a_missing_file(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that cannot be read fails the command with exit code 1 and names the file."""
    missing = str(tmp_path / "missing.jsonl")
    argv = ["send", "--connection-string", emulator.connection_string("hub"), missing]
    assert await asyncio.to_thread(main, argv) == 1
    assert "missing.jsonl" in capsys.readouterr().err


async def test_sigusr1_drops_connections_of_a_running_emulator() -> None:
    """``kill -USR1`` makes the emulator process drop every client connection."""
    port = free_port()
    with emulator_process(port, "--hub", "hub:1") as process:
        async with RawClient(port) as client:
            await client.next_of(Begin)
            process.send_signal(signal.SIGUSR1)
            assert client.reader is not None
            assert await asyncio.wait_for(client.reader.read(), 5) == b""  # EOF
        assert process.poll() is None  # still serving: the signal was handled, not fatal
        async with RawClient(port) as again:
            assert isinstance(await again.next_of(Begin), Begin)


async def test_refuse_links_option_detaches_new_links() -> None:
    """``--refuse-links`` makes the emulator detach new links with the busy condition."""
    port = free_port()
    with emulator_process(port, "--hub", "hub:1", "--refuse-links", "60"):
        async with RawClient(port) as client:
            client.attach_sender("amqps://127.0.0.1/hub")
            detach = await client.next_of(Detach)
    assert isinstance(detach, Detach) and "com.microsoft:server-busy" in str(detach.error)
