"""Deadlines and error adapters around the stores: what a caller, a log line and readiness
see when a store fails or hangs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import pytest
import structlog
from azure.core.exceptions import HttpResponseError
from azure.eventhub.aio import CheckpointStore
from structlog.testing import capture_logs

from consumer.errors import CheckpointError, StorageTimeoutError
from consumer.stores.deadlines import CHECKPOINTS, Dependencies, Guard, GuardedCheckpointStore

SIGNED_URL = "https://acct.blob.core.windows.net/c/blob?sv=2024&sig=TOPSECRETSIGNATURE"


class Gauges:
    """The dependency gauge, as the last value set per store."""

    def __init__(self) -> None:
        self.up: dict[str, bool] = {}

    def dependency_up(self, name: str, up: bool) -> None:
        self.up[name] = up


class Store(CheckpointStore):
    """A checkpoint store that answers, fails like the blob SDK, or never answers."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.written: list[dict[str, Any]] = []

    async def _act(self) -> None:
        if self.mode == "fail":
            error = HttpResponseError(message=f"Server failed to authenticate: {SIGNED_URL}")
            error.status_code = 403
            raise error
        if self.mode == "hang":
            await asyncio.Event().wait()

    async def list_ownership(self, *args: Any, **kwargs: Any) -> Iterable[dict[str, Any]]:
        await self._act()
        return []

    async def claim_ownership(self, *args: Any, **kwargs: Any) -> Iterable[dict[str, Any]]:
        await self._act()
        return list(args[0]) if args else []

    async def update_checkpoint(self, checkpoint: dict[str, Any], **kwargs: Any) -> None:
        await self._act()
        self.written.append(checkpoint)

    async def list_checkpoints(self, *args: Any, **kwargs: Any) -> Iterable[dict[str, Any]]:
        await self._act()
        return list(self.written)


def guarded(store: Store, gauges: Gauges, timeout_s: float = 5.0) -> GuardedCheckpointStore:
    dependencies = Dependencies(gauges, structlog.get_logger(), names=[CHECKPOINTS])
    return GuardedCheckpointStore(store, Guard(CHECKPOINTS, timeout_s, dependencies))


async def test_a_store_error_becomes_a_checkpoint_error_without_the_store_message() -> None:
    """The SDK's message may quote a signed URL: the error, its log line and readiness name
    the call and the error by type and status only, and keep the original as the cause."""
    gauges = Gauges()
    store = guarded(Store("fail"), gauges)
    with capture_logs() as logs, pytest.raises(CheckpointError) as caught:
        await store.update_checkpoint({"partition_id": "0", "sequence_number": 7})
    message = str(caught.value)
    assert message == "checkpoints: cannot write a checkpoint: HttpResponseError, HTTP 403"
    assert isinstance(caught.value.__cause__, HttpResponseError)
    assert "TOPSECRET" not in repr(logs)
    assert gauges.up[CHECKPOINTS] is False
    with pytest.raises(CheckpointError, match="cannot claim partitions"):
        await store.claim_ownership([{"partition_id": "0"}])


async def test_a_hung_store_is_a_storage_timeout_and_recovers_on_the_next_answer() -> None:
    """A call past its deadline is the outage error callers already handle; the next call
    that answers marks the store up again."""
    gauges, hanging = Gauges(), Store("hang")
    store = guarded(hanging, gauges, timeout_s=0.05)
    with pytest.raises(StorageTimeoutError, match=r"no answer within 0\.05 s"):
        await store.list_ownership("ns", "hub", "$Default")
    assert gauges.up[CHECKPOINTS] is False
    hanging.mode = "ok"
    await store.update_checkpoint({"partition_id": "1", "sequence_number": 3})
    assert await store.list_checkpoints("ns", "hub", "$Default") == [
        {"partition_id": "1", "sequence_number": 3}
    ]
    assert gauges.up[CHECKPOINTS] is True
