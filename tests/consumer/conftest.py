"""Fixtures for the tests that run worker processes next to an in-process emulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from emulator import Emulator, HubSpec
from tests.support.workers import PARTITIONS, Processes


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Processes started by a test, all killed at its end."""
    running = Processes(tmp_path)
    try:
        yield running
    finally:
        running.kill_all()


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    """An in-process emulator serving ``hub`` with four partitions."""
    async with Emulator([HubSpec("hub", len(PARTITIONS))]) as running:
        yield running
