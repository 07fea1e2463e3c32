"""Dead letters: events the worker could not handle, kept so that nothing is ever lost.

This module owns the ``DeadLetter`` record, its JSON form, and the stores that keep
them: ``DirectoryDeadLetterStore`` (one JSON file per entry, written atomically) and
``BlobDeadLetterStore`` (one blob per entry under ``deadletters/`` in a container).
``consumer.worker.wiring.dead_letter_store`` opens the one the configuration names.

A letter is parked when a body cannot be decoded (``reason="decode"``) or when an
action failed permanently (``reason="action"``); the partition then moves on. Entry ids
begin with the creation time, so sorting ids sorts entries oldest first.

Every failure comes out as ``DeadLetterError``. Messages name the entry and the
operation, never a connection string, a key or a SAS token: storage errors are described
by their type and status code, not by their text, which may echo URLs with signatures.
An entry that is not a valid letter (a file edited by hand, cut short by a full disk) is an
``UnreadableEntryError``: ``list`` can skip those and report them, so one bad entry does not
hide the others.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import json
import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol, Self, cast, get_args

from azure.core.exceptions import AzureError, ResourceNotFoundError

from consumer.errors import DeadLetterError, UnreadableEntryError
from consumer.stores.blob import BlobStore, describe_error, open_container
from consumer.stores.files import write_atomically

Reason = Literal["decode", "action"]

BLOB_PREFIX = "deadletters/"
FORMAT_VERSION = 1
# Ids become file and blob names: keep them to a portable alphabet, no path separators.
_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.]")


OnUnreadable = Callable[[UnreadableEntryError], None]
"""Told about each entry ``list`` skips because it cannot be read."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetter:
    """One event that was set aside, with why, where it came from and its exact body."""

    id: str
    """Unique, and sortable by creation time (see ``new_id``)."""
    reason: Reason
    error: str
    body: bytes
    """The original Event Hubs body, byte for byte."""
    partition: str
    offset: str | None
    sequence_number: int | None
    enqueued_time: datetime | None
    event_id: str | None
    rule: str | None
    action: str | None
    """Which action failed, e.g. ``webhook#0``; ``None`` for decode failures."""
    attempts: int
    created: datetime
    """When the letter was made, in UTC."""
    properties: dict[str, str] = field(default_factory=dict)
    """The message's application properties, stringified."""

    def __post_init__(self) -> None:
        check_id(self.id)
        if self.reason not in get_args(Reason):
            raise DeadLetterError(f"dead letter {self.id}: unknown reason {self.reason!r}")
        if self.created.utcoffset() is None:
            raise DeadLetterError(f"dead letter {self.id}: created must be timezone-aware")

    @classmethod
    def create(
        cls,
        *,
        created: datetime,
        reason: Reason,
        error: str,
        body: bytes,
        partition: str,
        attempts: int,
        offset: str | None = None,
        sequence_number: int | None = None,
        enqueued_time: datetime | None = None,
        event_id: str | None = None,
        rule: str | None = None,
        action: str | None = None,
        properties: Mapping[str | bytes, object] | None = None,
    ) -> DeadLetter:
        """A new letter with a fresh id; ``created`` comes from the caller's clock."""
        created = created.astimezone(UTC)
        return cls(
            id=new_id(created, partition, sequence_number),
            reason=reason, error=error, body=bytes(body), partition=partition,
            offset=offset, sequence_number=sequence_number, enqueued_time=enqueued_time,
            event_id=event_id, rule=rule, action=action, attempts=attempts,
            created=created, properties=stringify_properties(properties or {}),
        )  # fmt: skip

    def to_json(self) -> bytes:
        """The stored form: the body as base64, and also as ``body_text`` when it is UTF-8."""
        document: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "id": self.id,
            "reason": self.reason,
            "error": self.error,
            "body_base64": base64.b64encode(self.body).decode("ascii"),
            "body_text": _utf8_or_none(self.body),
            "partition": self.partition,
            "offset": self.offset,
            "sequence_number": self.sequence_number,
            "enqueued_time": _iso(self.enqueued_time),
            "event_id": self.event_id,
            "rule": self.rule,
            "action": self.action,
            "attempts": self.attempts,
            "created": _iso(self.created),
            "properties": dict(self.properties),
        }
        try:
            text = json.dumps(document, ensure_ascii=False, indent=2)
            return text.encode("utf-8")
        except UnicodeEncodeError:
            # Lone surrogates in a string (not possible in body_text) cannot be UTF-8;
            # ASCII escapes keep them and still load back exactly.
            return json.dumps(document, indent=2).encode("ascii")

    @classmethod
    def from_json(cls, data: bytes, *, where: str = "dead letter") -> DeadLetter:
        """Read what ``to_json`` wrote; ``body_text`` is for people and is ignored here."""
        try:
            document = json.loads(data)
            if not isinstance(document, dict):
                raise TypeError("not a JSON object")
            return cls(
                id=_text(document, "id"),
                reason=_reason(document),
                error=_text(document, "error"),
                body=base64.b64decode(_text(document, "body_base64"), validate=True),
                partition=_text(document, "partition"),
                offset=_optional(document, "offset", str),
                sequence_number=_optional(document, "sequence_number", int),
                enqueued_time=_optional_time(document, "enqueued_time"),
                event_id=_optional(document, "event_id", str),
                rule=_optional(document, "rule", str),
                action=_optional(document, "action", str),
                attempts=_integer(document, "attempts"),
                created=datetime.fromisoformat(_text(document, "created")),
                properties=_properties(document),
            )
        except DeadLetterError as exc:  # a field __post_init__ refuses, such as the id
            raise UnreadableEntryError(f"{where}: not a valid dead letter: {exc}") from exc
        except (ValueError, TypeError, KeyError, binascii.Error) as exc:
            raise UnreadableEntryError(f"{where}: not a valid dead letter: {exc}") from exc


