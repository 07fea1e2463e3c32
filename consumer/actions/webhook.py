"""The ``webhook`` action: POST the event to an HTTP endpoint.

The body is the event as it arrived (Event Grid schema, with ``aeg-event-type: Notification``
as Azure Functions' Event Grid trigger requires), its CloudEvents 1.0 form (structured mode),
a rendered body template (it must be JSON), or a Teams or Slack message (``preset``), whose
event values are escaped so they stay data. The URL and header values are templates too.
Event values cannot steer a request: the URL's scheme, host and port are the rule's own
(values fill in percent-encoded path segments, query keys and values), a template body's
values are escaped as JSON, and a header value with a line break is refused. With
``[webhook] allowed_hosts``, only those hosts are posted to.

Secrets come from the environment, named by the rule (``consumer.actions.webhookenv``): the
whole URL (``url_env``, for a Teams or Slack URL, which is its own key), header values
(``headers_env``) and the signing secret (``secret_env``). With ``auth``, an Azure AD token
from the worker's credential goes in ``Authorization``, over https only.

Every request carries a ``webhook-id`` derived from the decision key, the same across retries
and redeliveries, because delivery is at least once and only the receiver can drop the
duplicates; with ``secret_env`` it is signed as Standard Webhooks specifies, so the receiver
can tell the worker from anyone else who learned the URL.

The response decides what happens next: 2xx is done; 408, 429 and 5xx, timeouts and
connection errors may pass if retried (``Retry-After`` is passed on); 410 Gone and any other
status are permanent, and redirects are not followed (a redirect could lead a signed body
anywhere). Error messages carry the status and the host, never the URL's query (it may hold a
key), a header's value, a token nor the secret.

``webhook_request`` builds the request without sending it, for the executor and for previews
(``consumer.actions.preview``); aiohttp and the Azure AD credential are imported only to send.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import hmac
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import SplitResult, urlsplit

import msgspec

from consumer.actions import REDACTED
from consumer.actions.hosts import host_allowed
from consumer.actions.webhookenv import (
    CONTROL_CHARACTERS,
    Secrets,
    env_header,
    env_url,
    signing_key,
)
from consumer.errors import PermanentActionError, TransientActionError
from rules import Decision, Event, WebhookAction
from rules.actions import HEADER_NAME, RESERVED_HEADERS, may_carry_token
from rules.templates import Escape, TemplateError, context, render

_encoder = msgspec.json.Encoder(decimal_format="number")
RETRIABLE_STATUS = frozenset({408, 429})
SHORT_TYPE_PREFIX = "Microsoft.MachineLearningServices."
DRAIN_LIMIT = 64 * 1024
"""Answers up to this size are read, so the connection can be kept for the next request."""
MAX_VALUE_CHARS = 300
"""Event values longer than this are cut in chat messages (Slack refuses a section over 3,000
characters; Teams a card over 28 KB)."""
_T = TypeVar("_T")
_QUOTED_TEMPLATE = re.compile(r"""^template (?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")

if TYPE_CHECKING:  # sending needs aiohttp and a credential; building a request does not
    import aiohttp
    from azure.core.credentials_async import AsyncTokenCredential


class WebhookExecutor:
    """Posts events with a shared ``aiohttp.ClientSession`` (made by
    ``consumer.actions.http.client_session``, which times the pool's queue apart from the receiver).

    ``secrets(name)`` gives the value of the environment variable a ``*_env`` field names
    (config loading reads the environment, nothing else does); ``clock`` stamps signatures;
    ``allowed_hosts`` (``[webhook] allowed_hosts``), when not empty, are the only hosts posted
    to. Rules naming another host are refused when they load; this is checked again here.
    ``credential`` (the worker's, cached: ``consumer.credentials.CachedTokens``) gives the
    tokens of webhooks with ``auth``.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        secrets: Secrets = lambda name: None,
        clock: Callable[[], float] = time.time,
        allowed_hosts: Sequence[str] = (),
        credential: AsyncTokenCredential | None = None,
    ) -> None:
        self._session = session
        self._secrets = secrets
        self._clock = clock
        self._allowed_hosts = tuple(allowed_hosts)
        self._credential = credential

    async def __call__(self, decision: Decision) -> str:
        action = decision.action
        assert isinstance(action, WebhookAction)
        request = webhook_request(
            decision, now=self._clock(), secrets=self._secrets, allowed_hosts=self._allowed_hosts
        )
        if action.auth is not None:
            request.headers["Authorization"] = await self._bearer(action.auth.scope, request.url)
        host = request.host
        status, retry_after = await self._post(
            request.url, host, request.body, request.headers, action.timeout_s
        )
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

    async def _bearer(self, scope: str, url: str) -> str:
        """``Authorization``'s value for ``auth``: a token for ``scope``, never sent in clear
        but to this machine.

        Raises:
            PermanentActionError: no credential, plain http elsewhere, or a credential that
                cannot get a token until someone acts.
            TransientActionError: any other failure to get a token.
        """
        from consumer.actions.azure import bearer_token
        from consumer.credentials import FETCH_TIMEOUT_S

        if self._credential is None:
            raise PermanentActionError("webhook: 'auth': this worker has no Azure AD credential")
        if not may_carry_token(url):
            raise PermanentActionError("webhook: 'auth': a token goes over https only")
        return "Bearer " + await bearer_token(self._credential, scope, FETCH_TIMEOUT_S)

    async def _post(
        self, url: str, host: str, body: bytes, headers: dict[str, str], timeout_s: float
    ) -> tuple[int, float | None]:
        """Send the request; its status and ``Retry-After`` (seconds), or a transient error."""
        import aiohttp  # here, not at the top: a preview builds requests without it

        from consumer.actions.http import answer_within

        try:
            # The timeout is the receiver's: it starts once the request has a connection.
            async with (
                answer_within(timeout_s) as deadline,
                self._session.post(
                    url,
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                    trace_request_ctx=deadline,
                ) as response,
            ):
                status = response.status
                retry_after = _retry_after(response.headers.get("Retry-After"), self._clock)
                length = response.content_length
                if length is not None and length <= DRAIN_LIMIT:
                    # Read the (short) answer so the connection can be reused.
                    with contextlib.suppress(aiohttp.ClientError):
                        await response.read()
        except aiohttp.InvalidURL:
            # Its message holds the URL; the rule, not the endpoint, is at fault.
            raise PermanentActionError(f"webhook: 'url' to {host} is not valid") from None
        except aiohttp.ConnectionTimeoutError as exc:
            # No connection in time (the pool's queue or connecting): nothing was sent.
            raise TransientActionError(f"webhook to {host}: no connection in time") from exc
        except TimeoutError as exc:
            raise TransientActionError(
                f"webhook to {host}: no answer within {timeout_s:g}s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise TransientActionError(f"webhook to {host}: {type(exc).__name__}") from exc
        return status, retry_after


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """A webhook POST as it is sent: the rendered URL, its host (for messages), the headers
    and the body."""

    url: str
    host: str
    headers: dict[str, str]
    body: bytes


def webhook_request(
    decision: Decision,
    *,
    now: float,
    secrets: Secrets | None,
    allowed_hosts: Sequence[str] = (),
) -> WebhookRequest:
    """The request the webhook action of ``decision`` sends, stamped ``now`` (seconds since
    the epoch), without ``auth``'s bearer token (the executor adds it, a preview shows it
    redacted). ``secrets`` gives the values of the environment variables the action names
    (``url_env``, ``headers_env``, ``secret_env``); ``None`` stands for values not at hand (a
    preview): the URL from ``url_env``, header values from ``headers_env`` and the signature
    then read ``REDACTED``.

    Raises:
        PermanentActionError: a template fails, a variable is unset or unusable, the URL is
            not an absolute http(s) URL once rendered or its host is not in ``allowed_hosts``
            (when given), a header is not valid, or a template body is not JSON.
    """
    action = decision.action
    assert isinstance(action, WebhookAction)
    names = context(decision.event)
    url, host = _target(action, names, secrets, allowed_hosts)
    body, content_type = _body(action, decision.event, names)
    message_id = webhook_id(decision.key)
    headers = {"Content-Type": content_type, "webhook-id": message_id}
    if action.format == "eventgrid" and action.preset is None:
        headers["aeg-event-type"] = "Notification"
    for name, template in action.headers.items():
        _set_header(headers, name, _render(template, names, f"headers.{name}"))
    for name, variable in action.headers_env.items():
        value = (
            REDACTED
            if secrets is None
            else _from_env(env_header, secrets, variable, f"headers_env.{name}")
        )
        _set_header(headers, name, value)
    if action.auth is not None and secrets is None:
        headers["Authorization"] = f"Bearer {REDACTED}"
    if action.secret_env:
        timestamp = str(int(now))
        headers["webhook-timestamp"] = timestamp
        if secrets is None:
            headers["webhook-signature"] = REDACTED
        else:
            key = _from_env(signing_key, secrets, action.secret_env, "secret_env")
            headers["webhook-signature"] = _signature(key, message_id, timestamp, body)
    return WebhookRequest(url, host, headers, body)


def _target(
    action: WebhookAction,
    names: Mapping[str, Any],
    secrets: Secrets | None,
    allowed_hosts: Sequence[str],
) -> tuple[str, str]:
    """The URL to post to and its host (for messages); a URL from ``url_env`` is a secret
    as a whole, so a preview (no ``secrets``) shows neither."""
    if action.url_env is not None:
        if secrets is None:
            return f"{REDACTED} (from {action.url_env})", REDACTED
        url = _from_env(env_url, secrets, action.url_env, "url_env")
    else:
        url = _render(action.url or "", names, "url", escape="url")
    host = _host(url)
    if allowed_hosts and not host_allowed(urlsplit(url).hostname, allowed_hosts):
        raise PermanentActionError(f"webhook: host {host} is not in [webhook] allowed_hosts")
    return url, host


def webhook_id(key: str) -> str:
    """The Standard Webhooks message id of a decision: stable across retries and replays."""
    return "msg_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def _from_env(
    read: Callable[[Secrets, str], _T], secrets: Secrets, variable: str, field: str
) -> _T:
    """``read(secrets, variable)`` (``consumer.actions.webhookenv``); an error names the
    field and the variable, never the value."""
    try:
        return read(secrets, variable)
    except ValueError as exc:
        raise PermanentActionError(f"webhook: '{field}': {exc}") from None


def _signature(key: bytes, message_id: str, timestamp: str, body: bytes) -> str:
    signed = message_id.encode() + b"." + timestamp.encode() + b"." + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def _render(template: str, names: Mapping[str, Any], field: str, *, escape: Escape = "none") -> str:
    """Render one field; an error names the field. The URL and header values are left out of
    the message: a URL's query or a header may hold a key."""
    try:
        return render(template, names, escape=escape)
    except TemplateError as exc:
        reason = str(exc)
        if field != "body":
            reason = _QUOTED_TEMPLATE.sub("template", reason)
        raise PermanentActionError(f"webhook: '{field}': {reason}") from None


