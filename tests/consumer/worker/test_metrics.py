"""Metrics: the series the worker moves, read back from the rendered exposition text."""

from __future__ import annotations

import importlib.metadata
import platform
import sys

import pytest
from prometheus_client import REGISTRY

from consumer.worker.metrics import ACTION_OUTCOMES, Metrics
from rules import RuleTable
from tests.support.clock import FakeClock
from tests.support.factories import make_table
from tests.support.metrics import samples, value


def _rules(*names_and_types: tuple[str, str]) -> RuleTable:
    """A table of one-action rules: (rule name, action type)."""
    specs = {
        "log": {"type": "log"},
        "email": {"type": "email", "to": ["a@example.com"], "subject": "s", "text": "t"},
        "webhook": {"type": "webhook", "url": "https://example.com/hook"},
    }
    return make_table(*({"name": name, "actions": [specs[kind]]} for name, kind in names_and_types))


def test_counters_count_per_label() -> None:
    """Each call adds one to the series its labels name, and only to that one."""
    metrics = Metrics(clock=FakeClock(1000.0))
    metrics.received("0")
    metrics.received("0")
    metrics.received("1")
    metrics.decoded("0")
    metrics.failed("1", "decode")
    metrics.matched("notify-failed-runs")
    metrics.action("webhook", "ok")
    metrics.action("webhook", "dead_lettered")
    metrics.retry("webhook")
    metrics.dead_lettered("action")
    assert value(metrics, "mlevents_events_received_total", partition="0") == 2
    assert value(metrics, "mlevents_events_received_total", partition="1") == 1
    assert value(metrics, "mlevents_events_decoded_total", partition="0") == 1
    assert value(metrics, "mlevents_events_failed_total", partition="1", reason="decode") == 1
    assert value(metrics, "mlevents_rule_matches_total", rule="notify-failed-runs") == 1
    assert value(metrics, "mlevents_actions_total", type="webhook", outcome="ok") == 1
    assert value(metrics, "mlevents_actions_total", type="webhook", outcome="dead_lettered") == 1
    assert value(metrics, "mlevents_action_retries_total", type="webhook") == 1
    assert value(metrics, "mlevents_dead_letters_total", reason="action") == 1


def test_gauges_hold_the_last_value_set() -> None:
    """in_flight and rules_loaded show the last value set, not a sum."""
    metrics = Metrics(clock=FakeClock(1000.0))
    metrics.set_in_flight("0", 5)
    metrics.set_in_flight("0", 2)
    metrics.rules_loaded(_rules(("a", "log"), ("b", "log")))
    metrics.rules_loaded(_rules(("a", "log")))
    assert value(metrics, "mlevents_in_flight", partition="0") == 2
    assert value(metrics, "mlevents_rules_loaded") == 1


def test_reload_outcomes_start_at_zero_and_count() -> None:
    """Both reload outcomes are reported from the start; each reload adds to its own."""
    metrics = Metrics(clock=FakeClock(1000.0))
    assert value(metrics, "mlevents_rules_reloads_total", outcome="ok") == 0
    assert value(metrics, "mlevents_rules_reloads_total", outcome="rejected") == 0
    metrics.reload("rejected")
    assert value(metrics, "mlevents_rules_reloads_total", outcome="rejected") == 1


def test_lag_is_last_enqueued_minus_last_checkpointed() -> None:
    """partition_lag is the hub's newest sequence number minus the checkpointed one."""
    metrics = Metrics(clock=FakeClock(1000.0))
    metrics.last_enqueued("0", 1500)
    metrics.checkpointed("0", 1200)
    assert value(metrics, "mlevents_partition_lag", partition="0") == 300
    metrics.checkpointed("0", 1500)
    metrics.last_enqueued("0", 1510)
    assert value(metrics, "mlevents_partition_lag", partition="0") == 10


def test_lag_is_absent_until_both_ends_are_known() -> None:
    """Without a checkpoint there is no lag series rather than a made-up one."""
    metrics = Metrics(clock=FakeClock(1000.0))
    metrics.last_enqueued("0", 1500)
    assert value(metrics, "mlevents_partition_lag", partition="0") is None


