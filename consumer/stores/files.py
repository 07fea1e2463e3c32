"""Files written whole or not at all, and kept through a power cut once written: the
directory dead-letter store's entries and the email outbox's ``.eml`` files."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path


def write_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` (its folder must exist) so that readers see all of it or
    nothing: a hidden temporary file in the same folder, flushed to disk, renamed into place,
    then the folder flushed so that the rename lasts too.

    The temporary name starts with ``.`` and ends in ``.tmp``, so one left by a crash is never
    taken for an entry (dead letters count ``*.json``, the outbox ``*.eml``).

    Raises:
        OSError: the file could not be written; no temporary file is left behind.
    """
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with temporary.open("xb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        temporary.replace(target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    _fsync_folder(target.parent)


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries to disk: a rename is durable only once they are. Where the
    system cannot (some filesystems refuse it), the rename stands as it is."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
