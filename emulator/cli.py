"""The command-line entry point: ``mlevents emulator`` (and ``python -m emulator``).

``add_emulator_parser`` adds the command to an argparse subparser set; it sets ``func`` to
a callable that takes the parsed namespace and returns the exit code (0 ok, 2 usage). Only
the parser is built at import: the server is imported when the command runs.

While the emulator runs, SIGUSR1 drops every client connection and SIGUSR2 detaches
every consumer link with ``--detach-condition``: fault injection from the shell.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emulator.addresses import DEFAULT_KEY, SasKey

if TYPE_CHECKING:
    from emulator.server import Emulator

EXIT_OK, EXIT_USAGE = 0, 2


def add_emulator_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``emulator``: run a local Event Hubs namespace until SIGINT/SIGTERM."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "emulator", help="run a local Event Hubs emulator (AMQP 1.0 on loopback)"
    )
    parser.add_argument(
        "--hub",
        action="append",
        required=True,
        metavar="NAME:PARTITIONS[:GROUP,...]",
        help="a hub to serve (repeatable); $Default is always a consumer group",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    parser.add_argument(
        "--port", type=int, default=5672, help="AMQP port to listen on (default: 5672)"
    )
    parser.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="persist partitions here (default: memory)"
    )
    parser.add_argument(
        "--retention-events", type=int, metavar="N", help="keep at most N events per partition"
    )
    parser.add_argument(
        "--retention-seconds", type=float, metavar="SECONDS", help="drop events older than this"
    )
    parser.add_argument(
        "--key-name", default=DEFAULT_KEY.name, metavar="NAME", help="SAS key name to print"
    )
    parser.add_argument("--key", default=DEFAULT_KEY.key, help="SAS key to print and verify")
    parser.add_argument(
        "--verify-sas", action="store_true", help="reject tokens not signed with --key-name/--key"
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        metavar="SECONDS",
        help="close connections silent for this long (heartbeats count)",
    )
    _add_fault_options(parser)
    parser.set_defaults(func=run_emulator)
    return parser


def _add_fault_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--delay-responses",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="fault: delay every management response and send acknowledgement",
    )
    parser.add_argument(
        "--refuse-links",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="fault: refuse new producer and consumer links for this long",
    )
    parser.add_argument(
        "--detach-condition",
        default="amqp:link:detach-forced",
        metavar="CONDITION",
        help="fault: the error condition SIGUSR2 detaches consumers with",
    )


def run_emulator(args: argparse.Namespace) -> int:
    """Run the emulator in the foreground; return the exit code."""
    from emulator.errors import EmulatorError
    from emulator.hub import HubSpec
    from emulator.server import Emulator
    from emulator.storage import Retention

    try:
        hubs = [HubSpec.parse(text) for text in args.hub]
        emulator = Emulator(
            hubs,
            host=args.host,
            port=args.port,
            data_dir=args.data_dir,
            retention=Retention(max_events=args.retention_events, max_age_s=args.retention_seconds),
            sas_key=SasKey(args.key_name, args.key),
            verify_sas=args.verify_sas,
            idle_timeout_s=args.idle_timeout,
        )
        asyncio.run(_serve(emulator, args))
    except (EmulatorError, OSError) as exc:
        print(f"mlevents emulator: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


async def _serve(emulator: Emulator, args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    faults = emulator.faults
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, faults.drop_connections)
    loop.add_signal_handler(signal.SIGUSR2, lambda: faults.detach_consumers(args.detach_condition))
    async with emulator:
        faults.delay_responses(args.delay_responses)
        if args.refuse_links:
            faults.refuse_links(args.refuse_links)
        for name in emulator.broker.hubs:
            print(f"{name}: {emulator.connection_string(name)}", flush=True)
        server = asyncio.create_task(emulator.serve_forever())
        await stop.wait()
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
