"""``mlevents run`` draining a backlog, next to a bare SDK consumer, measured in the same run.

One in-process emulator holds one hub of 4 partitions, pre-loaded with the SDK producer
with 100,000 Azure ML Event Grid bodies (the shipped example events, team names swapped in,
every id unique). Two consumers then drain the same backlog, each as its own process so
that neither shares a core with the emulator more than the other:

* bare: the fastest honest bare SDK consumer, receiving as the worker does and only
  counting. On the worker's event loop (uvloop, through ``consumer.commands.main.run_fast``), an
  ``EventHubConsumerClient.receive_batch()`` with the arguments ``consumer.worker.intake`` passes:
  ``max_batch_size=100`` and ``max_wait_time=1`` (its ``BATCH_SIZE`` and ``MAX_WAIT_S``),
  ``starting_position="-1"`` (the config's ``"earliest"``) and ``prefetch=300`` (the
  config's); the config's load-balancing interval and ownership expiration; and
  ``owner_level=0``, which the SDK gives the worker's receivers because it has a checkpoint
  store. The worker's TLS context (``eventhub_tls_context``) and its garbage collector settings
  (frozen start-up objects, ``GC_THRESHOLD``), set before it receives, as the worker sets them
  once built. No checkpoint store (nothing is claimed or checkpointed), no partition callbacks,
  consumer group ``$Default``;
* worker: ``python -m consumer run`` (consumer group ``worker``, a fresh SQLite checkpoint
  file) with the 100-rule table of ``bench.decode_match.rule_table`` written to a JSON rules
  file, every action turned into a ``log`` action at level ``debug``, checkpoints at the
  default cadence (100 events or 5 s) and logging at ``warning``. Its progress is read from
  ``/metrics`` (``mlevents_events_decoded_total``, summed) and its RSS from ``/proc``.

So the ratio is what the worker's own work costs on top of the SDK's receive path: decoding,
matching, the inline ``log`` actions (no I/O, so no ledger), per-partition ordering and
backpressure, checkpoints, metrics.

Rates are drain rates: events divided by the time from the first event seen to the last;
the wall time from process start (imports, connecting, claiming partitions) is printed
too. Both drain the backlog ``ROUNDS`` times, alternating which goes first; the ratio is that
of the median round (the worker's peak RSS is the largest of all rounds). Targets: worker at
least 0.9x the like-for-like bare consumer; worker peak RSS under 150 MB.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient

from bench.decode_match import EXAMPLES, rule_table
from consumer.commands.run import run_fast
from consumer.config import EventHubConfig
from consumer.worker.intake import BATCH_SIZE, MAX_WAIT_S
from consumer.worker.wiring import GC_THRESHOLD, eventhub_tls_context
from emulator import Emulator, HubSpec
from rules import RuleSource, load_table

EVENTS = 100_000
PARTITIONS = 4
RULES = 100
PREFETCH = EventHubConfig().prefetch
LOAD_BALANCING_S = EventHubConfig().load_balancing_interval_s
OWNERSHIP_EXPIRATION_S = EventHubConfig().ownership_expiration_s
"""The worker's config and the bare client alike."""
HUB = "bench"
WORKER_GROUP = "worker"
LOG_ACTION_LEVEL = "debug"
"""The rules' log actions; the worker logs at ``warning``, so ``info`` would be dropped too."""
WORKER_LOG_LEVEL = "warning"
TIMEOUT_S = 120.0
"""Per consumer: past this, the numbers measured so far are printed."""
POLL_S = 0.1
"""How often ``/metrics`` is read before the first event and near the end of the drain."""
SLOW_POLL_S = 1.0
"""How often it is read in between: rendering ``/metrics`` costs the worker ~3 ms of CPU, so
reading it ten times a second all along took ~3% of the worker's drain for the measuring."""
ROUNDS = 7
"""Bare and worker drains alternate this many times; the median round's ratio is the result
(against the per-event baseline of old, one round's ratio on a shared 2-core machine ranged
0.70-1.10 and the median of 5 moved by +-0.05 between runs; against this one, with the machine
busy with other work, rounds ranged 0.35-0.78 and two runs' medians were 0.60 and 0.70)."""
TARGET_RATIO = 0.9
TARGET_RSS_MB = 150.0
ROOT = Path(__file__).resolve().parents[1]
TEAM_NAMES = (
    "credit-risk-training", "credit-risk-xgb", "credit-risk-input-drift",
    "nightly-retrain", "automl-local-regression", "my-sklearn-service",
)  # fmt: skip
_ID = "@@ID@@"


