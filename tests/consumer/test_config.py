"""config.toml loading: typed, frozen, and errors that name the key and the file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from consumer.config import (
    CheckpointConfig,
    EventHubConfig,
    HttpConfig,
    ProcessingConfig,
    WebhookConfig,
    load_config,
)
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
    with pytest.raises(AttributeError):
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
        ('[email]\nsecurity = "none"\npassword_env = "P"\n', "email.password_env: credentials"),
        ('[email]\nsecurity = "none"\nusername_env = "U"\n', "email.username_env: credentials"),
        ('[email]\nusername_env = "NOPE"\n', "email.username_env: environment variable NOPE"),
        ('[azure]\ncredential = "magic"\n', "azure.credential: 'magic'"),
        ('[azure]\nmanagement_url = "http://example.com"\n', "azure.management_url: must be"),
        ("[ledger]\nlease_s = 0\n", "ledger.lease_s: must be a number from 1 to 86400"),
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


# Every numeric key: (section, key, lowest, highest, whole numbers only).
BOUNDS = [
    ("eventhub", "prefetch", 1, 10_000, True),
    ("eventhub", "load_balancing_interval_s", 1, 600, False),
    ("eventhub", "ownership_expiration_s", 1, 3600, False),
    ("checkpoints", "every_events", 1, 100_000, True),
    ("checkpoints", "every_s", 0.1, 3600, False),
    ("checkpoints", "timeout_s", 0.5, 120, False),
    ("deadletters", "timeout_s", 0.5, 120, False),
    ("ledger", "timeout_s", 0.5, 120, False),
    ("ledger", "lease_s", 1, 86_400, False),
    ("ledger", "expire_after_s", 1, 31_536_000, False),
    ("processing", "max_in_flight", 1, 10_000, True),
    ("processing", "drain_deadline_s", 1, 600, False),
    ("email", "port", 1, 65_535, True),
    ("email", "timeout_s", 1, 600, False),
    ("http", "port", 0, 65_535, True),
]
# An event hub section that passes without the environment, for the [eventhub] cases.
HUB = 'name = "hub"\nfully_qualified_namespace = "ns.servicebus.windows.net"\n'


def _out_of_bounds() -> list[object]:
    """One case per key and bad value: below, above, non-finite, a boolean, a fraction."""
    cases: list[object] = []
    for section, key, low, high, integer in BOUNDS:
        bad = ["-1", "0" if low > 0 else str(low - 1), str(high + 1), "nan", "inf", "-inf", "true"]
        bad += ["1.5", '"8"'] if integer else ['"8"']
        message = f"must be {'a whole number' if integer else 'a number'} from {low} to {high}"
        cases += [
            pytest.param(section, key, value, message, id=f"{section}.{key}={value}")
            for value in dict.fromkeys(bad)
        ]
    return cases


def _section(section: str, lines: str) -> str:
    return f"[{section}]\n" + (HUB if section == "eventhub" else "") + lines


@pytest.mark.parametrize(("section", "key", "value", "message"), _out_of_bounds())
def test_numbers_out_of_bounds_are_refused(
    tmp_path: Path, section: str, key: str, value: str, message: str
) -> None:
    """Each numeric key refuses values outside its range, nan, inf and booleans, naming the
    file and the key."""
    text = '[rules]\nfiles = ["r.toml"]\n' + _section(section, f"{key} = {value}\n")
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert str(caught.value) == f"{path}: {section}.{key}: {message}"


@pytest.mark.parametrize("end", ["low", "high"])
def test_numbers_at_their_bounds_are_accepted(tmp_path: Path, end: str) -> None:
    """The lowest and the highest value of each range load (the lowest claim expiry being
    twice the lowest balancing interval)."""
    values = {(s, k): low if end == "low" else high for s, k, low, high, _ in BOUNDS}
    if end == "low":
        values["eventhub", "ownership_expiration_s"] = 2  # twice the interval
    sections = dict.fromkeys(s for s, _ in values)
    text = '[rules]\nfiles = ["r.toml"]\n' + "".join(
        _section(s, "".join(f"{k} = {v}\n" for (s2, k), v in values.items() if s2 == s))
        for s in sections
    )
    config = load_config(_write(tmp_path, text), {})
    for (section, key), value in values.items():
        assert dict(_numbers(getattr(config, section)))[key] == value, f"{section}.{key}"


def test_every_numeric_key_has_bounds(tmp_path: Path) -> None:
    """Each number the config holds is one of the bounded keys above."""
    config = load_config(
        _write(tmp_path, '[rules]\nfiles = ["r.toml"]\n' + _section("eventhub", "")), {}
    )
    numeric = {
        (section.name, key)
        for section in msgspec.structs.fields(config)
        if isinstance(value := getattr(config, section.name), msgspec.Struct)
        for key, number in _numbers(value)
    }
    assert numeric == {(section, key) for section, key, *_ in BOUNDS}


def _numbers(section: Any) -> list[tuple[str, object]]:
    """The numbers of a config section, its store's included (they share its keys)."""
    found = []
    for key in msgspec.structs.fields(section):
        value = getattr(section, key.name)
        if key.name == "store" and isinstance(value, msgspec.Struct):
            found += _numbers(value)
        elif type(value) in (int, float):
            found.append((key.name, value))
    return found


TWICE = "must be at least twice load_balancing_interval_s"


