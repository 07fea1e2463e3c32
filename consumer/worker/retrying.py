"""The one retry policy: every retried call in mlevents goes through ``RetryPolicy``.

Built on tenacity: exponential backoff with jitter (or a fixed schedule of waits), bounded
both by attempts and by total time, honouring a peer's ``Retry-After`` up to ``max_wait_s``
(a longer request is cut to it, so that one event's retries stay within ``total_s``), and
retrying only the errors ``retry_on`` accepts: by default those that say they are
``retriable``. Actions use the default policy; the handler's storage calls (a dead letter,
a ledger reservation) use policies of their own. ``sleep`` is injectable so tests do not
wait.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from consumer.errors import ActionError

T = TypeVar("T")
OnRetry = Callable[[int, BaseException, float], None]
"""Called before each wait: (attempt that failed, its error, seconds to wait)."""


def is_retriable(error: BaseException) -> bool:
    """Only our errors that say so are retried; anything else is a bug or permanent."""
    return isinstance(error, ActionError) and error.retriable


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how long to retry, and which errors."""

    attempts: int | None = 5
    """``None``: until the call succeeds (or ``total_s`` has passed)."""
    total_s: float = 120.0
    initial_s: float = 0.5
    max_wait_s: float = 30.0
    jitter_s: float = 0.5
    waits: tuple[float, ...] = ()
    """A fixed schedule instead of backoff: the n-th wait, the last one repeated."""
    retry_on: Callable[[BaseException], bool] = is_retriable
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def call(
        self, work: Callable[[], Awaitable[T]], *, on_retry: OnRetry | None = None
    ) -> tuple[T, int]:
        """Run ``work`` until it succeeds, fails permanently or the bounds are reached.

        Returns:
            The result and the number of attempts it took.

        Raises:
            The last error, with ``attempts`` set on it as an attribute.
        """
        try:  # the first attempt needs no retry machinery, and almost every call succeeds
            return await work(), 1
        except Exception as exc:
            if not self.retry_on(exc) or (self.attempts is not None and self.attempts <= 1):
                exc.attempts = 1  # type: ignore[attr-defined]
                raise
            first_wait = self.wait_s(1, exc)
            if on_retry is not None:
                on_retry(1, exc, first_wait)
        await self.sleep(first_wait)
        # tenacity counts from 1 again; its attempt n is our attempt n + 1.
        stop: tenacity.stop.stop_base = tenacity.stop_after_delay(
            max(0.0, self.total_s - first_wait)
        )
        if self.attempts is not None:
            stop = tenacity.stop_after_attempt(self.attempts - 1) | stop
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(self.retry_on),
            stop=stop,
            wait=lambda state: self.wait_s(state.attempt_number + 1, _error(state)),
            sleep=self.sleep,
            before_sleep=_report(on_retry),
            reraise=True,
        )
        attempt = 1
        try:
            async for attempt_state in retrying:
                attempt = attempt_state.retry_state.attempt_number + 1
                with attempt_state:
                    result = await work()
        except BaseException as exc:
            exc.attempts = attempt  # type: ignore[attr-defined]
            raise
        return result, attempt

    def wait_s(self, attempt: int, error: BaseException | None) -> float:
        """Seconds to wait after failed attempt ``attempt``: the schedule's wait, or backoff
        with jitter (``initial_s`` doubled each attempt, at most ``max_wait_s``); at least
        what the peer asked for (``Retry-After``), at most ``max_wait_s``."""
        if self.waits:
            backoff = self.waits[min(attempt, len(self.waits)) - 1]
        else:
            doubled = self.initial_s * 2.0 ** min(attempt - 1, _MAX_DOUBLINGS)
            backoff = min(doubled + random.uniform(0, self.jitter_s), self.max_wait_s)
        asked = getattr(error, "retry_after_s", None) or 0.0
        return max(backoff, min(asked, self.max_wait_s))


_MAX_DOUBLINGS = 64
"""Beyond this the backoff is ``max_wait_s`` anyway (and a float power would overflow)."""


def _error(state: tenacity.RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome else None


def _report(on_retry: OnRetry | None) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            error = state.outcome.exception()
            wait = state.next_action.sleep if state.next_action else 0.0
            if error is not None:
                on_retry(state.attempt_number + 1, error, wait)

    return before_sleep


def attempts_of(error: BaseException) -> int:
    """How many attempts ``RetryPolicy.call`` made before raising ``error`` (1 if unknown)."""
    return int(getattr(error, "attempts", 1) or 1)
