"""The chaos soak: ``python -m bench chaos [OPTIONS]``.

Three ``mlevents run`` replicas share one hub on the emulator (a process of its own), with
blob checkpoints and a blob ledger on Azurite, and act on 5,000 events (three actions each:
emails to an SMTP server, webhooks, Data Factory runs, Azure ML jobs and deployments on a
local ARM). Meanwhile workers are SIGKILLed and restarted 20 times, Azurite is stopped for
60 s and frozen for 30 s, the hub drops every connection three times, every peer turns slow
for a while and then refuses everything for a moment. The harness and its peers live with
the tests (``tests/chaos``), whose small configuration runs in the suite.

It prints, from the peers' own records, what was expected and what happened per decision:
lost effects, duplicates matched or not to an uncertain outcome logged for that decision,
uncertain outcomes by type, the kills, and the done-mark window from the workers' metrics.
Exit code 1 when an effect was lost, a duplicate is unmatched or a sink that can be asked
shows one; 0 otherwise. Logs and state stay in ``--folder`` (a fresh temporary folder).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.chaos.harness import run
from tests.chaos.settings import Settings


def main(argv: Sequence[str] = ()) -> int:
    """Run the soak with the options in ``argv``; print the findings; the exit code."""
    args = _parser().parse_args(list(argv))
    settings = Settings(
        events=args.events, workers=args.workers, kills=args.kills,
        storage_stop_s=args.storage_stop, storage_freeze_s=args.storage_freeze,
        hub_drops=args.hub_drops, slow_s=args.slow, slow_request_s=args.slow_request,
        burst_s=args.burst, send_s=args.send, settle_s=args.settle, lease_s=args.lease,
        seed=random.randrange(1 << 31) if args.seed is None else args.seed,
    )  # fmt: skip
    folder = args.folder or Path(tempfile.mkdtemp(prefix="mlevents-chaos-"))
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    findings = asyncio.run(run(settings, folder))
    for line in findings.lines():
        print(line)
    print(f"took {time.monotonic() - started:.0f} s (seed {settings.seed})")
    return 1 if findings.failures() else 0


def _parser() -> argparse.ArgumentParser:
    default = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m bench chaos",
        description="Worker replicas acting on events while workers, storage, the hub and "
        "every peer fail; prints what was lost and what was done twice.",
    )
    number = parser.add_argument
    number("--events", type=int, default=default.events, help="events to send (%(default)s)")
    number("--workers", type=int, default=default.workers, help="replicas (%(default)s)")
    number("--kills", type=int, default=default.kills, help="SIGKILLs (%(default)s)")
    number("--storage-stop", type=float, default=default.storage_stop_s, metavar="SECONDS",
           help="Azurite stopped this long, once (%(default)s)")  # fmt: skip
    number("--storage-freeze", type=float, default=default.storage_freeze_s, metavar="SECONDS",
           help="Azurite frozen (SIGSTOP) this long, once (%(default)s)")  # fmt: skip
    number("--hub-drops", type=int, default=default.hub_drops,
           help="times the hub drops every connection (%(default)s)")  # fmt: skip
    number("--slow", type=float, default=default.slow_s, metavar="SECONDS",
           help="length of the slow phase (%(default)s)")  # fmt: skip
    number("--slow-request", type=float, default=default.slow_request_s, metavar="SECONDS",
           help="each peer's answer time in the slow phase (%(default)s)")  # fmt: skip
    number("--burst", type=float, default=default.burst_s, metavar="SECONDS",
           help="each peer refuses everything this long (%(default)s)")  # fmt: skip
    number("--send", type=float, default=default.send_s, metavar="SECONDS",
           help="events are sent over this long, faults within it (%(default)s)")  # fmt: skip
    number("--settle", type=float, default=default.settle_s, metavar="SECONDS",
           help="then the workers get this long to finish (%(default)s)")  # fmt: skip
    number("--lease", type=float, default=default.lease_s, metavar="SECONDS",
           help="the ledger's lease_s (%(default)s)")  # fmt: skip
    number("--seed", type=int, help="the timeline's random seed (default: a new one)")
    number("--folder", type=Path, help="where logs and state go (default: a temporary folder)")
    return parser