@dataclass
class Drain:
    """What one consumer did: events seen and wall-clock times (``time.time()``)."""

    events: int
    started: float
    """When the process was started."""
    first: float | None
    """When the first event was seen."""
    last: float | None
    """When the last event counted was seen."""
    peak_rss_mb: float
    """The kernel's high-water mark of the process's resident set (VmHWM)."""
    sampled_rss_mb: float = 0.0
    """The largest VmRSS seen while sampling (worker only)."""
    cpu_s: float = 0.0
    """CPU seconds the consumer's process used from the first event to the last."""
    emulator_cpu_s: float = 0.0
    """CPU seconds this process (the emulator) used meanwhile."""
    at_first: int = 0
    """Events already counted when ``first`` was taken (the bare consumer's first batch, the
    worker's count at the first scrape that saw any): they are not part of the rate."""

    @property
    def rate(self) -> float:
        """Events per second from the first events seen to the last, those first not counted."""
        if self.first is None or self.last is None or self.last <= self.first:
            return 0.0
        return (self.events - self.at_first) / (self.last - self.first)

    @property
    def busy(self) -> str:
        """How busy the consumer and the emulator were while draining, in cores, and the
        consumer's CPU per event."""
        if self.first is None or self.last is None or self.last <= self.first:
            return "n/a"
        span = self.last - self.first
        per_event_us = self.cpu_s / max(1, self.events - self.at_first) * 1e6
        return (
            f"consumer {self.cpu_s / span:.2f} ({per_event_us:.0f} us of CPU per event), "
            f"emulator {self.emulator_cpu_s / span:.2f}"
        )

    @property
    def wall_s(self) -> float:
        """Seconds from process start to the last event."""
        return (self.last or self.started) - self.started


def event_bodies(count: int = EVENTS) -> list[bytes]:
    """Event Grid bodies from the example events, ten teams' names, each with a unique id."""
    variants: list[tuple[str, str]] = []
    for path in sorted((EXAMPLES / "events").glob("*.json")):
        for team in range(10):
            text = path.read_text(encoding="utf-8")
            for name in TEAM_NAMES:
                text = text.replace(f'"{name}"', f'"team-{team}"')
            document: Any = json.loads(text)
            for event in document if isinstance(document, list) else [document]:
                event["id"] = _ID
            head, tail = json.dumps(document, separators=(",", ":")).split(f'"{_ID}"')
            variants.append((head, tail))
    bodies = []
    for i in range(count):
        head, tail = variants[(i * 7919) % len(variants)]  # a stride mixes types and teams
        bodies.append(f'{head}"00000000-0000-4000-8000-{i:012d}"{tail}'.encode())
    return bodies


def rules_document(count: int = RULES) -> dict[str, Any]:
    """``rule_table(count)`` as a rules file, every action replaced by a ``log`` action."""
    rules = []
    for rule in rule_table(count).rules:
        actions = [
            {"type": "log", "level": LOG_ACTION_LEVEL, "message": f"{rule.name} matched"}
            for _ in rule.actions
        ]
        rules.append({
            "name": rule.name, "description": rule.description,
            "filter": dict(rule.filter.source), "actions": actions,
        })  # fmt: skip
    return {"rules": rules}


def _check_rules(text: str) -> None:
    """The written file must load into the same filters ``rule_table`` builds."""
    written = load_table([RuleSource("rules.json", text)]).table
    expected = rule_table(RULES)
    assert [r.name for r in written.rules] == [r.name for r in expected.rules]
    assert [r.filter for r in written.rules] == [r.filter for r in expected.rules]


