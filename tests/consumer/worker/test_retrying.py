"""The retry policy: only retriable errors, bounded, honouring Retry-After."""

from __future__ import annotations

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
