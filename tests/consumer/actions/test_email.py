"""The email executor against a real SMTP server (aiosmtpd) on loopback, and into files."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

import pytest

from consumer.actions.email import EmailExecutor, FilesTransport, SmtpTransport, message_id
from consumer.errors import PermanentActionError, TransientActionError
from rules import Decision, Event, decode_body, plan
from tests.support import SAMPLES
from tests.support.factories import make_event, make_table
from tests.support.ports import free_port
from tests.support.smtp import Certs, SmtpServer, Tls

SENDER = "mlevents@example.com"
USER, PASSWORD = "alerts", "correct-horse-battery"
Security = Literal["starttls", "tls", "none"]
SECURITY: dict[Tls, Security] = {"none": "none", "starttls": "starttls", "implicit": "tls"}
RUN_URL = (
    "https://ml.azure.com/runs/brave_lamp_x7k2m9q1pz?wsid=/subscriptions/"
    "6f1c2a3b-0d4e-4f5a-9b8c-7d6e5f4a3b2c/resourceGroups/rg-mlops-prod/providers/"
    "Microsoft.MachineLearningServices/workspaces/mlw-prod-weu"
)


@pytest.fixture(scope="module")
def certs() -> Certs:
    return Certs.make()


@pytest.fixture
async def server() -> AsyncIterator[SmtpServer]:
    async with SmtpServer() as peer:
        yield peer


def sample(name: str) -> Event:
    return decode_body((SAMPLES / name).read_bytes())[0]


def run_event(event_id: str = "ev-1", **data: Any) -> Event:
    """A RunStatusChanged=Failed event with data overridden by keyword."""
    fields = {"experimentName": "exp", "runId": "r1", "runStatus": "Failed", "runTags": {}}
    return make_event(id=event_id, data={**fields, **data})


def decision(event: Event, **action: Any) -> Decision:
    table = make_table({"name": "failed-runs", "actions": [{"type": "email", **action}]})
    (only,) = plan(table, event)
    return only


def smtp(
    server: SmtpServer,
    security: Security = "none",
    *,
    username: str | None = None,
    password: str | None = None,
    certs: Certs | None = None,
    timeout_s: float = 5.0,
) -> SmtpTransport:
    return SmtpTransport(
        "127.0.0.1", server.port, security=security, username=username, password=password,
        timeout_s=timeout_s, tls_context=certs.client_context() if certs else None,
        local_hostname="localhost",
    )  # fmt: skip


SIMPLE: dict[str, Any] = {"to": ["ml@example.com"], "subject": "Run failed", "text": "See studio."}


# 1. Plain SMTP: the message, its headers and its bodies.


async def test_plain_smtp_sends_text_and_html_with_headers_and_the_studio_link(
    server: SmtpServer,
) -> None:
    """The sample run-failed event becomes one multipart/alternative email with every header."""
    event = sample("run-failed.json")
    ours = decision(
        event,
        to=["ml-team@example.com", "{{ run.tags.team }}@example.com"],
        cc=["On call <oncall@example.com>"],
        subject="Run {{ run.id }} {{ run.status }} in {{ workspace.name }}",
        text="Experiment {{ run.experiment_name }}.\nStudio: {{ studio.run_url }}\n",
        html="<p>Run <a href='{{ studio.run_url }}'>{{ run.id }}</a> failed.</p>",
    )
    detail = await EmailExecutor(smtp(server), sender=SENDER)(ours)

    expected_id = f"<{hashlib.sha256(ours.key.encode()).hexdigest()[:32]}@mlevents>"
    assert message_id(ours) == expected_id
    assert detail == f"sent to 3 recipients {expected_id}"
    (received,) = server.received
    assert received.mail_from == SENDER
    assert received.rcpt_tos == ["ml-team@example.com", "risk@example.com", "oncall@example.com"]
    assert (received.tls, received.login) == (False, None)
    message = received.message
    assert message["From"] == SENDER
    assert message["To"] == "ml-team@example.com, risk@example.com"
    assert message["Cc"] == "On call <oncall@example.com>"
    assert message["Subject"] == "Run brave_lamp_x7k2m9q1pz Failed in mlw-prod-weu"
    assert message["Message-ID"] == expected_id
    assert message["X-Mlevents-Event-Id"] == "3f9c2b1e-8a7d-4c6b-9e5f-0a1b2c3d4e5f"
    assert message["X-Mlevents-Rule"] == "failed-runs"
    assert message["Date"] is not None
    assert message.get_content_type() == "multipart/alternative"
    assert received.body("plain") == (f"Experiment credit-risk-training.\nStudio: {RUN_URL}\n")
    assert received.body("html") == (
        f"<p>Run <a href='{RUN_URL}'>brave_lamp_x7k2m9q1pz</a> failed.</p>\n"
    )


async def test_a_retry_carries_the_same_message_id(server: SmtpServer) -> None:
    """The Message-ID derives from the decision key, so receivers can drop a redelivery."""
    executor = EmailExecutor(smtp(server), sender=SENDER)
    first, second = decision(run_event("ev-1"), **SIMPLE), decision(run_event("ev-2"), **SIMPLE)
    await executor(first)
    await executor(first)
    await executor(second)
    ids = [received.message["Message-ID"] for received in server.received]
    assert ids[0] == ids[1] == message_id(first)
    assert ids[2] == message_id(second) != ids[0]


async def test_text_only_and_html_only_bodies(server: SmtpServer) -> None:
    """One body gives a single part of its type; a non-ASCII subject is encoded, not pasted."""
    executor = EmailExecutor(smtp(server), sender=SENDER)
    subject = "Lauf fehlgeschlagen: {{ run.experiment_name }}"
    event = run_event(experimentName="Kreditrisiko-Prüfung 📉")
    await executor(decision(event, to=["ml@example.com"], subject=subject, text="nur Text ü"))
    await executor(decision(event, to=["ml@example.com"], subject=subject, html="<b>ü</b>"))
    text, html = (received.message for received in server.received)
    assert text.get_content_type() == "text/plain"
    assert text.get_content() == "nur Text ü\n"
    assert html.get_content_type() == "text/html"
    assert html.get_content() == "<b>ü</b>\n"
    assert text["Subject"] == "Lauf fehlgeschlagen: Kreditrisiko-Prüfung 📉"
    raw_subject = next(
        line for line in server.received[0].raw.splitlines() if line.startswith(b"Subject:")
    )
    assert raw_subject.isascii()
    assert b"=?utf-8?" in raw_subject


# 2. STARTTLS: with AUTH, and failing closed.


async def test_starttls_then_auth(certs: Certs) -> None:
    """The server demands STARTTLS before anything and offers AUTH only after it."""
    async with SmtpServer(tls="starttls", certs=certs, users={USER: PASSWORD}) as server:
        transport = smtp(server, "starttls", username=USER, password=PASSWORD, certs=certs)
        await EmailExecutor(transport, sender=SENDER)(decision(run_event(), **SIMPLE))
    (received,) = server.received
    assert received.tls is True
    assert received.login == USER
    assert received.rcpt_tos == ["ml@example.com"]


async def test_starttls_fails_closed_when_the_server_does_not_offer_it(
    server: SmtpServer, certs: Certs
) -> None:
    """No fallback to plain text: permanent, and nothing is delivered."""
    transport = smtp(server, "starttls", username=USER, password=PASSWORD, certs=certs)
    with pytest.raises(PermanentActionError, match="STARTTLS") as caught:
        await EmailExecutor(transport, sender=SENDER)(decision(run_event(), **SIMPLE))
    assert f"127.0.0.1:{server.port}" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert server.received == []


async def test_no_password_over_plain_text(server: SmtpServer) -> None:
    """security = "none" with credentials is refused before connecting."""
    transport = smtp(server, "none", username=USER, password=PASSWORD)
    with pytest.raises(PermanentActionError, match="plain text") as caught:
        await EmailExecutor(transport, sender=SENDER)(decision(run_event(), **SIMPLE))
    assert PASSWORD not in str(caught.value)
    assert server.connections == 0


# 3. Implicit TLS.


async def test_implicit_tls_with_auth(certs: Certs) -> None:
    """TLS from the first byte (port 465 style), then AUTH."""
    async with SmtpServer(tls="implicit", certs=certs, users={USER: PASSWORD}) as server:
        transport = smtp(server, "tls", username=USER, password=PASSWORD, certs=certs)
        detail = await EmailExecutor(transport, sender=SENDER)(decision(run_event(), **SIMPLE))
    assert detail.startswith("sent to 1 recipient <")
    (received,) = server.received
    assert (received.tls, received.login) == (True, USER)


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
async def test_an_untrusted_certificate_is_permanent(certs: Certs, tls: Tls) -> None:
    """A certificate from a CA the client does not trust: nothing is sent, nor retried."""
    stranger = Certs.make()
    async with SmtpServer(tls=tls, certs=certs, users={USER: PASSWORD}) as server:
        transport = smtp(server, SECURITY[tls], username=USER, password=PASSWORD, certs=stranger)
        with pytest.raises(PermanentActionError, match="certificate"):
            await EmailExecutor(transport, sender=SENDER)(decision(run_event(), **SIMPLE))
    assert server.received == []


# 4. Failures, classified.


async def test_a_wrong_password_is_permanent(certs: Certs) -> None:
    async with SmtpServer(tls="starttls", certs=certs, users={USER: PASSWORD}) as server:
        transport = smtp(server, "starttls", username=USER, password="wrong-pw", certs=certs)
        with pytest.raises(PermanentActionError, match="535 to AUTH") as caught:
            await EmailExecutor(transport, sender=SENDER)(decision(run_event(), **SIMPLE))
    assert "wrong-pw" not in str(caught.value)
    assert server.received == []


async def test_an_unreachable_server_is_transient() -> None:
    closed = SmtpServer(port=free_port())
    with pytest.raises(TransientActionError, match=f"127.0.0.1:{closed.port}"):
        await EmailExecutor(smtp(closed), sender=SENDER)(decision(run_event(), **SIMPLE))


async def test_a_server_that_never_greets_times_out_transiently() -> None:
    hung_up = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()
        await writer.wait_closed()
        hung_up.set()

    mute = SmtpServer(port=free_port())
    async with await asyncio.start_server(silent, "127.0.0.1", mute.port):
        transport = smtp(mute, timeout_s=0.2)
        with pytest.raises(TransientActionError, match="timed out"):
            await EmailExecutor(transport, sender=SENDER)(decision(run_event(), **SIMPLE))
        await asyncio.wait_for(hung_up.wait(), 5)


@pytest.mark.parametrize(
    ("step", "answer", "error"),
    [
        ("RCPT", "451 4.3.0 Try again later", TransientActionError),
        ("RCPT", "550 5.1.1 No such user", PermanentActionError),
        ("DATA", "451 4.3.0 Try again later", TransientActionError),
        ("DATA", "550 5.7.1 Rejected", PermanentActionError),
    ],
)
async def test_smtp_replies_are_classified(
    server: SmtpServer, step: str, answer: str, error: type[Exception]
) -> None:
    """4xx may pass later (transient); 5xx will not (permanent). The message names the code."""
    if step == "RCPT":
        server.rcpt_answers["*"] = answer
    else:
        server.data_answer = answer
    with pytest.raises(error, match=answer[:3]) as caught:
        await EmailExecutor(smtp(server), sender=SENDER)(decision(run_event(), **SIMPLE))
    assert f"127.0.0.1:{server.port}" in str(caught.value)
    assert server.received == []


async def test_one_refused_recipient_among_several_is_reported_not_raised(
    server: SmtpServer,
) -> None:
    """The others got it: raising would make a retry send it to them again."""
    server.rcpt_answers["gone@example.com"] = "550 5.1.1 No such user"
    action = {**SIMPLE, "to": ["ml@example.com", "gone@example.com"]}
    detail = await EmailExecutor(smtp(server), sender=SENDER)(decision(run_event(), **action))
    assert detail.endswith("; refused: gone@example.com (550)")
    assert detail.startswith("sent to 1 recipient <")
    (received,) = server.received
    assert received.rcpt_tos == ["ml@example.com"]


async def test_a_template_the_event_cannot_fill_is_permanent(server: SmtpServer) -> None:
    action = {**SIMPLE, "subject": "{{ data.noSuchKey }}"}
    with pytest.raises(PermanentActionError, match="'subject'"):
        await EmailExecutor(smtp(server), sender=SENDER)(decision(run_event(), **action))
    assert server.connections == 0


# 5. Injection.

INJECTED = "\r\nBcc: evil@example.com"


async def test_a_line_break_in_the_subject_adds_no_header(server: SmtpServer) -> None:
    """Event data with CRLF and a Bcc line: the subject arrives on one line, evil@ gets nothing."""
    event = run_event(experimentName=f"exp{INJECTED}\nX-Evil: 1\x00")
    action = {**SIMPLE, "subject": "Run failed: {{ run.experiment_name }}"}
    await EmailExecutor(smtp(server), sender=SENDER)(decision(event, **action))
    (received,) = server.received
    assert received.rcpt_tos == ["ml@example.com"]
    assert server.to("evil@example.com") == []
    message = received.message
    assert message["Subject"] == "Run failed: exp Bcc: evil@example.com X-Evil: 1"
    assert message["Bcc"] is None
    assert message["X-Evil"] is None
    headers = received.raw.split(b"\r\n\r\n", 1)[0]
    assert not any(line.startswith((b"Bcc", b"X-Evil")) for line in headers.split(b"\r\n"))


@pytest.mark.parametrize(
    "owner",
    [
        f"alice@example.com{INJECTED}",
        "alice@example.com, evil@example.com",
        "alice@example.com; evil@example.com",
        "alice@example.com <evil@example.com>",
        "alice@example.com>\r\nRCPT TO:<evil@example.com",
        "alice@example.org)<evil@example.com>",
        "",
    ],
)
async def test_a_recipient_that_is_not_exactly_one_address_is_refused(
    server: SmtpServer, owner: str
) -> None:
    """Nothing is sent at all: not to the injected address, not to the others."""
    event = run_event(runTags={"owner": owner})
    action = {**SIMPLE, "to": ["ml@example.com", "{{ run.tags.owner }}"]}
    with pytest.raises(PermanentActionError, match=r"'to\[1\]'"):
        await EmailExecutor(smtp(server), sender=SENDER)(decision(event, **action))
    assert server.connections == 0
    assert server.received == []


async def test_event_data_is_never_a_template_and_html_is_escaped(server: SmtpServer) -> None:
    event = run_event(experimentName="{{ 7*7 }}", runTags={"note": "<script>alert(1)</script>"})
    action = {
        "to": ["ml@example.com"],
        "subject": "{{ run.experiment_name }}",
        "text": "{{ run.tags.note }} in {{ run.experiment_name }}",
        "html": "<p>{{ run.tags.note }} in {{ run.experiment_name }}</p>",
    }
    await EmailExecutor(smtp(server), sender=SENDER)(decision(event, **action))
    (received,) = server.received
    assert received.message["Subject"] == "{{ 7*7 }}"
    assert received.body("plain") == "<script>alert(1)</script> in {{ 7*7 }}\n"
    html = received.body("html")
    assert html == "<p>&lt;script&gt;alert(1)&lt;/script&gt; in {{ 7*7 }}</p>\n"
    assert "49" not in html


# 6. Rate limit.


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_max_per_hour_per_recipient(server: SmtpServer) -> None:
    """The third email within the hour is refused (dead-lettered); an hour later it goes."""
    clock = Clock()
    executor = EmailExecutor(smtp(server), sender=SENDER, clock=clock)
    action = {**SIMPLE, "to": ["OnCall@Example.com"], "max_per_hour": 2}
    await executor(decision(run_event("ev-1"), **action))
    clock.now += 600
    await executor(decision(run_event("ev-2"), **{**action, "to": ["oncall@example.com"]}))
    clock.now += 600
    third = decision(run_event("ev-3"), **action)
    with pytest.raises(PermanentActionError, match=r"rate limited: OnCall@Example\.com"):
        await executor(third)
    assert len(server.received) == 2
    clock.now += 3600 - 1200 + 1  # the first email is now more than an hour old
    detail = await executor(third)
    assert detail.startswith("sent to 1 recipient")
    assert len(server.received) == 3
    with pytest.raises(PermanentActionError, match="rate limited"):
        await executor(decision(run_event("ev-4"), **action))


async def test_only_the_recipients_over_the_limit_are_dropped(server: SmtpServer) -> None:
    clock = Clock()
    executor = EmailExecutor(smtp(server), sender=SENDER, clock=clock)
    limited = {**SIMPLE, "to": ["oncall@example.com"], "max_per_hour": 1}
    await executor(decision(run_event("ev-1"), **limited))
    both = {**limited, "to": ["oncall@example.com", "lead@example.com"]}
    detail = await executor(decision(run_event("ev-2"), **both))
    assert detail.endswith("; rate limited: oncall@example.com")
    last = server.received[-1]
    assert last.rcpt_tos == ["lead@example.com"]
    assert last.message["To"] == "lead@example.com"


async def test_a_failed_send_does_not_count_against_the_limit(server: SmtpServer) -> None:
    executor = EmailExecutor(smtp(server), sender=SENDER, clock=Clock())
    action = {**SIMPLE, "max_per_hour": 1}
    server.data_answer = "451 4.3.0 Try again later"
    with pytest.raises(TransientActionError):
        await executor(decision(run_event(), **action))
    server.data_answer = None
    await executor(decision(run_event(), **action))
    assert len(server.received) == 1


# 7. Digest.


class Gate:
    """A ``sleep`` that returns when the test opens it."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self._open = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.asked.append(seconds)
        await self._open.wait()

    def open(self) -> None:
        self._open.set()


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


