"""``mlevents run``: the worker, on the event loop it runs fastest on."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Coroutine
from typing import Any

from consumer.config import load_config


def add_parser(commands: Any) -> None:
    """Add ``run``."""
    run = commands.add_parser("run", help="run the worker (Event Hubs intake, rules, actions)")
    run.add_argument(
        "--config",
        required=True,
        metavar="PATH",
        help="the worker's config.toml (the shipped config.toml documents every key)",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="shadow mode: decode and match, log the actions instead of taking them",
    )
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:

    from consumer.logs import configure_logging
    from consumer.worker.wiring import run

    config = load_config(args.config)
    configure_logging(config.logging.format, config.logging.level)
    return run_fast(run(config, dry_run=args.dry_run))


def run_fast(main: Coroutine[Any, Any, int]) -> int:
    """Run the worker's coroutine on uvloop, or on the standard event loop where uvloop is
    not installed (Windows). uvloop's loop costs the SDK's receive path less per event."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
