"""What the chaos run found, from the peers' own records and the workers' logs and metrics.

An effect the peers did not record is *lost*. An effect recorded more than once is a
*duplicate*; it is *matched* when the workers' logs explain it: for its decision key, at
least as many ``action.uncertain`` lines resolved ``repeat`` as there are extra effects
(the worker that took over chose to act again, not knowing whether the first had). A sink
that can be asked must show no duplicate at all.

An unmatched duplicate is shown apart when one of its effects happened while a worker acted
without the ledger (its store unavailable): such a run is recorded nowhere, and does not
look at what is recorded, so an action whose message is read again around an outage runs
again with no uncertain outcome to log. The worker documents this exception; the split says
how much of what is unmatched it may account for (by time, to the second the peers' records
were looked at).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from consumer.worker.handler import LEDGER_OUTAGE_S

from .scenario import ASKABLE, RULES, Key
from .sinks import Seen

DONE_MARK = "mlevents_done_mark_seconds"
DONE_MARK_MAX = "mlevents_done_mark_max_seconds"
UNCERTAIN = "mlevents_actions_uncertain"
IN_FLIGHT = "mlevents_in_flight"
SLACK_S = 5.0
"""An effect this long after a worker's ledger came back may still be of an unreserved run
(a slow sink confirms it later)."""


@dataclass(frozen=True)
class Kill:
    """One SIGKILL: when (seconds into the run), which worker, and its events in flight
    (started, not yet checkpointed) at its last scrape."""

    at_s: float
    worker: str
    in_flight: int


@dataclass(frozen=True)
class Duplicate:
    """A decision with more than one effect, and the uncertain outcomes that may explain it."""

    key: Key
    extra: int
    repeats: int
    """``action.uncertain`` lines for this decision resolved ``repeat``."""

    @property
    def matched(self) -> bool:
        return self.extra <= self.repeats


@dataclass(frozen=True)
class Window:
    """The done-mark window (effect confirmed to done mark durable), over all workers."""

    count: int
    p50_s: float | None
    """The upper bound of the bucket holding the median (``None``: no observation)."""
    p99_s: float | None
    max_s: float


@dataclass(frozen=True)
class Findings:
    """Everything the run printed, and whether it passed."""

    expected: set[Key]
    seen: list[Seen]
    """Every effect the peers recorded, with when."""
    uncertain: list[dict[str, Any]]
    """The ``action.uncertain`` log lines of every worker."""
    uncertain_metric: Counter[str]
    """``mlevents_actions_uncertain_total`` by type, summed over each worker's last scrape."""
    window: Window
    kills: list[Kill]
    faults: list[str]
    dead_letters: list[str]
    deployment_updates: int
    ledger_down: list[tuple[float, float]]
    """When a worker acted without the ledger (seconds since the epoch), by its log."""
    settled: bool
    """Whether every partition's checkpoint reached its last event before the workers
    were stopped."""
    notes: list[str] = field(default_factory=list)

    @cached_property
    def effects(self) -> Counter[Key]:
        return Counter(seen.key for seen in self.seen)

    @cached_property
    def _times(self) -> dict[Key, list[Seen]]:
        times: dict[Key, list[Seen]] = defaultdict(list)
        for seen in self.seen:
            times[seen.key].append(seen)
        return times

    @property
    def lost(self) -> list[Key]:
        return sorted(key for key in self.expected if not self.effects[key])

    @cached_property
    def duplicates(self) -> list[Duplicate]:
        repeats = Counter(
            str(line.get("decision")) for line in self.uncertain if line["resolution"] == "repeat"
        )
        return [
            Duplicate(key, count - 1, repeats[key.decision])
            for key, count in sorted(self.effects.items())
            if count > 1
        ]

    def near_unreserved(self, duplicate: Duplicate) -> bool:
        """Whether an effect of the duplicate's decision happened while some worker acted
        without the ledger."""
        return any(
            start <= seen.by and seen.after <= end + SLACK_S
            for seen in self._times[duplicate.key]
            for start, end in self.ledger_down
        )

    @property
    def unmatched(self) -> list[Duplicate]:
        return [duplicate for duplicate in self.duplicates if not duplicate.matched]

    @property
    def askable_duplicates(self) -> list[Duplicate]:
        return [duplicate for duplicate in self.duplicates if duplicate.key.type in ASKABLE]

    @property
    def unexpected(self) -> list[Key]:
        """Effects for decisions no event made (a harness or worker bug)."""
        return sorted(set(self.effects) - self.expected)

    def failures(self) -> list[str]:
        """Why the run failed; empty when it passed."""
        reasons = []
        if self.lost:
            reasons.append(f"{len(self.lost)} effects lost")
        if self.unmatched:
            reasons.append(f"{len(self.unmatched)} duplicates not matched by an uncertain outcome")
        if self.askable_duplicates:
            reasons.append(f"{len(self.askable_duplicates)} duplicates in sinks that can be asked")
        if self.unexpected:
            reasons.append(f"{len(self.unexpected)} effects for decisions no event made")
        return reasons

    def lines(self) -> list[str]:
        """The report, one line per figure."""
        duplicates, unmatched = self.duplicates, self.unmatched
        other = [d for d in unmatched if not self.near_unreserved(d)]
        extra = sum(d.extra for d in duplicates)
        lines = [
            *[f"fault: {fault}" for fault in self.faults],
            f"kills: {len(self.kills)} SIGKILLs, {sum(1 for k in self.kills if k.in_flight)} "
            "with events in flight (started, not yet checkpointed)",
            f"expected effects: {len(self.expected)}",
            f"effects seen: {len(self.seen)} on {len(self.effects)} decisions",
            *self._per_action(),
            f"lost: {len(self.lost)}" + _some([key.decision for key in self.lost]),
            f"duplicates: {len(duplicates)} decisions, {extra} extra effects; "
            f"matched to an uncertain outcome: {len(duplicates) - len(unmatched)}, "
            f"unmatched: {len(unmatched)}" + _some([d.key.decision for d in unmatched]),
            "  unmatched with an effect while a worker acted without the ledger: "
            f"{len(unmatched) - len(other)}, other: {len(other)}"
            + _some([d.key.decision for d in other]),
            "duplicates in sinks that can be asked (expected 0): "
            + ", ".join(f"{t} {self._duplicated(t)}" for t in sorted(ASKABLE)),
            "uncertain outcomes by type (log lines / metric): "
            + ", ".join(f"{t} {n}/{self.uncertain_metric[t]}" for t, n in self._uncertain()),
            "uncertain resolutions: "
            + _counts(Counter(_resolution(line["resolution"]) for line in self.uncertain)),
            "done-mark window (quantiles are bucket upper bounds; from each worker's last "
            f"scrape): {self.window.count} marks, p50 <= {_seconds(self.window.p50_s)}, "
            f"p99 <= {_seconds(self.window.p99_s)}, max {self.window.max_s:.3f} s",
            f"dead letters: {len(self.dead_letters)}" + _some(self.dead_letters),
            f"deployment PUTs that updated an existing deployment: {self.deployment_updates}",
            f"settled (every checkpoint at its partition's last event): {self.settled}",
            *self.notes,
        ]
        failures = self.failures()
        lines.append("result: " + ("FAILED: " + "; ".join(failures) if failures else "passed"))
        return lines

    def _per_action(self) -> list[str]:
        lines = []
        for rule, types in RULES.items():
            for index, type in enumerate(types):
                keys = [key for key in self.expected if (key.rule, key.index) == (rule, index)]
                seen = [self.effects[key] for key in keys]
                spread = Counter(min(n, 3) for n in seen)
                lines.append(
                    f"  {rule}/{index} {type}: {len(keys)} expected, "
                    f"{spread[1]} once, {spread[2]} twice, {spread[3]} 3+ times, "
                    f"{spread[0]} never"
                )
        return lines

    def _duplicated(self, type: str) -> int:
        return sum(1 for d in self.duplicates if d.key.type == type)

    def _uncertain(self) -> list[tuple[str, int]]:
        by_type = Counter(str(line["action"]).split("#")[0] for line in self.uncertain)
        types = sorted({t for types in RULES.values() for t in types})
        return [(t, by_type[t]) for t in types]