def test_a_checkpoint_found_at_claim_gives_lag_but_no_age() -> None:
    """Another process's checkpoint counts for the lag; the age is this process's own."""
    metrics = Metrics(clock=FakeClock(1000.0))
    metrics.checkpoint_found("0", 1200)
    metrics.last_enqueued("0", 1500)
    assert value(metrics, "mlevents_partition_lag", partition="0") == 300
    assert value(metrics, "mlevents_checkpoint_age_seconds", partition="0") is None


def test_checkpoint_age_grows_with_the_clock_between_scrapes() -> None:
    """checkpoint_age_seconds is computed at scrape time from the injected clock."""
    clock = FakeClock(1000.0)
    metrics = Metrics(clock=clock)
    metrics.checkpointed("0", 10, at=990.0)
    assert value(metrics, "mlevents_checkpoint_age_seconds", partition="0") == 10.0
    clock.now = 1042.5
    assert value(metrics, "mlevents_checkpoint_age_seconds", partition="0") == 52.5


def test_checkpoint_time_defaults_to_the_clock() -> None:
    """A checkpoint without ``at`` is stamped with the clock's now."""
    clock = FakeClock(500.0)
    metrics = Metrics(clock=clock)
    metrics.checkpointed("3", 10)
    clock.now = 503.0
    assert value(metrics, "mlevents_checkpoint_age_seconds", partition="3") == 3.0


def test_checkpoint_age_is_never_negative() -> None:
    """A clock that steps back shows age zero, not a negative age."""
    metrics = Metrics(clock=FakeClock(100.0))
    metrics.checkpointed("0", 1, at=105.0)
    assert value(metrics, "mlevents_checkpoint_age_seconds", partition="0") == 0.0


def test_forget_partition_removes_its_series_and_keeps_the_others() -> None:
    """After forget_partition no series carries the lost partition; other partitions stay."""
    metrics = Metrics(clock=FakeClock(1000.0))
    for partition in ("0", "1"):
        metrics.received(partition)
        metrics.decoded(partition)
        metrics.failed(partition, "decode")
        metrics.failed(partition, "action")
        metrics.set_in_flight(partition, 1)
        metrics.last_enqueued(partition, 20)
        metrics.checkpointed(partition, 10)
    metrics.forget_partition("0")
    partitions = [dict(labels).get("partition") for _, labels in samples(metrics)]
    assert "0" not in partitions
    assert partitions.count("1") > 0
    assert value(metrics, "mlevents_partition_lag", partition="1") == 10


def test_forget_partition_of_an_unknown_partition_is_harmless() -> None:
    """Forgetting a partition that never reported anything changes nothing and raises nothing."""
    metrics = Metrics(clock=FakeClock(1000.0))
    metrics.received("1")

    def own() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """The worker's own samples (the process_* ones move by themselves)."""
        return {
            key: found for key, found in samples(metrics).items() if key[0].startswith("mlevents_")
        }

    before = own()
    metrics.forget_partition("7")
    assert own() == before


def test_two_instances_are_independent_and_leave_the_global_registry_alone() -> None:
    """Each Metrics has its own registry; nothing is registered in prometheus_client's global."""
    first, second = Metrics(clock=FakeClock(1000.0)), Metrics(clock=FakeClock(1000.0))
    first.received("0")
    first.rules_loaded(_rules(("a", "log")))
    assert value(first, "mlevents_events_received_total", partition="0") == 1
    assert value(second, "mlevents_events_received_total", partition="0") is None
    assert value(second, "mlevents_rules_loaded") == 0
    global_names = {family.name for family in REGISTRY.collect()}
    assert not any(name.startswith("mlevents_") for name in global_names)


def test_actions_can_be_counted_several_at_once() -> None:
    metrics = Metrics(clock=lambda: 0.0)
    metrics.action("log", "ok", 3)
    metrics.action("log", "ok")
    assert 'mlevents_actions_total{outcome="ok",type="log"} 4.0' in metrics.render().decode()