def _host(url: str) -> str:
    """The host (and port) of a rendered URL, for messages; the URL must be http(s).

    Raises:
        PermanentActionError: the URL is not an absolute http(s) URL.
    """
    try:
        parts: SplitResult = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        host, port, parts = None, None, urlsplit("")
    if parts.scheme.lower() not in ("http", "https") or not host:
        raise PermanentActionError("webhook: 'url' is not an absolute http(s) URL once rendered")
    if ":" in host:
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


def _set_header(headers: dict[str, str], name: str, value: str) -> None:
    """Add a rule's header, replacing a default of the same name (any case)."""
    if not HEADER_NAME.fullmatch(name):
        raise PermanentActionError(f"webhook: {name!r} is not a valid header name")
    lower = name.lower()
    if lower in RESERVED_HEADERS:
        raise PermanentActionError(f"webhook: header {name!r} is set by the worker, not a rule")
    if CONTROL_CHARACTERS.search(value):
        raise PermanentActionError(
            f"webhook: header {name!r} holds a line break or another control character "
            "after rendering"
        )
    for existing in [key for key in headers if key.lower() == lower]:
        del headers[existing]
    headers[name] = value


def _body(action: WebhookAction, event: Event, names: Mapping[str, Any]) -> tuple[bytes, str]:
    json_type = "application/json; charset=utf-8"
    if action.preset == "teams":
        return _encoder.encode(teams_card(event, names)), json_type
    if action.preset == "slack":
        return _encoder.encode(slack_message(event, names)), json_type
    if action.format == "template" and action.body is not None:
        text = _render(action.body, names, "body", escape="json")
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
    }
    if event.subject is not None:
        result["subject"] = event.subject
    if event.time is not None:
        result["time"] = event.time
    result["data"] = event.data
    return result


