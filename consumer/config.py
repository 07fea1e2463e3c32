"""Configuration: ``config.toml`` read once, validated, frozen.

``load_config`` is the only code that reads the environment (with ``environment_secret``,
for command-line options that name a variable, and ``environment_secrets``, for
``mlevents lint --env``). Paths in the file are relative
to the file. Every error names the file and the key. Secrets never live in the file: a
section that needs one names the environment variable holding it (``*_env`` keys), and the
value is read here, kept out of ``repr`` and never logged.

Each table of the file is a msgspec ``Struct`` below: its fields are the table's keys, with
their types, bounds (``Meta``) and defaults, written once. ``msgspec.convert`` checks the
file against them (unknown keys included); the checks that span keys, the secrets and the
defaults that depend on other keys come after, in ``load_config``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Collection, Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import msgspec
import msgspec.inspect
from msgspec import Meta
from msgspec.structs import replace

from consumer.errors import ConfigError

LogFormat = Literal["auto", "json", "console"]
LOG_LEVELS = ("debug", "info", "warning", "error")
StartingPosition = Literal["earliest", "latest"] | datetime
EmailSecurity = Literal["starttls", "tls", "none"]
DEFAULT_SMTP_PORTS = {"starttls": 587, "tls": 465, "none": 25}
AzureCredentialKind = Literal[
    "default", "workload_identity", "managed_identity", "environment", "cli"
]
_DAY_S = 24 * 3600

Paths = Annotated[
    tuple[Path, ...], Meta(min_length=1, extra={"error": "must be a non-empty list of paths"})
]
"""Files, relative to the config file. (``extra["error"]`` is what an error says of a key.)"""
HostName = Annotated[
    str,
    Meta(
        pattern=r"(?i)^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.*\Z",
        extra={"error": "{value!r} is not a host name "
                        "(example.com, or *.example.com for any under it)"},
    ),
]  # fmt: skip
"""An ``allowed_hosts`` entry: a host name (or IPv4 address), optionally ``*.`` first, with
trailing dots allowed (they are dropped)."""


class _Table(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A table of config.toml: typed, frozen, and no key but its fields.

    A field whose key ends in ``_env`` (``msgspec.field(name=...)`` gives the key) holds a
    secret: ``msgspec.convert`` puts there the name of the environment variable, and
    ``load_config`` the variable's value. It never shows in ``repr``.
    """

    def __repr__(self) -> str:
        names = zip(self.__struct_fields__, self.__struct_encode_fields__, strict=True)
        shown = (f"{n}={getattr(self, n)!r}" for n, key in names if not key.endswith("_env"))
        return f"{type(self).__name__}({', '.join(shown)})"


class RulesConfig(_Table, frozen=True):
    """Where the rule table and its tests live."""

    files: Paths
    tests: Paths = ()


class EventHubConfig(_Table, frozen=True):
    """The hub to consume: by connection string, or by namespace and an Azure AD credential."""

    name: str = ""
    connection_string: str | None = msgspec.field(default=None, name="connection_string_env")
    fully_qualified_namespace: str | None = None
    consumer_group: str = "$Default"
    starting_position: StartingPosition = "latest"
    """Where a partition without a checkpoint starts."""
    prefetch: Annotated[int, Meta(ge=1, le=10_000)] = 300
    """Events fetched ahead per partition (each is held in memory)."""
    load_balancing_interval_s: Annotated[float, Meta(ge=1, le=600)] = 10.0
    """How often the replica renews its claims and balances."""
    ownership_expiration_s: Annotated[float, Meta(ge=1, le=3600)] = 60.0
    """When an unrenewed claim becomes free: at least twice ``load_balancing_interval_s``,
    since renewals come up to 20 % late (jitter) and a claim that lapses between them flaps
    from replica to replica."""


class _EventHubTable(EventHubConfig, frozen=True):
    """``[eventhub]`` as written. msgspec cannot read ``StartingPosition`` (two kinds of
    string), so ``starting_position`` stays text here (unset: the default) until
    ``_starting_position`` reads it."""

    starting_position: str | msgspec.UnsetType = msgspec.UNSET  # type: ignore[assignment]