DIGEST: dict[str, Any] = {
    "to": ["ml@example.com"],
    "subject": "Runs failing in {{ workspace.name }}",
    "text": "Run {{ run.id }} failed.",
    "html": "<p>Run {{ run.id }} failed.</p>",
    "digest_window_s": 300,
}


async def test_events_within_the_window_become_one_email(server: SmtpServer) -> None:
    gate = Gate()
    executor = EmailExecutor(smtp(server), sender=SENDER, sleep=gate.sleep)
    ours = [decision(run_event(f"ev-{n}", runId=f"run-{n}"), **DIGEST) for n in (1, 2, 3)]
    calls = [asyncio.create_task(executor(one)) for one in ours]
    await _settle()
    assert gate.asked == [300]
    assert server.received == []
    assert not any(call.done() for call in calls)  # each event waits for the email
    gate.open()
    details = await asyncio.gather(*calls)

    assert len(set(details)) == 1
    assert details[0] == f"sent to 1 recipient {message_id(ours[0])} (digest of 3 events)"
    (received,) = server.received
    message = received.message
    assert message["Subject"] == "Runs failing in ws (3 events)"
    assert message["Message-ID"] == message_id(ours[0])
    assert message["X-Mlevents-Event-Id"] == "ev-1, ev-2, ev-3"
    text, html = received.body("plain"), received.body("html")
    positions = [text.index(f"Run run-{n} failed.") for n in (1, 2, 3)]
    assert positions == sorted(positions)
    assert "----- 2 of 3: event ev-2" in text
    assert [html.index(f"<p>Run run-{n} failed.</p>") for n in (1, 2, 3)] == sorted(
        html.index(f"<p>Run run-{n} failed.</p>") for n in (1, 2, 3)
    )

    # The window is closed: the next event opens a new one, and alone it is a plain email.
    later = asyncio.create_task(executor(decision(run_event("ev-4", runId="run-4"), **DIGEST)))
    await _settle()
    assert gate.asked == [300, 300]
    assert await later == f"sent to 1 recipient {message_id(later_decision(4))}"
    assert server.received[-1].message["Subject"] == "Runs failing in ws"