def new_id(created: datetime, partition: str, sequence_number: int | None) -> str:
    """``<UTC time to the microsecond>-<partition>-<sequence number>-<random>``."""
    stamp = created.astimezone(UTC)
    sequence = "x" if sequence_number is None else str(sequence_number)
    return (
        f"{stamp:%Y%m%dT%H%M%S%f}-{_UNSAFE.sub('_', partition)}-{sequence}-{uuid.uuid4().hex[:8]}"
    )


def check_id(letter_id: str) -> str:
    """Return ``letter_id`` if it is safe as a file or blob name, else raise."""
    if not _ID.fullmatch(letter_id):
        raise DeadLetterError(f"not a dead-letter id: {letter_id!r}")
    return letter_id


def stringify_properties(properties: Mapping[str | bytes, object]) -> dict[str, str]:
    """Application properties as text: bytes are decoded (undecodable bytes escaped)."""
    return {_as_text(key): _as_text(value) for key, value in properties.items()}


def _as_text(value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="backslashreplace")
    return str(value)


def _utf8_or_none(body: bytes) -> str | None:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _text(document: dict[str, Any], key: str) -> str:
    value = document[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} is not a string")
    return value


def _reason(document: dict[str, Any]) -> Reason:
    value = _text(document, "reason")
    if value in get_args(Reason):
        return cast(Reason, value)
    raise ValueError(f"unknown reason {value!r}")


