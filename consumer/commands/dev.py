"""``mlevents dev``: the whole pipeline on one machine, with no Azure account.

It starts the project's Event Hubs emulator (durable, under ``.mlevents/dev/``), the
worker with the config's rules and an embedded SQLite checkpoint store, and a local sink
for the example webhook, then publishes the sample Azure ML events so the rules fire
within seconds. Emulator data and checkpoints live in one folder and are kept or wiped
together (``--fresh`` wipes both): a checkpoint without the events it points into, or
events without their checkpoints, would make the worker skip or repeat work.

Each run publishes the samples under fresh event ids: the idempotency ledger, kept with the
state, would otherwise skip them as done before (several samples share one id, too). Once
the samples are handled it prints the ``mlevents send`` line for more (the emulator's fixed
development key is no secret), and when it stops, a summary: events handled, actions by
type and outcome, and where the emails and dead letters are.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import decimal
import shlex
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from consumer.config import CheckpointConfig, Config, EventHubConfig, StoreConfig, load_config
from consumer.errors import StartError, os_reason
from consumer.eventfiles import EventRecord, read_event_files

if TYPE_CHECKING:
    import structlog
    from aiohttp import web

    from consumer.actions.preview import Previewer
    from consumer.worker.lifecycle import Worker
    from rules import Decision

EXAMPLES = Path(__file__).parents[1] / "examples"
SAMPLES = EXAMPLES / "events"
SINK_PORT = 8099
"""Where the example rules' webhook points (``http://127.0.0.1:8099/teams``)."""
SEND_LINE_WITHIN_S = 10.0
"""How long the ``mlevents send`` line waits for the samples to be handled, so that it comes
after their log lines rather than lost among them."""


def dev_config(config: Config, state: Path, connection_string: str) -> Config:
    """``config`` pointed at the local emulator, with its state under ``state``."""
    hub = config.eventhub.name if config.eventhub and config.eventhub.name else "mlevents"
    eventhub = EventHubConfig(
        name=hub, connection_string=connection_string, starting_position="earliest",
        load_balancing_interval_s=2, ownership_expiration_s=10,
    )  # fmt: skip
    return msgspec.structs.replace(
        config,
        eventhub=eventhub,
        checkpoints=CheckpointConfig(
            store=StoreConfig(kind="local", path=state / "checkpoints.sqlite3"),
            every_events=10,
            every_s=1.0,
        ),
        deadletters=StoreConfig(kind="local", path=state / "deadletters"),
        # The ledger remembers what was done for these very events: it goes with them.
        ledger=msgspec.structs.replace(
            config.ledger,
            store=StoreConfig(kind="local", path=state / "ledger.sqlite3"),
            lease_s=30.0,
        ),
        email=msgspec.structs.replace(config.email, transport="files", directory=state / "outbox"),
    )


AZURE_ACTIONS = ("adf_pipeline_run", "aml_job", "aml_deploy")


class NoAzure:
    """Stands in for the Azure actions on one machine: there is no Azure account here, so it
    logs the ARM requests the action would make (``consumer.actions.preview``, rendered from
    the event as ``mlevents run`` would send them, the token redacted) instead of making them.
    An action that would fail before sending (a template reading what the event lacks) fails
    here too, and is dead-lettered as it would be."""

    def __init__(self, log: structlog.typing.FilteringBoundLogger, previewer: Previewer) -> None:
        self._log = log
        self._previewer = previewer

    async def __call__(self, decision: Decision) -> str:
        preview = self._previewer.preview(decision)
        self._log.warning(
            "dev.azure_action_not_taken",
            event_id=decision.event.id,
            **preview.fields(),
            hint="mlevents run with [azure] configured takes it",
        )
        return f"{preview.type} not taken: no Azure in dev mode"


def prepare_state(state: Path, *, fresh: bool) -> None:
    """Keep or wipe the emulator data and the checkpoints together."""
    emulator_data, checkpoints = state / "emulator", state / "checkpoints.sqlite3"
    if fresh or emulator_data.exists() != checkpoints.exists():
        shutil.rmtree(state, ignore_errors=True)
    emulator_data.mkdir(parents=True, exist_ok=True)


