"""What an ``email`` action sends: its fields rendered from the event, and the message.

``render_entry`` renders one event's fields (each address must be exactly one address, the
subject is folded onto one line) and ``compose`` makes the message of one or more entries
(several: a digest). Both are pure, so the executor (``consumer.actions.email``) sends what
they make and a preview (``consumer.actions.preview``) shows the same, without SMTP.

The ``Message-ID`` derives from the decision key: a retry or a redelivery carries the same
id, so a receiver can drop the duplicate. Headers are written by the ``email`` package's
SMTP policy, so non-ASCII subjects are encoded, not pasted.
"""

from __future__ import annotations

import hashlib
import html as html_escaping
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from consumer.errors import PermanentActionError
from rules import Decision, EmailAction
from rules.addresses import one_address, parse_address
from rules.templates import TemplateError, context, render

_LINE_BREAKS_AND_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True, slots=True)
class Entry:
    """One event's rendered email."""

    decision: Decision
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    subject: str
    text: str | None
    html: str | None


def render_entry(decision: Decision) -> Entry:
    """The fields of the email action of ``decision``, rendered from its event.

    Raises:
        PermanentActionError: a template fails, or a rendered address is not exactly one
            address; the message names the field.
    """
    action = decision.action
    assert isinstance(action, EmailAction)
    names = context(decision.event)

    def field_(name: str, template: str, *, html: bool = False) -> str:
        try:
            return render(template, names, escape="html" if html else "none")
        except TemplateError as exc:
            raise PermanentActionError(f"email: '{name}': {exc}") from exc

    to = tuple(
        _address(field_(f"to[{index}]", template), f"to[{index}]")
        for index, template in enumerate(action.to)
    )
    cc = tuple(
        _address(field_(f"cc[{index}]", template), f"cc[{index}]")
        for index, template in enumerate(action.cc)
    )
    subject = one_line(field_("subject", action.subject))
    text = field_("text", action.text) if action.text is not None else None
    html = field_("html", action.html, html=True) if action.html is not None else None
    return Entry(decision, to, cc, subject, text, html)


def compose(
    sender: Address, entries: list[Entry], kept: Collection[str], now: datetime
) -> EmailMessage:
    """The message of ``entries`` (one event, or a digest of several) from ``sender``, dated
    ``now``, to the recipients of the first entry whose addresses (lower case) are in
    ``kept`` (the others are over their rate limit)."""
    first = entries[0]
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = sender
    to = unique([address for address in first.to if address.addr_spec.lower() in kept])
    seen = {address.addr_spec.lower() for address in to}
    cc = unique([address for address in first.cc if address.addr_spec.lower() in kept])
    cc = [address for address in cc if address.addr_spec.lower() not in seen]
    if to:
        message["To"] = to
    if cc:
        message["Cc"] = cc
    count = len(entries)
    message["Subject"] = first.subject if count == 1 else f"{first.subject} ({count} events)"
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id(first.decision)
    message["X-Mlevents-Event-Id"] = ", ".join(
        one_line(entry.decision.event.id) for entry in entries
    )
    message["X-Mlevents-Rule"] = one_line(first.decision.rule.name)
    text, html = _bodies(entries)
    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    elif html is not None:
        message.set_content(html, subtype="html")
    return message


def sender_address(sender: str) -> Address:
    """The ``From`` address ``[email] sender`` names.

    Raises:
        ValueError: it is not exactly one address.
    """
    address = parse_address(sender.strip())
    if address is None:
        raise ValueError(f"the email sender {sender!r} is not exactly one address")
    return address


def message_id(decision: Decision) -> str:
    """The ``Message-ID`` of the email for ``decision``: the same for every retry."""
    digest = hashlib.sha256(decision.key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@mlevents>"


def _address(rendered: str, name: str) -> Address:
    value = rendered.strip()
    try:
        return one_address(value)
    except ValueError as exc:
        raise PermanentActionError(
            f"email: '{name}' {exc}: {short(repr(value))}; not sent"
        ) from None


def one_line(text: str) -> str:
    """``text`` with line breaks and control characters as single spaces."""
    return " ".join(_LINE_BREAKS_AND_CONTROLS.sub(" ", text).split())


def short(text: str, limit: int = 160) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    line = one_line(text)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def unique(addresses: list[Address]) -> list[Address]:
    """``addresses`` without repeats (ignoring case), in order."""
    seen: set[str] = set()
    result: list[Address] = []
    for address in addresses:
        if address.addr_spec.lower() not in seen:
            seen.add(address.addr_spec.lower())
            result.append(address)
    return result


def _bodies(entries: list[Entry]) -> tuple[str | None, str | None]:
    first = entries[0]
    if len(entries) == 1:
        return first.text, first.html
    count = len(entries)
    text = html = None
    if first.text is not None:
        parts = [f"{count} events.\n"]
        for number, entry in enumerate(entries, 1):
            event = entry.decision.event
            heading = f"----- {number} of {count}: event {event.id} ({event.time or 'no time'})"
            parts.append(f"{one_line(heading)} -----\n{entry.text or ''}\n")
        text = "\n".join(parts)
    if first.html is not None:
        parts = [f"<p>{count} events.</p>"]
        for number, entry in enumerate(entries, 1):
            event = entry.decision.event
            heading = html_escaping.escape(f"{number} of {count}: event {event.id}")
            parts.append(f"<hr>\n<p><b>{heading}</b></p>\n<div>{entry.html or ''}</div>")
        html = "\n".join(parts) + "\n"
    return text, html
