"""The HTTP clients of the actions: pools sized on purpose, and timeouts that time the server.

aiohttp's ``ClientTimeout(total=...)`` starts counting before a request waits for a pooled
connection, so with more requests in flight than connections, a request could time out in
the queue (or, worse, once sent, with the queue's wait counted against the server), be
retried, and reach the receiver twice. Here the two are timed apart:

* the wait for a connection (the pool queue) and opening one are bounded by the session's
  ``connect`` timeout (``pool_wait_s + connect_s``); when it passes, nothing was sent, so a
  retry is always safe;
* ``answer_within(timeout_s)`` is the server's deadline: it starts when the request has a
  connection in hand, and covers sending, the answer and reading it.

Each client's pool has no overall cap (the partitions' in-flight windows bound the requests)
and a deliberate cap per host, so one slow endpoint cannot take every connection. Waits in the
queue are counted (``mlevents_http_pool_waits_total``, ``..._wait_seconds_total``,
``mlevents_http_pool_queued``) so a pool that is too small shows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Protocol

import aiohttp

CONNECT_S = 10.0
"""Opening a TCP (and TLS) connection."""
POOL_WAIT_S = 60.0
"""The longest a request waits for a pooled connection before it fails, unsent (a retry is
safe then)."""


class PoolMetrics(Protocol):
    """What the pools report (``consumer.worker.metrics.Metrics`` provides it)."""

    def pool_queued(self, client: str, change: int) -> None: ...
    def pool_waited(self, client: str, seconds: float) -> None: ...


@dataclass(slots=True)
class Deadline:
    """The server's deadline of one request; armed once the request has a connection."""

    timeout_s: float
    _timer: asyncio.Timeout | None = field(default=None, repr=False)

    def arm(self) -> None:
        """Start the server's time now (a connection was taken from the pool or opened)."""
        if self._timer is not None:
            self._timer.reschedule(asyncio.get_running_loop().time() + self.timeout_s)


@contextlib.asynccontextmanager
async def answer_within(
    timeout_s: float, *, queue_s: float = POOL_WAIT_S + CONNECT_S
) -> AsyncIterator[Deadline]:
    """A block whose request must be answered within ``timeout_s`` of getting a connection;
    pass the yielded deadline as the request's ``trace_request_ctx``.

    Until the request has a connection, the block may take ``queue_s + timeout_s`` (so a
    session that does not arm the deadline still has one).

    Raises:
        TimeoutError: the server took longer (the pool's own wait raises aiohttp's
            ``ConnectionTimeoutError``, a ``TimeoutError`` too, before anything was sent).
    """
    deadline = Deadline(timeout_s)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout_at(loop.time() + queue_s + timeout_s) as timer:
        deadline._timer = timer
        yield deadline


def client_session(
    name: str,
    metrics: PoolMetrics,
    *,
    per_host: int,
    pool_wait_s: float = POOL_WAIT_S,
    connect_s: float = CONNECT_S,
) -> aiohttp.ClientSession:
    """A session whose pool holds at most ``per_host`` connections to one host, where a
    request waits at most ``pool_wait_s`` for one; ``name`` labels its metrics."""
    trace = aiohttp.TraceConfig(trace_config_ctx_factory=SimpleNamespace)
    loop_time = asyncio.get_running_loop().time

    async def queued(_: Any, ctx: SimpleNamespace, params: Any) -> None:
        ctx.queued_at = loop_time()
        metrics.pool_queued(name, 1)

    async def dequeued(_: Any, ctx: SimpleNamespace, params: Any) -> None:
        # aiohttp skips the end signal when a timeout cuts the wait: the request's exception
        # closes it then.
        queued_at = getattr(ctx, "queued_at", None)
        if queued_at is not None:
            ctx.queued_at = None
            metrics.pool_queued(name, -1)
            metrics.pool_waited(name, loop_time() - queued_at)

    async def connected(_: Any, ctx: SimpleNamespace, params: Any) -> None:
        deadline = ctx.trace_request_ctx
        if isinstance(deadline, Deadline):
            deadline.arm()

    trace.on_connection_queued_start.append(queued)
    trace.on_connection_queued_end.append(dequeued)
    trace.on_request_exception.append(dequeued)
    trace.on_connection_create_end.append(connected)
    trace.on_connection_reuseconn.append(connected)
    trace.freeze()
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, limit_per_host=per_host),
        timeout=aiohttp.ClientTimeout(
            total=None, connect=pool_wait_s + connect_s, sock_connect=connect_s
        ),
        trace_configs=[trace],
    )
