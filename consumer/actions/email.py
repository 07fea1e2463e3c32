"""The ``email`` action: render a message from the event and hand it to a transport.

Event data is free text (run tags, experiment names), so nothing rendered may shape the
message beyond its own field: every rendered address must be exactly one address with no
line breaks or control characters (else the action is dead-lettered, never sent to what
was smuggled in), and a rendered subject is folded onto one line. Rendering and the message
itself are ``consumer.actions.compose``'s (pure, so a preview shows the same message).

The ``Message-ID`` derives from the decision key: a retry or a redelivery carries the same
id, so a receiver can drop the duplicate. ``max_per_hour`` counts, per recipient, every
email this executor sent in the last hour (a sliding window on the injected clock); an email
with every recipient over the limit is refused (dead-lettered, so replayable) rather than
flooding the inbox. ``digest_window_s`` holds events with the same rule, action, recipients
and subject until the window closes and sends them as one email; every event of the window
waits for that email and shares its outcome, so none is finished before it is sent.

Two transports: ``SmtpTransport`` (aiosmtplib; STARTTLS fails closed, a password never goes
over plain text) and ``FilesTransport``, the local default, which writes ``.eml`` files.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from typing import Literal, Protocol

import aiosmtplib

from consumer.actions.compose import (
    Entry,
    compose,
    message_id,
    render_entry,
    sender_address,
    short,
    unique,
)
from consumer.errors import ActionError, PermanentActionError, TransientActionError
from consumer.stores.files import write_atomically
from rules import Decision, EmailAction

HOUR_S = 3600.0
MAX_DIGEST_EVENTS = 200
"""A window that holds this many events is sent when it closes; later events open another."""
_FILE_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class Transport(Protocol):
    """Delivers one finished message."""

    async def send(self, message: EmailMessage) -> str:
        """Deliver ``message`` to its To and Cc; return a detail for the log.

        Raises:
            ActionError: transient or permanent, as the failure says.
        """
        ...


class SmtpTransport:
    """Sends through an SMTP server, one connection per message.

    ``security``: ``"starttls"`` upgrades the connection and fails when the server does not
    offer STARTTLS (never falls back to plain text); ``"tls"`` is TLS from the first byte
    (port 465); ``"none"`` is plain text, and then no username or password is ever sent.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: Literal["starttls", "tls", "none"],
        username: str | None,
        password: str | None,
        timeout_s: float,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._security = security
        self._username = username
        self._password = password
        self._timeout_s = timeout_s
        self._tls_context = tls_context
        self._local_hostname = local_hostname
        """The name given in EHLO; aiosmtplib looks up this host's FQDN when it is None."""

    @property
    def where(self) -> str:
        return f"{self._host}:{self._port}"

    async def send(self, message: EmailMessage) -> str:
        if self._security == "none" and (self._username or self._password):
            raise PermanentActionError(
                f"SMTP {self.where}: refusing to send credentials over plain text "
                '(security = "none"); use "starttls" or "tls"'
            )
        try:
            refused, _ = await aiosmtplib.send(
                message,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                timeout=self._timeout_s,
                use_tls=self._security == "tls",
                start_tls=self._security == "starttls",
                tls_context=self._tls_context,
                local_hostname=self._local_hostname,
            )
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            raise smtp_error(self.where, exc) from exc
        recipients = len(_recipients(message))
        accepted = recipients - len(refused)
        detail = f"sent to {_count(accepted, 'recipient')} {message['Message-ID']}"
        if refused:
            listed = ", ".join(f"{who} ({answer.code})" for who, answer in refused.items())
            detail += f"; refused: {listed}"
        return detail


