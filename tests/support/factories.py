"""Builders for what tests feed the code: events and Event Hubs bodies, rule tables, and the
HTTP session an action executor is given."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import msgspec

from consumer.actions.http import client_session
from consumer.worker.metrics import Metrics
from rules import Event, RuleSource, RuleTable, decode_body, load_table

RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"


_encoder = msgspec.json.Encoder(decimal_format="number")


def event_json(**overrides: Any) -> dict[str, Any]:
    """An Event Grid schema RunStatusChanged event as a dict; keys overridden by keyword."""
    event: dict[str, Any] = {
        "topic": "/subscriptions/s/resourceGroups/rg/providers/"
        "Microsoft.MachineLearningServices/workspaces/ws",
        "subject": "experiments/e1/runs/r1",
        "eventType": RUN_STATUS_CHANGED,
        "eventTime": "2024-05-14T09:21:37.4818263Z",
        "id": "id-1",
        "data": {"experimentName": "exp", "runId": "r1", "runStatus": "Failed", "runTags": {}},
        "dataVersion": "",
        "metadataVersion": "1",
    }
    event.update(overrides)
    return event


def make_event(**overrides: Any) -> Event:
    """An Event decoded from ``event_json(**overrides)`` through the real decoder."""
    body = _encoder.encode([event_json(**overrides)])
    return decode_body(body)[0]


def make_table(*rules: dict[str, Any]) -> RuleTable:
    """A rule table from rule dicts (loaded through the JSON loader)."""
    text = json.dumps({"rules": list(rules)})
    return load_table([RuleSource("rules.json", text)]).table


def event_body(event_id: str, *, run_status: str = "Failed", **data: Any) -> str:
    """An Event Hubs body as Event Grid writes it: a RunStatusChanged event in an array."""
    event = {
        "topic": "/subscriptions/s/resourceGroups/rg/providers/"
        "Microsoft.MachineLearningServices/workspaces/ws",
        "subject": f"experiments/e/runs/{event_id}",
        "eventType": RUN_STATUS_CHANGED,
        "eventTime": "2026-01-01T00:00:00Z",
        "id": event_id,
        "data": {"runId": event_id, "runStatus": run_status, **data},
        "dataVersion": "",
        "metadataVersion": "1",
    }
    return json.dumps([event])


def action_session(client: str = "webhook") -> aiohttp.ClientSession:
    """An HTTP session for executors made as the worker makes them (``consumer.actions.http``)."""
    return client_session(client, Metrics(clock=lambda: 0.0), per_host=100)
