"""The retry policy: only retriable errors, bounded, honouring Retry-After."""

from __future__ import annotations

import math

import pytest

from consumer.errors import PermanentActionError, TransientActionError
from consumer.worker.retrying import RetryPolicy, attempts_of


class Flaky:
    """Fails with the given errors in turn, then returns ``"done"``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


class Sleeps:
    """Records the waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def test_transient_errors_are_retried_until_success() -> None:
    """Two transient failures, then success: three attempts, two waits."""
    sleeps = Sleeps()
    work = Flaky(TransientActionError("503"), TransientActionError("503"))
    seen: list[int] = []
    result, attempts = await RetryPolicy(sleep=sleeps).call(
        work, on_retry=lambda attempt, error, wait: seen.append(attempt)
    )
    assert (result, attempts, work.calls) == ("done", 3, 3)
    assert seen == [1, 2]
    assert len(sleeps.waits) == 2
    assert 0 < sleeps.waits[0] <= sleeps.waits[1] + 1.0


async def test_permanent_errors_are_not_retried() -> None:
    """A permanent error is raised at once, after one attempt."""
    work = Flaky(PermanentActionError("400"))
    with pytest.raises(PermanentActionError) as caught:
        await RetryPolicy(sleep=Sleeps()).call(work)
    assert work.calls == 1
    assert attempts_of(caught.value) == 1


async def test_other_exceptions_are_not_retried() -> None:
    """An unexpected exception (a bug) is not retried."""
    work = Flaky(RuntimeError("bug"))
    with pytest.raises(RuntimeError):
        await RetryPolicy(sleep=Sleeps()).call(work)
    assert work.calls == 1


async def test_attempts_are_bounded() -> None:
    """After the last attempt the last error is raised, carrying the attempt count."""
    work = Flaky(*[TransientActionError(f"try {i}") for i in range(10)])
    with pytest.raises(TransientActionError, match="try 2") as caught:
        await RetryPolicy(attempts=3, sleep=Sleeps()).call(work)
    assert work.calls == 3
    assert attempts_of(caught.value) == 3


async def test_retry_after_is_honoured_up_to_the_cap() -> None:
    """A peer's Retry-After sets the least wait, capped at max_wait_s."""
    sleeps = Sleeps()
    work = Flaky(
        TransientActionError("429", retry_after_s=7), TransientActionError("429", retry_after_s=99)
    )
    await RetryPolicy(sleep=sleeps, max_wait_s=20).call(work)
    assert sleeps.waits[0] >= 7
    assert sleeps.waits[1] == 20


async def test_a_fixed_schedule_repeats_its_last_wait_without_an_attempt_limit() -> None:
    """``waits`` replaces backoff; with ``attempts=None`` the call is tried until it succeeds
    (the dead-letter store's policy)."""
    sleeps = Sleeps()
    work = Flaky(*[TransientActionError(f"try {i}") for i in range(7)])
    policy = RetryPolicy(attempts=None, total_s=math.inf, waits=(0.5, 1.0, 2.0), sleep=sleeps)
    assert await policy.call(work) == ("done", 8)
    assert sleeps.waits == [0.5, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0]


async def test_retry_on_chooses_which_errors_are_retried() -> None:
    """A policy for other errors than actions' (a store's), leaving the rest alone."""
    policy = RetryPolicy(retry_on=lambda error: isinstance(error, LookupError), sleep=Sleeps())
    assert await policy.call(Flaky(KeyError("blip"))) == ("done", 2)
    transient = Flaky(TransientActionError("503"))
    with pytest.raises(TransientActionError):
        await policy.call(transient)
    assert transient.calls == 1


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    """Computed from the attempt alone, however many attempts there were."""
    policy = RetryPolicy(initial_s=0.5, jitter_s=0.25, max_wait_s=30)
    for attempt, least in [(1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0)]:
        assert least <= policy.wait_s(attempt, None) <= least + 0.25
    assert policy.wait_s(7, None) == 30
    assert policy.wait_s(100_000, None) == 30
