"""Fixtures: an in-process emulator on a free port, and Azurite for the checkpoint store."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

from emulator import Emulator, HubSpec
from tests.support.azurite import Azurite, azurite, create_container


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """An in-memory emulator serving ``hub`` (4 partitions) and ``solo`` (1 partition)."""
    hubs = [HubSpec("hub", 4, ("$Default", "audit")), HubSpec("solo", 1)]
    async with Emulator(hubs) as running:
        yield running


@pytest.fixture(scope="session")
def azurite_blob() -> Iterator[Azurite]:
    """Azurite's blob service, in memory, for the whole test session."""
    with azurite() as running:
        yield running


@pytest.fixture
async def checkpoint_store(azurite_blob: Azurite) -> AsyncIterator[BlobCheckpointStore]:
    """A BlobCheckpointStore on a fresh Azurite container, for one test."""
    name = f"checkpoints-{uuid.uuid4().hex[:12]}"
    create_container(azurite_blob, name)
    store = BlobCheckpointStore.from_connection_string(azurite_blob.connection_string, name)
    async with store:
        yield store