def write_config(folder: Path, http_port: int) -> Path:
    """A worker config for the bench hub: every key set, defaults where the brief wants them."""
    # Filter sources hold Decimal numbers (exact thresholds): write them as JSON numbers.
    text = msgspec.json.Encoder(decimal_format="number").encode(rules_document()).decode()
    _check_rules(text)
    rules = folder / "rules.json"
    rules.write_text(text, encoding="utf-8")
    path = folder / "config.toml"
    path.write_text(
        f'[rules]\nfiles = ["{rules}"]\n'
        f'[eventhub]\nname = "{HUB}"\nconnection_string_env = "EVENTHUB_CONNECTION_STRING"\n'
        f'consumer_group = "{WORKER_GROUP}"\nstarting_position = "earliest"\n'
        f"prefetch = {PREFETCH}\nload_balancing_interval_s = {LOAD_BALANCING_S}\n"
        f"ownership_expiration_s = {OWNERSHIP_EXPIRATION_S}\n"
        f'[checkpoints]\nstore = "local"\npath = "{folder / "checkpoints.sqlite3"}"\n'
        f'[deadletters]\nstore = "local"\npath = "{folder / "deadletters"}"\n'
        f'[http]\nhost = "127.0.0.1"\nport = {http_port}\n'
        f'[logging]\nformat = "json"\nlevel = "{WORKER_LOG_LEVEL}"\n',
        encoding="utf-8",
    )
    return path


async def preload(connection_string: str, bodies: list[bytes]) -> None:
    """Send the bodies round-robin over the partitions, in batches per partition."""
    async with EventHubProducerClient.from_connection_string(connection_string) as producer:
        for partition in range(PARTITIONS):
            pid = str(partition)
            batch = await producer.create_batch(partition_id=pid)
            for body in bodies[partition::PARTITIONS]:
                event = EventData(body)
                try:
                    batch.add(event)
                except ValueError:
                    await producer.send_batch(batch)
                    batch = await producer.create_batch(partition_id=pid)
                    batch.add(event)
            await producer.send_batch(batch)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _status_mb(pid: int, field: str) -> float:
    """A ``kB`` line of ``/proc/<pid>/status`` in MB (0 once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from ``/proc``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sum_series(text: str, name: str) -> float:
    """The sum of every sample of one series in Prometheus exposition text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _stop(process: asyncio.subprocess.Process) -> int:
    """SIGTERM, then the worker's own drain; SIGKILL if it takes longer than 30 s."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(process.wait(), 30)
    except TimeoutError:
        process.kill()
        return await process.wait()


async def run_bare(connection_string: str) -> Drain:
    """The bare consumer as a subprocess (``--bare``), on uvloop like the worker; it prints
    its ``Drain`` as JSON."""
    env = {**os.environ, "BENCH_CONNECTION_STRING": connection_string}
    started = time.time()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.worker_throughput", "--bare",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    emulator_before = time.process_time()
    out, _ = await process.communicate()
    emulator_s = time.process_time() - emulator_before  # start-up and shutdown included
    if process.returncode != 0:
        raise SystemExit(f"bare consumer exited with {process.returncode}")
    fields = json.loads(out.decode().strip().splitlines()[-1])
    return Drain(started=started, emulator_cpu_s=emulator_s, **fields)


async def _bare_consumer() -> int:
    """Inside the ``--bare`` subprocess: count events until all arrived or time is up."""
    client = EventHubConsumerClient.from_connection_string(
        os.environ["BENCH_CONNECTION_STRING"], "$Default", eventhub_name=HUB,
        load_balancing_interval=LOAD_BALANCING_S,
        partition_ownership_expiration_interval=OWNERSHIP_EXPIRATION_S,
        ssl_context=eventhub_tls_context(),
    )  # fmt: skip
    gc.freeze()  # what consumer.worker.wiring.run does before the worker starts receiving
    gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
    count = at_first = 0
    first: float | None = None
    last: float | None = None
    cpu_first = cpu_last = 0.0
    done = asyncio.Event()

    async def on_batch(_: object, events: list[EventData]) -> None:
        nonlocal count, at_first, first, last, cpu_first, cpu_last
        if not events:  # the SDK's idle tick every max_wait_time
            return
        count += len(events)
        last = time.time()
        if first is None:
            first, cpu_first, at_first = last, time.process_time(), count
        if count >= EVENTS:
            cpu_last = time.process_time()
            done.set()

    # What consumer.worker.intake passes, for starting_position = "earliest"; owner_level 0 is what
    # the SDK gives the worker's receivers because the worker has a checkpoint store.
    task = asyncio.create_task(
        client.receive_batch(
            on_batch, max_batch_size=BATCH_SIZE, max_wait_time=MAX_WAIT_S,
            starting_position="-1", prefetch=PREFETCH, owner_level=0,
        )
    )  # fmt: skip
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), TIMEOUT_S)
    counted, first_at, last_at = count, first, last
    cpu_s = (cpu_last or time.process_time()) - cpu_first
    await client.close()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    peak = _status_mb(os.getpid(), "VmHWM")
    print(json.dumps({
        "events": counted, "first": first_at, "last": last_at, "peak_rss_mb": peak, "cpu_s": cpu_s,
        "at_first": at_first,
    }))  # fmt: skip
    return 0


async def run_worker(
    connection_string: str, folder: Path, config: Path, port: int
) -> tuple[Drain, dict[str, float], str]:
    """``mlevents run`` as a subprocess until ``/metrics`` on ``port`` counts every event
    decoded. Returns the drain, a few final counters and the worker's standard error.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLEVENTS_")}
    env["EVENTHUB_CONNECTION_STRING"] = connection_string
    stderr_path = folder / "worker.stderr"
    url = f"http://127.0.0.1:{port}/metrics"
    with stderr_path.open("wb") as stderr:
        started = time.time()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "consumer", "run", "--config", str(config),
            cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
        drain = Drain(events=0, started=started, first=None, last=None, peak_rss_mb=0.0)
        counters: dict[str, float] = {}
        try:
            async with aiohttp.ClientSession() as session:
                counters = await _watch(process, session, url, drain)
            drain.peak_rss_mb = _status_mb(process.pid, "VmHWM")
        finally:
            code = await _stop(process)
            await asyncio.sleep(0.5)  # let the emulator see the worker's connections close
        counters["exit code"] = code
    return drain, counters, stderr_path.read_text(encoding="utf-8", errors="replace")


