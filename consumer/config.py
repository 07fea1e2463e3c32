"""Configuration: ``config.toml`` read once, validated, frozen.

``load_config`` is the only place that reads the environment. Paths in the file are
relative to the file. Every error names the file and the key. Secrets never live in the
file: sections that need one name the environment variable that holds it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError

LogFormat = Literal["auto", "json", "console"]
LOG_FORMATS: dict[str, LogFormat] = {"auto": "auto", "json": "json", "console": "console"}
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True, kw_only=True)
class RulesConfig:
    """Where the rule table and its tests live."""

    files: tuple[Path, ...]
    tests: tuple[Path, ...] = ()


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
    logging: LoggingConfig = field(default_factory=LoggingConfig)


_SECTIONS = {"rules": ("files", "tests"), "logging": ("format", "level")}


def load_config(path: str | Path, environ: Mapping[str, str]) -> Config:
    """Read and validate ``path``; ``environ`` may override ``MLEVENTS_LOG_LEVEL`` and
    ``MLEVENTS_LOG_FORMAT``.

    Raises:
        ConfigError: naming the file and the key at fault.
    """
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    reader = _Reader(path, document)
    reader.check_keys()
    rules = RulesConfig(
        files=reader.paths("rules", "files", required=True),
        tests=reader.paths("rules", "tests", required=False),
    )
    log_format = environ.get("MLEVENTS_LOG_FORMAT") or reader.text("logging", "format", "auto")
    level = environ.get("MLEVENTS_LOG_LEVEL") or reader.text("logging", "level", "info")
    if log_format not in LOG_FORMATS:
        raise ConfigError(
            f"{path}: logging.format: {log_format!r} is not one of {', '.join(LOG_FORMATS)}"
        )
    if level.lower() not in LOG_LEVELS:
        raise ConfigError(f"{path}: logging.level: {level!r} is not one of {', '.join(LOG_LEVELS)}")
    return Config(
        path=path,
        rules=rules,
        logging=LoggingConfig(format=LOG_FORMATS[log_format], level=level.lower()),
    )


@dataclass(frozen=True, slots=True)
class _Reader:
    path: Path
    document: dict[str, Any]

    def check_keys(self) -> None:
        for section, value in self.document.items():
            if section not in _SECTIONS:
                raise ConfigError(
                    f"{self.path}: {section}: unknown section; expected one of "
                    f"{', '.join(_SECTIONS)}"
                )
            if not isinstance(value, dict):
                raise ConfigError(f"{self.path}: {section}: must be a table")
            for key in value:
                if key not in _SECTIONS[section]:
                    raise ConfigError(
                        f"{self.path}: {section}.{key}: unknown key; expected one "
                        f"of {', '.join(_SECTIONS[section])}"
                    )

    def text(self, section: str, key: str, default: str) -> str:
        value = self.document.get(section, {}).get(key, default)
        if not isinstance(value, str):
            raise ConfigError(f"{self.path}: {section}.{key}: must be a string")
        return value

    def paths(self, section: str, key: str, *, required: bool) -> tuple[Path, ...]:
        value = self.document.get(section, {}).get(key)
        if value is None and not required:
            return ()
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{self.path}: {section}.{key}: must be a non-empty list of paths")
        resolved = []
        for index, item in enumerate(value):
            candidate = (self.path.parent / item).resolve()
            if not candidate.is_file():
                raise ConfigError(
                    f"{self.path}: {section}.{key}[{index}]: no file at {item!r} "
                    f"(looked at {candidate})"
                )
            resolved.append(candidate)
        return tuple(resolved)