def done_mark_window(scrapes: Iterable[str]) -> Window:
    """The histogram's buckets summed over ``scrapes`` (each worker's last), its quantiles as
    bucket upper bounds, and the largest max gauge."""
    buckets: dict[float, float] = defaultdict(float)
    largest = 0.0
    for text in scrapes:
        for family in text_string_to_metric_families(text):
            if family.name == DONE_MARK:
                for sample in family.samples:
                    if sample.name == f"{DONE_MARK}_bucket":
                        buckets[float(sample.labels["le"])] += sample.value
            elif family.name == DONE_MARK_MAX:
                largest = max([largest, *(sample.value for sample in family.samples)])
    count = int(buckets.get(math.inf, 0))
    return Window(count, _quantile(buckets, 0.5), _quantile(buckets, 0.99), largest)


def _quantile(cumulative: Mapping[float, float], q: float) -> float | None:
    """The smallest bucket bound whose cumulative count reaches ``q`` of all."""
    total = cumulative.get(math.inf, 0)
    if not total:
        return None
    return min(bound for bound, count in cumulative.items() if count >= q * total)


def uncertain_metric(scrapes: Iterable[str]) -> Counter[str]:
    """``mlevents_actions_uncertain_total`` by type, summed over ``scrapes``."""
    found: Counter[str] = Counter()
    for text in scrapes:
        for family in text_string_to_metric_families(text):
            if family.name == UNCERTAIN:
                for sample in family.samples:
                    found[sample.labels["type"]] += int(sample.value)
    return found


def in_flight(text: str) -> int:
    """Events in flight (started, not checkpointed) over the partitions of one scrape."""
    for family in text_string_to_metric_families(text):
        if family.name == IN_FLIGHT:
            return int(sum(sample.value for sample in family.samples))
    return 0


def ledger_down(logs: Iterable[list[dict[str, Any]]]) -> list[tuple[float, float]]:
    """When each worker acted without the ledger, by its own log: ``LEDGER_OUTAGE_S`` from each
    ``ledger.unavailable``, and from the ledger's ``storage.unavailable`` to its
    ``storage.recovered`` (or the log's end)."""
    spans: list[tuple[float, float]] = []
    for lines in logs:
        since = None
        for line in lines:
            event = line.get("event")
            if event == "ledger.unavailable":
                at = _time(line)
                spans.append((at, at + LEDGER_OUTAGE_S))
            elif event == "storage.unavailable" and line.get("store") == "ledger":
                since = since or _time(line)
            elif event == "storage.recovered" and line.get("store") == "ledger" and since:
                spans.append((since, _time(line)))
                since = None
        if since is not None and lines:
            spans.append((since, _time(lines[-1])))
    return spans


def _time(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(line["timestamp"])).timestamp()


def _resolution(text: str) -> str:
    return "unknown" if text.startswith("unknown") else text


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counter.items())) or "none"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g} s"


def _some(items: Sequence[object], limit: int = 5) -> str:
    if not items:
        return ""
    shown = ", ".join(str(item) for item in items[:limit])
    return f" (e.g. {shown})"
