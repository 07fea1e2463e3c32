"""Metrics: the worker's Prometheus series, in a registry of their own.

``Metrics`` owns every ``mlevents_*`` series and the small typed calls the worker makes to
move them; ``render`` gives the exposition text ``/metrics`` serves. Each instance has its
own ``CollectorRegistry`` (never the process-global one), so tests and several workers in
one process never see each other's counts.

Counters live in plain dicts (``_Counts``) rather than in ``prometheus_client``'s own
counters: the worker moves several per event, and a dict increment costs about a tenth of a
locked ``labels().inc()``. Every counter whose label values are known starts at 0 (dead-letter
reasons, reload outcomes, the rule table's rules and action types with every outcome, a
claimed partition's counters), so ``increase(...) > 0`` sees the first increment after a
start. The histograms are ``prometheus_client``'s: they are observed once per action that
needed I/O (never for the inline ``log`` actions), where their cost is lost in the I/O.
``mlevents_build_info`` and ``prometheus_client``'s process collector (``process_*``: CPU,
memory, open file descriptors, start time) are registered too.

Two gauges are computed when scraped rather than when set: ``checkpoint_age_seconds``
(the injected clock minus the last checkpoint time, so a stuck partition's age keeps
growing with nothing calling us) and ``partition_lag`` (last enqueued minus last
checkpointed sequence number, shown once both are known; the checkpoint found when a
partition is claimed counts).
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Callable, Iterable, Sequence
from threading import Lock
from typing import Literal

from prometheus_client import CollectorRegistry, Histogram, Info, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rules import RuleTable
from rules.actions import ACTION_TYPES

FailureReason = Literal["decode", "action"]
ActionOutcome = Literal["ok", "dead_lettered", "skipped", "dry_run"]
ReloadOutcome = Literal["ok", "rejected"]
FAILURE_REASONS: tuple[FailureReason, ...] = ("decode", "action")
"""Why an event failed, and why a dead letter was parked: the same two."""
ACTION_OUTCOMES: tuple[ActionOutcome, ...] = ("ok", "dead_lettered", "skipped", "dry_run")
RELOAD_OUTCOMES: tuple[ReloadOutcome, ...] = ("ok", "rejected")
DONE_MARK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ACTION_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    1800.0, 3600.0,
)  # fmt: skip
"""Seconds, for an action's duration and for its latency since the message was enqueued: a
webhook takes milliseconds, retries stop after 120 s, an ``aml_deploy`` may follow its
deployment for 30 minutes, and a backlog delays an action by as long as it lasts."""
HTTP_CLIENTS = ("webhook", "azure")
"""The actions' HTTP clients (``consumer.actions.http``): webhooks, and Azure Resource Manager."""
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The media type of ``Metrics.render``'s output."""


