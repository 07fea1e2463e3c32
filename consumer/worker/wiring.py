"""The composition root of ``mlevents run``: real collaborators built from the config.

Everything the worker uses is made here and nowhere else: the Event Hubs client, the
checkpoint store, the dead-letter store, the HTTP session for webhooks, the executors,
metrics and the health server. Signals are installed here too, not in constructors.

A store that cannot be opened at start raises ``StoreError``: one line naming its config
section and the failure by type and status, so the command prints it like any other start-up
error instead of a traceback that may quote the connection string.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import signal
import socket
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import certifi
import structlog
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError
from azure.eventhub.aio import CheckpointStore, EventHubConsumerClient

from consumer.actions import Executor, Executors
from consumer.actions.adf import AdfExecutor
from consumer.actions.amldeploy import AmlDeployExecutor
from consumer.actions.amljob import AmlJobExecutor
from consumer.actions.azure import ArmClient
from consumer.actions.email import EmailExecutor, FilesTransport, SmtpTransport
from consumer.actions.email import Transport as EmailTransport
from consumer.actions.http import PoolMetrics, client_session
from consumer.actions.log import LogExecutor
from consumer.actions.preview import Previewer
from consumer.actions.webhook import WebhookExecutor
from consumer.config import Config, EmailConfig, EventHubConfig, StoreConfig
from consumer.credentials import CachedTokens, Credential, LazyCredential
from consumer.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    ConfigError,
    ConsumerError,
    DeadLetterError,
    LedgerError,
    StoreError,
)
from consumer.rulefiles import load_rule_files
from consumer.stores.blob import BlobAccount, describe_error, open_container
from consumer.stores.checkpoints import SqliteCheckpointStore, checkpoint_scope
from consumer.stores.deadletters import (
    BlobDeadLetterStore,
    DeadLetterStore,
    DirectoryDeadLetterStore,
)
from consumer.stores.deadlines import (
    CHECKPOINTS,
    DEAD_LETTERS,
    LEDGER,
    Dependencies,
    Guard,
    GuardedCheckpointStore,
    GuardedDeadLetters,
    GuardedLedger,
)
from consumer.stores.ledger import BlobLedger, Ledger, SqliteLedger
from consumer.worker.handler import Handler
from consumer.worker.health import HealthServer
from consumer.worker.lifecycle import RuleHolder, Worker
from consumer.worker.metrics import Metrics
from consumer.worker.partition import Cadence

GC_THRESHOLD = 20_000
RECEIVE_RETRIES = 100
"""Lost connections or links a partition's receiver reopens in place. The SDK counts them
from the claim on and never resets the count: with its default of 3, the fourth loss, however
long after the others, gives the partition up (an error, a close, a claim again at the next
load-balancing pass, and a replay from the checkpoint). Reopening in place costs nothing of
that; a link the hub refuses over and over is still given up, after this many tries in quick
succession."""
QUESTION_RETRIES = 1
"""Retries of one question to the hub about itself (lag reads, whether it answers). With the
SDK's 3, a refused connection fails after 12 s; with 1, after 2.4 s (measured), which is how
soon an outage can pause receiving."""
LEDGER_PURGE_EVERY_S = 3600.0
WEBHOOK_CONNECTIONS_PER_HOST = 100
"""Connections to one webhook host at most; more requests wait for one (see
``consumer.actions.http``)."""
ARM_CONNECTIONS = 32
"""Connections to Azure Resource Manager at most: actions make few ARM calls, and ARM
throttles a burst anyway."""
REPEATED_SIGNAL_S = 1.0
"""A stop signal repeated within this long of the first is the same request (see
``install_signals``)."""
STORAGE_RETRY: dict[str, Any] = {"retry_total": 2, "initial_backoff": 1, "increment_base": 2}
"""Bounded storage retries: the library's default spends ~90 s on one call before it fails,
which hides an outage and holds shutdown; the next checkpoint flush retries anyway."""


async def run(config: Config, *, dry_run: bool = False) -> int:
    """Run the worker until SIGTERM/SIGINT; return the process exit code."""
    async with contextlib.AsyncExitStack() as stack:
        worker = await build(config, stack, dry_run=dry_run)
        install_signals(worker)
        # Every event allocates a few short-lived dicts; with the long-lived start-up objects
        # moved out of the collector's sight and a larger first generation, collections stay
        # rare and cheap.
        gc.freeze()
        gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
        await worker.run()
    return EXIT_OK


async def build(
    config: Config,
    stack: contextlib.AsyncExitStack,
    *,
    dry_run: bool = False,
    credential: AsyncTokenCredential | None = None,
    executors: Mapping[str, Executor] | None = None,
) -> Worker:
    """Make the worker and everything it uses; ``stack`` closes them after ``worker.run()``.

    ``credential`` replaces the Azure AD credential ``[azure]`` names (tests; Azure AD cannot
    run here); ``executors`` replace those of their action types (``mlevents dev``).

    Raises:
        ConfigError: the config has no [eventhub] section.
        RuleTableError: the rule files have problems.
    """
    # A concrete logger: the lazy proxy get_logger() returns binds again on every call.
    log: structlog.typing.FilteringBoundLogger = structlog.get_logger("mlevents").bind()
    if config.eventhub is None:
        raise ConfigError(f"{config.path}: eventhub: the worker needs an [eventhub] section")
    warn_if_not_lower_case(config.eventhub, log)
    azure_ad = LazyCredential(config, stack, given=credential)
    metrics = Metrics(clock=time.time)
    hosts = config.webhook.allowed_hosts
    loaded = load_rule_files(config.rules.files, secrets=config.secrets, allowed_hosts=hosts)
    for warning in loaded.warnings:
        log.warning("rules.warning", problem=warning.message_at())
    metrics.rules_loaded(loaded.table)
    rules = RuleHolder(config.rules.files, loaded.table, log, metrics, config.secrets, hosts)
    dependencies = Dependencies(metrics, log)
    checkpoints = GuardedCheckpointStore(
        await stack.enter_async_context(checkpoint_store(config, azure_ad)),
        Guard(CHECKPOINTS, config.checkpoints.store.timeout_s, dependencies),
    )
    dead_letters = GuardedDeadLetters(
        await stack.enter_async_context(dead_letter_store(config, azure_ad)),
        Guard(DEAD_LETTERS, config.deadletters.timeout_s, dependencies),
    )
    await _watch(stack, dependencies, DEAD_LETTERS, dead_letters.check)
    actions = await open_actions(
        config, stack, log, azure_ad, metrics, executors=executors, dependencies=dependencies
    )
    handler = Handler(
        rules=rules,
        executors=actions.executors,
        ledger=actions.ledger,
        ledger_up=lambda: not dependencies.failing(LEDGER),
        dead_letters=dead_letters,
        metrics=metrics,
        log=log,
        dry_run=dry_run or config.processing.dry_run,
        preview=Previewer.of(config).preview,
    )
    cadence = Cadence(
        max_in_flight=config.processing.max_in_flight,
        every_events=config.checkpoints.every_events,
        every_s=config.checkpoints.every_s,
        checkpoint_timeout_s=config.checkpoints.store.timeout_s,
    )
    tls = eventhub_tls_context()  # one for both clients: building it reads the CA bundle
    worker = Worker(
        client=consumer_client(config.eventhub, checkpoints, azure_ad, RECEIVE_RETRIES, tls),
        questions=consumer_client(config.eventhub, checkpoints, azure_ad, QUESTION_RETRIES, tls),
        eventhub=config.eventhub,
        checkpoint_store=checkpoints,
        handler=handler,
        rules=rules,
        cadence=cadence,
        drain_deadline_s=config.processing.drain_deadline_s,
        metrics=metrics,
        log=log,
        dependencies=dependencies,
    )
    health = HealthServer(
        config.http.host,
        config.http.port,
        metrics=metrics,
        liveness=worker.alive,
        readiness=worker.ready,
    )
    await stack.enter_async_context(health)
    worker.health = health
    return worker


@dataclass(frozen=True, slots=True)
class Actions:
    """What carries out actions: an executor per action type, and the idempotency ledger."""

    executors: Executors
    ledger: Ledger


async def open_actions(
    config: Config,
    stack: contextlib.AsyncExitStack,
    log: structlog.typing.FilteringBoundLogger,
    credential: Credential,
    metrics: PoolMetrics,
    *,
    executors: Mapping[str, Executor] | None = None,
    dependencies: Dependencies | None = None,
) -> Actions:
    """The executors and the ledger, open until ``stack`` closes; ``executors`` replace
    those of their action types (``mlevents dev``). With ``dependencies``, every ledger call
    has its deadline and reports there, and a failing ledger is probed until it is back."""
    hooks = await stack.enter_async_context(
        client_session("webhook", metrics, per_host=WEBHOOK_CONNECTIONS_PER_HOST)
    )
    azure = await stack.enter_async_context(
        client_session("azure", metrics, per_host=ARM_CONNECTIONS)
    )
    ledger: Ledger = await stack.enter_async_context(open_ledger(config, credential))
    if dependencies is not None:
        ledger = GuardedLedger(ledger, Guard(LEDGER, config.ledger.store.timeout_s, dependencies))
        await _watch(stack, dependencies, LEDGER, ledger.check)
    tokens = CachedTokens(credential())  # one cache for ARM and webhooks with auth
    arm = ArmClient(azure, tokens, base_url=config.azure.management_url, scope=config.azure.scope)
    ml_version = config.azure.ml_api_version
    by_type: dict[str, Executor] = {
        "log": LogExecutor(log),
        "webhook": WebhookExecutor(
            hooks,
            secrets=config.secrets,
            allowed_hosts=config.webhook.allowed_hosts,
            credential=tokens,
        ),
        "email": EmailExecutor(email_transport(config.email), sender=config.email.sender),
        "adf_pipeline_run": AdfExecutor(arm, api_version=config.azure.datafactory_api_version),
        "aml_job": AmlJobExecutor(arm, api_version=ml_version),
        "aml_deploy": AmlDeployExecutor(arm, api_version=ml_version),
    }
    return Actions({**by_type, **(executors or {})}, ledger)


async def _watch(
    stack: contextlib.AsyncExitStack,
    dependencies: Dependencies,
    name: str,
    probe: Callable[[], Awaitable[object]],
) -> None:
    """Probe the store ``name`` while it is failing, until ``stack`` closes."""
    watching = asyncio.create_task(dependencies.watch(name, probe), name=f"watch-{name}")

    async def stop() -> None:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching

    stack.push_async_callback(stop)


def email_transport(config: EmailConfig) -> EmailTransport:
    """``.eml`` files in a folder (the local default), or an SMTP server."""
    if config.transport == "files":
        return FilesTransport(config.directory or Path(".mlevents/outbox"))
    tls_context = None
    if config.ca_file is not None:
        tls_context = ssl.create_default_context()
        tls_context.load_verify_locations(cafile=config.ca_file)
    return SmtpTransport(
        config.host, config.port, security=config.security, username=config.username,
        password=config.password, timeout_s=config.timeout_s, tls_context=tls_context,
    )  # fmt: skip


def process_owner() -> str:
    """Who holds ledger reservations: this host and process, unique per start."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def open_ledger(config: Config, credential: Credential) -> AsyncIterator[Ledger]:
    """The configured idempotency ledger (SQLite next to the checkpoints by default)."""
    settings = config.ledger
    store = settings.store
    options: dict[str, Any] = {
        "owner": process_owner(),
        "lease_s": settings.lease_s,
        "expire_after_s": settings.expire_after_s,
    }
    # No storage retries: the handler tries twice, then acts unreserved for a while rather
    # than stop acting during a storage outage.
    ledger: Ledger
    async with contextlib.AsyncExitStack() as opened:
        with _opening("ledger", store):
            if store.kind == "local":
                path = config.local_path(store, "ledger.sqlite3")
                ledger = SqliteLedger(path, **options)
            else:
                ledger = BlobLedger.from_account(
                    BlobAccount.of(store, credential), store.container or "", retry_total=0,
                    **options,
                )  # fmt: skip
            await opened.enter_async_context(ledger)
        purging = asyncio.create_task(_purge_every(ledger, LEDGER_PURGE_EVERY_S))
        try:
            yield ledger
        finally:
            purging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purging


