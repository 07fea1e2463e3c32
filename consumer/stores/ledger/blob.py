"""The ledger in an Azure blob container: replicas on several machines share it."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable
from typing import Any, Self

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob.aio import ContainerClient

from consumer.errors import LedgerError
from consumer.stores.blob import BlobStore, describe_error, open_container
from consumer.stores.ledger.shared import Claim, Entry, Settings, warn_lost

BLOB_PREFIX = "ledger/"
_ATTEMPTS = 5
"""How often a blob reserve looks again when the entry changed under it."""


class BlobLedger(BlobStore):
    """One blob ``ledger/<sha256 of the key>`` per entry in an Azure blob container.

    Reserving uploads the blob only if none exists; an entry whose time is up is taken over
    with an upload conditional on the etag read, so of two replicas racing exactly one wins.
    ``mark_done`` and ``release`` are conditional on the etag too. The container is created on
    entering if missing. Made from a container client, or from an account by ``BlobStore``'s
    constructors (``owner``, ``lease_s``, ``expire_after_s`` and ``clock`` pass through them);
    a credential passed in stays the caller's to close.
    """

    what = "ledger"
    error = LedgerError

    def __init__(
        self,
        client: ContainerClient,
        *,
        owner: str,
        lease_s: float,
        expire_after_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(client)
        self._settings = Settings(owner, lease_s, expire_after_s, clock)

    async def __aenter__(self) -> Self:
        try:
            await open_container(self._client)
        except AzureError as exc:
            raise self._error("open the container", exc) from exc
        return self

    async def reserve(self, key: str) -> Claim:
        async with self._settings.holding(key) as outcome:
            outcome.append(await self._reserve(key))
        return outcome[0]

    async def _reserve(self, key: str) -> Claim:
        name = blob_name(key)
        try:
            for _ in range(_ATTEMPTS):
                now = self._settings.clock()
                mine = self._settings.reservation(key, now)
                with contextlib.suppress(ResourceExistsError):
                    await self._upload(name, mine, overwrite=False)
                    return Claim("reserved")  # a new entry: nobody held it before
                found = await self._read(name)
                if found is None:
                    continue  # released or purged since: try to create it again
                entry, etag = found
                ahead = self._settings.answer(entry, now)
                if ahead is not None:
                    return ahead
                if await self._replace(name, mine, etag):
                    return self._settings.taken_over(entry)
                # Another replica changed it first; look again at what it wrote.
        except AzureError as exc:
            raise self._error(f"reserve {key!r}", exc) from exc
        return Claim("busy", retry_after_s=0.1)  # the key keeps changing: look again soon

    async def mark_done(self, key: str, detail: str) -> None:
        self._settings.letting_go(key)
        name = blob_name(key)
        try:
            found = await self._read(name)
            if found is not None and found[0].held_by(self._settings.owner):
                done = self._settings.done(key, detail, self._settings.clock())
                if await self._replace(name, done, found[1]):
                    return
        except AzureError as exc:
            raise self._error(f"mark {key!r} done", exc) from exc
        warn_lost(key, self._settings.owner)

    async def release(self, key: str) -> None:
        self._settings.letting_go(key)
        name = blob_name(key)
        try:
            found = await self._read(name)
            if found is not None and found[0].held_by(self._settings.owner):
                await self._delete(name, found[1])
        except AzureError as exc:
            raise self._error(f"release {key!r}", exc) from exc

    async def check(self) -> None:
        try:
            await self._client.get_container_properties()
        except AzureError as exc:
            raise self._error("check the container", exc) from exc

    async def purge(self) -> int:
        """Delete expired entries: state and ``until`` are in each blob's metadata, so a
        listing suffices."""
        now = self._settings.clock()
        purged = 0
        try:
            async for blob in self._client.list_blobs(
                name_starts_with=BLOB_PREFIX, include=["metadata"]
            ):
                times = _metadata_times(blob.metadata)
                if times is None:  # not written by us: read the entry itself
                    found = await self._read(blob.name)
                    if found is None:
                        continue
                    times = found[0].state, found[0].until
                due = self._settings.forget_at(*times) <= now
                if due and await self._delete(blob.name, blob.etag):
                    purged += 1
        except AzureError as exc:
            raise self._error("purge", exc) from exc
        return purged

    async def _read(self, name: str) -> tuple[Entry, str] | None:
        """The entry and its etag, or ``None`` if there is none."""
        try:
            downloader = await self._client.download_blob(name)
            data: bytes = await downloader.readall()
        except ResourceNotFoundError:
            return None
        etag: str = downloader.properties.etag
        return Entry.from_json(data, where=f"ledger container {self.container}, {name}"), etag

    async def _replace(self, name: str, entry: Entry, etag: str) -> bool:
        """Overwrite the blob if it still has ``etag``; whether it did."""
        try:
            await self._upload(
                name,
                entry,
                overwrite=True,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    async def _upload(self, name: str, entry: Entry, **conditions: Any) -> None:
        """Write ``entry``; its state and ``until`` go into the metadata as well, for ``purge``."""
        metadata = {"state": entry.state, "until": repr(entry.until)}
        await self._client.upload_blob(name, entry.to_json(), metadata=metadata, **conditions)

    async def _delete(self, name: str, etag: str) -> bool:
        """Delete the blob if it still has ``etag``; whether it did."""
        try:
            await self._client.delete_blob(
                name, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True

    def _error(self, operation: str, exc: AzureError) -> LedgerError:
        """Describe a storage failure by type and status only: SDK texts may echo signed URLs."""
        return LedgerError(
            f"ledger container {self.container}: cannot {operation}: {describe_error(exc)}"
        )


def blob_name(key: str) -> str:
    """The blob of ``key``: keys may hold any character, hashes are safe blob names."""
    digest = hashlib.sha256(key.encode("utf-8", errors="surrogatepass")).hexdigest()
    return f"{BLOB_PREFIX}{digest}"


def _metadata_times(metadata: dict[str, str] | None) -> tuple[str, float] | None:
    """(state, until) from a blob's metadata; ``None`` when either is missing."""
    try:
        return (metadata or {})["state"], float((metadata or {})["until"])
    except (KeyError, ValueError):
        return None
