"""``mlevents status``: per partition, who owns it, where its checkpoint is and how far behind
the consumer group is, with the lag computed the way KEDA's ``azure-eventhub`` scaler does.

The command only reads: it asks the hub for its partitions' properties (management calls,
no receiver), lists ownership and checkpoints in the configured checkpoint store and counts
the dead letters. It claims nothing, writes no checkpoint, and creates no missing container,
folder or database file (a missing one reads as empty, as KEDA reads a missing checkpoint).
Checkpoints are read where the SDK writes them, under lower-cased names; KEDA finds them there
only when its namespace and hub names are lower case too (the worker warns when they are not).

The pure part (``build_status``, ``render_text``, and KEDA's arithmetic in ``consumer.keda``)
takes plain values and the time of the reading; ``read_status`` does the I/O with an injected clock.

``--json`` prints one document::

    {
      "eventhub": "hub", "namespace": "ns.servicebus.windows.net",
      "consumer_group": "$Default",
      "checked_at": "2026-01-01T00:00:00+00:00",      # the clock's time, UTC
      "partitions": [
        {
          "partition_id": "0",
          "owner": {                                   # null: never claimed, or released
            "owner_id": "…", "claimed_at": "…",        # the claim's last renewal (or null)
            "expired": false                           # older than ownership_expiration_s
          },
          "checkpoint": {                              # null: no checkpoint
            "sequence_number": 99, "offset": "…",
            "written_at": "…", "age_s": 4.5            # null when the store kept no time
          },
          "beginning_sequence_number": 0,
          "last_enqueued_sequence_number": 199,        # -1: the partition is empty
          "is_empty": false,
          "lag": 100                                   # KEDA's unprocessed event count
        }
      ],
      "total_lag": 100,
      "keda": {
        "unprocessed_event_threshold": 64, "activation_threshold": 0,
        "stale_partition_info_threshold": 10000,
        "metric": 100,        # the value KEDA reports (total capped at partitions * threshold)
        "active": true,       # total_lag > activation_threshold
        "replicas": 2         # what the HPA asks for: ceil(metric / threshold), 0 if inactive
      },
      "dead_letters": 0
    }

Errors (configuration, an unreachable hub or store) are one line on standard error naming
what failed, never a secret, and exit code 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consumer.config import Config, EventHubConfig, StoreConfig, load_config
from consumer.errors import EXIT_OK, EXIT_USAGE, ConfigError, DeadLetterError, StatusError
from consumer.keda import (
    KEDA_ACTIVATION_THRESHOLD,
    KEDA_STALE_THRESHOLD,
    KEDA_THRESHOLD,
    KedaSettings,
    PartitionProperties,
    keda_metric,
    keda_partition_lag,
    keda_replicas,
    keda_total,
)

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

    from consumer.credentials import Credential

RETRY_TOTAL = 1
"""One retry per hub call: status answers within seconds when the hub is down."""
STORAGE_RETRY: dict[str, Any] = {"retry_total": 1, "initial_backoff": 1, "increment_base": 2}
"""One retry after a second for the first storage call (the SDK's default waits 15 s); the
listings after it go without retries."""


# --- the pure part -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """A partition's checkpoint; ``written_at`` (epoch seconds) when the store keeps it."""

    sequence_number: int
    offset: str
    written_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Owner:
    """A partition's ownership record; ``claimed_at`` is its last renewal (epoch seconds)."""

    owner_id: str
    claimed_at: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionStatus:
    """One partition's row."""

    properties: PartitionProperties
    owner: Owner | None
    owner_expired: bool
    checkpoint: Checkpoint | None
    checkpoint_age_s: float | None
    lag: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """Everything ``mlevents status`` reports."""

    eventhub: str
    namespace: str
    consumer_group: str
    checked_at: float
    partitions: tuple[PartitionStatus, ...]
    keda: KedaSettings
    total_lag: int
    metric: int
    active: bool
    replicas: int
    dead_letters: int

    def to_json(self) -> dict[str, Any]:
        """The document ``--json`` prints (its shape is in the module docstring)."""
        return {
            "eventhub": self.eventhub,
            "namespace": self.namespace,
            "consumer_group": self.consumer_group,
            "checked_at": _iso(self.checked_at),
            "partitions": [_partition_json(p) for p in self.partitions],
            "total_lag": self.total_lag,
            "keda": {
                "unprocessed_event_threshold": self.keda.threshold,
                "activation_threshold": self.keda.activation_threshold,
                "stale_partition_info_threshold": self.keda.stale_threshold,
                "metric": self.metric,
                "active": self.active,
                "replicas": self.replicas,
            },
            "dead_letters": self.dead_letters,
        }


def build_status(
    *,
    eventhub: str,
    namespace: str,
    consumer_group: str,
    partitions: Sequence[PartitionProperties],
    owners: Mapping[str, Owner],
    checkpoints: Mapping[str, Checkpoint],
    dead_letters: int,
    now: float,
    ownership_expiration_s: float,
    keda: KedaSettings = KedaSettings(),
) -> Status:
    """Put the readings together; ``now`` is the time they were taken (epoch seconds).

    A claim is expired as the SDK's load balancer sees it: not renewed within
    ``ownership_expiration_s``. Released claims (empty owner id) count as no owner.
    """
    rows = []
    for properties in partitions:
        pid = properties.partition_id
        owner = owners.get(pid)
        if owner is not None and not owner.owner_id:
            owner = None
        expired = owner is not None and (
            owner.claimed_at is None or owner.claimed_at + ownership_expiration_s <= now
        )
        checkpoint = checkpoints.get(pid)
        written = checkpoint.written_at if checkpoint is not None else None
        lag = keda_partition_lag(
            properties,
            checkpoint.sequence_number if checkpoint is not None else None,
            stale_threshold=keda.stale_threshold,
        )
        rows.append(
            PartitionStatus(
                properties=properties,
                owner=owner,
                owner_expired=expired,
                checkpoint=checkpoint,
                checkpoint_age_s=None if written is None else max(0.0, now - written),
                lag=lag,
            )
        )
    total = keda_total(row.lag for row in rows)
    metric = keda_metric(total, len(rows), keda.threshold)
    active = total > keda.activation_threshold
    return Status(
        eventhub=eventhub,
        namespace=namespace,
        consumer_group=consumer_group,
        checked_at=now,
        partitions=tuple(rows),
        keda=keda,
        total_lag=total,
        metric=metric,
        active=active,
        replicas=keda_replicas(metric, keda.threshold, active=active),
        dead_letters=dead_letters,
    )


HEADINGS = (
    "PARTITION", "OWNER", "CLAIM", "CHECKPOINT", "OFFSET", "AGE", "BEGIN", "LAST ENQUEUED", "LAG",
)  # fmt: skip


def render_text(status: Status) -> str:
    """The table for people: a heading line, one row per partition, then the totals."""
    rows: list[tuple[str, ...]] = [HEADINGS]
    for p in status.partitions:
        owner, cp, props = p.owner, p.checkpoint, p.properties
        claim = "-" if owner is None else ("expired" if p.owner_expired else "active")
        last = str(props.last_enqueued_sequence_number)
        rows.append((
            props.partition_id,
            "-" if owner is None else owner.owner_id,
            claim,
            "-" if cp is None else str(cp.sequence_number),
            "-" if cp is None else cp.offset,
            "-" if p.checkpoint_age_s is None else _duration(p.checkpoint_age_s),
            str(props.beginning_sequence_number),
            f"{last} (empty)" if props.is_empty else last,
            str(p.lag),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADINGS))]
    lines = [
        f"event hub {status.eventhub} on {status.namespace}, consumer group "
        f"{status.consumer_group}, at {_iso(status.checked_at)}",
        *("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
          for row in rows),
        f"total lag {status.total_lag} over {len(status.partitions)} partition(s); "
        f"KEDA (threshold {status.keda.threshold}): metric {status.metric}, "
        f"{'active' if status.active else 'not active'}, {status.replicas} replica(s)",
        f"dead letters: {status.dead_letters}",
    ]  # fmt: skip
    return "\n".join(lines)


