"""Previews: what each action of a decision would send, shown and not sent.

``Previewer.preview(decision)`` builds the action's requests with the very functions its
executor sends with (``compose`` for email, ``webhook_request``, ``create_run``,
``submit_job``, ``deploy_calls`` for the ARM calls, ``log_message``), so a preview cannot
drift from what is sent. It needs no network, no credential and no SDK (nothing here imports
aiohttp or Azure): ``mlevents test --render`` and ``explain --render`` print previews, and
``mlevents run --dry-run`` and ``mlevents dev`` log them. A preview fails as the action
would (``PermanentActionError``: a template that reads what the event does not have, an
address that is not one address, a host not allowed), before anything is sent.

What only sending can tell is shown as what it will be: the ``Date`` of an email and the
``webhook-timestamp`` are the preview's time; for ``aml_deploy``, the parts of the later
calls that the earlier answers decide (the endpoint's region, the model's tags, the other
deployments' traffic) are said in a note.

Secrets never appear; ``REDACTED`` stands in their place:

* ARM's ``Authorization: Bearer`` token (a preview gets no token at all);
* a webhook's ``webhook-signature``: it derives from the signing secret, so it is not
  computed even where the secret is at hand (``webhook-timestamp`` and ``webhook-id`` are
  shown: they are what is signed, not the key);
* a header a rule sets whose name says it carries a credential (``Authorization``,
  ``Cookie``, names with ``key``, ``token``, ``secret``, ``password``...: see
  ``consumer.logs.is_secret_name``), and the values of URL query parameters named so, or
  ``sig`` or ``code`` (Logic Apps and Teams workflow URLs sign with ``sig``, Azure Functions
  take their key in ``code``), and a password in the URL;
* SMTP credentials, which are not part of a message.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import msgspec

from consumer.actions import REDACTED, action_type
from consumer.actions.adf import create_run
from consumer.actions.amldeploy import deploy_calls
from consumer.actions.amljob import submit_job
from consumer.actions.arm import ArmRequest, arm_headers, arm_url
from consumer.actions.compose import compose, render_entry, sender_address
from consumer.actions.jobspec import JobSpecs
from consumer.actions.log import log_message
from consumer.actions.webhook import webhook_request
from consumer.config import AzureConfig, Config, EmailConfig, WebhookConfig
from consumer.logs import is_secret_name
from rules import Decision, EmailAction, LogAction

_encoder = msgspec.json.Encoder(decimal_format="number")
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
"""Header names (lower case) whose values are credentials whatever else they say."""
SECRET_QUERY_NAMES = frozenset({"sig", "code"})
"""Query parameters (lower case) that carry a key although their names do not say so."""


@dataclass(frozen=True, slots=True)
class HttpCall:
    """One HTTP request: its method, URL, headers and body (a JSON value, or ``None``), and
    what decides the parts of it a preview cannot know (``note``)."""

    method: str
    url: str
    headers: dict[str, str]
    body: Any = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Mail:
    """One email: its headers and its parts as (content type, text)."""

    headers: list[tuple[str, str]]
    parts: list[tuple[str, str]]
    note: str = ""


@dataclass(frozen=True, slots=True)
class LogLine:
    """The line a ``log`` action writes."""

    level: str
    message: str


Sent = HttpCall | Mail | LogLine


@dataclass(frozen=True, slots=True)
class Preview:
    """What one action of one rule would send for one event, in order."""

    rule: str
    index: int
    type: str
    sends: tuple[Sent, ...]

    @property
    def where(self) -> str:
        """``rule:type#index``, as the worker's log lines name an action."""
        return f"{self.rule}:{self.type}#{self.index}"

    def fields(self) -> dict[str, Any]:
        """The preview as fields of a structured log line."""
        return {
            "rule": self.rule,
            "action": f"{self.type}#{self.index}",
            "sends": [_fields(sent) for sent in self.sends],
        }

    def text(self, indent: str = "") -> str:
        """The preview for people: request lines, headers and bodies (JSON indented, where
        the wire form is compact), one per line, each prefixed with ``indent``."""
        lines = [self.where]
        for number, sent in enumerate(self.sends):
            if number:
                lines.append("")
            lines += ["  " + line if line else "" for line in _text(sent)]
        return "".join(f"{indent}{line}\n" if line else "\n" for line in lines)


