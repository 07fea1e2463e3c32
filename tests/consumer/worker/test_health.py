"""HealthServer: real HTTP on loopback against the probes and the metrics route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from consumer.errors import StartError
from consumer.worker.health import HealthServer
from consumer.worker.metrics import Metrics


@dataclass
class Probes:
    """Liveness and readiness the test flips by hand."""

    alive: bool = True
    ready: bool = False
    reason: str = "no partitions owned yet"

    def liveness(self) -> bool:
        return self.alive

    def readiness(self) -> tuple[bool, str]:
        return self.ready, self.reason


@pytest.fixture
def probes() -> Probes:
    return Probes()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(clock=lambda: 100.0)


@pytest.fixture
async def server(probes: Probes, metrics: Metrics) -> AsyncIterator[HealthServer]:
    async with HealthServer(
        "127.0.0.1", 0, metrics=metrics, liveness=probes.liveness, readiness=probes.readiness
    ) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get(http: aiohttp.ClientSession, server: HealthServer, path: str) -> tuple[int, str]:
    """Status and body text of one GET."""
    async with http.get(f"http://127.0.0.1:{server.port}{path}") as response:
        return response.status, await response.text()


async def test_port_zero_picks_a_free_port(server: HealthServer) -> None:
    """Asking for port 0 binds a real port, which .port tells after start."""
    assert server.port > 0


async def test_a_port_in_use_is_a_start_error_naming_it(
    server: HealthServer, probes: Probes, metrics: Metrics
) -> None:
    """A second server on a port already listened on raises ``StartError`` with the address,
    the OS's reason and the setting to change, and holds nothing open."""
    taken = HealthServer(
        "127.0.0.1", server.port, metrics=metrics, liveness=probes.liveness,
        readiness=probes.readiness,
    )  # fmt: skip
    with pytest.raises(StartError) as raised:
        await taken.start()
    assert str(raised.value) == (
        f"cannot serve /healthz and /metrics on 127.0.0.1:{server.port}: Address already in "
        "use; choose another port ([http] port in the config, or mlevents dev --http-port)"
    )
    await taken.close()  # nothing was started


async def test_healthz_follows_liveness(
    server: HealthServer, http: aiohttp.ClientSession, probes: Probes
) -> None:
    """/healthz is 200 "ok" while liveness says alive and 503 once it says not."""
    assert await get(http, server, "/healthz") == (200, "ok")
    probes.alive = False
    status, _ = await get(http, server, "/healthz")
    assert status == 503
    probes.alive = True
    assert await get(http, server, "/healthz") == (200, "ok")


async def test_readyz_is_503_with_the_reason_until_ready(
    server: HealthServer, http: aiohttp.ClientSession, probes: Probes
) -> None:
    """/readyz answers 503 with readiness's reason text, then 200 once readiness says ready."""
    assert await get(http, server, "/readyz") == (503, "no partitions owned yet")
    probes.ready, probes.reason = True, ""
    assert await get(http, server, "/readyz") == (200, "ok")
    probes.reason = "owning 4 partitions"
    assert await get(http, server, "/readyz") == (200, "owning 4 partitions")


async def test_metrics_serves_the_exposition_text_with_its_content_type(
    server: HealthServer, http: aiohttp.ClientSession, metrics: Metrics
) -> None:
    """/metrics serves Metrics.render() as Prometheus text 0.0.4 in UTF-8."""
    metrics.received("2")
    async with http.get(f"http://127.0.0.1:{server.port}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = await response.text()
    values = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert values[("mlevents_events_received_total", (("partition", "2"),))] == 1


async def test_unknown_paths_are_404(server: HealthServer, http: aiohttp.ClientSession) -> None:
    """Any other path is 404."""
    status, _ = await get(http, server, "/")
    assert status == 404
    status, _ = await get(http, server, "/healthz/extra")
    assert status == 404


async def test_close_is_idempotent_and_stops_serving(
    probes: Probes, metrics: Metrics, http: aiohttp.ClientSession
) -> None:
    """close() stops the listener, and closing again (or before start) does nothing."""
    server = HealthServer(
        "127.0.0.1", 0, metrics=metrics, liveness=probes.liveness, readiness=probes.readiness
    )
    await server.close()
    await server.start()
    port = server.port
    await server.close()
    await server.close()
    with pytest.raises(aiohttp.ClientConnectionError):
        await http.get(f"http://127.0.0.1:{port}/healthz")


def test_port_before_start_is_an_error(probes: Probes, metrics: Metrics) -> None:
    """Reading .port before the server is started raises rather than returning a guess."""
    server = HealthServer(
        "127.0.0.1", 0, metrics=metrics, liveness=probes.liveness, readiness=probes.readiness
    )
    with pytest.raises(RuntimeError):
        _ = server.port
