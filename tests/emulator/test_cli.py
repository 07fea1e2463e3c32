"""The ``emulator`` command, run through ``python -m emulator``'s parser."""

from __future__ import annotations

import asyncio
import signal

import pytest

from emulator import ConfigError, HubSpec
from emulator.amqp import Begin, Detach
from tests.support.emulator import emulator_process
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