def _integer(document: dict[str, Any], key: str) -> int:
    value = document[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{key} is not an integer")
    return value


def _optional(document: dict[str, Any], key: str, kind: type[Any]) -> Any:
    value = document.get(key)
    if value is None:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{key} is not a {kind.__name__}")
    return value


def _optional_time(document: dict[str, Any], key: str) -> datetime | None:
    value = _optional(document, key, str)
    return None if value is None else datetime.fromisoformat(value)


def _properties(document: dict[str, Any]) -> dict[str, str]:
    value = document.get("properties", {})
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError("properties is not an object of strings")
    return dict(value)


class DeadLetterStore(Protocol):
    """Where dead letters are kept. Stores are async context managers."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def put(self, letter: DeadLetter) -> None:
        """Keep ``letter`` (a letter with the same id is replaced)."""
        ...

    async def list(
        self, *, limit: int | None = None, on_unreadable: OnUnreadable | None = None
    ) -> builtins.list[DeadLetter]:
        """Entries oldest first, of the oldest ``limit``. An entry that cannot be read is
        passed to ``on_unreadable`` and skipped; without it, its error is raised."""
        ...

    async def get(self, letter_id: str) -> DeadLetter:
        """The entry ``letter_id``; ``DeadLetterError`` naming it when there is none."""
        ...

    async def delete(self, letter_id: str) -> None:
        """Remove the entry ``letter_id``; ``DeadLetterError`` naming it when there is none."""
        ...

    async def count(self) -> int:
        """How many entries there are."""
        ...

    async def check(self) -> None:
        """Ask the store for something cheap: returns when it answers (``DeadLetterError`` if
        it answers with an error); used to notice that a store that failed is back."""
        ...


class DirectoryDeadLetterStore:
    """One ``<id>.json`` file per entry in a folder (created if missing).

    Files are written to a hidden temporary name, flushed to disk, then renamed into
    place, so a crash leaves either the whole entry or none of it; only ``*.json``
    names count as entries.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self._make_folder)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def put(self, letter: DeadLetter) -> None:
        """Write ``letter`` atomically."""
        data = letter.to_json()
        await asyncio.to_thread(self._write, letter.id, data)

    async def list(
        self, *, limit: int | None = None, on_unreadable: OnUnreadable | None = None
    ) -> builtins.list[DeadLetter]:
        """Entries oldest first (ids sort by time), of the oldest ``limit``; see
        ``DeadLetterStore.list`` for ``on_unreadable``."""
        letters, unreadable = await asyncio.to_thread(self._read_all, limit)
        return _reported(letters, unreadable, on_unreadable)

    async def get(self, letter_id: str) -> DeadLetter:
        """The entry ``letter_id``."""
        return await asyncio.to_thread(self._read, self._file(letter_id))

    async def delete(self, letter_id: str) -> None:
        """Remove the entry ``letter_id``."""
        await asyncio.to_thread(self._remove, letter_id)

    async def count(self) -> int:
        """How many entries there are."""
        return len(await asyncio.to_thread(self._names))

    async def check(self) -> None:
        """The folder is there and can be listed."""
        try:
            await asyncio.to_thread(os.stat, self.path)
        except OSError as exc:
            raise DeadLetterError(f"dead-letter folder {self.path}: {exc.strerror}") from exc

    def _file(self, letter_id: str) -> Path:
        return self.path / f"{check_id(letter_id)}.json"

    def _make_folder(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeadLetterError(f"cannot create {self.path}: {exc.strerror or exc}") from exc

    def _write(self, letter_id: str, data: bytes) -> None:
        self._make_folder()
        try:
            write_atomically(self._file(letter_id), data)
        except OSError as exc:
            raise DeadLetterError(
                f"cannot write dead letter {letter_id} to {self.path}: {exc.strerror or exc}"
            ) from exc

    def _names(self) -> builtins.list[str]:
        try:
            return sorted(p.name for p in self.path.glob("*.json") if not p.name.startswith("."))
        except OSError as exc:
            raise DeadLetterError(f"cannot list {self.path}: {exc.strerror or exc}") from exc

    def _read_all(
        self, limit: int | None
    ) -> tuple[builtins.list[DeadLetter], builtins.list[UnreadableEntryError]]:
        letters, unreadable = [], []
        for name in self._names()[:limit]:
            try:
                letters.append(self._read(self.path / name))
            except UnreadableEntryError as exc:
                unreadable.append(exc)
        return letters, unreadable

    def _read(self, file: Path) -> DeadLetter:
        try:
            data = file.read_bytes()
        except FileNotFoundError as exc:
            raise DeadLetterError(f"no dead letter {file.stem} in {self.path}") from exc
        except OSError as exc:
            raise UnreadableEntryError(f"cannot read {file}: {exc.strerror or exc}") from exc
        return DeadLetter.from_json(data, where=str(file))

    def _remove(self, letter_id: str) -> None:
        try:
            self._file(letter_id).unlink()
        except FileNotFoundError as exc:
            raise DeadLetterError(f"no dead letter {letter_id} in {self.path}") from exc
        except OSError as exc:
            raise DeadLetterError(
                f"cannot delete dead letter {letter_id}: {exc.strerror or exc}"
            ) from exc


class BlobDeadLetterStore(BlobStore):
    """One blob ``deadletters/<id>.json`` per entry in an Azure blob container.

    The container is created on entering if it does not exist. Made from a container client,
    or from an account by ``BlobStore``'s constructors; a credential passed in stays the
    caller's to close.
    """

    what = "dead-letter"
    error = DeadLetterError

    async def __aenter__(self) -> Self:
        try:
            await open_container(self._client)
        except AzureError as exc:
            raise _storage_error(f"open container {self.container}", exc) from exc
        return self

    async def check(self) -> None:
        """The container answers."""
        try:
            await self._client.get_container_properties()
        except AzureError as exc:
            raise _storage_error(f"check container {self.container}", exc) from exc

    async def put(self, letter: DeadLetter) -> None:
        """Upload ``letter`` (one request, so the blob is whole or absent)."""
        try:
            await self._client.upload_blob(_blob_name(letter.id), letter.to_json(), overwrite=True)
        except AzureError as exc:
            raise _storage_error(f"write dead letter {letter.id}", exc) from exc

    async def list(
        self, *, limit: int | None = None, on_unreadable: OnUnreadable | None = None
    ) -> builtins.list[DeadLetter]:
        """Entries oldest first (ids sort by time), of the oldest ``limit``; see
        ``DeadLetterStore.list`` for ``on_unreadable``."""
        letters, unreadable = [], []
        for name in (await self._names())[:limit]:
            letter_id = name[len(BLOB_PREFIX) : -len(".json")]
            try:
                if not _ID.fullmatch(letter_id):
                    raise UnreadableEntryError(f"{self.container}/{name}: not a dead-letter name")
                letters.append(await self._download(letter_id))
            except UnreadableEntryError as exc:
                unreadable.append(exc)
        return _reported(letters, unreadable, on_unreadable)

    async def get(self, letter_id: str) -> DeadLetter:
        """The entry ``letter_id``."""
        return await self._download(letter_id)

    async def delete(self, letter_id: str) -> None:
        """Remove the entry ``letter_id``."""
        try:
            await self._client.delete_blob(_blob_name(letter_id))
        except ResourceNotFoundError as exc:
            raise DeadLetterError(self._missing(letter_id)) from exc
        except AzureError as exc:
            raise _storage_error(f"delete dead letter {letter_id}", exc) from exc

    async def count(self) -> int:
        """How many entries there are."""
        return len(await self._names())

    async def _names(self) -> builtins.list[str]:
        try:
            pages = self._client.list_blob_names(name_starts_with=BLOB_PREFIX)
            names = [name async for name in pages if name.endswith(".json")]
        except AzureError as exc:
            raise _storage_error(f"list dead letters in {self.container}", exc) from exc
        # The service lists in name order already; sorting keeps that a promise of ours.
        return sorted(names)

    async def _download(self, letter_id: str) -> DeadLetter:
        name = _blob_name(letter_id)
        try:
            downloader = await self._client.download_blob(name)
            data: bytes = await downloader.readall()
        except ResourceNotFoundError as exc:
            raise DeadLetterError(self._missing(letter_id)) from exc
        except AzureError as exc:
            raise _storage_error(f"read dead letter {letter_id}", exc) from exc
        return DeadLetter.from_json(data, where=f"{self.container}/{name}")

    def _missing(self, letter_id: str) -> str:
        return f"no dead letter {letter_id} in container {self.container}"


def _reported(
    letters: builtins.list[DeadLetter],
    unreadable: builtins.list[UnreadableEntryError],
    on_unreadable: OnUnreadable | None,
) -> builtins.list[DeadLetter]:
    """``letters``, once each unreadable entry is reported (or the first one raised, for a
    caller that did not ask to skip them)."""
    if on_unreadable is None:
        if unreadable:
            raise unreadable[0]
    else:
        for error in unreadable:
            on_unreadable(error)
    return letters


def _blob_name(letter_id: str) -> str:
    return f"{BLOB_PREFIX}{check_id(letter_id)}.json"


def _storage_error(operation: str, exc: AzureError) -> DeadLetterError:
    """Describe a storage failure by type and status only: SDK texts may echo signed URLs."""
    return DeadLetterError(f"cannot {operation}: {describe_error(exc)}")
