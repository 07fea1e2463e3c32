"""config.toml loading: typed, frozen, and errors that name the key and the file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from consumer.config import load_config
from consumer.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "r.toml").write_text("")
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_paths_are_relative_to_the_file_and_config_is_frozen(tmp_path: Path) -> None:
    """Rule paths resolve against the config's folder; the result cannot be changed."""
    config = load_config(_write(tmp_path, '[rules]\nfiles = ["r.toml"]\n'), {})
    assert config.rules.files == ((tmp_path / "r.toml").resolve(),)
    assert config.logging.format == "auto"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.rules = config.rules  # type: ignore[misc]


def test_environment_overrides_logging(tmp_path: Path) -> None:
    """MLEVENTS_LOG_LEVEL and MLEVENTS_LOG_FORMAT override the file."""
    path = _write(tmp_path, '[rules]\nfiles = ["r.toml"]\n[logging]\nlevel = "info"\n')
    config = load_config(path, {"MLEVENTS_LOG_LEVEL": "DEBUG", "MLEVENTS_LOG_FORMAT": "json"})
    assert (config.logging.level, config.logging.format) == ("debug", "json")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[rules]\nfiles = ["missing.toml"]\n', "rules.files[0]: no file at 'missing.toml'"),
        ("[rules]\nfiles = []\n", "rules.files: must be a non-empty list"),
        ('[rules]\nfiles = ["r.toml"]\ncolour = 1\n', "rules.colour: unknown key"),
        ('[rulez]\nfiles = ["r.toml"]\n', "rulez: unknown section"),
        ('[rules]\nfiles = ["r.toml"]\n[logging]\nformat = "xml"\n', "logging.format: 'xml'"),
        ("[rules\n", "not valid TOML"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    """Each invalid config names the file and the key at fault."""
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)