class _PartitionProgress(Collector):
    """Checkpoint age and lag per partition, computed from what was recorded at scrape time."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = Lock()
        self.checkpoint_at: dict[str, float] = {}
        self.checkpoint_sequence: dict[str, int] = {}
        self.enqueued_sequence: dict[str, int] = {}

    def forget(self, partition: str) -> None:
        with self._lock:
            self.checkpoint_at.pop(partition, None)
            self.checkpoint_sequence.pop(partition, None)
            self.enqueued_sequence.pop(partition, None)

    def checkpointed(self, partition: str, sequence_number: int, at: float | None) -> None:
        with self._lock:
            if at is not None:
                self.checkpoint_at[partition] = at
            self.checkpoint_sequence[partition] = sequence_number

    def enqueued(self, partition: str, sequence_number: int) -> None:
        with self._lock:
            self.enqueued_sequence[partition] = sequence_number

    def describe(self) -> Iterable[Metric]:
        return self._families(with_samples=False)

    def collect(self) -> Iterable[Metric]:
        return self._families(with_samples=True)

    def _families(self, *, with_samples: bool) -> list[Metric]:
        age = GaugeMetricFamily(
            "mlevents_checkpoint_age_seconds",
            "Seconds since the partition's last checkpoint.",
            labels=["partition"],
        )
        lag = GaugeMetricFamily(
            "mlevents_partition_lag",
            "Last enqueued sequence number minus last checkpointed sequence number.",
            labels=["partition"],
        )
        if with_samples:
            now = self._clock()
            with self._lock:
                for partition, at in sorted(self.checkpoint_at.items()):
                    # A clock that steps back must not show a negative age.
                    age.add_metric([partition], max(0.0, now - at))
                for partition, last in sorted(self.enqueued_sequence.items()):
                    done = self.checkpoint_sequence.get(partition)
                    if done is not None:
                        lag.add_metric([partition], max(0, last - done))
        return [age, lag]


class _Counts(Collector):
    """Counters and gauges kept as plain dicts and turned into families when scraped.

    The worker moves them several times per event; a dict increment costs a fraction of
    ``prometheus_client``'s locked ``labels().inc()``, and the worker is one event loop.
    """

    def __init__(self) -> None:
        self.values: dict[str, dict[tuple[str, ...], float]] = {}
        self._specs: dict[str, tuple[str, str, tuple[str, ...]]] = {}

    def define(self, kind: str, name: str, doc: str, *labels: str) -> dict[tuple[str, ...], float]:
        self._specs[name] = (kind, doc, labels)
        values = self.values[name] = {}
        return values

    def describe(self) -> Iterable[Metric]:
        return self._families(with_samples=False)

    def collect(self) -> Iterable[Metric]:
        return self._families(with_samples=True)

    def _families(self, *, with_samples: bool) -> list[Metric]:
        families: list[Metric] = []
        for name, (kind, doc, labels) in self._specs.items():
            family: Metric
            if kind == "counter":
                family = CounterMetricFamily(f"mlevents_{name}", doc, labels=list(labels))
            else:
                family = GaugeMetricFamily(f"mlevents_{name}", doc, labels=list(labels))
            if with_samples:
                for key, value in sorted(self.values[name].items()):
                    family.add_metric(list(key), value)
            families.append(family)
        return families


class Metrics:
    """Every ``mlevents_*`` series; the worker calls the methods, ``/metrics`` calls ``render``."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.registry = CollectorRegistry()
        counts = self._counts = _Counts()
        self._received = counts.define("counter", "events_received", "Events read.", "partition")
        self._decoded = counts.define("counter", "events_decoded", "Events decoded.", "partition")
        self._failed = counts.define(
            "counter", "events_failed", "Events that failed, by stage.", "partition", "reason"
        )
        self._matched = counts.define("counter", "rule_matches", "Events a rule matched.", "rule")
        self._actions = counts.define(
            "counter", "actions", "Actions by final outcome.", "type", "outcome"
        )
        self._redelivered = counts.define(
            "counter",
            "events_redelivered",
            "Events handed over again after a reconnect, while in flight or finished here "
            "(recognised, not started twice).",
            "partition",
        )
        self._uncertain = counts.define(
            "counter",
            "actions_uncertain",
            "Actions taken over from a holder that may have done them, by type.",
            "type",
        )
        self._retries = counts.define(
            "counter", "action_retries", "Action attempts retried.", "type"
        )
        self._dead_letters = counts.define(
            "counter", "dead_letters", "Dead letters parked.", "reason"
        )
        self._reloads = counts.define(
            "counter", "rules_reloads", "Rule reloads by outcome.", "outcome"
        )
        self._in_flight = counts.define(
            "gauge", "in_flight", "Events started but not yet covered by a checkpoint.", "partition"
        )
        self._pool_queued = counts.define(
            "gauge", "http_pool_queued", "Requests waiting for a pooled connection now.", "client"
        )
        self._pool_waits = counts.define(
            "counter", "http_pool_waits", "Requests that waited for a pooled connection.", "client"
        )
        self._pool_wait_s = counts.define(
            "counter",
            "http_pool_wait_seconds",
            "Seconds requests spent waiting for a pooled connection.",
            "client",
        )
        self._dependency_up = counts.define(
            "gauge",
            "dependency_up",
            "1 while a store answered its last call in time, 0 while it fails.",
            "dependency",
        )
        self._rules_loaded = counts.define(
            "gauge", "rules_loaded", "Rules in the table now running."
        )
        self.registry.register(counts)
        self._duration = Histogram(
            "mlevents_action_duration_seconds",
            "Seconds an action that needed I/O took, from its reservation to its outcome "
            "(retries and parking included), by type and final outcome.",
            ["type", "outcome"],
            buckets=ACTION_BUCKETS,
            registry=self.registry,
        )
        self._latency = Histogram(
            "mlevents_action_latency_seconds",
            "Seconds from the message's enqueueing in the event hub to the outcome of an "
            "action that needed I/O, by type and final outcome.",
            ["type", "outcome"],
            buckets=ACTION_BUCKETS,
            registry=self.registry,
        )
        Info(
            "mlevents_build", "The running mlevents and Python versions.", registry=self.registry
        ).info({"version": _version(), "python": platform.python_version()})
        ProcessCollector(registry=self.registry)
        self._progress = _PartitionProgress(clock)
        self.registry.register(self._progress)
        # Bounded label values start at zero so rate() sees the first increment.
        for reason in FAILURE_REASONS:
            self._dead_letters[(reason,)] = 0
        for outcome in RELOAD_OUTCOMES:
            self._reloads[(outcome,)] = 0
        self._rules_loaded[()] = 0
        for kind in ACTION_TYPES:
            if kind != "log":  # log actions run inline, without the ledger
                self._uncertain[(kind,)] = 0
        self._done_max = counts.define(
            "gauge",
            "done_mark_max_seconds",
            "The longest time from an action's confirmed effect to its durable done mark.",
        )
        self._done_max[()] = 0
        self._done_window = Histogram(
            "mlevents_done_mark_seconds",
            "Time from an action's confirmed effect to its durable done mark in the ledger "
            "(the window in which a crash leaves the outcome uncertain).",
            buckets=DONE_MARK_BUCKETS,
            registry=self.registry,
        )
        for client in HTTP_CLIENTS:
            self._pool_queued[(client,)] = 0
            self._pool_waits[(client,)] = 0
            self._pool_wait_s[(client,)] = 0

    def received(self, partition: str) -> None:
        key = (partition,)
        self._received[key] = self._received.get(key, 0) + 1

    def decoded(self, partition: str) -> None:
        key = (partition,)
        self._decoded[key] = self._decoded.get(key, 0) + 1

    def failed(self, partition: str, reason: str) -> None:
        """``reason`` is one of ``FAILURE_REASONS``."""
        key = (partition, reason)
        self._failed[key] = self._failed.get(key, 0) + 1

    def matched(self, rule: str) -> None:
        key = (rule,)
        self._matched[key] = self._matched.get(key, 0) + 1

    def matched_inert(self, rules: Sequence[str], actions: Sequence[tuple[str, int]]) -> None:
        """One event matched ``rules``, whose actions all ended ``ok`` inline: ``count`` of
        each type (what ``matched`` and ``action`` count, in one call)."""
        matched, done = self._matched, self._actions
        for rule in rules:
            key = (rule,)
            matched[key] = matched.get(key, 0) + 1
        for type, count in actions:
            outcome = (type, "ok")
            done[outcome] = done.get(outcome, 0) + count

    def action(self, type: str, outcome: str, count: int = 1) -> None:
        """``count`` actions of ``type`` ended so; ``outcome`` is an ``ActionOutcome``."""
        key = (type, outcome)
        self._actions[key] = self._actions.get(key, 0) + count

    def action_finished(
        self, type: str, outcome: str, *, seconds: float, since_enqueued_s: float | None
    ) -> None:
        """An action that needed I/O ended so after ``seconds``, ``since_enqueued_s`` after its
        message was enqueued (``None``: unknown); counted as ``action`` counts it, and timed."""
        self.action(type, outcome)
        self._duration.labels(type, outcome).observe(max(0.0, seconds))
        if since_enqueued_s is not None:  # clocks of two hosts: never below zero
            self._latency.labels(type, outcome).observe(max(0.0, since_enqueued_s))

    def redelivered(self, partition: str) -> None:
        key = (partition,)
        self._redelivered[key] = self._redelivered.get(key, 0) + 1

    def uncertain(self, type: str) -> None:
        key = (type,)
        self._uncertain[key] = self._uncertain.get(key, 0) + 1

    def done_marked(self, seconds: float) -> None:
        """A done mark was durable ``seconds`` after its action's effect was confirmed."""
        self._done_window.observe(seconds)
        if seconds > self._done_max[()]:
            self._done_max[()] = seconds

    def retry(self, type: str) -> None:
        key = (type,)
        self._retries[key] = self._retries.get(key, 0) + 1

    def dead_lettered(self, reason: str) -> None:
        key = (reason,)
        self._dead_letters[key] = self._dead_letters.get(key, 0) + 1

    def pool_queued(self, client: str, change: int) -> None:
        """A request of ``client``'s pool started (+1) or stopped (-1) waiting for a connection."""
        key = (client,)
        self._pool_queued[key] = self._pool_queued.get(key, 0) + change

    def pool_waited(self, client: str, seconds: float) -> None:
        key = (client,)
        self._pool_waits[key] = self._pool_waits.get(key, 0) + 1
        self._pool_wait_s[key] = self._pool_wait_s.get(key, 0) + seconds

    def dependency_up(self, name: str, up: bool) -> None:
        self._dependency_up[(name,)] = 1 if up else 0

    def set_in_flight(self, partition: str, count: int) -> None:
        self._in_flight[(partition,)] = count

    def checkpointed(self, partition: str, sequence_number: int, at: float | None = None) -> None:
        """A checkpoint was written at ``sequence_number``, at ``at`` (default: now)."""
        self._progress.checkpointed(partition, sequence_number, self._clock() if at is None else at)

    def checkpoint_found(self, partition: str, sequence_number: int) -> None:
        """The checkpoint store held ``sequence_number`` for the partition when it was claimed
        (written by another process or an earlier run: it counts for the lag, not the age)."""
        self._progress.checkpointed(partition, sequence_number, None)

    def last_enqueued(self, partition: str, sequence_number: int) -> None:
        """The newest sequence number the hub holds for the partition."""
        self._progress.enqueued(partition, sequence_number)

    def partition_claimed(self, partition: str) -> None:
        """The partition is now read here: its counters start at 0 (unless already counting)."""
        for values in (self._received, self._decoded, self._redelivered, self._in_flight):
            values.setdefault((partition,), 0)
        for reason in FAILURE_REASONS:
            self._failed.setdefault((partition, reason), 0)

    def forget_partition(self, partition: str) -> None:
        """The partition moved elsewhere: drop its series so they stop being reported here."""
        for values in (self._received, self._decoded, self._in_flight, self._redelivered):
            values.pop((partition,), None)
        for reason in FAILURE_REASONS:
            self._failed.pop((partition, reason), None)
        self._progress.forget(partition)

    def rules_loaded(self, table: RuleTable) -> None:
        """``table`` now runs: its size, and the counters of its rules and action types from 0
        (those of rules a reload removed keep their counts)."""
        self._rules_loaded[()] = len(table)
        for rule in table.rules:
            self._matched.setdefault((rule.name,), 0)
            for action in rule.actions:
                kind = str(action.__struct_config__.tag)
                self._retries.setdefault((kind,), 0)
                for outcome in ACTION_OUTCOMES:
                    self._actions.setdefault((kind, outcome), 0)

    def reload(self, outcome: str) -> None:
        """``outcome`` is a ``ReloadOutcome``."""
        self._reloads[(outcome,)] = self._reloads.get((outcome,), 0) + 1

    def render(self) -> bytes:
        """The exposition text of every series (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)


def _version() -> str:
    """mlevents' installed version, or ``unknown`` when it runs from a source tree alone."""
    try:
        return importlib.metadata.version("mlevents")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
