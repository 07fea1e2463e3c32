"""config.toml loading: typed, frozen, and errors that name the key and the file."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from consumer.config import WebhookConfig, load_config
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


def test_action_sections_default_to_local_delivery(tmp_path: Path) -> None:
    """Without [email], [azure] or [ledger]: emails become .eml files, the ledger sits next to
    the checkpoints, Azure is the public cloud."""
    config = load_config(_write(tmp_path, '[rules]\nfiles = ["r.toml"]\n'), {})
    assert config.email.transport == "files"
    assert config.email.directory == (tmp_path / ".mlevents" / "outbox").resolve()
    assert config.ledger.store.path == (tmp_path / ".mlevents" / "ledger.sqlite3").resolve()
    assert config.azure.management_url == "https://management.azure.com"
    assert config.azure.scope == "https://management.azure.com/.default"


def test_the_ledger_follows_a_blob_checkpoint_store(tmp_path: Path) -> None:
    """Replicas sharing blob checkpoints share the ledger in the same container."""
    text = (
        '[rules]\nfiles = ["r.toml"]\n[checkpoints]\nstore = "blob"\ncontainer = "cp"\n'
        'connection_string_env = "CP"\n'
    )
    config = load_config(_write(tmp_path, text), {"CP": "UseDevelopmentStorage=true"})
    assert (config.ledger.store.kind, config.ledger.store.container) == ("blob", "cp")


def test_smtp_secrets_come_from_the_environment_and_stay_out_of_repr(tmp_path: Path) -> None:
    text = (
        '[rules]\nfiles = ["r.toml"]\n[email]\ntransport = "smtp"\nhost = "smtp.example.com"\n'
        'security = "tls"\nusername_env = "SMTP_USER"\npassword_env = "SMTP_PASSWORD"\n'
    )
    environ = {"SMTP_USER": "bot", "SMTP_PASSWORD": "hunter2-secret", "HOOK_SECRET": "whsec_x"}
    config = load_config(_write(tmp_path, text), environ)
    assert (config.email.port, config.email.username) == (465, "bot")
    assert config.email.password == "hunter2-secret"
    assert config.secrets("HOOK_SECRET") == "whsec_x"
    assert config.secrets("NOT_SET") is None
    assert "hunter2" not in repr(config) and "whsec_x" not in repr(config)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[email]\ntransport = "pigeon"\n', "email.transport: 'pigeon'"),
        ('[email]\nsecurity = "ssl"\n', "email.security: 'ssl'"),
        ('[email]\nsecurity = "none"\npassword_env = "P"\n', "email.password_env: a password"),
        ('[email]\nusername_env = "NOPE"\n', "email.username_env: environment variable NOPE"),
        ('[azure]\ncredential = "magic"\n', "azure.credential: 'magic'"),
        ('[azure]\nmanagement_url = "http://example.com"\n', "azure.management_url: must be"),
        ("[ledger]\nlease_s = 0\n", "ledger.lease_s: must be a number of at least 1"),
        ('[webhook]\nallowed_hosts = "a.com"\n', "webhook.allowed_hosts: must be a non-empty"),
        ("[webhook]\nallowed_hosts = []\n", "webhook.allowed_hosts: must be a non-empty"),
        ('[webhook]\nallowed_hosts = ["a.com", "https://b.com"]\n',
         "webhook.allowed_hosts[1]: 'https://b.com' is not a host name"),
        ('[webhook]\nallowed_hosts = ["*"]\n', "webhook.allowed_hosts[0]: '*' is not a host"),
        ('[webhook]\nallowed_hosts = ["a.*.com"]\n', "webhook.allowed_hosts[0]: 'a.*.com'"),
        ('[webhook]\nallowed_hosts = ["b.com:443"]\n', "webhook.allowed_hosts[0]: 'b.com:443'"),
    ],
)  # fmt: skip
def test_action_section_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, '[rules]\nfiles = ["r.toml"]\n' + text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path, {"P": "pw"})


def test_webhook_allowed_hosts_are_host_names_in_lower_case(tmp_path: Path) -> None:
    """Without [webhook] any host is allowed; with it, names (and *.domain) in lower case."""
    assert load_config(_write(tmp_path, '[rules]\nfiles = ["r.toml"]\n'), {}).webhook == (
        WebhookConfig(allowed_hosts=())
    )
    text = (
        '[rules]\nfiles = ["r.toml"]\n[webhook]\n'
        'allowed_hosts = ["Hooks.Example.com.", "*.webhook.office.com"]\n'
    )
    config = load_config(_write(tmp_path, text), {})
    assert config.webhook.allowed_hosts == ("hooks.example.com", "*.webhook.office.com")


def test_the_example_config_documents_every_key() -> None:
    """config.toml names every section and key the loader accepts (set or commented out)."""
    from consumer.config import _KEYS

    text = (Path(__file__).resolve().parents[2] / "config.toml").read_text(encoding="utf-8")
    missing = [
        f"{section}.{key}"
        for section, keys in _KEYS.items()
        for key in keys
        if f"[{section}]" not in text or not re.search(rf"(?m)^#? ?{key} = ", text)
    ]
    assert missing == []