def test_counters_of_known_labels_start_at_zero() -> None:
    """Before anything happened, the dead-letter reasons, and the rules and action types of
    the table with every outcome, are reported at 0: increase() sees their first count."""
    metrics = Metrics(clock=FakeClock(1000.0))
    metrics.rules_loaded(_rules(("notify", "webhook"), ("mail", "email")))
    for reason in ("decode", "action"):
        assert value(metrics, "mlevents_dead_letters_total", reason=reason) == 0
    for rule in ("notify", "mail"):
        assert value(metrics, "mlevents_rule_matches_total", rule=rule) == 0
    for kind in ("webhook", "email"):
        assert value(metrics, "mlevents_action_retries_total", type=kind) == 0
        for outcome in ACTION_OUTCOMES:
            assert value(metrics, "mlevents_actions_total", type=kind, outcome=outcome) == 0
    # Only the table's action types: no series for those no rule uses.
    assert value(metrics, "mlevents_actions_total", type="log", outcome="ok") is None


def test_a_reload_adds_the_new_rules_at_zero_and_keeps_the_counts() -> None:
    metrics = Metrics(clock=FakeClock(1000.0))
    metrics.rules_loaded(_rules(("notify", "webhook")))
    metrics.matched("notify")
    metrics.action("webhook", "ok")
    metrics.rules_loaded(_rules(("notify", "webhook"), ("audit", "log")))
    assert value(metrics, "mlevents_rule_matches_total", rule="notify") == 1
    assert value(metrics, "mlevents_actions_total", type="webhook", outcome="ok") == 1
    assert value(metrics, "mlevents_rule_matches_total", rule="audit") == 0
    assert value(metrics, "mlevents_actions_total", type="log", outcome="dead_lettered") == 0


def test_a_claimed_partition_starts_its_counters_at_zero() -> None:
    """A claim reports the partition's counters at 0; a claim while counting resets none."""
    metrics = Metrics(clock=FakeClock(1000.0))
    metrics.partition_claimed("3")
    for name in ("events_received", "events_decoded", "events_redelivered"):
        assert value(metrics, f"mlevents_{name}_total", partition="3") == 0
    for reason in ("decode", "action"):
        assert value(metrics, "mlevents_events_failed_total", partition="3", reason=reason) == 0
    assert value(metrics, "mlevents_in_flight", partition="3") == 0
    metrics.received("3")
    metrics.partition_claimed("3")
    assert value(metrics, "mlevents_events_received_total", partition="3") == 1


def test_a_finished_action_is_counted_and_both_histograms_observe_it() -> None:
    """action_finished counts the outcome and puts the duration and the latency in their
    buckets; an unknown enqueued time leaves the latency alone, and a latency below zero (two
    hosts' clocks) counts as zero."""
    metrics = Metrics(clock=FakeClock(1000.0))
    metrics.action_finished("webhook", "ok", seconds=0.3, since_enqueued_s=4.0)
    metrics.action_finished("webhook", "ok", seconds=0.3, since_enqueued_s=None)
    metrics.action_finished("webhook", "ok", seconds=0.3, since_enqueued_s=-2.0)
    labels = {"type": "webhook", "outcome": "ok"}
    assert value(metrics, "mlevents_actions_total", **labels) == 3

    def bucket(name: str, le: str) -> float | None:
        return value(metrics, f"mlevents_action_{name}_seconds_bucket", le=le, **labels)

    assert (bucket("duration", "0.25"), bucket("duration", "0.5")) == (0, 3)
    assert value(metrics, "mlevents_action_duration_seconds_sum", **labels) == pytest.approx(0.9)
    assert (bucket("latency", "0.01"), bucket("latency", "2.5"), bucket("latency", "5.0")) == (
        1,
        1,
        2,
    )
    assert value(metrics, "mlevents_action_latency_seconds_count", **labels) == 2


def test_build_info_names_the_mlevents_and_python_versions() -> None:
    metrics = Metrics(clock=FakeClock(1000.0))
    version = importlib.metadata.version("mlevents")
    build = {"version": version, "python": platform.python_version()}
    assert value(metrics, "mlevents_build_info", **build) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="read from /proc")
def test_process_metrics_are_reported() -> None:
    """CPU seconds, resident memory, open file descriptors and the start time of this process."""
    metrics = Metrics(clock=FakeClock(1000.0))
    for name in ("process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds"):
        found = value(metrics, name)
        assert found is not None
        assert found > 0, name
    assert value(metrics, "process_cpu_seconds_total") is not None