@dataclass(slots=True)
class Previewer:
    """Builds previews with the settings the executors have (``Previewer.of(config)``), or
    the defaults when there is no config file."""

    email: EmailConfig = field(default_factory=EmailConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    azure: AzureConfig = field(default_factory=AzureConfig)
    clock: Callable[[], float] = time.time
    """Stamps the email's ``Date`` and the webhook's ``webhook-timestamp``."""
    _specs: JobSpecs = field(default_factory=JobSpecs, init=False)

    @classmethod
    def of(cls, config: Config) -> Previewer:
        return cls(email=config.email, webhook=config.webhook, azure=config.azure)

    def preview(self, decision: Decision) -> Preview:
        """What the action of ``decision`` would send.

        Raises:
            PermanentActionError: the action would fail before sending anything, as its
                executor would (the message is the executor's).
        """
        kind = action_type(decision)
        sends: tuple[Sent, ...]
        if kind == "log":
            assert isinstance(decision.action, LogAction)
            sends = (LogLine(decision.action.level, log_message(decision)),)
        elif kind == "email":
            sends = (self._mail(decision),)
        elif kind == "webhook":
            sends = (self._webhook(decision),)
        elif kind == "adf_pipeline_run":
            sends = (self._arm(create_run(decision, self.azure.datafactory_api_version)),)
        elif kind == "aml_job":
            call = submit_job(decision, self.azure.ml_api_version, self._specs)
            sends = (self._arm(call),)
        elif kind == "aml_deploy":
            calls = deploy_calls(decision, self.azure.ml_api_version)
            sends = tuple(self._arm(call, note) for call, note in calls)
        else:  # a type added to rules/actions.py without a preview here
            raise AssertionError(f"no preview for action type {kind!r}")
        return Preview(decision.rule.name, decision.index, kind, sends)

    def _mail(self, decision: Decision) -> Mail:
        action = decision.action
        assert isinstance(action, EmailAction)
        entry = render_entry(decision)
        everyone = {address.addr_spec.lower() for address in (*entry.to, *entry.cc)}
        now = datetime.fromtimestamp(self.clock(), UTC)
        message = compose(sender_address(self.email.sender), [entry], everyone, now)
        notes = []
        if action.digest_window_s is not None:
            notes.append(
                f"digest_window_s = {action.digest_window_s:g}: the events of this rule with "
                "these recipients and subject within the window are sent as one email"
            )
        if action.max_per_hour is not None:
            notes.append(
                f"max_per_hour = {action.max_per_hour}: a recipient who had as many emails in "
                "the last hour is left out"
            )
        return Mail(*mail_parts(message), note="; ".join(notes))

    def _webhook(self, decision: Decision) -> HttpCall:
        request = webhook_request(
            decision, now=self.clock(), secrets=None, allowed_hosts=self.webhook.allowed_hosts
        )
        headers = {
            name: REDACTED if _secret_header(name) else value
            for name, value in request.headers.items()
        }
        return HttpCall("POST", redact_url(request.url), headers, _json(request.body))

    def _arm(self, call: ArmRequest, note: str = "") -> HttpCall:
        url = arm_url(self.azure.management_url, call.path, call.api_version)
        headers = arm_headers(REDACTED, with_body=call.body is not None)
        # The body as it goes on the wire: numbers from rule files are Decimals until encoded.
        body = None if call.body is None else msgspec.json.decode(_encoder.encode(call.body))
        return HttpCall(call.method, url, headers, body, note)


MIME_HEADERS = frozenset({"content-type", "mime-version", "content-transfer-encoding"})
"""Headers of the message's MIME structure: shown with its parts, not among its headers."""


def mail_parts(message: EmailMessage) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """A message's headers (but its MIME structure's) and its text parts, as (content type,
    text), decoded: what a reader of the email sees."""
    headers = [
        (name, str(value)) for name, value in message.items() if name.lower() not in MIME_HEADERS
    ]
    parts = [
        (part.get_content_type(), str(part.get_content()))
        for part in message.walk()
        if not part.is_multipart()
    ]
    return headers, parts


def redact_url(url: str) -> str:
    """``url`` with a password and the values of secret-named query parameters replaced by
    ``REDACTED`` (the rest is left exactly as it is, encoding included)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:{REDACTED}@{host}"
    query = "&".join(_redact_parameter(item) for item in parts.query.split("&"))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_parameter(item: str) -> str:
    name, equals, _ = item.partition("=")
    plain = unquote(name)
    if equals and (plain.lower() in SECRET_QUERY_NAMES or is_secret_name(plain)):
        return f"{name}={REDACTED}"
    return item


def _secret_header(name: str) -> bool:
    return name.lower() in SECRET_HEADERS or is_secret_name(name)


def _json(body: bytes) -> Any:
    """A JSON body as its value (a webhook's bodies are all JSON)."""
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body.decode("utf-8", "replace")


def _fields(sent: Sent) -> dict[str, Any]:
    if isinstance(sent, LogLine):
        return {"level": sent.level, "message": sent.message}
    if isinstance(sent, Mail):
        fields: dict[str, Any] = {
            "headers": dict(sent.headers),
            "parts": [{"type": kind, "content": text} for kind, text in sent.parts],
        }
    else:
        fields = {"method": sent.method, "url": sent.url, "headers": sent.headers}
        if sent.body is not None:
            fields["body"] = sent.body
    if sent.note:
        fields["note"] = sent.note
    return fields


def _text(sent: Sent) -> list[str]:
    if isinstance(sent, LogLine):
        return [f"{sent.level}: {sent.message}"]
    if isinstance(sent, Mail):
        lines = [f"{name}: {value}" for name, value in sent.headers]
        for kind, text in sent.parts:
            lines += [f"--- {kind}", *text.rstrip("\n").split("\n")]
    else:
        lines = [f"{sent.method} {sent.url}"]
        lines += [f"{name}: {value}" for name, value in sent.headers.items()]
        if sent.body is not None:
            body = json.dumps(sent.body, indent=2, ensure_ascii=False)
            lines += ["", *body.split("\n")]
    if sent.note:
        lines.append(f"note: {sent.note}")
    return lines
