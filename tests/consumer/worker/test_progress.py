"""Contiguous progress: a checkpoint never passes an unfinished event."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer.worker.progress import PartitionProgress


def _state(progress: PartitionProgress[str]) -> tuple[str | None, int | None]:
    return progress.safe, progress.safe_sequence


def test_safe_advances_only_over_the_finished_prefix() -> None:
    """Finishing a later event first does not move safe; finishing the gap does."""
    progress: PartitionProgress[str] = PartitionProgress()
    for seq in (10, 11, 12):
        progress.start(seq, f"e{seq}")
    assert not progress.finish(12)
    assert _state(progress) == (None, None)
    assert progress.finish(10)
    assert _state(progress) == ("e10", 10)
    assert progress.finish(11)
    assert _state(progress) == ("e12", 12)
    assert progress.in_flight == 0


def test_sequence_numbers_must_increase_and_unknown_finish_is_an_error() -> None:
    """Starting out of order or finishing an unknown event is a programming error."""
    progress: PartitionProgress[int] = PartitionProgress()
    progress.start(5, 5)
    with pytest.raises(ValueError, match="not after"):
        progress.start(5, 5)
    with pytest.raises(KeyError):
        progress.finish(6)


@given(st.integers(1, 60), st.randoms(use_true_random=False))
def test_safe_is_always_below_the_first_unfinished(count: int, rnd: random.Random) -> None:
    """Whatever the finishing order, safe is the last event before the first unfinished one."""
    progress: PartitionProgress[int] = PartitionProgress()
    for seq in range(count):
        progress.start(seq, seq)
    order = list(range(count))
    rnd.shuffle(order)
    finished: set[int] = set()
    for seq in order:
        progress.finish(seq)
        finished.add(seq)
        first_unfinished = next((s for s in range(count) if s not in finished), count)
        expected = first_unfinished - 1 if first_unfinished else None
        assert progress.safe_sequence == expected


def test_an_event_done_on_arrival_is_safe_at_once_only_when_nothing_waits() -> None:
    """start_finished moves safe directly when idle, and queues behind unfinished events."""
    progress: PartitionProgress[str] = PartitionProgress()
    progress.start_finished(1, "e1")
    assert _state(progress) == ("e1", 1)
    progress.start(2, "e2")
    progress.start_finished(3, "e3")
    assert _state(progress) == ("e1", 1)
    progress.finish(2)
    assert _state(progress) == ("e3", 3)
    with pytest.raises(ValueError, match="not after"):
        progress.start_finished(3, "again")