async def _watch(
    process: asyncio.subprocess.Process, session: aiohttp.ClientSession, url: str, drain: Drain
) -> dict[str, float]:
    """Scrape ``url`` and sample RSS until all events are decoded: every ``POLL_S`` until the
    first event and when the end is less than ``2 * SLOW_POLL_S`` away at the rate so far,
    every ``SLOW_POLL_S`` in between, so the first and last events are timed to ``POLL_S``."""
    deadline = time.monotonic() + TIMEOUT_S
    text = ""
    cpu_first = emulator_first = 0.0
    while drain.events < EVENTS and time.monotonic() < deadline:
        if process.returncode is not None:
            raise SystemExit(f"worker exited early with {process.returncode}")
        drain.sampled_rss_mb = max(drain.sampled_rss_mb, _status_mb(process.pid, "VmRSS"))
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(url) as response:
                text = await response.text()
            now = time.time()
            decoded = int(_sum_series(text, "mlevents_events_decoded_total"))
            if decoded > drain.events:
                if drain.first is None:
                    drain.first, drain.at_first = now, decoded
                    cpu_first, emulator_first = _cpu_s(process.pid), time.process_time()
                drain.last, drain.events = now, decoded
                drain.cpu_s = _cpu_s(process.pid) - cpu_first
                drain.emulator_cpu_s = time.process_time() - emulator_first
        await asyncio.sleep(_next_poll_s(drain))
    return {
        name: _sum_series(text, name)
        for name in (
            "mlevents_events_received_total",
            "mlevents_rule_matches_total",
            "mlevents_actions_total",
            "mlevents_events_failed_total",
            "mlevents_dead_letters_total",
        )
    }


def _next_poll_s(drain: Drain) -> float:
    """``SLOW_POLL_S`` while the end of the drain is further than two of those away."""
    if drain.first is None or drain.last is None or drain.last <= drain.first:
        return POLL_S
    rate = drain.rate
    left_s = (EVENTS - drain.events) / rate if rate else 0.0
    return SLOW_POLL_S if left_s > 2 * SLOW_POLL_S else POLL_S


@dataclass
class Round:
    """One bare drain and one worker drain of the same backlog, back to back."""

    bare: Drain
    worker: Drain
    counters: dict[str, float]
    stderr: str

    @property
    def ratio(self) -> float:
        """Worker rate over bare rate."""
        return self.worker.rate / self.bare.rate if self.bare.rate else 0.0