class StoreConfig(_Table, frozen=True):
    """A blob container (connection string or account URL + credential) or a local path."""

    kind: Literal["blob", "local"] = msgspec.field(default="local", name="store")
    path: Path | None = None
    container: str | None = None
    connection_string: str | None = msgspec.field(default=None, name="connection_string_env")
    account_url: str | None = None
    timeout_s: Annotated[float, Meta(ge=0.5, le=120)] = 10.0
    """Deadline of one call to the store: a store that does not answer within it counts as
    down, and the worker takes its outage path (see ``consumer.stores.deadlines``)."""


class CheckpointConfig(_Table, frozen=True):
    """Where checkpoints go and how often. In the file, the store's keys sit beside these."""

    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    every_events: Annotated[int, Meta(ge=1, le=100_000)] = 100
    """Finished events."""
    every_s: Annotated[float, Meta(ge=0.1, le=3600)] = 5.0
    """Shorter spins the flush loop, longer leaves more to read again."""


class ProcessingConfig(_Table, frozen=True):
    """Per-partition processing."""

    max_in_flight: Annotated[int, Meta(ge=1, le=10_000)] = 64
    """Events of one partition whose actions may run at once; intake waits when full (0
    would stall intake for good)."""
    drain_deadline_s: Annotated[float, Meta(ge=1, le=600)] = 20.0
    """How long shutdown waits for in-flight actions before it stops them (it must fit in
    the pod's termination grace period)."""
    dry_run: bool = False


class HttpConfig(_Table, frozen=True):
    """The health and metrics endpoint."""

    host: str = "0.0.0.0"  # a container serves probes on every interface
    port: Annotated[int, Meta(ge=0, le=65_535)] = 8080
    """0 takes any free port."""


class LoggingConfig(_Table, frozen=True):
    """How the worker logs: JSON in containers, readable on a terminal."""

    format: LogFormat = "auto"
    level: str = "info"
    """One of ``LOG_LEVELS``, in any case in the file (lower case here)."""


class EmailConfig(_Table, frozen=True):
    """How the ``email`` action delivers: ``.eml`` files in a folder (the local default) or
    an SMTP server."""

    transport: Literal["files", "smtp"] = "files"
    directory: Path | None = None
    """For ``files``: where the ``.eml`` files go (``.mlevents/outbox`` when not given)."""
    sender: str = "mlevents@localhost"
    host: str = "localhost"
    port: Annotated[int, Meta(ge=1, le=65_535)] = DEFAULT_SMTP_PORTS["starttls"]
    """When not given, the port of ``security`` (``DEFAULT_SMTP_PORTS``)."""
    security: EmailSecurity = "starttls"
    """``starttls`` (fails when the server does not offer it), ``tls`` (implicit), ``none``
    (refused with a username or password, which would go over plain text)."""
    username: str | None = msgspec.field(default=None, name="username_env")
    password: str | None = msgspec.field(default=None, name="password_env")
    timeout_s: Annotated[float, Meta(ge=1, le=600)] = 30.0
    """For each SMTP operation: without one, a mute server holds the action."""
    ca_file: Path | None = None
    """A CA bundle to trust for the server's certificate, besides the system's."""


class WebhookConfig(_Table, frozen=True):
    """Where the ``webhook`` action may post."""

    allowed_hosts: Annotated[
        tuple[HostName, ...],
        Meta(min_length=1, extra={
            "error": "must be a non-empty list of host names (leave it out for any)"
        }),
    ] = ()  # fmt: skip
    """When not empty, the only hosts webhooks go to (lower case; ``*.domain`` for any host
    under the domain). Rules naming another host are refused; so is a request to one."""


class AzureConfig(_Table, frozen=True):
    """How the retraining and deployment actions reach Azure Resource Manager."""

    credential: AzureCredentialKind = "default"
    client_id: str | None = None
    """Client id of a user-assigned managed identity or of the workload identity."""
    management_url: str = "https://management.azure.com"
    """Azure Resource Manager; another cloud's, or a local server in tests."""
    scope: str = "https://management.azure.com/.default"
    ml_api_version: str = "2024-04-01"
    datafactory_api_version: str = "2018-06-01"