async def _purge_every(ledger: Ledger, every_s: float) -> None:
    """Delete expired ledger entries now and then (one worker doing it is enough, but every
    replica doing it is harmless: deletes are conditional)."""
    log = structlog.get_logger("mlevents.ledger")
    while True:
        try:
            purged = await ledger.purge()
        except ConsumerError as exc:
            log.warning("ledger.purge_failed", error=str(exc))
        else:
            if purged:
                log.info("ledger.purged", entries=purged)
        await asyncio.sleep(every_s)


def install_signals(worker: Worker, clock: Callable[[], float] = time.monotonic) -> None:
    """SIGTERM/SIGINT stop the worker (a second one exits at once); SIGHUP reloads rules.

    One Ctrl-C may arrive twice: the terminal sends SIGINT to its whole foreground process
    group, and a parent such as ``uv run`` may forward its own copy to the worker as well (uv
    does 200 ms later when its standard input is not a terminal). So the same signal again
    within ``REPEATED_SIGNAL_S`` of the first is taken for that one; a second Ctrl-C after
    that, or the other signal, exits at once with ``EXIT_INTERRUPTED``."""
    loop = asyncio.get_running_loop()
    stopped_by: dict[signal.Signals, float] = {}  # the signal that stopped it, and when

    def on_stop(sig: signal.Signals) -> None:
        now = clock()
        if not worker.stopping:
            stopped_by[sig] = now
            worker.log.info(
                "worker.signal",
                signal=sig.name,
                hint="draining; the signal again, a second or more from now, stops at once",
            )
            worker.stop()
            return
        if now - stopped_by.get(sig, -math.inf) < REPEATED_SIGNAL_S:
            worker.log.info("worker.signal_repeated", signal=sig.name)
            return
        os._exit(EXIT_INTERRUPTED)  # a second signal: the user wants out now

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_stop, sig)
    loop.add_signal_handler(signal.SIGHUP, worker.rules.reload)


