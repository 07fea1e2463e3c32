"""Metrics: the series the worker moves, read back from the rendered exposition text."""

from __future__ import annotations

from prometheus_client import REGISTRY

from consumer.worker.metrics import Metrics
from tests.support.metrics import samples, value


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_counters_count_per_label() -> None:
    """Each call adds one to the series its labels name, and only to that one."""
    metrics = Metrics(clock=FakeClock())
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
    metrics = Metrics(clock=FakeClock())
    metrics.set_in_flight("0", 5)
    metrics.set_in_flight("0", 2)
    metrics.rules_loaded(7)
    metrics.rules_loaded(6)
    assert value(metrics, "mlevents_in_flight", partition="0") == 2
    assert value(metrics, "mlevents_rules_loaded") == 6


def test_reload_outcomes_start_at_zero_and_count() -> None:
    """Both reload outcomes are reported from the start; each reload adds to its own."""
    metrics = Metrics(clock=FakeClock())
    assert value(metrics, "mlevents_rules_reloads_total", outcome="ok") == 0
    assert value(metrics, "mlevents_rules_reloads_total", outcome="rejected") == 0
    metrics.reload("rejected")
    assert value(metrics, "mlevents_rules_reloads_total", outcome="rejected") == 1


def test_lag_is_last_enqueued_minus_last_checkpointed() -> None:
    """partition_lag is the hub's newest sequence number minus the checkpointed one."""
    metrics = Metrics(clock=FakeClock())
    metrics.last_enqueued("0", 1500)
    metrics.checkpointed("0", 1200)
    assert value(metrics, "mlevents_partition_lag", partition="0") == 300
    metrics.checkpointed("0", 1500)
    metrics.last_enqueued("0", 1510)
    assert value(metrics, "mlevents_partition_lag", partition="0") == 10


def test_lag_is_absent_until_both_ends_are_known() -> None:
    """Without a checkpoint there is no lag series rather than a made-up one."""
    metrics = Metrics(clock=FakeClock())
    metrics.last_enqueued("0", 1500)
    assert value(metrics, "mlevents_partition_lag", partition="0") is None


def test_a_checkpoint_found_at_claim_gives_lag_but_no_age() -> None:
    """Another process's checkpoint counts for the lag; the age is this process's own."""
    metrics = Metrics(clock=FakeClock())
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
    metrics = Metrics(clock=FakeClock())
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
    metrics = Metrics(clock=FakeClock())
    metrics.received("1")
    before = samples(metrics)
    metrics.forget_partition("7")
    assert samples(metrics) == before


def test_two_instances_are_independent_and_leave_the_global_registry_alone() -> None:
    """Each Metrics has its own registry; nothing is registered in prometheus_client's global."""
    first, second = Metrics(clock=FakeClock()), Metrics(clock=FakeClock())
    first.received("0")
    first.rules_loaded(3)
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