async def _measure() -> tuple[list[Round], float]:
    bodies = event_bodies()
    rounds: list[Round] = []
    async with Emulator([HubSpec(HUB, PARTITIONS, ("$Default", WORKER_GROUP))]) as emulator:
        start = time.perf_counter()
        await preload(emulator.connection_string(HUB), bodies)
        preload_s = time.perf_counter() - start
        connection_string = emulator.connection_string()  # no EntityPath: the config names it
        for number in range(ROUNDS):
            with tempfile.TemporaryDirectory(prefix="mlevents-bench-") as name:
                folder, port = Path(name), _free_port()
                config = write_config(folder, port)  # a fresh checkpoint file: from the start
                if number % 2:  # alternate who goes first, so drift in the machine evens out
                    worker, counters, stderr = await run_worker(
                        connection_string, folder, config, port
                    )
                    bare = await run_bare(connection_string)
                else:
                    bare = await run_bare(connection_string)
                    worker, counters, stderr = await run_worker(
                        connection_string, folder, config, port
                    )
            rounds.append(Round(bare, worker, counters, stderr))
    return rounds, preload_s


def main() -> None:
    """Print the drain rates of every round, the median ratio and the worker's peak RSS."""
    rounds, preload_s = asyncio.run(_measure())
    for number, one in enumerate(rounds, start=1):
        print(f"round {number}: worker / bare = {one.ratio:.2f} "
              f"({one.worker.rate:,.0f} / {one.bare.rate:,.0f} events/s)")  # fmt: skip
    middle = sorted(rounds, key=lambda one: one.ratio)[len(rounds) // 2]
    bare, worker, counters, stderr = middle.bare, middle.worker, middle.counters, middle.stderr
    worker.peak_rss_mb = max(one.worker.peak_rss_mb for one in rounds)
    worker.sampled_rss_mb = max(one.worker.sampled_rss_mb for one in rounds)
    print("the median round:")
    size = sum(len(b) for b in event_bodies(1000)) / 1000
    print(
        f"backlog: {EVENTS:,} events (~{size:.0f} B), {PARTITIONS} partitions, "
        f"pre-loaded in {preload_s:.1f} s; emulator in this process, consumers in their own"
    )
    print(
        f"worker: {RULES} rules, log actions at {LOG_ACTION_LEVEL!r}, logging at "
        f"{WORKER_LOG_LEVEL!r}, checkpoints every 100 events / 5 s (SQLite)"
    )
    for name, drain in (("bare SDK consumer", bare), ("mlevents run", worker)):
        complete = "" if drain.events >= EVENTS else f"  INCOMPLETE after {TIMEOUT_S:.0f} s"
        print(f"{name:<18}: {drain.rate:>8,.0f} events/s over {drain.events:,} events "
              f"(wall {drain.wall_s:.1f} s from start), peak RSS {drain.peak_rss_mb:.0f} MB"
              f"{complete}")  # fmt: skip
        print(f"{'':<20}busy while draining (cores): {drain.busy}")
    ratio = middle.ratio
    verdict = "ok" if ratio >= TARGET_RATIO else "BELOW TARGET"
    print(f"ratio worker / bare (median of {ROUNDS} rounds): {ratio:.2f} "
          f"(target >= {TARGET_RATIO}) {verdict}")  # fmt: skip
    rss = max(worker.peak_rss_mb, worker.sampled_rss_mb)
    verdict = "ok" if rss < TARGET_RSS_MB else "ABOVE TARGET"
    print(f"worker peak RSS: {rss:.0f} MB (VmHWM; largest sample {worker.sampled_rss_mb:.0f} MB) "
          f"(target < {TARGET_RSS_MB:.0f} MB) {verdict}")  # fmt: skip
    print("worker counters: " + ", ".join(f"{k.removeprefix('mlevents_')} {v:,.0f}"
                                          for k, v in counters.items()))  # fmt: skip
    lines = [line for line in stderr.splitlines() if line.strip()]
    if lines:
        print(f"worker stderr: {len(lines)} lines; last: {lines[-1][:300]}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--bare"]:
        sys.exit(run_fast(_bare_consumer()))  # the worker's event loop: uvloop
    else:
        main()
