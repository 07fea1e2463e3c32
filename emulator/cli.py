"""Command-line entry points: ``mlevents emulator`` and ``mlevents send``.

``add_emulator_parser`` and ``add_send_parser`` add the two commands to an argparse
subparser set; each sets ``func`` to a callable that takes the parsed namespace and
returns the exit code (0 ok, 1 failure, 2 usage).

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
from typing import Any

from emulator.errors import EmulatorError
from emulator.hub import HubSpec
from emulator.management import SasKey
from emulator.server import DEFAULT_KEY, Emulator
from emulator.storage import Retention

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


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
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5672)
    parser.add_argument("--data-dir", type=Path, help="persist partitions here (default: memory)")
    parser.add_argument("--retention-events", type=int, help="keep at most N events per partition")
    parser.add_argument("--retention-seconds", type=float, help="drop events older than this")
    parser.add_argument("--key-name", default=DEFAULT_KEY.name, help="SAS key name to print")
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
        help="fault: the error condition SIGUSR2 detaches consumers with",
    )


def add_send_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``send``: publish recorded event files with the SDK's producer."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "send", help="publish recorded event files to an Event Hub (or the emulator)"
    )
    parser.add_argument("--connection-string", required=True)
    parser.add_argument("--eventhub", help="hub name, if the connection string has no EntityPath")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--partition", help="send every event to this partition id")
    where.add_argument("--partition-key", help="send every event with this partition key")
    where.add_argument(
        "--keep-partitions",
        action="store_true",
        help="send each event to the partition it was recorded from (mlevents record files)",
    )
    parser.add_argument(
        "events",
        nargs="+",
        metavar="EVENTS",
        help="event files (.json, .jsonl, Capture .avro, - for stdin)",
    )
    parser.set_defaults(func=run_send)
    return parser


def run_emulator(args: argparse.Namespace) -> int:
    """Run the emulator in the foreground; return the exit code."""
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


def run_send(args: argparse.Namespace) -> int:
    """Send the event files; return the exit code."""
    from azure.eventhub.exceptions import EventHubError

    from consumer.errors import EventFileError
    from consumer.eventfiles import read_event_files
    from emulator.replay import SendTarget, send_records

    target = SendTarget(
        connection_string=args.connection_string,
        eventhub=args.eventhub,
        partition_id=args.partition,
        partition_key=args.partition_key,
        keep_partitions=args.keep_partitions,
    )
    try:
        sent = send_records(target, read_event_files(args.events))
    except EventFileError as exc:
        print(f"mlevents send: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (EventHubError, ValueError) as exc:
        print(f"mlevents send: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"sent {sent} events")
    return EXIT_OK
