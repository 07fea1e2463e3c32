"""The ``webhook`` action: POST the event to an HTTP endpoint.

The body is the event as it arrived (Event Grid schema, with ``aeg-event-type: Notification``
as Azure Functions' Event Grid trigger requires), its CloudEvents 1.0 form, a rendered body
template, or a Teams or Slack message (``preset``). Every request carries a ``webhook-id``
derived from the decision, the same across retries and redeliveries, so a receiver can drop
duplicates; with ``secret_env`` it is signed as Standard Webhooks specifies.

The response decides what happens next: 2xx is done; 408, 429 and 5xx, timeouts and
connection errors may pass if retried (``Retry-After`` is passed on); 410 Gone and any other
status are permanent, and redirects are not followed. Error messages carry the status and
the host, never the URL's query (it may hold a key) nor the secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import msgspec

from rules import Decision, Event, WebhookAction
from rules.templates import TemplateError, context, render

from ..errors import PermanentActionError, TransientActionError

_encoder = msgspec.json.Encoder(decimal_format="number")
RETRIABLE_STATUS = frozenset({408, 429})
SHORT_TYPE_PREFIX = "Microsoft.MachineLearningServices."
Secrets = Callable[[str], "str | None"]


class WebhookExecutor:
    """Posts events with a shared ``aiohttp.ClientSession``.

    ``secrets(name)`` gives the value of the environment variable a ``secret_env`` names
    (config loading reads the environment, nothing else does); ``clock`` stamps signatures.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        secrets: Secrets = lambda name: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._secrets = secrets
        self._clock = clock

    async def __call__(self, decision: Decision) -> str:
        action = decision.action
        assert isinstance(action, WebhookAction)
        names = context(decision.event)
        url = _render(action.url, names, "url")
        body, content_type = _body(action, decision.event, names)
        message_id = webhook_id(decision.key)
        headers = {"Content-Type": content_type, "webhook-id": message_id}
        if action.format == "eventgrid" and action.preset is None:
            headers["aeg-event-type"] = "Notification"
        for name, template in action.headers.items():
            headers[name] = _header(name, _render(template, names, f"headers.{name}"))
        if action.secret_env:
            secret = self._secrets(action.secret_env)
            if secret is None:
                raise PermanentActionError(
                    f"webhook: the signing secret's environment variable "
                    f"{action.secret_env} is not set"
                )
            timestamp = str(int(self._clock()))
            headers["webhook-timestamp"] = timestamp
            headers["webhook-signature"] = sign(secret, message_id, timestamp, body)
        host = urlsplit(url).netloc
        try:
            async with self._session.post(
                url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=action.timeout_s),
                allow_redirects=False,
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
        if status == 410:
            raise PermanentActionError(f"{message}: the endpoint is gone")
        if 300 <= status < 400:
            raise PermanentActionError(f"{message}: redirects are not followed")
        raise PermanentActionError(message)


def webhook_id(key: str) -> str:
    """The Standard Webhooks message id of a decision: stable across retries and replays."""
    return "msg_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def sign(secret: str, message_id: str, timestamp: str, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``{id}.{timestamp}.{body}`` with the ``whsec_`` secret.

    Raises:
        PermanentActionError: the secret is not base64 (the message does not show it).
    """
    encoded = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(encoded, validate=True)
    except ValueError:
        raise PermanentActionError("webhook: the signing secret is not base64") from None
    signed = message_id.encode() + b"." + timestamp.encode() + b"." + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def _render(template: str, names: Mapping[str, Any], field: str) -> str:
    try:
        return render(template, names)
    except TemplateError as exc:
        raise PermanentActionError(f"webhook: '{field}': {exc}") from exc


def _header(name: str, value: str) -> str:
    if any(ord(char) < 32 and char != "\t" for char in name + value):
        raise PermanentActionError(f"webhook: header {name!r} holds a line break after rendering")
    return value


def _body(action: WebhookAction, event: Event, names: Mapping[str, Any]) -> tuple[bytes, str]:
    json_type = "application/json; charset=utf-8"
    if action.preset == "teams":
        return _encoder.encode(teams_card(event, names)), json_type
    if action.preset == "slack":
        return _encoder.encode(slack_message(event, names)), json_type
    if action.format == "template" and action.body is not None:
        text = _render(action.body, names, "body")
        try:
            msgspec.json.decode(text)
        except msgspec.DecodeError as exc:
            raise PermanentActionError(
                f"webhook: 'body' is not JSON once rendered: {exc}"
            ) from None
        return text.encode("utf-8"), json_type
    if action.format == "cloudevents":
        payload = event.raw if event.schema == "cloudevents" else cloud_event(event)
        return _encoder.encode(payload), "application/cloudevents+json; charset=utf-8"
    return _encoder.encode([event.raw]), json_type


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


def _facts(event: Event, names: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What a chat message says about the event, as (name, value) pairs."""
    facts = [("Event", event.type.removeprefix(SHORT_TYPE_PREFIX))]
    if event.subject:
        facts.append(("Subject", event.subject))
    workspace = names.get("workspace")
    if workspace:
        facts.append(("Workspace", str(workspace["name"])))
    run, model, drift = names.get("run"), names.get("model"), names.get("drift")
    if run and run.get("status"):
        facts.append(("Run status", str(run["status"])))
    if model:
        facts.append(("Model", str(model["id"])))
    if drift and drift.get("coefficient") is not None:
        facts.append(("Drift coefficient", str(drift["coefficient"])))
    if event.time:
        facts.append(("Time", event.time))
    return facts


def _title(event: Event, names: Mapping[str, Any]) -> str:
    title = event.type.removeprefix(SHORT_TYPE_PREFIX)
    run = names.get("run")
    if run and run.get("status"):
        title += f": {run['status']}"
    return title


def _studio_link(names: Mapping[str, Any]) -> str | None:
    studio = names.get("studio") or {}
    for name in ("run_url", "model_url", "endpoint_url", "workspace_url"):
        if studio.get(name):
            return str(studio[name])
    return None


def teams_card(event: Event, names: Mapping[str, Any]) -> dict[str, Any]:
    """An Adaptive Card in the message envelope that Teams Workflows (and connectors) take."""
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.2",
        "body": [
            {"type": "TextBlock", "text": _title(event, names), "weight": "Bolder",
             "size": "Medium", "wrap": True},
            {"type": "FactSet",
             "facts": [{"title": name, "value": value} for name, value in _facts(event, names)]},
        ],
    }  # fmt: skip
    link = _studio_link(names)
    if link is not None:
        card["actions"] = [
            {"type": "Action.OpenUrl", "title": "Open in Azure ML studio", "url": link}
        ]
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": card,
            }
        ],
    }


def slack_message(event: Event, names: Mapping[str, Any]) -> dict[str, Any]:
    """A Block Kit message for a Slack incoming webhook; event values are escaped."""
    title = _slack_escape(_title(event, names))
    lines = [f"*{title}*"]
    lines += [f"*{name}:* {_slack_escape(value)}" for name, value in _facts(event, names)[1:]]
    link = _studio_link(names)
    if link is not None:
        lines.append(f"<{_slack_escape(link)}|Open in Azure ML studio>")
    fallback = f"{title}: {_slack_escape(event.subject or event.id)}"
    return {
        "text": fallback,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}],
    }


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
