"""``mlevents send``: recorded event files published with the SDK's producer, to the emulator."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from consumer.commands.main import main
from consumer.commands.progress import Progress
from emulator import Emulator, HubSpec
from tests.support.emulator import receive
from tests.support.terminal import Terminal


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


async def test_send_reads_the_connection_string_from_the_environment(
    emulator: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``--connection-string-env NAME`` takes the secret from the environment, off argv."""
    lines = tmp_path / "recorded.jsonl"
    lines.write_text('{"a": 1}\n')
    cs = emulator.connection_string("hub")
    monkeypatch.setenv("MLEVENTS_TEST_SEND_HUB", cs)
    argv = ["send", "--connection-string-env", "MLEVENTS_TEST_SEND_HUB", str(lines)]
    assert await asyncio.to_thread(main, argv) == 0
    assert capsys.readouterr().out == "sent 1 events\n"
    events = await receive(cs, 1, starting_position="-1")
    assert [e.body_as_json() for e in events] == [{"a": 1}]


def test_send_names_an_unset_variable_and_refuses_both_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unset variable is a usage error naming the option and the variable; the string
    and the variable together are refused by the parser."""
    monkeypatch.delenv("MLEVENTS_TEST_SEND_HUB", raising=False)
    events = str(tmp_path / "events.jsonl")
    assert main(["send", "--connection-string-env", "MLEVENTS_TEST_SEND_HUB", events]) == 2
    assert capsys.readouterr().err == (
        "mlevents send: --connection-string-env: environment variable MLEVENTS_TEST_SEND_HUB "
        "is not set\n"
    )
    with pytest.raises(SystemExit) as exited:
        main(["send", "--connection-string", "x", "--connection-string-env", "Y", events])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


async def test_send_shows_progress_on_a_terminal(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal, a progress line counts the events read and sent, and ends with a
    newline before the summary."""
    lines = tmp_path / "recorded.jsonl"
    lines.write_text('{"a": 1}\n{"a": 2}\n')
    monkeypatch.setattr(Progress, "AFTER_S", 0.0)
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    argv = ["send", "--connection-string", emulator.connection_string("hub"), str(lines)]
    assert await asyncio.to_thread(main, argv) == 0
    assert re.fullmatch(r"\r1 events read, [\d,]+/s, 0 sent\n", terminal.getvalue())
