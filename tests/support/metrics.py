"""The worker's metrics read back: from a ``Metrics`` object's rendered text, or from a running
worker's ``GET /metrics``."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from consumer.worker.lifecycle import Worker
from consumer.worker.metrics import Metrics


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the rendered text, keyed by name and label set."""
    text = metrics.render().decode("utf-8")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    """One sample's value, or None when the series is absent."""
    return samples(metrics).get((name, frozenset(labels.items())))


async def scrape(worker: Worker) -> list[tuple[str, dict[str, str], float]]:
    """Every sample ``GET /metrics`` serves now: (name, labels, value)."""
    assert worker.health is not None
    url = f"http://127.0.0.1:{worker.health.port}/metrics"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        text = await response.text()
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


async def metric(worker: Worker, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(
        value
        for sample, have, value in await scrape(worker)
        if sample == name and labels.items() <= have.items()
    )