class LedgerConfig(_Table, frozen=True):
    """The idempotency ledger: which actions already ran for which event. In the file, the
    store's keys sit beside these; without ``store``, the ledger follows the checkpoints."""

    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    lease_s: Annotated[float, Meta(ge=1, le=_DAY_S)] = 180.0
    """How long a reservation holds before another worker may take over: what a crash costs
    the actions it had in flight. Longer than an action with its retries (120 s); a longer
    deployment taken over re-PUTs the same deployment, which is harmless."""
    expire_after_s: Annotated[float, Meta(ge=1, le=365 * _DAY_S)] = float(7 * _DAY_S)
    """How long a finished action is remembered; a redelivery after that runs it again. At
    least ``lease_s``: a decision is remembered at least as long as it is reserved."""


class Secrets:
    """Values of environment variables named in rule files (a webhook's ``url_env``,
    ``headers_env`` and ``secret_env``).

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


class Config(msgspec.Struct, frozen=True, kw_only=True):
    """The whole configuration."""

    path: Path
    rules: RulesConfig
    eventhub: EventHubConfig | None
    checkpoints: CheckpointConfig
    deadletters: StoreConfig
    ledger: LedgerConfig
    processing: ProcessingConfig
    email: EmailConfig
    webhook: WebhookConfig
    azure: AzureConfig
    http: HttpConfig
    logging: LoggingConfig
    secrets: Secrets

    def local_path(self, store: StoreConfig | None, name: str) -> Path:
        """Where a local store lives: its ``path``, or ``.mlevents/<name>`` next to this file."""
        if store is not None and store.path is not None:
            return store.path
        return self.path.parent / ".mlevents" / name


class _File(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """config.toml as ``msgspec.convert`` reads it (see ``_prepare``): every table is
    optional but ``[rules]``."""

    rules: RulesConfig
    eventhub: _EventHubTable | None = None
    checkpoints: CheckpointConfig = msgspec.field(default_factory=CheckpointConfig)
    deadletters: StoreConfig = msgspec.field(default_factory=StoreConfig)
    ledger: LedgerConfig = msgspec.field(default_factory=LedgerConfig)
    processing: ProcessingConfig = msgspec.field(default_factory=ProcessingConfig)
    email: EmailConfig = msgspec.field(default_factory=EmailConfig)
    webhook: WebhookConfig = msgspec.field(default_factory=WebhookConfig)
    azure: AzureConfig = msgspec.field(default_factory=AzureConfig)
    http: HttpConfig = msgspec.field(default_factory=HttpConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)


_SCHEMA = msgspec.inspect.type_info(_File)
assert isinstance(_SCHEMA, msgspec.inspect.StructType)  # for mypy: _File is a Struct


def _table_keys(table: msgspec.inspect.Field) -> list[msgspec.inspect.Field]:
    """The keys of a table; a nested store's keys count as the table's own."""
    kind = table.type
    if isinstance(kind, msgspec.inspect.UnionType):  # [eventhub] may be left out
        kind = kind.types[0]
    assert isinstance(kind, msgspec.inspect.StructType)
    keys: list[msgspec.inspect.Field] = []
    for field in kind.fields:
        nested = field.type
        keys += nested.fields if isinstance(nested, msgspec.inspect.StructType) else [field]
    return keys


_KEYS = {t.encode_name: tuple(k.encode_name for k in _table_keys(t)) for t in _SCHEMA.fields}
"""Each table's keys, in order."""
_OPTIONAL = {
    t.encode_name: frozenset(k.encode_name for k in _table_keys(t) if k.default is None)
    for t in _SCHEMA.fields
}
"""Each table's keys that may be left out with nothing in their place (``None``): for them,
an empty string is as if the key were left out."""
_OPTIONAL["ledger"] |= {"store"}  # without it, the ledger follows the checkpoints' store
_STORE_KEYS = _KEYS["deadletters"]


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
        written = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    sections = frozenset(_KEYS) if secrets_of is None else frozenset(secrets_of)
    source = _Source(
        path=path, environ=environ, secret_sections=frozenset() if offline else sections
    )
    document = _prepare(written, environ)
    try:
        file = msgspec.convert(document, _File, dec_hook=source.decode)
    except msgspec.ValidationError as exc:
        raise source.error(*_explain(exc, document)) from exc
    checkpoints = replace(
        file.checkpoints,
        store=_store(source, "checkpoints", file.checkpoints.store, "checkpoints.sqlite3"),
    )
    return Config(
        path=path,
        rules=_rules(source, file.rules, written["rules"]),
        eventhub=None if file.eventhub is None else _eventhub(source, file.eventhub),
        checkpoints=checkpoints,
        deadletters=_store(source, "deadletters", file.deadletters, "deadletters"),
        ledger=_ledger(source, file.ledger, checkpoints.store, written.get("ledger", {})),
        processing=file.processing,
        email=_email(source, file.email, written.get("email", {})),
        webhook=_webhook(file.webhook),
        azure=_azure(source, file.azure),
        http=file.http,
        logging=_logging(source, file.logging),
        secrets=Secrets({} if offline else environ),
    )


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


