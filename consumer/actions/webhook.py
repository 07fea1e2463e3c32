"""The ``webhook`` action: POST the event to an HTTP endpoint.

The body is the event as it arrived (Event Grid schema), or its CloudEvents 1.0 form. The
response decides what happens next: 2xx is done; 408, 429 and 5xx, timeouts and connection
errors may pass if retried (``Retry-After`` is passed on); any other status is permanent.
Error messages carry the status and the host, never the URL's query (it may hold a key).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import aiohttp
import msgspec

from rules import Decision, Event, WebhookAction

from ..errors import PermanentActionError, TransientActionError

_encoder = msgspec.json.Encoder(decimal_format="number")
RETRIABLE_STATUS = frozenset({408, 429})


class WebhookExecutor:
    """Posts events with a shared ``aiohttp.ClientSession``."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def __call__(self, decision: Decision) -> str:
        action = decision.action
        assert isinstance(action, WebhookAction)
        body = _encoder.encode(_payload(action, decision.event))
        content_type = (
            "application/cloudevents+json; charset=utf-8"
            if action.format == "cloudevents"
            else "application/json; charset=utf-8"
        )
        headers = {"Content-Type": content_type, **action.headers}
        host = urlsplit(action.url).netloc
        try:
            async with self._session.post(
                action.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=action.timeout_s),
            ) as response:
                status = response.status
                retry_after = _retry_after(response.headers.get("Retry-After"))
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransientActionError(f"webhook to {host}: {type(exc).__name__}") from exc
        if 200 <= status < 300:
            return f"HTTP {status}"
        message = f"webhook to {host} answered HTTP {status}"
        if status in RETRIABLE_STATUS or status >= 500:
            raise TransientActionError(message, retry_after_s=retry_after)
        raise PermanentActionError(message)


def _payload(action: WebhookAction, event: Event) -> Any:
    if action.format == "cloudevents" and event.schema != "cloudevents":
        return cloud_event(event)
    if action.format == "template" and action.body is not None:
        return msgspec.json.decode(action.body)
    return [event.raw]


def cloud_event(event: Event) -> dict[str, Any]:
    """The CloudEvents 1.0 form of an Event Grid event (the mapping Event Grid itself uses)."""
    result: dict[str, Any] = {
        "specversion": "1.0",
        "id": event.id,
        "source": event.source or "",
        "type": event.type,
        "subject": event.subject,
    }
    if event.time is not None:
        result["time"] = event.time
    result["data"] = event.data
    return result


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
