"""Intake details that KEDA relies on: initial checkpoints and lower-case names."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import structlog
from structlog.testing import capture_logs

from consumer.config import EventHubConfig, load_config
from consumer.sqlitestore import SqliteCheckpointStore
from consumer.wiring import build, warn_if_not_lower_case
from emulator import Emulator, HubSpec

from ..emulator.peers import send_each
from .peers import webhook_rules, worker_config


async def test_claimed_partitions_without_checkpoints_get_one_at_the_start(tmp_path: Path) -> None:
    """With starting_position latest, each claimed partition is checkpointed at its last event."""
    async with Emulator([HubSpec("hub", 2)]) as emu:
        await send_each(emu.connection_string("hub"), {"0": ["a", "b", "c"], "1": []})
        rules = webhook_rules(tmp_path / "rules.toml", "http://127.0.0.1:9/unused")
        path = worker_config(tmp_path, rules, starting_position="latest")
        config = load_config(path, {"EVENTHUB_CONNECTION_STRING": emu.connection_string()})
        async with contextlib.AsyncExitStack() as stack:
            worker = await build(config, stack)
            task = asyncio.create_task(worker.run())
            for _ in range(100):
                if len(worker.partitions) == 2:
                    break
                await asyncio.sleep(0.1)
            worker.stop()
            await task
        async with SqliteCheckpointStore(tmp_path / "state" / "checkpoints.sqlite3") as store:
            namespace = f"{emu.host}:{emu.port}"
            checkpoints = await store.list_checkpoints(namespace, "hub", "$Default")
    by_partition = {c["partition_id"]: c["sequence_number"] for c in checkpoints}
    assert by_partition == {"0": 2, "1": -1}


async def test_lag_is_reported_from_the_checkpoint_found_at_claim(tmp_path: Path) -> None:
    """A partition claimed with a backlog behind an earlier checkpoint shows its lag before
    this process writes any checkpoint of its own (its cadence is far off)."""
    async with Emulator([HubSpec("hub", 1)]) as emu:
        await send_each(emu.connection_string("hub"), {"0": [f"e{i}" for i in range(8)]})
        namespace = f"{emu.host}:{emu.port}"
        async with SqliteCheckpointStore(tmp_path / "state" / "checkpoints.sqlite3") as store:
            await store.update_checkpoint({
                "fully_qualified_namespace": namespace, "eventhub_name": "hub",
                "consumer_group": "$Default", "partition_id": "0",
                "offset": "-1", "sequence_number": 2,
            })  # fmt: skip
        rules = webhook_rules(tmp_path / "rules.toml", "http://127.0.0.1:9/unused")
        path = worker_config(tmp_path, rules, every_events=1000, every_s=600)
        config = load_config(path, {"EVENTHUB_CONNECTION_STRING": emu.connection_string()})
        async with contextlib.AsyncExitStack() as stack:
            worker = await build(config, stack)
            task = asyncio.create_task(worker.run())
            try:
                text = ""
                for _ in range(200):
                    text = worker.metrics.render().decode()
                    if 'mlevents_partition_lag{partition="0"}' in text:
                        break
                    await asyncio.sleep(0.1)
            finally:
                worker.stop()
                await task
    assert 'mlevents_partition_lag{partition="0"} 5.0' in text
    assert "mlevents_checkpoint_age_seconds{" not in text


def test_upper_case_namespace_or_hub_is_warned_about() -> None:
    """KEDA reads checkpoints under lower-case paths, so mixed case gets a warning."""
    log = structlog.get_logger("test")
    with capture_logs() as logs:
        warn_if_not_lower_case(EventHubConfig(name="Hub", fully_qualified_namespace="Ns.x"), log)
        warn_if_not_lower_case(
            EventHubConfig(name="", connection_string="Endpoint=sb://ns/;EntityPath=hub"), log
        )
    assert [(e["what"], e["name"]) for e in logs] == [("namespace", "Ns.x"), ("event hub", "Hub")]
