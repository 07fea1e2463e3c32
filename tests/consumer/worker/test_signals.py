"""Ctrl-C under a parent that forwards it (``uv run``, ``make``): the worker gets SIGINT twice,
from the terminal and from the parent, and must take the two for one request to drain; a
second Ctrl-C a while later still stops it at once."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from consumer.errors import EXIT_INTERRUPTED, EXIT_OK
from consumer.stores.checkpoints import SqliteCheckpointStore
from consumer.worker.wiring import REPEATED_SIGNAL_S
from emulator import Emulator
from tests.support.arm import AZ_BIN
from tests.support.emulator import send_all
from tests.support.gate import Gate
from tests.support.processes import exit_code
from tests.support.waiting import until
from tests.support.webhooks import WebhookReceiver, webhook_rules
from tests.support.workers import Processes, WorkerProcess, worker_config

FORWARDER = [str(AZ_BIN / "forward-sigint")]
"""A parent that forwards SIGINT to the worker 200 ms after it got its own, as uv does."""


async def _worker_holding_one_action(
    tmp_path: Path, emu: Emulator, processes: Processes, receiver: WebhookReceiver
) -> WorkerProcess:
    """A worker under the forwarding parent whose one event's webhook is held by the gate.
    Checkpoints are due only at shutdown: the final one is the only one after the claim's."""
    await send_all(emu.connection_string("hub"), {"0": ["e0"]})
    rules = webhook_rules(tmp_path / "rules.toml", receiver.url)
    config = worker_config(tmp_path, rules, every_events=100_000, every_s=3600, drain_deadline_s=60)
    env = {"EVENTHUB_CONNECTION_STRING": emu.connection_string()}
    worker = processes.worker(config, "worker", env, parent=FORWARDER)
    assert receiver.gate is not None
    gate = receiver.gate
    await until(lambda: gate.waiting == 1, 30, "the webhook held")
    return worker


async def _checkpoint(tmp_path: Path, emu: Emulator) -> int | None:
    """Partition 0's checkpointed sequence number (-1: the one written when it was claimed)."""
    async with SqliteCheckpointStore(tmp_path / "state" / "checkpoints.sqlite3") as store:
        found = await store.list_checkpoints(f"{emu.host}:{emu.port}", "hub", "$Default")
    return next((int(c["sequence_number"]) for c in found if c["partition_id"] == "0"), None)


def _forwarded(tmp_path: Path) -> int:
    return (tmp_path / "worker.out").read_text().count("forwarded SIGINT")


async def test_ctrl_c_forwarded_by_the_parent_drains_and_exits_0(
    tmp_path: Path, emu: Emulator, processes: Processes
) -> None:
    """SIGINT to the process group, then the parent's copy 200 ms later: one request. The
    action in flight finishes, the final checkpoint is written, and the exit code is 0."""
    gate = Gate()
    gate.close()
    async with WebhookReceiver(gate=gate) as receiver:
        worker = await _worker_holding_one_action(tmp_path, emu, processes, receiver)
        os.killpg(worker.process.pid, signal.SIGINT)
        await until(lambda: _forwarded(tmp_path) == 1, 10, "the parent's SIGINT")
        await until(
            lambda: worker.process.poll() is not None or worker.logged("worker.signal_repeated"),
            10,
            "the second SIGINT handled",
        )
        gate.open()
        assert await exit_code(worker.process, 60) == EXIT_OK
    assert receiver.acted == {"e0": 1}
    assert await _checkpoint(tmp_path, emu) == 0  # the final checkpoint, past e0


async def test_a_second_ctrl_c_later_stops_at_once_with_130(
    tmp_path: Path, emu: Emulator, processes: Processes
) -> None:
    """A Ctrl-C more than ``REPEATED_SIGNAL_S`` after the first is the user's second: the
    worker exits with 130 at once, the action still held and no final checkpoint written."""
    gate = Gate()
    gate.close()
    async with WebhookReceiver(gate=gate) as receiver:
        worker = await _worker_holding_one_action(tmp_path, emu, processes, receiver)
        loop = asyncio.get_running_loop()
        first_at = loop.time()
        os.killpg(worker.process.pid, signal.SIGINT)
        await until(lambda: worker.logged("worker.signal_repeated"), 10, "the parent's SIGINT")
        # The rule under test is about time: the next Ctrl-C comes after the window.
        await until(lambda: loop.time() - first_at > REPEATED_SIGNAL_S + 0.2, 5, "a pause")
        os.killpg(worker.process.pid, signal.SIGINT)
        assert await exit_code(worker.process, 10) == EXIT_INTERRUPTED
        assert gate.waiting == 1  # the drain did not wait for it
        gate.open()
    assert await _checkpoint(tmp_path, emu) == -1  # only the one written at the claim
