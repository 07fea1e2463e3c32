"""Configuration: ``config.toml`` read once, validated, frozen.

``load_config`` is the only code that reads the environment. Paths in the file are relative
to the file. Every error names the file and the key. Secrets never live in the file: a
section that needs one names the environment variable holding it (``*_env`` keys), and the
value is read here, kept out of ``repr`` and never logged.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError

LogFormat = Literal["auto", "json", "console"]
LOG_FORMATS: dict[str, LogFormat] = {"auto": "auto", "json": "json", "console": "console"}
LOG_LEVELS = ("debug", "info", "warning", "error")
StartingPosition = Literal["earliest", "latest"] | datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class RulesConfig:
    """Where the rule table and its tests live."""

    files: tuple[Path, ...]
    tests: tuple[Path, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class EventHubConfig:
    """The hub to consume: by connection string, or by namespace and an Azure AD credential."""

    name: str
    connection_string: str | None = field(default=None, repr=False)
    fully_qualified_namespace: str | None = None
    consumer_group: str = "$Default"
    starting_position: StartingPosition = "latest"
    """Where a partition without a checkpoint starts."""
    prefetch: int = 300
    load_balancing_interval_s: float = 10.0
    ownership_expiration_s: float = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    """A blob container (connection string or account URL + credential) or a local path."""

    kind: Literal["blob", "local"]
    path: Path | None = None
    container: str | None = None
    connection_string: str | None = field(default=None, repr=False)
    account_url: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointConfig:
    """Where checkpoints go and how often."""

    store: StoreConfig
    every_events: int = 100
    every_s: float = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessingConfig:
    """Per-partition processing."""

    max_in_flight: int = 64
    """Events of one partition whose actions may run at once; intake waits when full."""
    drain_deadline_s: float = 20.0
    """How long shutdown waits for in-flight actions before it stops them."""
    dry_run: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpConfig:
    """The health and metrics endpoint."""

    host: str = "0.0.0.0"  # a container serves probes on every interface
    port: int = 8080


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggingConfig:
    """How the worker logs: JSON in containers, readable on a terminal."""

    format: LogFormat = "auto"
    level: str = "info"


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole configuration."""

    path: Path
    rules: RulesConfig
    checkpoints: CheckpointConfig
    deadletters: StoreConfig
    eventhub: EventHubConfig | None = None
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


_KEYS = {
    "rules": ("files", "tests"),
    "eventhub": ("name", "connection_string_env", "fully_qualified_namespace", "consumer_group",
                 "starting_position", "prefetch", "load_balancing_interval_s",
                 "ownership_expiration_s"),
    "checkpoints": ("store", "path", "container", "connection_string_env", "account_url",
                    "every_events", "every_s"),
    "deadletters": ("store", "path", "container", "connection_string_env", "account_url"),
    "processing": ("max_in_flight", "drain_deadline_s", "dry_run"),
    "http": ("host", "port"),
    "logging": ("format", "level"),
}  # fmt: skip


def load_config(
    path: str | Path,
    environ: Mapping[str, str] | None = None,
    *,
    offline: bool = False,
    secrets_of: Collection[str] | None = None,
) -> Config:
    """Read and validate ``path``, taking secrets named by ``*_env`` keys from ``environ``
    (the process environment when not given). ``offline`` (for commands that only read
    rules and files) skips every secret; ``secrets_of`` reads only those sections' secrets
    (``deadletter`` needs its store, not the event hub). Skipped secrets read as ``None``.

    ``MLEVENTS_LOG_LEVEL`` and ``MLEVENTS_LOG_FORMAT`` in ``environ`` override ``[logging]``.

    Raises:
        ConfigError: naming the file and the key at fault.
    """
    environ = os.environ if environ is None else environ
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    sections = frozenset(_KEYS) if secrets_of is None else frozenset(secrets_of)
    reader = _Reader(path, document, environ, frozenset() if offline else sections)
    reader.check_keys()
    return Config(
        path=path,
        rules=RulesConfig(files=reader.paths("rules", "files", required=True),
                          tests=reader.paths("rules", "tests", required=False)),
        eventhub=_eventhub(reader) if "eventhub" in document else None,
        checkpoints=_checkpoints(reader),
        deadletters=_store(reader, "deadletters", default="deadletters"),
        processing=ProcessingConfig(
            max_in_flight=reader.number("processing", "max_in_flight", 64, integer=True),
            drain_deadline_s=reader.number("processing", "drain_deadline_s", 20.0),
            dry_run=reader.boolean("processing", "dry_run", False),
        ),
        http=HttpConfig(host=reader.text("http", "host", "0.0.0.0"),
                        port=reader.number("http", "port", 8080, integer=True, low=0)),
        logging=_logging(reader, environ),
    )  # fmt: skip


def _eventhub(reader: _Reader) -> EventHubConfig:
    section = "eventhub"
    secret = reader.secret(section, "connection_string_env")
    namespace = reader.optional_text(section, "fully_qualified_namespace")
    if (secret is None) == (namespace is None) and reader.reads_secrets(section):
        raise reader.error(
            section,
            "give either connection_string_env or "
            "fully_qualified_namespace (with an Azure AD credential)",
        )
    return EventHubConfig(
        name=reader.text(section, "name", ""),
        connection_string=secret,
        fully_qualified_namespace=namespace,
        consumer_group=reader.text(section, "consumer_group", "$Default"),
        starting_position=_starting_position(reader),
        prefetch=reader.number(section, "prefetch", 300, integer=True, low=1),
        load_balancing_interval_s=reader.number(section, "load_balancing_interval_s", 10.0),
        ownership_expiration_s=reader.number(section, "ownership_expiration_s", 60.0),
    )  # fmt: skip


