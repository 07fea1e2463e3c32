"""Atomic file writes: whole or nothing, and the folder flushed after the rename, for every
writer (dead letters in a folder, the email outbox)."""

from __future__ import annotations

import os
import stat
from email.message import EmailMessage
from pathlib import Path

import pytest

from consumer.actions.email import FilesTransport
from consumer.stores.deadletters import DeadLetter, DirectoryDeadLetterStore
from consumer.stores.files import write_atomically
from tests.consumer.stores.test_deadletters import letter


class Syncs:
    """Records, for each ``os.fsync``, whether it flushed a folder or a file."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.kinds: list[str] = []
        real = os.fsync

        def fsync(descriptor: int) -> None:
            is_folder = stat.S_ISDIR(os.fstat(descriptor).st_mode)
            self.kinds.append("folder" if is_folder else "file")
            real(descriptor)

        monkeypatch.setattr(os, "fsync", fsync)


def test_the_file_then_its_folder_are_flushed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The data reaches the disk before the rename, the rename after it (the folder)."""
    syncs = Syncs(monkeypatch)
    write_atomically(tmp_path / "entry.json", b"whole")
    assert syncs.kinds == ["file", "folder"]
    assert [p.name for p in tmp_path.iterdir()] == ["entry.json"]
    assert (tmp_path / "entry.json").read_bytes() == b"whole"


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        write_atomically(tmp_path / "entry.json", b"cut short")
    assert list(tmp_path.iterdir()) == []


async def test_dead_letters_and_the_outbox_both_flush_their_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both writers of files go through the one atomic write."""
    syncs = Syncs(monkeypatch)
    parked: DeadLetter = letter()
    async with DirectoryDeadLetterStore(tmp_path / "deadletters") as store:
        await store.put(parked)
    assert syncs.kinds == ["file", "folder"]
    message = EmailMessage()
    message["Message-ID"] = "<one@mlevents>"
    message.set_content("body")
    assert await FilesTransport(tmp_path / "outbox").send(message) == "one.eml"
    assert syncs.kinds == ["file", "folder"] * 2