async def run_dev(
    config: Config,
    *,
    state: Path,
    fresh: bool,
    samples: Sequence[Path],
    exit_when_idle: bool,
    port: int = 5672,
) -> int:
    """Run emulator, sink and worker; publish ``samples``; stop on a signal (or when idle).

    Raises:
        StartError: a port it listens on is taken (the emulator's or the health server's).
    """

    import structlog

    from consumer.actions.preview import Previewer
    from consumer.commands.send import SendTarget, send_records
    from consumer.worker.wiring import build, install_signals
    from emulator import Emulator, HubSpec

    log = structlog.get_logger("mlevents.dev")
    prepare_state(state, fresh=fresh)
    hub = config.eventhub.name if config.eventhub and config.eventhub.name else "mlevents"
    async with contextlib.AsyncExitStack() as stack:
        # A fixed port: checkpoints are kept per namespace, which is host:port here.
        emulator = Emulator([HubSpec(hub, 4)], port=port, data_dir=state / "emulator")
        try:
            await stack.enter_async_context(emulator)
        except OSError as exc:
            await emulator.stop()
            raise StartError(
                f"the emulator cannot listen on {emulator.host}:{port}: {os_reason(exc)}; "
                "choose another port with --port (is another mlevents dev running?)"
            ) from exc
        await stack.enter_async_context(_sink(log))
        worker = await build(
            dev_config(config, state, emulator.connection_string()),
            stack,
            executors=dict.fromkeys(AZURE_ACTIONS, NoAzure(log, Previewer.of(config))),
        )
        install_signals(worker)
        running = asyncio.create_task(worker.run())
        http = f"http://{config.http.host}:{worker.health.port if worker.health else 0}"
        log.info(
            "dev.started", state=str(state), healthz=f"{http}/healthz", metrics=f"{http}/metrics"
        )
        connection_string = emulator.connection_string(hub)
        records = with_fresh_ids(read_event_files([str(p) for p in samples]))
        sent = await asyncio.to_thread(
            send_records, SendTarget(connection_string=connection_string), records
        )
        log.info("dev.samples_published", events=sent)
        samples_done = asyncio.create_task(_until_done(worker, sent, log))
        if exit_when_idle:
            await asyncio.wait({samples_done, running}, return_when=asyncio.FIRST_COMPLETED)
            worker.stop()
        else:
            await asyncio.wait(
                {samples_done, running},
                timeout=SEND_LINE_WITHIN_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not worker.stopping:
                print(send_line(connection_string, SAMPLES / "run-failed.json"), flush=True)
        try:
            await running
        finally:
            samples_done.cancel()
        print(summary(worker, state), flush=True)
    return 0


def with_fresh_ids(records: Iterable[EventRecord]) -> Iterator[EventRecord]:
    """``records`` with a new ``id`` for every event in each body (Event Grid schema and
    CloudEvents alike, a single event or an array). Numbers keep every digit; a body that is
    not JSON is left as it is (the worker dead-letters it, as it would any other)."""
    decoder = msgspec.json.Decoder(float_hook=decimal.Decimal)
    encoder = msgspec.json.Encoder(decimal_format="number")
    for record in records:
        try:
            document = decoder.decode(record.body)
        except msgspec.DecodeError:
            yield record
            continue
        for event in document if isinstance(document, list) else [document]:
            if isinstance(event, dict) and "id" in event:
                event["id"] = str(uuid.uuid4())
        yield dataclasses.replace(record, body=encoder.encode(document))


def send_line(connection_string: str, sample: Path) -> str:
    """How to send more events to this emulator, ready to paste into another terminal.

    The connection string is shown whole: it carries the emulator's fixed development key,
    not a secret (the logs would redact it)."""
    command = [*_this_program(), "send", "--connection-string", connection_string, _shown(sample)]
    return (
        "Send more events from another terminal (an event id handled before is skipped as "
        f"done):\n  {shlex.join(command)}"
    )


def _this_program() -> list[str]:
    """The command that started this process, as it can be typed here: the ``mlevents``
    script (``.venv/bin/mlevents`` under ``uv run``) or ``python -m consumer``."""
    script = Path(sys.argv[0])
    if script.name == "mlevents":
        return [_shown(script)]
    return [_shown(Path(sys.executable)), "-m", "consumer"]


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when it is inside it, else absolute."""
    absolute = path.absolute()
    return str(
        absolute.relative_to(Path.cwd()) if absolute.is_relative_to(Path.cwd()) else absolute
    )


def summary(worker: Worker, state: Path) -> str:
    """What a run did, for the terminal it ran in: events handled, actions by type and
    outcome (read from the worker's metrics), and where the emails and dead letters are."""
    actions: dict[str, list[str]] = {}
    dead_letters = 0
    for family in worker.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "mlevents_actions_total" and sample.value:
                kind = sample.labels["type"]
                actions.setdefault(kind, []).append(
                    f"{int(sample.value)} {sample.labels['outcome']}"
                )
            elif sample.name == "mlevents_dead_letters_total":
                dead_letters += int(sample.value)
    rows: list[tuple[str, str]] = []
    for kind, outcomes in sorted(actions.items()):
        note = " (logged only: no Azure here)" if kind in AZURE_ACTIONS else ""
        rows.append((kind, ", ".join(outcomes) + note))
    rows.append(("emails", f"{_shown(state / 'outbox')}/*.eml"))
    rows.append(("dead letters", f"{dead_letters} this run, in {_shown(state / 'deadletters')}"))
    header = f"mlevents dev stopped: {worker.handler.handled} events handled"
    return "\n".join([header, *(f"  {label:<17} {text}" for label, text in rows)])


async def _until_done(
    worker: Worker, count: int, log: structlog.typing.FilteringBoundLogger
) -> None:
    """Wait until ``count`` messages were handled and no partition has work in flight."""

    # Polling keeps the worker free of hooks that only this command would use.
    def busy() -> bool:
        return any(p.in_flight for p in worker.partitions.values())

    while worker.handler.handled < count or busy():  # noqa: ASYNC110
        await asyncio.sleep(0.2)
    log.info("dev.done", handled=worker.handler.handled)


@contextlib.asynccontextmanager
async def _sink(log: structlog.typing.FilteringBoundLogger) -> AsyncIterator[None]:
    """An HTTP endpoint for the example webhook, logging what it receives."""
    from aiohttp import web

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        log.info("dev.webhook_received", path=request.path, bytes=len(body))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/{path:.*}", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", SINK_PORT).start()
    except OSError as exc:
        log.warning("dev.sink_unavailable", port=SINK_PORT, error=str(exc))
    try:
        yield
    finally:
        await runner.cleanup()


def add_parser(commands: Any) -> None:
    """Add ``dev``."""
    dev = commands.add_parser(
        "dev", help="local mode: emulator, worker and the sample events, no Azure needed"
    )
    dev.add_argument("--config", metavar="PATH", help="config.toml (default: ./config.toml, "
                     "else the shipped example rules)")  # fmt: skip
    dev.add_argument(
        "--state",
        metavar="DIR",
        default=".mlevents/dev",
        help="emulator data and checkpoints, kept or wiped together",
    )
    dev.add_argument("--fresh", action="store_true", help="wipe the state first")
    dev.add_argument("--port", type=_port, default=5672, help="the emulator's AMQP port")
    dev.add_argument(
        "--http-port",
        type=_port,
        metavar="PORT",
        help="where /healthz and /metrics are served (default: the config's [http] port; "
        "0 takes a free one)",
    )
    dev.add_argument(
        "--exit-when-done", action="store_true", help="stop once the sample events are processed"
    )
    dev.set_defaults(func=_dev)


def dev_settings(path: str | None, http_port: int | None) -> Config:
    """The config ``dev`` runs with: ``path``, else ``./config.toml``, else the shipped one.
    The values rules take from the environment (a webhook's ``url_env``, ``headers_env``,
    ``secret_env``) are read, so the rules run as they will in production; the sections'
    own secrets are not (``dev`` replaces the hub, the stores and the mail transport).

    Raises:
        ConfigError: naming the file and the key at fault.
    """
    config_path = Path(path or "config.toml")
    if not path and not config_path.is_file():
        config_path = EXAMPLES / "dev.toml"
    config = load_config(config_path, secrets_of=())
    if http_port is not None:
        config = msgspec.structs.replace(
            config, http=msgspec.structs.replace(config.http, port=http_port)
        )
    return config


def _dev(args: argparse.Namespace) -> int:

    from consumer.commands.run import run_fast
    from consumer.logs import configure_logging

    config = dev_settings(args.config, args.http_port)
    configure_logging(config.logging.format, config.logging.level)
    samples = sorted(SAMPLES.glob("*.json"))
    return run_fast(
        run_dev(
            config,
            state=Path(args.state),
            fresh=args.fresh,
            samples=samples,
            exit_when_idle=args.exit_when_done,
            port=args.port,
        )
    )


def _port(text: str) -> int:
    """A TCP port number, for argparse (0: any free port)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to 65535)")
    return port