def _facts(event: Event, names: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What a chat message says about the event, as (name, value) pairs; values are cut to
    ``MAX_VALUE_CHARS``."""
    facts = [("Event type", event.type.removeprefix(SHORT_TYPE_PREFIX))]
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
    return [(name, _cut(value)) for name, value in facts]


def _title(event: Event, names: Mapping[str, Any]) -> str:
    title = event.type.removeprefix(SHORT_TYPE_PREFIX)
    run = names.get("run")
    if run and run.get("status"):
        title += f": {run['status']}"
    return _cut(title)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "\u2026"


def _studio_link(names: Mapping[str, Any]) -> str | None:
    studio = names.get("studio") or {}
    for name in ("run_url", "model_url", "endpoint_url", "workspace_url"):
        if studio.get(name):
            return str(studio[name])
    return None


def teams_card(event: Event, names: Mapping[str, Any]) -> dict[str, Any]:
    """An Adaptive Card in the message envelope that Teams Workflows (and connectors) take.

    Teams reads card text as Markdown; brackets in event values are escaped, so a value
    cannot put a link of its own on the card.
    """
    title = _teams_escape(_title(event, names))
    facts = [{"title": name, "value": _teams_escape(value)} for name, value in _facts(event, names)]
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.2",
        "body": [
            {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium",
             "wrap": True},
            {"type": "FactSet", "facts": facts},
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


def _teams_escape(text: str) -> str:
    # Only what makes a link: Teams on phones shows escapes' backslashes, so escape little.
    return text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")


def slack_message(event: Event, names: Mapping[str, Any]) -> dict[str, Any]:
    """A Block Kit message for a Slack incoming webhook; ``&``, ``<`` and ``>`` in event values
    are escaped, so a value cannot make a link or a mention (``<!channel>``)."""
    title = _slack_escape(_title(event, names))
    lines = [f"*{title}*"]
    lines += [f"*{name}:* {_slack_escape(value)}" for name, value in _facts(event, names)[1:]]
    link = _studio_link(names)
    if link is not None:
        lines.append(f"<{_slack_escape(link)}|Open in Azure ML studio>")
    fallback = f"{title}: {_slack_escape(_cut(event.subject or event.id))}"
    return {
        "text": fallback,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}],
    }


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _retry_after(value: str | None, clock: Callable[[], float]) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: seconds, or an HTTP date."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - clock()
    return max(seconds, 0.0) if math.isfinite(seconds) else None
