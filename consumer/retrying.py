"""The one retry policy: every retried call in mlevents goes through ``RetryPolicy``.

Built on tenacity: exponential backoff with jitter, bounded both by attempts and by total
time, honouring a peer's ``Retry-After`` (never waiting less than it asks), and retrying
only errors that say they are ``retriable``. ``sleep`` is injectable so tests do not wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from .errors import ActionError

T = TypeVar("T")
OnRetry = Callable[[int, BaseException, float], None]
"""Called before each wait: (attempt that failed, its error, seconds to wait)."""


def is_retriable(error: BaseException) -> bool:
    """Only our errors that say so are retried; anything else is a bug or permanent."""
    return isinstance(error, ActionError) and error.retriable


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How often and how long to retry."""

    attempts: int = 5
    total_s: float = 120.0
    initial_s: float = 0.5
    max_wait_s: float = 30.0
    jitter_s: float = 0.5
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
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(is_retriable),
            stop=tenacity.stop_after_attempt(self.attempts)
            | tenacity.stop_after_delay(self.total_s),
            wait=self._wait,
            sleep=self.sleep,
            before_sleep=_report(on_retry),
            reraise=True,
        )
        attempt = 0
        try:
            async for attempt_state in retrying:
                attempt = attempt_state.retry_state.attempt_number
                with attempt_state:
                    result = await work()
        except BaseException as exc:
            exc.attempts = attempt  # type: ignore[attr-defined]
            raise
        return result, attempt

    def _wait(self, state: tenacity.RetryCallState) -> float:
        backoff = tenacity.wait_exponential_jitter(
            multiplier=self.initial_s, max=self.max_wait_s, jitter=self.jitter_s
        )(state)
        error = state.outcome.exception() if state.outcome else None
        asked = getattr(error, "retry_after_s", None) or 0.0
        return max(backoff, min(asked, self.max_wait_s))


def _report(on_retry: OnRetry | None) -> Callable[[tenacity.RetryCallState], None]:
    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is not None and state.outcome is not None:
            error = state.outcome.exception()
            wait = state.next_action.sleep if state.next_action else 0.0
            if error is not None:
                on_retry(state.attempt_number, error, wait)

    return before_sleep


def attempts_of(error: BaseException) -> int:
    """How many attempts ``RetryPolicy.call`` made before raising ``error`` (1 if unknown)."""
    return int(getattr(error, "attempts", 1) or 1)