def smtp_error(where: str, exc: BaseException) -> ActionError:
    """Classify what aiosmtplib (or the socket under it) raised; the message names the server
    and the SMTP code, never the credentials (an AUTH answer's text is left out)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [refusal.code for refusal in exc.recipients]
        listed = ", ".join(f"{refusal.recipient} ({refusal.code})" for refusal in exc.recipients)
        message = f"SMTP {where} refused every recipient: {listed}"
        if any(400 <= code < 500 for code in codes):
            return TransientActionError(message)
        return PermanentActionError(message)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        step = _step(exc)
        text = "" if isinstance(exc, aiosmtplib.SMTPAuthenticationError) else short(exc.message)
        message = f"SMTP {where} answered {exc.code} to {step}" + (f": {text}" if text else "")
        if 400 <= exc.code < 500:
            return TransientActionError(message)
        return PermanentActionError(message)
    if isinstance(exc, TimeoutError):  # aiosmtplib's timeouts derive from it
        return TransientActionError(f"SMTP {where}: timed out ({type(exc).__name__})")
    cause = exc.__cause__ if isinstance(exc, aiosmtplib.SMTPConnectError) else exc
    if isinstance(cause, ssl.SSLCertVerificationError):
        reason = cause.verify_message or "certificate verification failed"
        return PermanentActionError(f"SMTP {where}: the server's certificate: {reason}")
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | aiosmtplib.SMTPConnectError | OSError):
        return TransientActionError(f"SMTP {where}: {type(exc).__name__}: {short(str(exc))}")
    if isinstance(exc, aiosmtplib.SMTPException):  # STARTTLS or AUTH not offered, and the like
        return PermanentActionError(f"SMTP {where}: {short(exc.message)}")
    return PermanentActionError(f"SMTP {where}: {type(exc).__name__}: {short(str(exc))}")


def _step(exc: aiosmtplib.SMTPResponseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return "AUTH"
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return "MAIL FROM"
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        return f"RCPT TO {exc.recipient}"
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return "DATA"
    if isinstance(exc, aiosmtplib.SMTPHeloError):
        return "EHLO"
    if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
        return "the connection"
    return "a command"


class FilesTransport:
    """Writes each message as ``<id>.eml`` into a folder: the local default, sends nothing.

    The name comes from the ``Message-ID``, so the same decision written twice leaves one
    file; each write goes to a temporary file first and is renamed into place.
    """

    def __init__(self, directory: Path) -> None:
        self._directory = directory

    async def send(self, message: EmailMessage) -> str:
        message_id = str(message.get("Message-ID") or f"<{uuid.uuid4().hex}@mlevents>")
        name = _FILE_NAME_UNSAFE.sub("_", message_id.strip("<> ").split("@")[0]) + ".eml"
        data = message.as_bytes(policy=policy.default)  # "\n" line ends, as files on disk have
        try:
            await asyncio.to_thread(_write, self._directory / name, data)
        except OSError as exc:
            raise TransientActionError(
                f"writing {name} into {self._directory}: {exc.strerror or exc}"
            ) from exc
        return name


def _write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, data)


@dataclass(slots=True)
class _Window:
    """The events of one open digest window, and the email they become."""

    entries: list[Entry]
    outcome: asyncio.Task[str] | None = None


@dataclass(slots=True)
class _RateLimit:
    """When this executor sent to each recipient (lower-cased) in the last hour."""

    clock: Callable[[], float]
    sent: dict[str, deque[float]] = field(default_factory=dict)

    def take(
        self, recipients: list[Address], limit: int | None
    ) -> tuple[list[Address], list[Address], float]:
        """Split ``recipients`` into (allowed, over the limit); count a send to the allowed."""
        now = self.clock()
        if len(self.sent) > 10_000:
            self._forget(now)
        allowed: list[Address] = []
        over: list[Address] = []
        for address in recipients:
            stamps = self.sent.setdefault(address.addr_spec.lower(), deque())
            while stamps and stamps[0] <= now - HOUR_S:
                stamps.popleft()
            if limit is not None and len(stamps) >= limit:
                over.append(address)
            else:
                stamps.append(now)
                allowed.append(address)
        return allowed, over, now

    def give_back(self, recipients: list[Address], stamp: float) -> None:
        """The send counted at ``stamp`` did not happen."""
        for address in recipients:
            stamps = self.sent.get(address.addr_spec.lower())
            if stamps is not None and stamp in stamps:
                stamps.remove(stamp)

    def _forget(self, now: float) -> None:
        stale = [
            key for key, stamps in self.sent.items() if not stamps or stamps[-1] <= now - HOUR_S
        ]
        for key in stale:
            del self.sent[key]


class EmailExecutor:
    """Renders and sends the ``email`` action through a ``Transport``."""

    def __init__(
        self,
        transport: Transport,
        *,
        sender: str,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._transport = transport
        self._sender = sender_address(sender)
        self._sleep = sleep
        self._rate = _RateLimit(clock)
        self._windows: dict[tuple[object, ...], _Window] = {}
        self._tasks: set[asyncio.Task[str]] = set()

    async def __call__(self, decision: Decision) -> str:
        action = decision.action
        assert isinstance(action, EmailAction)
        entry = render_entry(decision)
        if action.digest_window_s is not None and action.digest_window_s > 0:
            return await self._join(entry, action, action.digest_window_s)
        return await self._deliver(action, [entry])

    async def _join(self, entry: Entry, action: EmailAction, window_s: float) -> str:
        key = (
            entry.decision.rule.name,
            entry.decision.index,
            tuple(address.addr_spec.lower() for address in entry.to),
            tuple(address.addr_spec.lower() for address in entry.cc),
            entry.subject,
        )
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window([entry])
            window.outcome = asyncio.create_task(self._close(key, window, action, window_s))
            self._tasks.add(window.outcome)
            window.outcome.add_done_callback(self._tasks.discard)
        else:
            window.entries.append(entry)
        if len(window.entries) >= MAX_DIGEST_EVENTS and self._windows.get(key) is window:
            del self._windows[key]
        assert window.outcome is not None
        # Shielded: a caller that gives up (cancelled) does not take the email from the others.
        return await asyncio.shield(window.outcome)

    async def _close(
        self, key: tuple[object, ...], window: _Window, action: EmailAction, window_s: float
    ) -> str:
        await self._sleep(window_s)
        if self._windows.get(key) is window:
            del self._windows[key]
        detail = await self._deliver(action, window.entries)
        count = len(window.entries)
        return f"{detail} (digest of {count} events)" if count > 1 else detail

    async def _deliver(self, action: EmailAction, entries: list[Entry]) -> str:
        first = entries[0]
        recipients = unique([*first.to, *first.cc])
        allowed, over, stamp = self._rate.take(recipients, action.max_per_hour)
        if not allowed:
            listed = ", ".join(address.addr_spec for address in over)
            raise PermanentActionError(
                f"rate limited: {listed} already had {action.max_per_hour} emails "
                "in the last hour (max_per_hour)"
            )
        kept = {address.addr_spec.lower() for address in allowed}
        message = compose(self._sender, entries, kept, datetime.now(UTC))
        try:
            detail = await self._transport.send(message)
        except BaseException:
            self._rate.give_back(allowed, stamp)
            raise
        if over:
            detail += "; rate limited: " + ", ".join(address.addr_spec for address in over)
        return detail


def _recipients(message: EmailMessage) -> list[str]:
    return [addr for _, addr in getaddresses(message.get_all("To", []) + message.get_all("Cc", []))]


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


__all__ = ["EmailExecutor", "FilesTransport", "SmtpTransport", "Transport", "message_id"]
