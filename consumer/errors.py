"""Errors raised by the shell (``consumer/``).

Everything here derives from ``ConsumerError``; adapters turn OS, parser and SDK errors
into these with ``raise ... from exc`` so callers handle one tree::

    ConsumerError
    ├── ConfigError        config.toml (or its environment) is not valid; names key and file
    ├── EventFileError     a recorded event file (or one record of it) cannot be read
    └── CaseFileError      a rule-test file is not valid
"""

from __future__ import annotations


class ConsumerError(Exception):
    """Root of every error the shell raises."""


class ConfigError(ConsumerError):
    """The configuration is not valid; the message names the key and the file."""


class EventFileError(ConsumerError):
    """A recorded event file, or one record in it, cannot be read."""


class CaseFileError(ConsumerError):
    """A rule-test (cases) file is not valid; the message names the file and the case."""