def _partition_json(p: PartitionStatus) -> dict[str, Any]:
    owner, cp, props = p.owner, p.checkpoint, p.properties
    return {
        "partition_id": props.partition_id,
        "owner": None
        if owner is None
        else {
            "owner_id": owner.owner_id,
            "claimed_at": None if owner.claimed_at is None else _iso(owner.claimed_at),
            "expired": p.owner_expired,
        },
        "checkpoint": None
        if cp is None
        else {
            "sequence_number": cp.sequence_number,
            "offset": cp.offset,
            "written_at": None if cp.written_at is None else _iso(cp.written_at),
            "age_s": p.checkpoint_age_s,
        },
        "beginning_sequence_number": props.beginning_sequence_number,
        "last_enqueued_sequence_number": props.last_enqueued_sequence_number,
        "is_empty": props.is_empty,
        "lag": p.lag,
    }


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat()


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


# --- the I/O part ------------------------------------------------------------------------


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``status``: owners, checkpoints, lag and dead letters of the configured hub."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "status", help="per partition: owner, checkpoint and lag as KEDA counts it"
    )
    parser.add_argument(
        "--config", required=True, metavar="PATH", help="the config.toml the workers run with"
    )
    parser.add_argument("--json", action="store_true", help="one JSON document for scripts")
    parser.add_argument(
        "--threshold", type=_positive, default=KEDA_THRESHOLD, metavar="N",
        help=f"KEDA's unprocessedEventThreshold (default {KEDA_THRESHOLD})",
    )  # fmt: skip
    parser.add_argument(
        "--activation-threshold", type=_non_negative, default=KEDA_ACTIVATION_THRESHOLD,
        metavar="N", help="KEDA's activationUnprocessedEventThreshold (default 0)",
    )  # fmt: skip
    parser.add_argument(
        "--stale-threshold", type=_non_negative, default=KEDA_STALE_THRESHOLD, metavar="N",
        help=f"KEDA's stalePartitionInfoThreshold (default {KEDA_STALE_THRESHOLD})",
    )  # fmt: skip
    parser.set_defaults(func=run_status)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number of at least 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a whole number of at least 0")
    return value


