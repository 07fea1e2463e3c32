"""Loopback HTTP peers: an aiohttp application served on a port the system picks."""

from __future__ import annotations

from aiohttp import web


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on 127.0.0.1; returns its runner (``cleanup()`` stops it) and its port.

    The port is bound by the server itself (port 0), so no other process can take it between
    choosing and binding it."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
    except BaseException:
        await runner.cleanup()
        raise
    port: int = runner.addresses[0][1]
    return runner, port