def later_decision(n: int) -> Decision:
    return decision(run_event(f"ev-{n}", runId=f"run-{n}"), **DIGEST)


async def test_different_subjects_are_different_digests(server: SmtpServer) -> None:
    gate = Gate()
    gate.open()
    executor = EmailExecutor(smtp(server), sender=SENDER, sleep=gate.sleep)
    action = {**DIGEST, "subject": "Run {{ run.id }} failing"}
    ours = [decision(run_event(f"ev-{n}", runId=f"run-{n}"), **action) for n in (1, 2)]
    details = await asyncio.gather(*(executor(one) for one in ours))
    assert not any("digest" in detail for detail in details)
    assert sorted(received.message["Subject"] for received in server.received) == [
        "Run run-1 failing",
        "Run run-2 failing",
    ]
    assert gate.asked == [300, 300]


async def test_a_failed_digest_fails_every_event_in_it(server: SmtpServer) -> None:
    """Every event of the window stays unfinished (redelivered later): at least once."""
    server.data_answer = "554 5.7.1 Rejected"
    gate = Gate()
    executor = EmailExecutor(smtp(server), sender=SENDER, sleep=gate.sleep)
    calls = [
        asyncio.create_task(executor(decision(run_event(f"ev-{n}"), **DIGEST))) for n in (1, 2)
    ]
    await _settle()
    gate.open()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(outcome, PermanentActionError) for outcome in outcomes)
    assert len({str(outcome) for outcome in outcomes}) == 1
    assert server.received == []


