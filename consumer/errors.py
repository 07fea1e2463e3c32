"""Errors raised by the shell (``consumer/``).

Everything here derives from ``ConsumerError``; adapters turn OS, parser and SDK errors
into these with ``raise ... from exc`` so callers handle one tree::

    ConsumerError
    ├── ConfigError            config.toml (or its environment) is not valid; names key and file
    ├── EventFileError         a recorded event file (or one record of it) cannot be read
    ├── CaseFileError          a rule-test file is not valid
    ├── DeadLetterError        a dead letter could not be written, read, found or deleted
    │   └── UnreadableEntryError   one entry is not a valid dead letter
    ├── CheckpointError        the checkpoint store failed a call (named by type and status)
    ├── LedgerError            the idempotency ledger could not be read or written (retried)
    ├── StorageTimeoutError    a store did not answer within its deadline (frozen, unreachable)
    ├── StoreError             a store (checkpoints, dead letters, ledger) could not be opened
    ├── StartError             the event hub, or a port to listen on, could not be had at start
    ├── StatusError            ``mlevents status`` could not read a part of the status
    ├── RecordError            ``mlevents record`` could not read the hub
    └── ActionError            an action did not complete; ``retriable`` says whether to retry
        ├── TransientActionError   connection errors, timeouts, 408, 429, 5xx
        └── PermanentActionError   other 4xx, auth failures, bad templates

The exit codes of every command are here too (``EXIT_*``); the emulator, a separate program,
has its own.

Messages never carry secrets: adapters build them from status codes and names, not from
connection strings or response bodies that may echo credentials.
"""

from __future__ import annotations

import os
from typing import ClassVar

EXIT_OK = 0
EXIT_FAILED = 1
"""A test failed, an event did not decode, a record or a send failed."""
EXIT_USAGE = 2
"""Usage, config or rules errors, and what the worker needs at start and cannot have: a store
that cannot be opened, an event hub that cannot be reached, a port already in use."""
EXIT_INTERRUPTED = 130
"""The worker was stopped by a second signal, before it had drained."""


class ConsumerError(Exception):
    """Root of every error the shell raises."""


class ConfigError(ConsumerError):
    """The configuration is not valid; the message names the key and the file."""


class EventFileError(ConsumerError):
    """A recorded event file, or one record in it, cannot be read."""


class CaseFileError(ConsumerError):
    """A rule-test (cases) file is not valid; the message names the file and the case."""


class CheckpointError(ConsumerError):
    """The checkpoint store failed a call (a checkpoint, partition ownership). The message
    names the call and the store's error by type and status: SDK messages may quote signed
    URLs. The next flush (or load-balancing round) tries again."""


class LedgerError(ConsumerError):
    """The idempotency ledger's store could not be read or written; trying again may help."""


class StorageTimeoutError(ConsumerError):
    """A store (checkpoints, ledger, dead letters) did not answer within its deadline: it is
    frozen or cannot be reached. Callers take their outage path at once."""


class DeadLetterError(ConsumerError):
    """A dead letter could not be written, read, found or deleted."""


class UnreadableEntryError(DeadLetterError):
    """One entry is not a valid dead letter, or its file cannot be read; the message names
    the file or blob and why. The store itself, and its other entries, may be fine."""


class StatusError(ConsumerError):
    """A part of the status could not be read; the message names which, without secrets."""


class RecordError(ConsumerError):
    """The hub could not be read; the message holds no secret."""


class StoreError(ConsumerError):
    """A store the worker needs (checkpoints, dead letters, ledger) could not be opened at
    start: storage unreachable, or refusing the credentials. The message is one line naming
    the store's config section and the failure by type and status, never a secret."""


class StartError(ConsumerError):
    """Something the worker needs before it consumes could not be had: the event hub did not
    answer or refused the credentials, or a port to listen on (``[http]``, the emulator's in
    ``mlevents dev``) is taken. The message is one line naming what and why, and what to
    change; it holds no secret."""


class ActionError(ConsumerError):
    """An action did not complete."""

    retriable: ClassVar[bool] = False

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        """What the peer asked for (``Retry-After``), if anything."""


class TransientActionError(ActionError):
    """The action may succeed if tried again (connection error, timeout, 408, 429, 5xx)."""

    retriable = True


class PermanentActionError(ActionError):
    """Trying again will not help (other 4xx, authentication, a template that fails)."""


def os_reason(error: OSError) -> str:
    """What the OS said about ``error`` ("Address already in use"), without the address or
    path the raiser's own message may repeat."""
    return os.strerror(error.errno) if error.errno else str(error)