def eventhub_tls_context() -> ssl.SSLContext:
    """The TLS settings the SDK builds by default (certifi's CA bundle, hostnames checked),
    built once and given to every connection of a client. Without them the SDK builds its own
    for every connection it opens, reading the bundle each time (about 35 ms of CPU). Every lag
    read opens a connection: while draining a backlog that was 5% of the worker's CPU (py-spy,
    ``bench/worker_throughput.py``). In an outage the SDK tries to reconnect without pause:
    with a context built per attempt that took a whole core (0.95 of one, measured; 0.07
    without)."""
    return ssl.create_default_context(cafile=certifi.where())


def consumer_client(
    config: EventHubConfig,
    store: CheckpointStore,
    credential: Credential,
    retries: int | None = None,
    tls: ssl.SSLContext | None = None,
) -> EventHubConsumerClient:
    """The SDK client: by connection string, or by namespace with an Azure AD credential;
    ``retries`` replaces the SDK's number of retries per operation (3), and ``tls`` the
    context ``eventhub_tls_context`` builds."""
    options: dict[str, Any] = {
        "consumer_group": config.consumer_group,
        "eventhub_name": config.name or None,
        "checkpoint_store": store,
        "load_balancing_interval": config.load_balancing_interval_s,
        "partition_ownership_expiration_interval": config.ownership_expiration_s,
        "ssl_context": tls or eventhub_tls_context(),
    }
    if retries is not None:
        options["retry_total"] = retries
    if config.connection_string is not None:
        if options["eventhub_name"] is None:
            del options["eventhub_name"]
        return EventHubConsumerClient.from_connection_string(config.connection_string, **options)
    return EventHubConsumerClient(
        fully_qualified_namespace=config.fully_qualified_namespace or "",
        credential=credential(), **options,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def checkpoint_store(
    config: Config, credential: Credential
) -> AsyncIterator[CheckpointStore]:
    """The configured checkpoint store (a local SQLite file when none is configured)."""
    store_config = config.checkpoints.store if config.checkpoints else None
    if store_config is None or store_config.kind == "local":
        path = config.local_path(store_config, "checkpoints.sqlite3")
        async with SqliteCheckpointStore(path) as local:
            yield local
        return
    # The SDK's own timeouts (20 s to connect, 60 s to read) would let one call outlast the
    # store's deadline many times over, with the pool filling behind it.
    options = {
        **STORAGE_RETRY,
        "connection_timeout": store_config.timeout_s,
        "read_timeout": store_config.timeout_s,
    }
    container = store_config.container or ""
    with _opening("checkpoints", store_config):
        account = BlobAccount.of(store_config, credential)
        await _create_container(account, container)
        blob = account.checkpoint_store(container, **options)
    async with blob:
        yield blob


async def _create_container(account: BlobAccount, container: str) -> None:
    """Create the checkpoint container if missing: the SDK's store only reads and writes."""
    client = account.container_client(container)
    try:
        await open_container(client)
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def dead_letter_store(
    config: Config, credential: Credential
) -> AsyncIterator[DeadLetterStore]:
    """The configured dead-letter store (a local folder when none is configured)."""
    store = config.deadletters
    async with contextlib.AsyncExitStack() as stack:
        with _opening("deadletters", store):
            opened: DeadLetterStore
            if store is None or store.kind == "local":
                opened = DirectoryDeadLetterStore(config.local_path(store, "deadletters"))
            else:
                account = BlobAccount.of(store, credential)
                opened = BlobDeadLetterStore.from_account(account, store.container or "")
            await stack.enter_async_context(opened)
        yield opened


@contextlib.contextmanager
def _opening(section: str, store: StoreConfig | None) -> Iterator[None]:
    """Turn a failure to open the store of ``[section]`` into a one-line ``StoreError``.

    Errors from the SDK are described by type and status only: their texts may quote the
    account URL with a SAS token, or the connection string.
    """
    try:
        yield
    except (DeadLetterError, LedgerError) as exc:  # secret-free already; they name the store
        raise StoreError(f"{section} store: {exc}") from exc
    except AzureError as exc:
        container = store.container if store is not None else None
        raise StoreError(
            f"{section} store: cannot open container {container}: {describe_error(exc)}"
        ) from exc
    except ValueError as exc:  # the SDK's parsers may quote what they could not parse
        raise StoreError(
            f"{section} store: the connection string or the account URL is not valid"
        ) from exc


def warn_if_not_lower_case(
    config: EventHubConfig, log: structlog.typing.FilteringBoundLogger
) -> None:
    """KEDA reads checkpoints under lower-case paths only; say so when names are not."""
    namespace, hub = checkpoint_scope(config)
    for what, name in (("namespace", namespace), ("event hub", hub)):
        if name and name != name.lower():
            log.warning(
                "keda.name_not_lower_case",
                what=what,
                name=name,
                hint="KEDA's blobMetadata checkpoints are read under lower-case paths",
            )