async def test_a_caller_that_gives_up_does_not_cancel_the_digest(server: SmtpServer) -> None:
    gate = Gate()
    executor = EmailExecutor(smtp(server), sender=SENDER, sleep=gate.sleep)
    first = asyncio.create_task(executor(decision(run_event("ev-1"), **DIGEST)))
    second = asyncio.create_task(executor(decision(run_event("ev-2"), **DIGEST)))
    await _settle()
    first.cancel()
    gate.open()
    assert (await second).endswith("(digest of 2 events)")
    assert first.cancelled()
    assert len(server.received) == 1


# 8. Files.


async def test_files_transport_writes_one_parseable_eml_per_message(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    executor = EmailExecutor(FilesTransport(outbox), sender=SENDER)
    first = decision(run_event("ev-1"), **{**DIGEST, "digest_window_s": None})
    name = await executor(first)
    assert name.endswith(".eml")
    assert sorted(path.name for path in outbox.iterdir()) == [name]
    message = message_from_bytes((outbox / name).read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert message["Message-ID"] == message_id(first)
    assert message["Subject"] == "Runs failing in ws"
    assert message["To"] == "ml@example.com"
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    assert body.get_content() == "Run r1 failed.\n"

    assert await executor(first) == name  # a redelivery overwrites, does not duplicate
    second = decision(run_event("ev-2"), **SIMPLE)
    other = await executor(second)
    assert sorted(path.name for path in outbox.iterdir()) == sorted([name, other])


def test_the_sender_must_be_one_address() -> None:
    """A bad [email] sender stops the worker at start, not every email later."""
    with pytest.raises(ValueError, match="sender"):
        EmailExecutor(FilesTransport(Path("unused")), sender="a@example.com, b@example.com")
    EmailExecutor(FilesTransport(Path("unused")), sender="ML events <mlevents@example.com>")
