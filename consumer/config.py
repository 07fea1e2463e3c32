"""Configuration: ``config.toml`` read once, validated, frozen.

``load_config`` is the only code that reads the environment (with ``environment_secret``,
for command-line options that name a variable, and ``environment_secrets``, for
``mlevents lint --env``). Paths in the file are relative
to the file. Every error names the file and the key. Secrets never live in the file: a
section that needs one names the environment variable holding it (``*_env`` keys), and the
value is read here, kept out of ``repr`` and never logged.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from consumer.errors import ConfigError

LogFormat = Literal["auto", "json", "console"]
LOG_FORMATS: dict[str, LogFormat] = {"auto": "auto", "json": "json", "console": "console"}
LOG_LEVELS = ("debug", "info", "warning", "error")
StartingPosition = Literal["earliest", "latest"] | datetime
STORE_TIMEOUT_S = 10.0
_DAY_S = 24 * 3600


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
    """Events fetched ahead per partition, 1 to 10,000 (each is held in memory)."""
    load_balancing_interval_s: float = 10.0
    """How often the replica renews its claims and balances, 1 to 600 s."""
    ownership_expiration_s: float = 60.0
    """When an unrenewed claim becomes free, up to 3,600 s: at least twice
    ``load_balancing_interval_s``, since renewals come up to 20 % late (jitter) and a claim
    that lapses between them flaps from replica to replica."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    """A blob container (connection string or account URL + credential) or a local path."""

    kind: Literal["blob", "local"]
    path: Path | None = None
    container: str | None = None
    connection_string: str | None = field(default=None, repr=False)
    account_url: str | None = None
    timeout_s: float = STORE_TIMEOUT_S
    """Deadline of one call to the store (0.5 to 120 s): a store that does not answer within
    it counts as down, and the worker takes its outage path (see ``consumer.stores.deadlines``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointConfig:
    """Where checkpoints go and how often."""

    store: StoreConfig
    every_events: int = 100
    """1 to 100,000 finished events."""
    every_s: float = 5.0
    """0.1 to 3,600 s; shorter spins the flush loop, longer leaves more to read again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessingConfig:
    """Per-partition processing."""

    max_in_flight: int = 64
    """Events of one partition whose actions may run at once; intake waits when full. 1 to
    10,000: 0 would stall intake for good."""
    drain_deadline_s: float = 20.0
    """How long shutdown waits for in-flight actions before it stops them, 1 to 600 s (it
    must fit in the pod's termination grace period)."""
    dry_run: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpConfig:
    """The health and metrics endpoint."""

    host: str = "0.0.0.0"  # a container serves probes on every interface
    port: int = 8080
    """0 to 65,535; 0 takes any free port."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggingConfig:
    """How the worker logs: JSON in containers, readable on a terminal."""

    format: LogFormat = "auto"
    level: str = "info"


EmailSecurity = Literal["starttls", "tls", "none"]
EMAIL_SECURITY: dict[str, EmailSecurity] = {"starttls": "starttls", "tls": "tls", "none": "none"}
DEFAULT_SMTP_PORTS = {"starttls": 587, "tls": 465, "none": 25}


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailConfig:
    """How the ``email`` action delivers: ``.eml`` files in a folder (the local default) or
    an SMTP server."""

    transport: Literal["files", "smtp"] = "files"
    directory: Path | None = None
    """For ``files``: where the ``.eml`` files go."""
    sender: str = "mlevents@localhost"
    host: str = "localhost"
    port: int = 587
    """1 to 65,535."""
    security: EmailSecurity = "starttls"
    """``starttls`` (fails when the server does not offer it), ``tls`` (implicit), ``none``
    (refused with a username or password, which would go over plain text)."""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0
    """For each SMTP operation, 1 to 600 s: without one, a mute server holds the action."""
    ca_file: Path | None = None
    """A CA bundle to trust for the server's certificate, besides the system's."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookConfig:
    """Where the ``webhook`` action may post."""

    allowed_hosts: tuple[str, ...] = ()
    """When not empty, the only hosts webhooks go to (lower case; ``*.domain`` for any host
    under the domain). Rules naming another host are refused; so is a request to one."""


HOST_PATTERN = re.compile(
    r"(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*", re.IGNORECASE
)
"""An ``allowed_hosts`` entry: a host name (or IPv4 address), optionally ``*.`` first."""


AzureCredentialKind = Literal[
    "default", "workload_identity", "managed_identity", "environment", "cli"
]
AZURE_CREDENTIALS: dict[str, AzureCredentialKind] = {
    "default": "default",
    "workload_identity": "workload_identity",
    "managed_identity": "managed_identity",
    "environment": "environment",
    "cli": "cli",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class AzureConfig:
    """How the retraining and deployment actions reach Azure Resource Manager."""

    credential: AzureCredentialKind = "default"
    client_id: str | None = None
    """Client id of a user-assigned managed identity or of the workload identity."""
    management_url: str = "https://management.azure.com"
    """Azure Resource Manager; another cloud's, or a local server in tests."""
    scope: str = "https://management.azure.com/.default"
    ml_api_version: str = "2024-04-01"
    datafactory_api_version: str = "2018-06-01"


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerConfig:
    """The idempotency ledger: which actions already ran for which event."""

    store: StoreConfig
    lease_s: float = 180.0
    """How long a reservation holds before another worker may take over: what a crash costs
    the actions it had in flight. Longer than an action with its retries (120 s); a longer
    deployment taken over re-PUTs the same deployment, which is harmless. 1 s to 1 day."""
    expire_after_s: float = 7 * 24 * 3600.0
    """How long a finished action is remembered; a redelivery after that runs it again.
    From ``lease_s`` (a decision is remembered at least as long as it is reserved) to 365
    days."""


class Secrets:
    """Values of environment variables named in rule files (``secret_env`` of webhooks).

    Read once, when the config loads; never shown in ``repr`` or logs.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    def __call__(self, name: str) -> str | None:
        """The value of the variable ``name``, or ``None`` when it is not set or empty."""
        return self._values.get(name) or None

    def __repr__(self) -> str:
        return f"Secrets(<{len(self._values)} variables>)"


def environment_secrets(environ: Mapping[str, str] | None = None) -> Secrets:
    """The secrets rule files may name, from ``environ`` (the process environment if not
    given), for checks that run without a config file (``mlevents lint --env``)."""
    return Secrets(os.environ if environ is None else environ)


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole configuration."""

    path: Path
    rules: RulesConfig
    checkpoints: CheckpointConfig
    deadletters: StoreConfig
    ledger: LedgerConfig
    eventhub: EventHubConfig | None = None
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    email: EmailConfig = field(default_factory=EmailConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    azure: AzureConfig = field(default_factory=AzureConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    secrets: Secrets = field(default_factory=lambda: Secrets({}), repr=False)

    def local_path(self, store: StoreConfig | None, name: str) -> Path:
        """Where a local store lives: its ``path``, or ``.mlevents/<name>`` next to this file."""
        if store is not None and store.path is not None:
            return store.path
        return self.path.parent / ".mlevents" / name


_KEYS = {
    "rules": ("files", "tests"),
    "eventhub": ("name", "connection_string_env", "fully_qualified_namespace", "consumer_group",
                 "starting_position", "prefetch", "load_balancing_interval_s",
                 "ownership_expiration_s"),
    "checkpoints": ("store", "path", "container", "connection_string_env", "account_url",
                    "timeout_s", "every_events", "every_s"),
    "deadletters": ("store", "path", "container", "connection_string_env", "account_url",
                    "timeout_s"),
    "ledger": ("store", "path", "container", "connection_string_env", "account_url",
               "timeout_s", "lease_s", "expire_after_s"),
    "processing": ("max_in_flight", "drain_deadline_s", "dry_run"),
    "email": ("transport", "directory", "sender", "host", "port", "security", "username_env",
              "password_env", "timeout_s", "ca_file"),
    "webhook": ("allowed_hosts",),
    "azure": ("credential", "client_id", "management_url", "scope", "ml_api_version",
              "datafactory_api_version"),
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
    checkpoints = _checkpoints(reader)
    return Config(
        path=path,
        rules=RulesConfig(files=reader.paths("rules", "files", required=True),
                          tests=reader.paths("rules", "tests", required=False)),
        eventhub=_eventhub(reader) if "eventhub" in document else None,
        checkpoints=checkpoints,
        deadletters=_store(reader, "deadletters", default="deadletters"),
        ledger=_ledger(reader, checkpoints.store, has_section="ledger" in document),
        processing=_processing(reader),
        email=_email(reader),
        webhook=WebhookConfig(allowed_hosts=_allowed_hosts(reader)),
        azure=_azure(reader),
        http=HttpConfig(host=reader.text("http", "host", "0.0.0.0"),
                        port=reader.number("http", "port", 8080, integer=True, low=0, high=65_535)),
        logging=_logging(reader, environ),
        secrets=Secrets({} if offline else environ),
    )  # fmt: skip


def environment_secret(option: str, name: str, environ: Mapping[str, str] | None = None) -> str:
    """The value of the environment variable ``name``, which the command-line ``option`` names.

    Raises:
        ConfigError: the variable is not set or empty; names the option and the variable,
            never a value.
    """
    value = (os.environ if environ is None else environ).get(name)
    if not value:
        raise ConfigError(f"{option}: environment variable {name} is not set")
    return value


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
    interval = reader.number(section, "load_balancing_interval_s", 10.0, low=1, high=600)
    expiration = reader.number(section, "ownership_expiration_s", 60.0, low=1, high=3600)
    if expiration < 2 * interval:
        raise reader.error(
            f"{section}.ownership_expiration_s",
            "must be at least twice load_balancing_interval_s, or claims lapse between renewals",
        )
    return EventHubConfig(
        name=reader.text(section, "name", ""),
        connection_string=secret,
        fully_qualified_namespace=namespace,
        consumer_group=reader.text(section, "consumer_group", "$Default"),
        starting_position=_starting_position(reader),
        prefetch=reader.number(section, "prefetch", 300, integer=True, low=1, high=10_000),
        load_balancing_interval_s=interval,
        ownership_expiration_s=expiration,
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
        every_events=reader.number(
            "checkpoints", "every_events", 100, integer=True, low=1, high=100_000
        ),
        every_s=reader.number("checkpoints", "every_s", 5.0, low=0.1, high=3600),
    )


def _processing(reader: _Reader) -> ProcessingConfig:
    section = "processing"
    return ProcessingConfig(
        max_in_flight=reader.number(section, "max_in_flight", 64, integer=True, low=1, high=10_000),
        drain_deadline_s=reader.number(section, "drain_deadline_s", 20.0, low=1, high=600),
        dry_run=reader.boolean(section, "dry_run", False),
    )


def _store(reader: _Reader, section: str, *, default: str) -> StoreConfig:
    """A store section; without one, a local store under ``.mlevents/`` next to the config."""
    kind = reader.text(section, "store", "local")
    timeout_s = _store_timeout(reader, section)
    if kind == "local":
        path = reader.location(section, "path", f".mlevents/{default}")
        return StoreConfig(kind="local", path=path, timeout_s=timeout_s)
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
        kind="blob", container=container, connection_string=secret, account_url=account_url,
        timeout_s=timeout_s,
    )  # fmt: skip


def _store_timeout(reader: _Reader, section: str, default: float = STORE_TIMEOUT_S) -> float:
    timeout_s: float = reader.number(section, "timeout_s", default, low=0.5, high=120)
    return timeout_s


def _ledger(reader: _Reader, checkpoints: StoreConfig, *, has_section: bool) -> LedgerConfig:
    """The ledger section; without a ``store`` key, the ledger lives where the checkpoints do."""
    section = "ledger"
    if has_section and reader.optional_text(section, "store") is not None:
        store = _store(reader, section, default="ledger.sqlite3")
    elif checkpoints.kind == "local" and checkpoints.path is not None:
        store = StoreConfig(
            kind="local", path=checkpoints.path.with_name("ledger.sqlite3"),
            timeout_s=_store_timeout(reader, section, checkpoints.timeout_s),
        )  # fmt: skip
    else:
        timeout_s = _store_timeout(reader, section, checkpoints.timeout_s)
        store = dataclasses.replace(checkpoints, timeout_s=timeout_s)
    lease_s = reader.number(section, "lease_s", 180.0, low=1, high=_DAY_S)
    expire_after_s = reader.number(
        section, "expire_after_s", float(7 * _DAY_S), low=1, high=365 * _DAY_S
    )
    if expire_after_s < lease_s:
        raise reader.error(f"{section}.expire_after_s", "must be at least lease_s")
    return LedgerConfig(store=store, lease_s=lease_s, expire_after_s=expire_after_s)


def _email(reader: _Reader) -> EmailConfig:
    section = "email"
    transport = reader.text(section, "transport", "files")
    if transport not in ("files", "smtp"):
        raise reader.error(f"{section}.transport", f"{transport!r} is not 'files' or 'smtp'")
    security = reader.text(section, "security", "starttls")
    if security not in EMAIL_SECURITY:
        raise reader.error(
            f"{section}.security", f"{security!r} is not one of {', '.join(EMAIL_SECURITY)}"
        )
    if security == "none":
        _no_plain_text_credentials(reader)
    ca_file = reader.optional_text(section, "ca_file")
    return EmailConfig(
        transport="smtp" if transport == "smtp" else "files",
        directory=reader.location(section, "directory", ".mlevents/outbox"),
        sender=reader.text(section, "sender", "mlevents@localhost"),
        host=reader.text(section, "host", "localhost"),
        port=reader.number(
            section, "port", DEFAULT_SMTP_PORTS[security], integer=True, low=1, high=65_535
        ),
        security=EMAIL_SECURITY[security],
        username=reader.secret(section, "username_env"),
        password=reader.secret(section, "password_env"),
        timeout_s=reader.number(section, "timeout_s", 30.0, low=1, high=600),
        ca_file=None if ca_file is None else reader.location(section, "ca_file", ca_file),
    )


def _no_plain_text_credentials(reader: _Reader) -> None:
    """With ``security = "none"`` every send would be refused at runtime, so naming a username
    or a password is an error here, whether or not the variable is set."""
    for key in ("username_env", "password_env"):
        if reader.optional_text("email", key) is not None:
            raise reader.error(
                f"email.{key}",
                'credentials are never sent over plain text (security = "none"); '
                'use "starttls" or "tls"',
            )


def _allowed_hosts(reader: _Reader) -> tuple[str, ...]:
    key = "webhook.allowed_hosts"
    value = reader.document.get("webhook", {}).get("allowed_hosts")
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        raise reader.error(key, "must be a non-empty list of host names (leave it out for any)")
    for index, item in enumerate(value):
        if not isinstance(item, str) or not HOST_PATTERN.fullmatch(item.rstrip(".")):
            raise reader.error(
                f"{key}[{index}]",
                f"{item!r} is not a host name (example.com, or *.example.com for any under it)",
            )
    return tuple(item.lower().rstrip(".") for item in value)


def _azure(reader: _Reader) -> AzureConfig:
    section = "azure"
    credential = reader.text(section, "credential", "default")
    if credential not in AZURE_CREDENTIALS:
        raise reader.error(
            f"{section}.credential",
            f"{credential!r} is not one of {', '.join(AZURE_CREDENTIALS)}",
        )
    management_url = reader.text(section, "management_url", "https://management.azure.com")
    if not management_url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise reader.error(
            f"{section}.management_url", "must be https:// (plain http only on loopback)"
        )
    management_url = management_url.rstrip("/")
    return AzureConfig(
        credential=AZURE_CREDENTIALS[credential],
        client_id=reader.optional_text(section, "client_id"),
        management_url=management_url,
        scope=reader.text(section, "scope", "https://management.azure.com/.default"),
        ml_api_version=reader.text(section, "ml_api_version", "2024-04-01"),
        datafactory_api_version=reader.text(section, "datafactory_api_version", "2018-06-01"),
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
        self,
        section: str,
        key: str,
        default: Any,
        *,
        integer: bool = False,
        low: float,
        high: float,
    ) -> Any:
        """``section.key`` from ``low`` to ``high``. TOML's ``nan`` and ``inf`` fall outside
        every range, and ``true`` is not a number."""
        value = self._get(section, key)
        if value is None:
            return default
        kinds = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
            kind = "a whole number" if integer else "a number"
            raise self.error(f"{section}.{key}", f"must be {kind} from {low} to {high}")
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