class _Source(msgspec.Struct, frozen=True, kw_only=True):
    """The file being loaded, and the environment its ``*_env`` keys name."""

    path: Path
    environ: Mapping[str, str]
    secret_sections: frozenset[str]
    """Sections whose secrets are read; the others' read as ``None``."""

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {key}: {message}")

    def reads_secrets(self, section: str) -> bool:
        return section in self.secret_sections

    def secret(self, section: str, key: str, name: str | None) -> str | None:
        """The value of the environment variable ``name``, which ``section.key`` names."""
        if name is None or not self.reads_secrets(section):
            return None
        value = self.environ.get(name)
        if not value:
            raise self.error(f"{section}.{key}", f"environment variable {name} is not set")
        return value

    def location(self, relative: str) -> Path:
        return (self.path.parent / relative).resolve()

    def decode(self, kind: type, value: Any) -> Any:
        """``msgspec.convert``'s hook for the types it does not know: paths, which are
        relative to the file."""
        if kind is Path and isinstance(value, str):
            return self.location(value)
        raise TypeError(f"cannot read {type(value).__name__} as {kind.__name__}")


def _prepare(written: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """The file as ``_File`` reads it: the ``MLEVENTS_LOG_*`` overrides in, empty strings
    of optional keys out, and the store's keys of ``[checkpoints]`` and ``[ledger]`` in a
    ``store`` table of their own (the shape of ``CheckpointConfig`` and ``LedgerConfig``).
    Tables that are not tables are left for ``msgspec.convert`` to refuse."""
    logging = written.get("logging", {})
    overrides = {
        key: environ[variable]
        for key, variable in (("format", "MLEVENTS_LOG_FORMAT"), ("level", "MLEVENTS_LOG_LEVEL"))
        if environ.get(variable)
    }
    written = dict(written)
    written.setdefault("rules", {})  # without it, the message of a missing rules.files
    if overrides and isinstance(logging, dict):
        written["logging"] = {**logging, **overrides}
    return {
        section: _prepare_table(section, table)
        if section in _KEYS and isinstance(table, dict) else table
        for section, table in written.items()
    }  # fmt: skip


def _prepare_table(section: str, table: dict[str, Any]) -> dict[str, Any]:
    table = {k: v for k, v in table.items() if not (v == "" and k in _OPTIONAL[section])}
    if section not in ("checkpoints", "ledger"):
        return table
    own = {k: v for k, v in table.items() if k not in _STORE_KEYS}
    return {"store": {k: v for k, v in table.items() if k in _STORE_KEYS}, **own}


def _explain(exc: msgspec.ValidationError, document: Mapping[str, Any]) -> tuple[str, str]:
    """The key (as the file writes it) and the message of msgspec's ``exc``, such as
    "Expected `int`, got `str` - at `$.processing.max_in_flight`"."""
    message, _, where = str(exc).partition(" - at `$")
    steps: list[str | int] = [n or int(i) for n, i in re.findall(r"\.([^.[`]+)|\[(\d+)\]", where)]
    named = re.match(r"Object (contains unknown|missing required) field `(.*)`", message)
    if named:
        steps.append(named[2])
    if named and named[1] == "contains unknown":
        if len(steps) == 1:
            return _key(steps), f"unknown section; expected one of {', '.join(_KEYS)}"
        expected = ", ".join(_KEYS[str(steps[0])])
        return _key(steps), f"unknown key; expected one of {expected}"
    depth, said = _expected(steps, document)
    return _key(steps[:depth]), said or message


def _expected(steps: list[str | int], document: Mapping[str, Any]) -> tuple[int, str | None]:
    """How many of ``steps`` lead to the key at fault, and what that key must be: the
    ``extra["error"]`` nearest to the fault on the way there, or what its type says."""
    kind: msgspec.inspect.Type = _SCHEMA
    depth, said, declared = 0, None, Any
    while True:
        if isinstance(kind, msgspec.inspect.Metadata):
            if kind.extra and "error" in kind.extra:
                said = depth, str(kind.extra["error"])
            kind = kind.type
        elif isinstance(kind, msgspec.inspect.UnionType):  # X | None
            kind = kind.types[0]
        elif depth < len(steps) and isinstance(kind, msgspec.inspect.StructType):
            fields = msgspec.structs.fields(kind.cls)
            declared = next(f.type for f in fields if f.encode_name == steps[depth])
            kind = next(f.type for f in kind.fields if f.encode_name == steps[depth])
            depth += 1
        elif depth < len(steps) and isinstance(kind, msgspec.inspect.VarTupleType):
            kind = kind.item_type
            depth += 1
        else:
            break
    if said is not None:
        depth, text = said
        return depth, text.format(value=_value(document, steps[:depth]))
    return depth, _must_be(kind, _value(document, steps[:depth]), declared)


def _must_be(kind: msgspec.inspect.Type, value: Any, declared: Any) -> str | None:
    """What a value of ``kind`` must be, for an error about ``value``; ``declared`` is the
    field's type as written (msgspec sorts a ``Literal``'s values, the message keeps the
    declared order)."""
    match kind:
        case msgspec.inspect.IntType(ge=low, le=high):
            return f"must be a whole number from {low} to {high}"
        case msgspec.inspect.FloatType(ge=low, le=high):
            return f"must be a number from {low} to {high}"
        case msgspec.inspect.BoolType():
            return "must be true or false"
        case msgspec.inspect.LiteralType() if isinstance(value, str):
            return f"{value!r} is not one of {', '.join(get_args(declared))}"
        case msgspec.inspect.StructType():
            return "must be a table"
        case (
            msgspec.inspect.StrType() | msgspec.inspect.LiteralType() | msgspec.inspect.CustomType()
        ):
            return "must be a string"
    return None


def _value(document: Mapping[str, Any], steps: list[str | int]) -> Any:
    """The value at ``steps`` in ``document``, or ``None`` where the key is missing."""
    value: Any = document
    for step in steps:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _key(steps: list[str | int]) -> str:
    """``steps`` as the file writes the key: ``checkpoints.container`` for the store key
    that ``_prepare`` moved to ``checkpoints.store.container``."""
    if len(steps) > 2 and steps[0] in ("checkpoints", "ledger") and steps[1] == "store":
        steps = [steps[0], *steps[2:]]
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps).lstrip(".")


