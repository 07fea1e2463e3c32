"""The worker's small HTTP server: ``/healthz``, ``/readyz`` and ``/metrics``.

``HealthServer`` owns the listening socket and the three routes; what "alive" and "ready"
mean is decided elsewhere and passed in as callables, and the metrics text comes from
``Metrics.render``. Probes must answer even when the worker is busy, so handlers only call
those cheap callables and never wait on the worker.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Self

from aiohttp import web

from consumer.errors import StartError, os_reason
from consumer.worker.metrics import CONTENT_TYPE, Metrics

Liveness = Callable[[], bool]
"""True while the worker's loop is alive (a stuck loop makes the orchestrator restart it)."""
Readiness = Callable[[], tuple[bool, str]]
"""Whether the worker should count as ready, and a short reason shown to whoever asks."""

SHUTDOWN_TIMEOUT_S = 2.0
"""How long close() lets a request in progress finish; every handler here is instant."""


class HealthServer:
    """Serves the probes and the metrics on ``host:port``; an async context manager."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        metrics: Metrics,
        liveness: Liveness,
        readiness: Readiness,
    ) -> None:
        self._host = host
        self._requested_port = port
        self._metrics = metrics
        self._liveness = liveness
        self._readiness = readiness
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The port listened on; with port 0 requested, the one picked, once started."""
        if self._port is None:
            raise RuntimeError("the health server is not started")
        return self._port

    async def start(self) -> None:
        """Bind and start serving.

        Raises:
            StartError: the address cannot be bound (the port is taken, say).
        """
        if self._runner is not None:
            raise RuntimeError("the health server is already started")
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_text)
        # Probes arrive every few seconds; an access-log line for each would drown the logs.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._requested_port).start()
        except OSError as exc:
            await runner.cleanup()
            where = f"{self._host}:{self._requested_port}"
            raise StartError(
                f"cannot serve /healthz and /metrics on {where}: {os_reason(exc)}; "
                "choose another port ([http] port in the config, or mlevents dev --http-port)"
            ) from exc
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def close(self) -> None:
        """Stop serving; closing twice, or before starting, does nothing."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _healthz(self, request: web.Request) -> web.Response:
        if self._liveness():
            return web.Response(text="ok")
        return web.Response(status=503, text="not alive")

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, reason = self._readiness()
        if ready:
            return web.Response(text=reason or "ok")
        return web.Response(status=503, text=reason or "not ready")

    async def _metrics_text(self, request: web.Request) -> web.Response:
        # Set as a header: aiohttp's content_type argument refuses a charset parameter.
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE})