@pytest.mark.parametrize(
    ("section", "lines", "message"),
    [
        (
            "eventhub",
            "load_balancing_interval_s = 31\n",
            f"eventhub.ownership_expiration_s: {TWICE}",
        ),
        (
            "eventhub",
            "load_balancing_interval_s = 10\nownership_expiration_s = 19.5\n",
            f"eventhub.ownership_expiration_s: {TWICE}",
        ),
        (
            "ledger",
            "lease_s = 600\nexpire_after_s = 599\n",
            "ledger.expire_after_s: must be at least lease_s",
        ),
    ],
)
def test_keys_that_must_agree(tmp_path: Path, section: str, lines: str, message: str) -> None:
    """A claim outlives two balancing passes (the default expiry, 60 s, too); a decision is
    remembered at least as long as it is reserved."""
    path = _write(tmp_path, '[rules]\nfiles = ["r.toml"]\n' + _section(section, lines))
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert str(caught.value).startswith(f"{path}: {message}")


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


STORE_KEYS = "store, path, container, connection_string_env, account_url, timeout_s"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "rules.files: must be a non-empty list of paths"),
        ('[rules]\nfiles = [1]\n', "rules.files: must be a non-empty list of paths"),
        ('logging = 1\n[rules]\nfiles = ["r.toml"]\n', "logging: must be a table"),
        ('[rules]\nfiles = ["r.toml"]\n[processing]\ndry_run = "yes"\n',
         "processing.dry_run: must be true or false"),
        ('[rules]\nfiles = ["r.toml"]\n[http]\nhost = 1\n', "http.host: must be a string"),
        ('[rules]\nfiles = ["r.toml"]\n[checkpoints]\npath = 5\n',
         "checkpoints.path: must be a string"),
        ('[rules]\nfiles = ["r.toml"]\n[checkpoints]\ncontainer = 5\n',
         "checkpoints.container: must be a string"),
        ('[rules]\nfiles = ["r.toml"]\n[ledger]\nstore = "cloud"\n',
         "ledger.store: 'cloud' is not one of blob, local"),
        ('[rules]\nfiles = ["r.toml"]\n[eventhub]\nstarting_position = 2026-01-01T00:00:00Z\n',
         "eventhub.starting_position: must be a string"),
        ('[rules]\nfiles = ["r.toml"]\n[deadletters]\nevery_events = 1\n',
         f"deadletters.every_events: unknown key; expected one of {STORE_KEYS}"),
        ('[rules]\nfiles = ["r.toml"]\n[checkpoints]\nlease_s = 1\n',
         f"checkpoints.lease_s: unknown key; expected one of {STORE_KEYS}, every_events, every_s"),
        ('[rules]\nfiles = ["r.toml"]\n[email]\npassword = "hunter2"\n',
         "email.password: unknown key; expected one of transport, directory, sender, host, port, "
         "security, username_env, password_env, timeout_s, ca_file"),
    ],
)  # fmt: skip
def test_type_errors_name_the_key_as_the_file_writes_it(
    tmp_path: Path, text: str, message: str
) -> None:
    """A value of the wrong type names the file and the key as written: a store's keys sit
    in [checkpoints] and [ledger] themselves; a secret's own name is no key (only *_env)."""
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    assert str(caught.value) == f"{path}: {message}"


def test_a_value_from_the_environment_is_checked_as_the_key_it_overrides(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, '[rules]\nfiles = ["r.toml"]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, {"MLEVENTS_LOG_FORMAT": "xml"})
    assert str(caught.value) == f"{path}: logging.format: 'xml' is not one of auto, json, console"


def test_an_empty_string_leaves_an_optional_key_out(tmp_path: Path) -> None:
    """An empty path, ledger store, client id or variable name is as if it were not given."""
    text = (
        '[rules]\nfiles = ["r.toml"]\n[eventhub]\nname = "hub"\nconnection_string_env = ""\n'
        'fully_qualified_namespace = "ns.servicebus.windows.net"\n'
        '[checkpoints]\npath = ""\n[ledger]\nstore = ""\n[email]\ndirectory = ""\n'
        '[azure]\nclient_id = ""\n'
    )
    config = load_config(_write(tmp_path, text), {})
    assert config.eventhub is not None and config.eventhub.connection_string is None
    state = (tmp_path / ".mlevents").resolve()
    assert config.checkpoints.store.path == state / "checkpoints.sqlite3"
    assert config.ledger.store.path == state / "ledger.sqlite3"
    assert config.email.directory == state / "outbox"
    assert config.azure.client_id is None


def test_a_missing_table_takes_the_defaults_of_its_struct(tmp_path: Path) -> None:
    """The defaults a section has in code are those a config without it loads with."""
    text = '[rules]\nfiles = ["r.toml"]\n[eventhub]\nname = "hub"\nconnection_string_env = "CS"\n'
    config = load_config(_write(tmp_path, text), {"CS": "Endpoint=sb://x/"})
    assert config.processing == ProcessingConfig()
    assert config.http == HttpConfig()
    defaults = CheckpointConfig()
    assert (config.checkpoints.every_events, config.checkpoints.every_s) == (
        defaults.every_events,
        defaults.every_s,
    )
    assert config.checkpoints.store.timeout_s == defaults.store.timeout_s
    assert config.eventhub == EventHubConfig(name="hub", connection_string="Endpoint=sb://x/")


def test_store_secrets_stay_out_of_repr_and_sections_are_frozen(tmp_path: Path) -> None:
    text = (
        '[rules]\nfiles = ["r.toml"]\n[checkpoints]\nstore = "blob"\ncontainer = "cp"\n'
        'connection_string_env = "CP"\n'
    )
    config = load_config(_write(tmp_path, text), {"CP": "AccountKey=s3cret"})
    assert config.checkpoints.store.connection_string == "AccountKey=s3cret"
    assert config.ledger.store.connection_string == "AccountKey=s3cret"
    assert "s3cret" not in repr(config)
    with pytest.raises(AttributeError):
        config.processing.max_in_flight = 1  # type: ignore[misc]
