"""``mlevents status``: KEDA's lag arithmetic, and the command against the emulator with blob
(Azurite) and SQLite checkpoint stores, before and after a worker drains a backlog.

Expected lags follow kedacore/keda ``pkg/scalers/azure_eventhub_scaler.go`` (commit 01515ac),
``GetUnprocessedEventCountInPartition`` and the functions it calls; see
``consumer.commands.status.keda_partition_lag``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore
from azure.storage.blob.aio import ContainerClient

from consumer.commands.status import (
    HEADINGS,
    Checkpoint,
    Owner,
    build_status,
    read_status,
    render_text,
)
from consumer.config import load_config
from consumer.keda import (
    INT64_MAX,
    KedaSettings,
    PartitionProperties,
    keda_metric,
    keda_partition_lag,
    keda_replicas,
    keda_total,
)
from consumer.stores.checkpoints import SqliteCheckpointStore
from consumer.stores.deadletters import DeadLetter, DirectoryDeadLetterStore
from emulator import Emulator
from tests.support import ROOT
from tests.support.azurite import Azurite
from tests.support.emulator import receive, send_all
from tests.support.ports import free_port
from tests.support.processes import exit_code
from tests.support.webhooks import WebhookReceiver, webhook_rules
from tests.support.workers import (
    BLOB_ENV,
    PARTITIONS,
    Processes,
    blob_checkpoints,
    blob_storage,
    worker_config,
)

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
GROUP = "$Default"


def partition(last: int, beginning: int = 0, pid: str = "0") -> PartitionProperties:
    """Partition properties as the hub reports them (``last == -1``: empty)."""
    return PartitionProperties(
        partition_id=pid,
        beginning_sequence_number=beginning,
        last_enqueued_sequence_number=last,
        is_empty=last == -1,
    )


# --- KEDA's arithmetic ----------------------------------------------------------------------


def test_lag_is_last_enqueued_minus_checkpoint() -> None:
    """``last >= checkpoint``: ``last - checkpoint``; the worker's initial checkpoint at
    ``beginning - 1`` makes the whole partition count."""
    assert keda_partition_lag(partition(199), 99) == 100
    assert keda_partition_lag(partition(199), 199) == 0
    assert keda_partition_lag(partition(9), -1) == 10


def test_an_empty_partition_counts_nothing_whatever_the_checkpoint() -> None:
    """``LastEnqueuedSequenceNumber == -1`` returns 0 before the checkpoint is looked at."""
    assert keda_partition_lag(partition(-1), None) == 0
    assert keda_partition_lag(partition(-1), 500) == 0


def test_without_checkpoint_the_whole_retained_partition_counts() -> None:
    """No checkpoint blob: ``last - beginning + 1``, and KEDA's special cases: one event at 0
    counts 1, ``beginning == last`` elsewhere counts 0."""
    assert keda_partition_lag(partition(99), None) == 100
    assert keda_partition_lag(partition(109, beginning=10), None) == 100
    assert keda_partition_lag(partition(0), None) == 1
    assert keda_partition_lag(partition(5, beginning=5), None) == 0
    # The stale rule is not applied without a checkpoint.
    assert keda_partition_lag(partition(INT64_MAX - 1), None) == INT64_MAX


def test_wrap_around_counts_from_the_checkpoint_past_max_int64() -> None:
    """``last < checkpoint``: ``(MaxInt64 - checkpoint) + last``."""
    assert keda_partition_lag(partition(10), INT64_MAX - 15) == 25
    assert keda_partition_lag(partition(0), INT64_MAX) == 0


def test_a_count_within_the_stale_threshold_of_max_int64_is_zero() -> None:
    """KEDA's own example: checkpoint 15, partition info saying 10 gives MaxInt64 - 5, which
    is above ``MaxInt64 - stalePartitionInfoThreshold``: stale partition information, 0."""
    assert keda_partition_lag(partition(10), 15) == 0
    assert keda_partition_lag(partition(10), 15, stale_threshold=5) == INT64_MAX - 5
    assert keda_partition_lag(partition(10), 15, stale_threshold=6) == 0
    assert keda_partition_lag(partition(10), 15, stale_threshold=0) == INT64_MAX - 5


def test_total_metric_and_replicas() -> None:
    """The total saturates at MaxInt64 when the int64 sum overflows; the metric is capped at
    ``partitions * threshold`` only once ``total / threshold`` exceeds the partition count."""
    assert keda_total([1, 2, 3]) == 6
    assert keda_total([INT64_MAX - 10, 20]) == INT64_MAX  # KEDA's overflow example
    assert keda_metric(100, 4, 64) == 100
    assert keda_metric(300, 4, 64) == 300  # 300 // 64 == 4, not above 4
    assert keda_metric(320, 4, 64) == 256
    assert keda_replicas(100, 64, active=True) == 2
    assert keda_replicas(300, 64, active=True) == 5  # KEDA's cap lets one more through
    assert keda_replicas(256, 64, active=True) == 4
    assert keda_replicas(0, 64, active=False) == 0


def test_build_status_owners_ages_and_totals() -> None:
    """Claims older than the expiration are expired, released ones are no owner; checkpoint
    ages come from the given time; the KEDA numbers from the per-partition lags."""
    status = build_status(
        eventhub="hub",
        namespace="ns.servicebus.windows.net",
        consumer_group=GROUP,
        partitions=[
            partition(199, pid="0"),
            partition(49, pid="1"),
            partition(-1, pid="2"),
            partition(9, pid="3"),
        ],
        owners={
            "0": Owner(owner_id="a", claimed_at=NOW - 5),
            "1": Owner(owner_id="b", claimed_at=NOW - 61),
            "2": Owner(owner_id="", claimed_at=NOW - 1),
        },
        checkpoints={
            "0": Checkpoint(sequence_number=99, offset="4096", written_at=NOW - 12.5),
            "1": Checkpoint(sequence_number=49, offset="800", written_at=None),
        },
        dead_letters=3,
        now=NOW,
        ownership_expiration_s=60,
        keda=KedaSettings(threshold=50),
    )
    document = status.to_json()
    rows = {p["partition_id"]: p for p in document["partitions"]}
    assert rows["0"]["owner"] == {
        "owner_id": "a",
        "claimed_at": "2025-12-31T23:59:55+00:00",
        "expired": False,
    }
    assert rows["1"]["owner"]["expired"] is True
    assert rows["2"]["owner"] is None and rows["3"]["owner"] is None
    assert rows["0"]["checkpoint"] == {
        "sequence_number": 99,
        "offset": "4096",
        "written_at": "2025-12-31T23:59:47.500000+00:00",
        "age_s": 12.5,
    }
    assert rows["1"]["checkpoint"]["age_s"] is None
    assert [rows[p]["lag"] for p in "0123"] == [100, 0, 0, 10]
    assert document["total_lag"] == 110
    assert document["keda"] == {
        "unprocessed_event_threshold": 50,
        "activation_threshold": 0,
        "stale_partition_info_threshold": 10_000,
        "metric": 110,
        "active": True,
        "replicas": 3,
    }
    assert document["checked_at"] == "2026-01-01T00:00:00+00:00"
    assert document["dead_letters"] == 3

    lines = render_text(status).splitlines()
    assert lines[1].split() == [w for h in HEADINGS for w in h.split()]
    table = lines[2:6]
    assert [line.split()[0] for line in table] == list("0123")
    assert table[0].split() == ["0", "a", "active", "99", "4096", "12s", "0", "199", "100"]
    assert table[1].split()[:3] == ["1", "b", "expired"]
    assert "-1 (empty)" in table[2]
    assert "total lag 110" in lines[6] and "3 replica(s)" in lines[6]
    assert lines[7] == "dead letters: 3"
    # Columns line up: every row starts its LAG cell where the heading does.
    lag_at = lines[1].index("LAG")
    assert all(len(line) > lag_at and line[lag_at - 1] == " " for line in table)


# --- the command ---------------------------------------------------------------------------


async def status_command(config: Path, env: dict[str, str], *options: str) -> tuple[int, str, str]:
    """Run ``mlevents status`` as a process; (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "consumer", "status", "--config", str(config), *options,
        cwd=ROOT, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def lags(document: dict[str, Any]) -> dict[str, int]:
    return {p["partition_id"]: p["lag"] for p in document["partitions"]}


BACKLOG = {"0": 30, "1": 20, "2": 10, "3": 0}
"""Events sent per partition of a fresh hub: sequence numbers 0 .. count - 1."""


async def offset_of(emu: Emulator, partition_id: str, sequence_number: int) -> str:
    """The offset the hub gave the event at ``sequence_number`` (a checkpoint needs the real
    one: the SDK resumes from the offset)."""
    events = await receive(
        emu.connection_string("hub"), sequence_number + 1,
        partition_id=partition_id, starting_position="-1",
    )  # fmt: skip
    [event] = [e for e in events if e.sequence_number == sequence_number]
    return str(event.offset)


def backlog_ids() -> dict[str, list[str]]:
    """The event ids of ``BACKLOG``, by partition."""
    return {p: [f"s{p}-{i}" for i in range(n)] for p, n in BACKLOG.items() if n}


@pytest.mark.timeout(90)
async def test_blob_checkpoints_lag_then_a_worker_drains_it(
    tmp_path: Path, emu: Emulator, processes: Processes
) -> None:
    """Against Azurite: lags follow KEDA for checkpointed, uncheckpointed and empty partitions;
    after a worker drains the backlog every lag is 0 and every partition has a live owner."""
    account, _, _, container, env = await blob_storage(tmp_path, emu, processes)
    await send_all(emu.connection_string("hub"), backlog_ids())
    namespace = f"{emu.host}:{emu.port}"

    async with WebhookReceiver() as receiver:
        config = worker_config(
            tmp_path, webhook_rules(tmp_path / "rules.toml", receiver.url),
            checkpoints=blob_checkpoints(container),
        )  # fmt: skip

        # Before the container exists: no checkpoint anywhere, the whole backlog counts.
        code, out, err = await status_command(config, env, "--json")
        assert code == 0, err
        assert lags(json.loads(out)) == {"0": 30, "1": 20, "2": 10, "3": 0}
        async with ContainerClient.from_connection_string(
            account.connection_string, container
        ) as client:
            assert not await client.exists()  # status created nothing
            await client.create_container()
        offsets = {pid: await offset_of(emu, pid, 9) for pid in ("0", "2")}
        store = BlobCheckpointStore.from_connection_string(account.connection_string, container)
        async with store:
            for pid, offset in offsets.items():
                await store.update_checkpoint({
                    "fully_qualified_namespace": namespace, "eventhub_name": "hub",
                    "consumer_group": GROUP, "partition_id": pid,
                    "offset": offset, "sequence_number": 9,
                })  # fmt: skip

        code, out, err = await status_command(config, env, "--json", "--threshold", "8")
        assert code == 0, err
        document = json.loads(out)
        rows = {p["partition_id"]: p for p in document["partitions"]}
        # 0: 29 - 9; 1: no checkpoint, 19 - 0 + 1; 2: 9 - 9; 3: empty (last == -1).
        assert lags(document) == {"0": 20, "1": 20, "2": 0, "3": 0}
        assert [rows[p]["last_enqueued_sequence_number"] for p in "0123"] == [29, 19, 9, -1]
        assert rows["3"]["is_empty"] is True
        assert rows["0"]["checkpoint"]["sequence_number"] == 9
        assert rows["0"]["checkpoint"]["offset"] == offsets["0"]
        assert 0 <= rows["0"]["checkpoint"]["age_s"] < 60
        assert rows["1"]["checkpoint"] is None
        assert all(rows[p]["owner"] is None for p in "0123")
        # 40 // 8 = 5 > 4 partitions: the metric is capped at 4 * 8.
        assert document["total_lag"] == 40
        assert document["keda"]["metric"] == 32 and document["keda"]["replicas"] == 4
        assert document["dead_letters"] == 0
        assert (document["eventhub"], document["namespace"]) == ("hub", namespace)

        worker = processes.worker(config, "worker", env)
        await receiver.wait_for(40, timeout_s=40)  # the 20 + 20 past the checkpoints
        loaded = load_config(config, environ=env)

        drained: dict[str, Any] = {}

        async def all_drained() -> None:
            while True:
                status = await read_status(loaded)
                drained.update(status.to_json())
                if status.total_lag == 0 and all(
                    p.owner is not None and p.checkpoint is not None for p in status.partitions
                ):
                    return
                await asyncio.sleep(0.3)

        await asyncio.wait_for(all_drained(), 30)
        code, out, err = await status_command(config, env)
        os.kill(worker.process.pid, signal.SIGTERM)
        assert await exit_code(worker.process, 30) == 0

    # Once each, the events past the checkpoints and no other.
    assert receiver.acted == Counter(
        [f"s0-{i}" for i in range(10, 30)] + [f"s1-{i}" for i in range(20)]
    )
    rows = {p["partition_id"]: p for p in drained["partitions"]}
    assert all(rows[p]["lag"] == 0 for p in PARTITIONS)
    assert {rows[p]["owner"]["expired"] for p in PARTITIONS} == {False}
    assert len({rows[p]["owner"]["owner_id"] for p in PARTITIONS}) == 1
    assert [rows[p]["checkpoint"]["sequence_number"] for p in "012"] == [29, 19, 9]
    assert rows["3"]["checkpoint"]["sequence_number"] == -1  # the worker's initial one
    # The text table: headings, then one row per partition.
    assert code == 0, err
    lines = out.splitlines()
    assert lines[1].split() == [w for h in HEADINGS for w in h.split()]
    assert [line.split()[0] for line in lines[2:6]] == list(PARTITIONS)
    assert [line.split()[-1] for line in lines[2:6]] == ["0"] * 4
    assert lines[6].startswith("total lag 0 over 4 partition(s)")


@pytest.mark.timeout(60)
async def test_sqlite_checkpoints_with_times_and_dead_letters(
    tmp_path: Path, emu: Emulator
) -> None:
    """The local store: checkpoint ages from the times the store keeps, owners and their
    expiry from its ownership records, the dead letters in the folder counted."""
    await send_all(emu.connection_string("hub"), backlog_ids())
    env = {"EVENTHUB_CONNECTION_STRING": emu.connection_string()}
    config = worker_config(tmp_path, webhook_rules(tmp_path / "rules.toml", "http://127.0.0.1:9/"))
    loaded = load_config(config, environ=env)
    namespace = f"{emu.host}:{emu.port}"
    state = tmp_path / "state"

    # Nothing written yet: no file is created, everything counts.
    fresh = await read_status(loaded, clock=lambda: NOW)
    assert [p.lag for p in fresh.partitions] == [30, 20, 10, 0]
    assert not (state / "checkpoints.sqlite3").exists()
    assert not (state / "deadletters").exists()

    scope = {"fully_qualified_namespace": namespace, "eventhub_name": "hub"}
    async with SqliteCheckpointStore(state / "checkpoints.sqlite3", clock=lambda: NOW - 90) as st:
        await st.claim_ownership([{**scope, "consumer_group": GROUP, "partition_id": "0",
                                   "owner_id": "old-owner"}])  # fmt: skip
    async with SqliteCheckpointStore(state / "checkpoints.sqlite3", clock=lambda: NOW - 2) as st:
        await st.claim_ownership([{**scope, "consumer_group": GROUP, "partition_id": "1",
                                   "owner_id": "live-owner"}])  # fmt: skip
        await st.update_checkpoint({**scope, "consumer_group": GROUP, "partition_id": "0",
                                    "offset": "1500", "sequence_number": 24})  # fmt: skip
    async with DirectoryDeadLetterStore(state / "deadletters") as letters:
        for n in range(2):
            await letters.put(
                DeadLetter.create(
                    created=datetime(2026, 1, 1, tzinfo=UTC),
                    reason="decode",
                    error="bad",
                    body=b"x",
                    partition="0",
                    attempts=1,
                    sequence_number=n,
                )
            )

    status = await read_status(loaded, clock=lambda: NOW)
    document = status.to_json()
    rows = {p["partition_id"]: p for p in document["partitions"]}
    assert lags(document) == {"0": 5, "1": 20, "2": 10, "3": 0}  # 29 - 24; whole; whole; empty
    assert rows["0"]["checkpoint"] == {
        "sequence_number": 24,
        "offset": "1500",
        "written_at": "2025-12-31T23:59:58+00:00",
        "age_s": 2.0,
    }
    # ownership_expiration_s = 4 in the worker config.
    assert rows["0"]["owner"] == {
        "owner_id": "old-owner",
        "claimed_at": "2025-12-31T23:58:30+00:00",
        "expired": True,
    }
    assert rows["1"]["owner"]["expired"] is False
    assert document["dead_letters"] == 2
    text = render_text(status).splitlines()
    assert text[2].split() == ["0", "old-owner", "expired", "24", "1500", "2s", "0", "29", "5"]


@pytest.mark.timeout(60)
async def test_unreachable_hub_or_store_is_one_line_and_exit_2(
    tmp_path: Path, emu: Emulator
) -> None:
    """A hub or a blob store nobody listens for: one line naming it, no secret, exit 2."""
    dead = free_port()
    secret = "c2VjcmV0LWtleS1ub3QtdG8tYmUtc2hvd24="
    rules = webhook_rules(tmp_path / "rules.toml", "http://127.0.0.1:9/")
    config = worker_config(tmp_path, rules)
    unreachable_hub = {
        "EVENTHUB_CONNECTION_STRING": f"Endpoint=sb://127.0.0.1:{dead};SharedAccessKeyName=k;"
        f"SharedAccessKey={secret};UseDevelopmentEmulator=true"
    }
    code, out, err = await status_command(config, unreachable_hub)
    assert code == 2 and out == ""
    assert err.startswith(f"mlevents status: cannot read event hub hub at 127.0.0.1:{dead}: ")
    assert len(err.strip().splitlines()) == 1 and secret not in err

    blob_config = worker_config(tmp_path, rules, checkpoints=blob_checkpoints("cps"))
    store_down = {
        "EVENTHUB_CONNECTION_STRING": emu.connection_string(),
        BLOB_ENV: Azurite(dead).connection_string,
    }
    code, out, err = await status_command(blob_config, store_down)
    assert code == 2 and out == ""
    assert err.startswith("mlevents status: cannot read checkpoints in container cps: ")
    assert len(err.strip().splitlines()) == 1 and "Eby8vdM02x" not in err


def test_main_reports_a_config_without_eventhub(tmp_path: Path, capsys: Any) -> None:
    """A config without [eventhub] is a usage error naming the section."""
    from consumer.commands.main import main

    rules = webhook_rules(tmp_path / "rules.toml", "http://127.0.0.1:9/")
    path = tmp_path / "config.toml"
    path.write_text(f'[rules]\nfiles = ["{rules}"]\n')
    assert main(["status", "--config", str(path)]) == 2
    assert "eventhub: status needs an [eventhub] section" in capsys.readouterr().err
