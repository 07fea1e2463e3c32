"""Logging: structlog configured once for the process, and secrets kept out of every line.

``configure_logging`` owns the processor chain: JSON lines (ISO UTC timestamp, level,
structured tracebacks) for containers, structlog's console renderer for a terminal. Records
from the standard library's ``logging`` (the Azure SDK logs through it) at WARNING and
above go through the same chain to the same stream, so a container's output is one JSON
line per record whoever wrote it.

``redact_secrets`` is the last processor before rendering: connection-string secrets
(``SharedAccessKey=``, ``AccountKey=``, SAS tokens, ``sig=``) inside any string become
``***``, and values under keys named like a secret are replaced whole.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

from consumer.config import LogFormat

__all__ = ["configure_logging", "is_secret_name", "redact", "redact_secrets"]

MASK = "***"
FOREIGN_LEVEL = logging.WARNING
"""The least severe stdlib record shown; the SDK's INFO chatter is per link and per frame."""

# The SAS token runs first: its own ``sig=`` would otherwise leave the rest of it visible.
_SECRET_PATTERNS = (
    re.compile(r"(?i)(SharedAccessSignature[=\s]\s*)[^\s;'\"]+"),
    re.compile(r"(?i)((?:SharedAccessKey|AccountKey)\s*=\s*)[^\s;'\"&]+"),
    re.compile(r"(?i)(\bsig=)[^\s;'\"&]+"),
)
_SECRET_WORDS = frozenset({"password", "passwd", "secret", "key", "apikey", "token", "credential"})
_SECRET_PHRASES = ("connection_string", "connectionstring", "conn_str")
_NOT_SECRET_KEYS = frozenset({"partition_key"})
"""Keys with a secret-sounding word that name routing data the worker needs to see."""

# Locals stay out: they would carry event payloads and credentials into every traceback.
_dict_tracebacks = structlog.processors.ExceptionRenderer(
    ExceptionDictTransformer(show_locals=False)
)


def configure_logging(format: LogFormat, level: str, stream: TextIO | None = None) -> None:
    """Configure structlog and route stdlib ``logging`` into it; call once at start-up.

    ``stream`` defaults to standard error, keeping standard output for command results.
    ``format="auto"`` picks the console renderer when ``stream`` is a terminal, else JSON.
    """
    out = sys.stderr if stream is None else stream
    threshold = _level_number(level)
    as_json = format == "json" or (format == "auto" and not _is_tty(out))
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    tail: list[Processor] = (
        [_dict_tracebacks, redact_secrets, structlog.processors.JSONRenderer(default=str)]
        if as_json
        # Formatted to text before redaction so exception messages are redacted too.
        else [
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.dev.ConsoleRenderer(colors=_is_tty(out)),
        ]
    )
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), *tail],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        # Not cached: a logger made before configuration must follow it, not the defaults.
        cache_logger_on_first_use=False,
    )
    _route_stdlib(out, max(threshold, FOREIGN_LEVEL), shared, tail)


class _StructlogHandler(logging.StreamHandler[TextIO]):
    """The root handler this module installs; its class marks it for replacement."""


def _route_stdlib(
    out: TextIO, threshold: int, shared: list[Processor], tail: list[Processor]
) -> None:
    handler = _StructlogHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StructlogHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)


def redact(text: str) -> str:
    """``text`` with every connection-string secret in it replaced by ``***``."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(rf"\g<1>{MASK}", text)
    return text


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: redact secrets in every value, however deeply nested."""
    return {key: _redact_item(key, value) for key, value in event_dict.items()}


def _redact_item(key: object, value: Any) -> Any:
    if isinstance(key, str) and is_secret_name(key):
        return MASK
    return _redact_value(value)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {key: _redact_item(key, item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(item) for item in value]
    # Anything else is rendered through str() or repr() later (an exception passed as a
    # value, say); keep the object unless its text gives a secret away.
    text = str(value)
    cleaned = redact(text)
    return value if cleaned == text else cleaned


def is_secret_name(key: str) -> bool:
    """Whether ``key`` names a secret (``password``, ``api_key``, ``sasToken``...): the log
    lines' fields, and the headers and query parameters of action previews."""
    # camelCase and kebab-case keys count too: accountKey, sas-token.
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).lower().replace("-", "_")
    if snake in _NOT_SECRET_KEYS:
        return False
    if any(phrase in snake for phrase in _SECRET_PHRASES):
        return True
    return any(word.rstrip("s") in _SECRET_WORDS for word in snake.split("_"))


def _level_number(level: str) -> int:
    number = logging.getLevelNamesMapping().get(level.upper())
    if number is None:
        raise ValueError(f"unknown log level {level!r}")
    return number


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-less stream is no terminal
        return False