def _rules(source: _Source, rules: RulesConfig, written: Mapping[str, Any]) -> RulesConfig:
    for key, paths in (("files", rules.files), ("tests", rules.tests)):
        for index, candidate in enumerate(paths):
            if not candidate.is_file():
                raise source.error(
                    f"rules.{key}[{index}]",
                    f"no file at {written[key][index]!r} (looked at {candidate})",
                )
    return rules


def _eventhub(source: _Source, table: _EventHubTable) -> EventHubConfig:
    section = "eventhub"
    secret = source.secret(section, "connection_string_env", table.connection_string)
    namespace = table.fully_qualified_namespace
    if (secret is None) == (namespace is None) and source.reads_secrets(section):
        raise source.error(
            section,
            "give either connection_string_env or "
            "fully_qualified_namespace (with an Azure AD credential)",
        )
    if table.ownership_expiration_s < 2 * table.load_balancing_interval_s:
        raise source.error(
            f"{section}.ownership_expiration_s",
            "must be at least twice load_balancing_interval_s, or claims lapse between renewals",
        )
    fields = msgspec.structs.asdict(table) | {"connection_string": secret}
    if isinstance(text := fields.pop("starting_position"), str):
        fields["starting_position"] = _starting_position(source, text)
    return EventHubConfig(**fields)