def _starting_position(reader: _Reader) -> StartingPosition:
    text = reader.text("eventhub", "starting_position", "latest")
    if text in ("earliest", "latest"):
        return "earliest" if text == "earliest" else "latest"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise reader.error(
            "eventhub.starting_position",
            f"{text!r} is not earliest, latest or an ISO 8601 time with a zone",
        ) from None
    if moment.tzinfo is None:
        raise reader.error("eventhub.starting_position", f"{text!r} has no time zone")
    return moment


def _checkpoints(reader: _Reader) -> CheckpointConfig:
    return CheckpointConfig(
        store=_store(reader, "checkpoints", default="checkpoints.sqlite3"),
        every_events=reader.number("checkpoints", "every_events", 100, integer=True, low=1),
        every_s=reader.number("checkpoints", "every_s", 5.0),
    )


def _store(reader: _Reader, section: str, *, default: str) -> StoreConfig:
    """A store section; without one, a local store under ``.mlevents/`` next to the config."""
    kind = reader.text(section, "store", "local")
    if kind == "local":
        path = reader.location(section, "path", f".mlevents/{default}")
        return StoreConfig(kind="local", path=path)
    if kind != "blob":
        raise reader.error(f"{section}.store", f"{kind!r} is not 'blob' or 'local'")
    secret = reader.secret(section, "connection_string_env")
    account_url = reader.optional_text(section, "account_url")
    if (secret is None) == (account_url is None) and reader.reads_secrets(section):
        raise reader.error(
            section,
            "a blob store needs either connection_string_env or "
            "account_url (with an Azure AD credential)",
        )
    container = reader.text(section, "container", "")
    if not container:
        raise reader.error(f"{section}.container", "a blob store needs a container name")
    return StoreConfig(
        kind="blob", container=container, connection_string=secret, account_url=account_url
    )


def _logging(reader: _Reader, environ: Mapping[str, str]) -> LoggingConfig:
    log_format = environ.get("MLEVENTS_LOG_FORMAT") or reader.text("logging", "format", "auto")
    level = environ.get("MLEVENTS_LOG_LEVEL") or reader.text("logging", "level", "info")
    if log_format not in LOG_FORMATS:
        raise reader.error(
            "logging.format", f"{log_format!r} is not one of {', '.join(LOG_FORMATS)}"
        )
    if level.lower() not in LOG_LEVELS:
        raise reader.error("logging.level", f"{level!r} is not one of {', '.join(LOG_LEVELS)}")
    return LoggingConfig(format=LOG_FORMATS[log_format], level=level.lower())


@dataclass(frozen=True, slots=True)
class _Reader:
    path: Path
    document: dict[str, Any]
    environ: Mapping[str, str]
    secret_sections: frozenset[str] = frozenset()

    def reads_secrets(self, section: str) -> bool:
        return section in self.secret_sections

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}: {message}")

    def check_keys(self) -> None:
        for section, value in self.document.items():
            if section not in _KEYS:
                raise self.error(section, f"unknown section; expected one of {', '.join(_KEYS)}")
            if not isinstance(value, dict):
                raise self.error(section, "must be a table")
            for key in value:
                if key not in _KEYS[section]:
                    raise self.error(
                        f"{section}.{key}",
                        f"unknown key; expected one of {', '.join(_KEYS[section])}",
                    )

    def _get(self, section: str, key: str) -> Any:
        return self.document.get(section, {}).get(key)

    def text(self, section: str, key: str, default: str) -> str:
        value = self._get(section, key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.error(f"{section}.{key}", "must be a string")
        return value

    def optional_text(self, section: str, key: str) -> str | None:
        value = self.text(section, key, "")
        return value or None

    def number(
        self, section: str, key: str, default: Any, *, integer: bool = False, low: float = 0
    ) -> Any:
        value = self._get(section, key)
        if value is None:
            return default
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or value < low:
            kind = "a whole number" if integer else "a number"
            raise self.error(f"{section}.{key}", f"must be {kind} of at least {low}")
        return value

    def boolean(self, section: str, key: str, default: bool) -> bool:
        value = self._get(section, key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(f"{section}.{key}", "must be true or false")
        return value

    def secret(self, section: str, key: str) -> str | None:
        """The value of the environment variable that ``section.key`` names."""
        name = self.optional_text(section, key)
        if name is None or not self.reads_secrets(section):
            return None
        value = self.environ.get(name)
        if not value:
            raise self.error(f"{section}.{key}", f"environment variable {name} is not set")
        return value

    def location(self, section: str, key: str, default: str) -> Path:
        value = self.text(section, key, default) or default
        return (self.path.parent / value).resolve()

    def paths(self, section: str, key: str, *, required: bool) -> tuple[Path, ...]:
        value = self._get(section, key)
        if value is None and not required:
            return ()
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise self.error(f"{section}.{key}", "must be a non-empty list of paths")
        resolved = []
        for index, item in enumerate(value):
            candidate = (self.path.parent / item).resolve()
            if not candidate.is_file():
                raise self.error(
                    f"{section}.{key}[{index}]", f"no file at {item!r} (looked at {candidate})"
                )
            resolved.append(candidate)
        return tuple(resolved)