def run_status(args: argparse.Namespace, *, clock: Callable[[], float] = time.time) -> int:
    """Print the status (a table, or JSON with ``--json``); 2 when something cannot be read."""
    config = load_config(args.config, secrets_of=["eventhub", "checkpoints", "deadletters"])
    keda = KedaSettings(
        threshold=args.threshold,
        activation_threshold=args.activation_threshold,
        stale_threshold=args.stale_threshold,
    )
    # The SDKs log their failures (with request details) besides raising them; the raised
    # error is reported here, in one line.
    logging.getLogger("azure").addHandler(logging.NullHandler())
    try:
        status = asyncio.run(read_status(config, keda=keda, clock=clock))
    except (StatusError, DeadLetterError) as exc:
        print(f"mlevents status: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(status.to_json(), indent=2) if args.json else render_text(status))
    return EXIT_OK


async def read_status(
    config: Config,
    *,
    keda: KedaSettings = KedaSettings(),
    clock: Callable[[], float] = time.time,
    credential: AsyncTokenCredential | None = None,
) -> Status:
    """Read the hub, the checkpoint store and the dead letters; the clock is read once, after.

    ``credential`` is for Azure AD (hub by namespace, stores by account URL); when needed
    and not given, the one ``[azure] credential`` names is made and closed here.

    Raises:
        ConfigError: the config has no [eventhub] section.
        StatusError: the hub or a store could not be read.
    """

    from consumer.credentials import LazyCredential

    hub = config.eventhub
    if hub is None:
        raise ConfigError(f"{config.path}: eventhub: status needs an [eventhub] section")
    async with contextlib.AsyncExitStack() as stack:
        lazy = LazyCredential(config, stack, given=credential)
        namespace, name, partitions = await _read_hub(hub, lazy)
        owners, checkpoints = await _read_checkpoint_store(
            config, namespace, name, hub.consumer_group, lazy
        )
        dead_letters = await _count_dead_letters(config, lazy)
    return build_status(
        eventhub=name,
        namespace=namespace,
        consumer_group=hub.consumer_group,
        partitions=partitions,
        owners=owners,
        checkpoints=checkpoints,
        dead_letters=dead_letters,
        now=clock(),
        ownership_expiration_s=hub.ownership_expiration_s,
        keda=keda,
    )


async def _read_hub(
    config: EventHubConfig, credential: Credential
) -> tuple[str, str, list[PartitionProperties]]:
    """(namespace, hub name, each partition's properties), with management calls only."""
    from azure.eventhub.aio import EventHubConsumerClient

    from consumer.stores.blob import describe_error
    from consumer.stores.checkpoints import checkpoint_scope

    namespace, _ = checkpoint_scope(config)
    where = f"event hub {config.name or '(from the connection string)'} at {namespace or '?'}"
    options: dict[str, Any] = {"consumer_group": config.consumer_group, "retry_total": RETRY_TOTAL}
    try:
        if config.connection_string is not None:
            if config.name:
                options["eventhub_name"] = config.name
            client = EventHubConsumerClient.from_connection_string(
                config.connection_string, **options
            )
        else:
            client = EventHubConsumerClient(
                fully_qualified_namespace=namespace, eventhub_name=config.name,
                credential=credential(), **options,
            )  # fmt: skip
    except (ValueError, TypeError) as exc:
        raise StatusError(f"{where}: the connection settings are not valid") from exc
    name: str = client.eventhub_name
    where = f"event hub {name} at {namespace}"
    try:
        async with client:
            hub = await client.get_eventhub_properties()
            partitions = []
            for partition_id in hub["partition_ids"]:
                info = await client.get_partition_properties(partition_id)
                partitions.append(
                    PartitionProperties(
                        partition_id=str(partition_id),
                        beginning_sequence_number=int(info["beginning_sequence_number"]),
                        last_enqueued_sequence_number=int(info["last_enqueued_sequence_number"]),
                        is_empty=bool(info["is_empty"]),
                    )
                )
    except Exception as exc:  # any SDK failure: the hub cannot be read
        raise StatusError(f"cannot read {where}: {describe_error(exc)}") from exc
    return namespace, name, partitions


async def _read_checkpoint_store(
    config: Config,
    namespace: str,
    hub: str,
    group: str,
    credential: Credential,
) -> tuple[dict[str, Owner], dict[str, Checkpoint]]:
    """Ownership records and checkpoints by partition id, from the configured store."""
    store = config.checkpoints.store
    if store.kind == "local":
        path = config.local_path(store, "checkpoints.sqlite3")
        return await _read_sqlite(path, namespace, hub, group)
    return await _read_blobs(store, namespace, hub, group, credential)


async def _read_sqlite(
    path: Path, namespace: str, hub: str, group: str
) -> tuple[dict[str, Owner], dict[str, Checkpoint]]:
    from consumer.stores.checkpoints import SqliteCheckpointStore

    if not await asyncio.to_thread(path.is_file):
        return {}, {}  # nothing ever checkpointed here; do not create the file
    try:
        async with SqliteCheckpointStore(path) as local:
            ownership = await local.list_ownership(namespace, hub, group)
            listed = await local.list_checkpoints(namespace, hub, group)
    except Exception as exc:  # sqlite3 errors, a file that is no database
        detail = f"{type(exc).__name__}: {exc}"  # SQLite's messages carry no secrets
        raise StatusError(f"cannot read checkpoints in {path}: {detail}") from exc
    return _owners(ownership), {
        str(c["partition_id"]): Checkpoint(
            sequence_number=int(c["sequence_number"]),
            offset=str(c["offset"]),
            written_at=c.get("last_modified_time"),
        )
        for c in listed
    }


async def _read_blobs(
    store: StoreConfig,
    namespace: str,
    hub: str,
    group: str,
    credential: Credential,
) -> tuple[dict[str, Owner], dict[str, Checkpoint]]:
    """Ownership through the SDK's ``BlobCheckpointStore``; checkpoints from a listing of the
    same blobs it writes (its ``list_checkpoints`` leaves out when they were written). A
    missing container reads as empty, as KEDA takes it for no checkpoint."""

    from azure.core.exceptions import ResourceNotFoundError

    from consumer.stores.blob import BlobAccount, describe_error

    container = store.container or ""
    try:
        account = BlobAccount.of(store, credential)
        sdk_store = account.checkpoint_store(container, **STORAGE_RETRY)
        blobs = account.container_client(container, retry_total=0)
    except ValueError as exc:
        raise StatusError(f"checkpoint container {container}: settings not valid") from exc
    prefix = f"{namespace}/{hub}/{group}/checkpoint/".lower()
    try:
        async with sdk_store, blobs:
            ownership = await sdk_store.list_ownership(namespace, hub, group)
            checkpoints = {}
            async for blob in blobs.list_blobs(name_starts_with=prefix, include=["metadata"]):
                metadata = blob.metadata or {}
                if "sequencenumber" not in metadata:
                    continue
                modified = blob.last_modified
                checkpoints[str(blob.name).rsplit("/", 1)[-1]] = Checkpoint(
                    sequence_number=int(metadata["sequencenumber"]),
                    offset=str(metadata.get("offset", "")),
                    written_at=None if modified is None else modified.timestamp(),
                )
    except ResourceNotFoundError:
        return {}, {}
    except Exception as exc:  # any storage failure
        raise StatusError(
            f"cannot read checkpoints in container {container}: {describe_error(exc)}"
        ) from exc
    return _owners(ownership), checkpoints


def _owners(records: Iterable[Mapping[str, Any]]) -> dict[str, Owner]:
    return {
        str(r["partition_id"]): Owner(
            owner_id=str(r.get("owner_id") or ""),
            claimed_at=r.get("last_modified_time"),
        )
        for r in records
    }


async def _count_dead_letters(config: Config, credential: Credential) -> int:
    """How many dead letters there are; a missing folder or container holds none."""

    from azure.core.exceptions import AzureError, ResourceNotFoundError

    from consumer.stores.blob import BlobAccount, describe_error
    from consumer.stores.deadletters import BLOB_PREFIX, DirectoryDeadLetterStore

    store = config.deadletters
    if store.kind == "local":
        path = config.local_path(store, "deadletters")
        # Not entered: entering creates the folder.
        return await DirectoryDeadLetterStore(path).count()
    container = store.container or ""
    try:
        client = BlobAccount.of(store, credential).container_client(container, retry_total=0)
    except ValueError as exc:
        raise StatusError(f"dead-letter container {container}: settings not valid") from exc
    try:
        async with client:
            names = client.list_blob_names(name_starts_with=BLOB_PREFIX)
            return len([name async for name in names if name.endswith(".json")])
    except ResourceNotFoundError:
        return 0
    except AzureError as exc:
        raise StatusError(
            f"cannot count dead letters in container {container}: {describe_error(exc)}"
        ) from exc
