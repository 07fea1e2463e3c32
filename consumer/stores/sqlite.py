"""The SQLite conventions the embedded stores share (checkpoints, the ledger).

One file per store in WAL mode, opened without Python's implicit transactions, and every
write in one transaction that takes the write lock up front (``BEGIN IMMEDIATE``), so several
processes on one machine can share a file and a writer waits for another instead of failing
half-way.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

BUSY_TIMEOUT_S = 10.0
"""How long one operation waits for another process's write lock before failing."""


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction that takes the lock up front; rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def connect(path: Path, schema: str) -> sqlite3.Connection:
    """Open (creating if missing) the database file in WAL mode with ``schema`` in place.

    In WAL mode, ``synchronous=NORMAL`` survives process crashes; a power cut may undo the
    last few writes, which for these stores only means work is done again (delivery is
    at-least-once anyway).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        with transaction(conn):
            for statement in schema.split(";"):
                if statement.strip():
                    conn.execute(statement)
    except BaseException:
        conn.close()
        raise
    return conn