def _starting_position(source: _Source, text: str) -> StartingPosition:
    if text in ("earliest", "latest"):
        return "earliest" if text == "earliest" else "latest"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise source.error(
            "eventhub.starting_position",
            f"{text!r} is not earliest, latest or an ISO 8601 time with a zone",
        ) from None
    if moment.tzinfo is None:
        raise source.error("eventhub.starting_position", f"{text!r} has no time zone")
    return moment


def _store(source: _Source, section: str, store: StoreConfig, default: str) -> StoreConfig:
    """A store section; a local store without a ``path`` lives at ``.mlevents/<default>``
    next to the config. Only a blob store reads its secret."""
    if store.kind == "local":
        path = store.path or source.location(f".mlevents/{default}")
        return StoreConfig(kind="local", path=path, timeout_s=store.timeout_s)
    secret = source.secret(section, "connection_string_env", store.connection_string)
    if (secret is None) == (store.account_url is None) and source.reads_secrets(section):
        raise source.error(
            section,
            "a blob store needs either connection_string_env or "
            "account_url (with an Azure AD credential)",
        )
    if not store.container:
        raise source.error(f"{section}.container", "a blob store needs a container name")
    return replace(store, path=None, connection_string=secret)


def _ledger(
    source: _Source, ledger: LedgerConfig, checkpoints: StoreConfig, written: Mapping[str, Any]
) -> LedgerConfig:
    """The ledger section; without a ``store`` key, the ledger lives where the checkpoints do
    (``ledger.sqlite3`` beside a local checkpoint file), with its own ``timeout_s`` if given."""
    if written.get("store") not in (None, ""):
        store = _store(source, "ledger", ledger.store, "ledger.sqlite3")
    else:
        timeout_s = ledger.store.timeout_s if "timeout_s" in written else checkpoints.timeout_s
        store = replace(checkpoints, timeout_s=timeout_s)
        if store.kind == "local" and store.path is not None:
            store = replace(store, path=store.path.with_name("ledger.sqlite3"))
    if ledger.expire_after_s < ledger.lease_s:
        raise source.error("ledger.expire_after_s", "must be at least lease_s")
    return replace(ledger, store=store)


def _email(source: _Source, email: EmailConfig, written: Mapping[str, Any]) -> EmailConfig:
    """With ``security = "none"`` every send would be refused at runtime, so naming a
    username or a password is an error here, whether or not the variable is set."""
    if email.security == "none":
        for key, name in (("username_env", email.username), ("password_env", email.password)):
            if name is not None:
                raise source.error(
                    f"email.{key}",
                    'credentials are never sent over plain text (security = "none"); '
                    'use "starttls" or "tls"',
                )
    return replace(
        email,
        directory=email.directory or source.location(".mlevents/outbox"),
        port=email.port if "port" in written else DEFAULT_SMTP_PORTS[email.security],
        username=source.secret("email", "username_env", email.username),
        password=source.secret("email", "password_env", email.password),
    )


def _webhook(webhook: WebhookConfig) -> WebhookConfig:
    hosts = tuple(host.lower().rstrip(".") for host in webhook.allowed_hosts)
    return replace(webhook, allowed_hosts=hosts)


def _azure(source: _Source, azure: AzureConfig) -> AzureConfig:
    if not azure.management_url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise source.error("azure.management_url", "must be https:// (plain http only on loopback)")
    return replace(azure, management_url=azure.management_url.rstrip("/"))


def _logging(source: _Source, logging: LoggingConfig) -> LoggingConfig:
    if logging.level.lower() not in LOG_LEVELS:
        raise source.error(
            "logging.level", f"{logging.level!r} is not one of {', '.join(LOG_LEVELS)}"
        )
    return replace(logging, level=logging.level.lower())
