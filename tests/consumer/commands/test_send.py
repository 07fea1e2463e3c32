"""``mlevents send``: recorded event files published with the SDK's producer, to the emulator."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from consumer.commands.main import main
from emulator import Emulator, HubSpec
from tests.support.emulator import receive


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """An in-memory emulator serving ``hub`` (4 partitions)."""
    async with Emulator([HubSpec("hub", 4)]) as running:
        yield running


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
