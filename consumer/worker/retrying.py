"""The one retry policy: every retried call in mlevents goes through ``RetryPolicy``.

Built on tenacity: exponential backoff with jitter, bounded both by attempts and by total
time, honouring a peer's ``Retry-After`` up to ``max_wait_s`` (a longer request is cut to
it, so that one event's retries stay within ``total_s``), and retrying only errors that say
they are ``retriable``. ``sleep`` is injectable so tests do not wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar, cast

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
        try:  # the first attempt needs no retry machinery, and almost every call succeeds
            return await work(), 1
        except Exception as exc:
            if not is_retriable(exc) or self.attempts <= 1:
                exc.attempts = 1  # type: ignore[attr-defined]
                raise
            first_wait = self.wait_s(1, exc)
            if on_retry is not None:
                on_retry(1, exc, first_wait)
        await self.sleep(first_wait)
        # tenacity counts from 1 again; its attempt n is our attempt n + 1.
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(is_retriable),
            stop=tenacity.stop_after_attempt(self.attempts - 1)
            | tenacity.stop_after_delay(max(0.0, self.total_s - first_wait)),
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
        """Seconds to wait after failed attempt ``attempt``: backoff with jitter, at least
        what the peer asked for (``Retry-After``), at most ``max_wait_s``."""
        backoff = self._backoff(cast("tenacity.RetryCallState", _Attempt(attempt)))
        asked = getattr(error, "retry_after_s", None) or 0.0
        return max(backoff, min(asked, self.max_wait_s))

    @property
    def _backoff(self) -> tenacity.wait.wait_base:
        return tenacity.wait_exponential_jitter(
            multiplier=self.initial_s, max=self.max_wait_s, jitter=self.jitter_s
        )


@dataclass(frozen=True, slots=True)
class _Attempt:
    """The one field of tenacity's retry state that its wait strategies read."""

    attempt_number: int


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
