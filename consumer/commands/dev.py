"""``mlevents dev``: the whole pipeline on one machine, with no Azure account.

It starts the project's Event Hubs emulator (durable, under ``.mlevents/dev/``), the
worker with the config's rules and an embedded SQLite checkpoint store, and a local sink
for the example webhook, then publishes the sample Azure ML events so the rules fire
within seconds. Emulator data and checkpoints live in one folder and are kept or wiped
together (``--fresh`` wipes both): a checkpoint without the events it points into, or
events without their checkpoints, would make the worker skip or repeat work.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from consumer.config import CheckpointConfig, Config, EventHubConfig, StoreConfig, load_config
from consumer.eventfiles import read_event_files

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
    """Run emulator, sink and worker; publish ``samples``; stop on a signal (or when idle)."""

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
        emulator = await stack.enter_async_context(
            Emulator([HubSpec(hub, 4)], port=port, data_dir=state / "emulator")
        )
        await stack.enter_async_context(_sink(log))
        worker = await build(
            dev_config(config, state, emulator.connection_string()),
            stack,
            executors=dict.fromkeys(AZURE_ACTIONS, NoAzure(log, Previewer.of(config))),
        )
        install_signals(worker)
        running = asyncio.create_task(worker.run())
        log.info(
            "dev.started",
            connection_string=emulator.connection_string(hub),
            state=str(state),
            hint="mlevents send --connection-string ... EVENTS",
        )
        sent = await asyncio.to_thread(
            send_records, SendTarget(connection_string=emulator.connection_string(hub)),
            read_event_files([str(p) for p in samples]))  # fmt: skip
        log.info("dev.samples_published", events=sent)
        if exit_when_idle:
            await _until_done(worker, sent, log)
            worker.stop()
        await running
    return 0


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
    dev.add_argument("--port", type=int, default=5672, help="the emulator's AMQP port")
    dev.add_argument(
        "--exit-when-done", action="store_true", help="stop once the sample events are processed"
    )
    dev.set_defaults(func=_dev)


def _dev(args: argparse.Namespace) -> int:

    from consumer.commands.run import run_fast
    from consumer.logs import configure_logging

    config_path = Path(args.config or "config.toml")
    if not args.config and not config_path.is_file():
        config_path = EXAMPLES / "dev.toml"
    config = load_config(config_path, offline=True)
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
