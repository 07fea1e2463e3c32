"""A real SMTP server for the email tests: aiosmtpd in the test's own event loop, on loopback.

``SmtpServer`` records every message it accepts (with whether the session was TLS and who
logged in), and can answer RCPT or DATA with a chosen reply. TLS uses a throwaway CA made
by trustme; ``Certs.client_context()`` trusts it and nothing else.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, Literal, cast

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from .gate import Gate
from .ports import free_port

Tls = Literal["none", "starttls", "implicit"]


@dataclass(frozen=True)
class Certs:
    """A CA and a certificate it issued for 127.0.0.1 and localhost."""

    ca: trustme.CA
    server: trustme.LeafCert

    @classmethod
    def make(cls) -> Certs:
        ca = trustme.CA()
        return cls(ca, ca.issue_cert("127.0.0.1", "localhost"))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ca.configure_trust(context)
        return context


@dataclass(frozen=True)
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    tls: bool
    """Whether the session that carried it was encrypted (STARTTLS or implicit TLS)."""
    login: str | None
    """Who authenticated in that session, if anyone."""

    @property
    def message(self) -> EmailMessage:
        # As a mail store would keep it: line ends as this platform's, not the wire's CRLF.
        return message_from_bytes(self.raw.replace(b"\r\n", b"\n"), policy=policy.default)

    def body(self, subtype: str) -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        assert part is not None, f"no text/{subtype} part"
        return cast(str, part.get_content())


@dataclass
class SmtpServer:
    """aiosmtpd on 127.0.0.1 in the running loop; ``async with`` starts and stops it.

    ``tls``: ``"starttls"`` offers STARTTLS and requires it before anything else (AUTH is
    only offered after it); ``"implicit"`` is TLS from the first byte; ``"none"`` offers
    neither. ``users`` (login -> password) makes AUTH required before MAIL.
    """

    tls: Tls = "none"
    certs: Certs | None = None
    users: dict[str, str] = field(default_factory=dict)
    rcpt_answers: dict[str, str] = field(default_factory=dict)
    """Address (or ``"*"`` for any) -> the reply to its RCPT, instead of 250."""
    data_answer: str | None = None
    """The reply to DATA instead of 250."""
    received: list[Received] = field(default_factory=list)
    """Every message accepted, in order, including those whose client went away before
    hearing the answer (past a closed gate)."""
    gate: Gate | None = None
    """Holds messages while closed (see ``gate.Gate``)."""
    connections: int = 0
    port: int = 0
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> SmtpServer:
        loop = asyncio.get_running_loop()
        context = None
        if self.tls != "none":
            assert self.certs is not None, "TLS needs certs"
            context = self.certs.server_context()

        def factory() -> SMTP:
            self.connections += 1
            return SMTP(
                self,
                hostname="localhost",
                loop=loop,
                tls_context=context if self.tls == "starttls" else None,
                require_starttls=self.tls == "starttls",
                # With implicit TLS, aiosmtpd does not know the session is encrypted.
                auth_require_tls=self.tls != "implicit",
                authenticator=self._authenticate,
            )

        self.port = free_port()
        self._server = await loop.create_server(
            factory, "127.0.0.1", self.port, ssl=context if self.tls == "implicit" else None
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            login, password = data.login.decode(), data.password.decode()
            if login in self.users and self.users[login] == password:
                return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.users and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        answer = self.rcpt_answers.get(address) or self.rcpt_answers.get("*")
        if answer is not None:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_answer is not None:
            return self.data_answer
        assert server.transport is not None
        received = Received(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            raw=envelope.original_content or b"",
            tls=server.transport.get_extra_info("ssl_object") is not None,
            login=session.auth_data if session.authenticated else None,
        )

        async def accept() -> str:
            self.received.append(received)
            return "250 Message accepted for delivery"

        if self.gate is None:
            return await accept()
        # aiosmtpd cancels this handler when the client goes away; the gate keeps the message.
        return await self.gate.passage(accept)

    def to(self, address: str) -> list[Received]:
        """The messages whose envelope went to ``address``."""
        return [message for message in self.received if address in message.rcpt_tos]
