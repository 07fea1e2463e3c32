"""The sinks of the chaos run: the shared test peers (SMTP, webhook receiver, local ARM), their
slow phase and error bursts, and the effects they recorded, per decision.

Every peer keeps a request it received in full even when the client is gone by the time
the answer is ready, as a real service does: a worker killed while waiting never learns the
outcome, which is exactly the uncertainty the ledger has to resolve.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.support.arm import ArmServer, Fault
from tests.support.smtp import SmtpServer
from tests.support.webhooks import WebhookReceiver, always_ok

from .scenario import ENDPOINT, Key, key_for, model_versions

RETRY_AFTER = "1"
"""``Retry-After`` of the ARM peer's 429 answers, in seconds."""
PAGE_SIZE = 100
"""Pipeline runs per page of a Query By Factory answer."""


class Seen(NamedTuple):
    """An effect a peer recorded, and when: after one time and by another (epoch seconds)."""

    key: Key
    after: float
    by: float


@dataclass
class SlowSmtp(SmtpServer):
    """The SMTP peer; while ``delay_s`` is set, a message is stored first and its ``250``
    comes that much later."""

    delay_s: float = 0.0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return answer


@dataclass
class Sinks:
    """The three peers, started together by ``sinks()``."""

    smtp: SlowSmtp
    hooks: WebhookReceiver
    arm: ArmServer
    _marks: list[tuple[float, tuple[int, ...]]] = field(default_factory=list)

    def slow(self, request_s: float) -> None:
        """Every peer takes ``request_s`` per answer (0: back to normal)."""
        self.smtp.delay_s = request_s
        self.hooks.behaviour = (lambda _id, _seen: (200, request_s)) if request_s else always_ok
        self.arm.every = Fault(delay_s=request_s) if request_s else None

    async def burst(self, seconds: float) -> None:
        """Each peer in turn refuses everything for ``seconds``: webhooks and ARM with 429 for
        the first half (ARM's with ``Retry-After``) and 503 for the second, SMTP with 451."""
        self.hooks.behaviour = lambda _id, _seen: (429, 0.0)
        await asyncio.sleep(seconds / 2)
        self.hooks.behaviour = lambda _id, _seen: (503, 0.0)
        await asyncio.sleep(seconds / 2)
        self.hooks.behaviour = always_ok
        self.smtp.data_answer = "451 4.3.0 Try again later"
        await asyncio.sleep(seconds)
        self.smtp.data_answer = None
        self.arm.every = Fault(status=429, retry_after=RETRY_AFTER)
        await asyncio.sleep(seconds / 2)
        self.arm.every = Fault(status=503)
        await asyncio.sleep(seconds / 2)
        self.arm.every = None

    def mark(self) -> None:
        """Note how many records each peer holds now: an effect is then known to have
        happened between the last mark before it and the first one after (``effects``)."""
        self._marks.append((time.time(), self._lengths()))

    def effects(self) -> list[Seen]:
        """What the peers committed, each with the marks around it (the first mark, or the
        last one and now): emails, webhooks answered 2xx, pipeline runs started, jobs created
        and deployments created (an update is no new one)."""
        times = [0.0] + [at for at, _ in self._marks] + [time.time()]
        found: list[Seen] = []
        for source, records in enumerate(self._records()):
            held = [lengths[source] for _, lengths in self._marks]
            for n, key in enumerate(records):
                mark = bisect.bisect_right(held, n)  # the first mark holding record n
                if key is not None:
                    found.append(Seen(key, times[mark], times[mark + 1]))
        return found

    def _lengths(self) -> tuple[int, ...]:
        arm = self.arm
        return (len(self.smtp.received), len(self.hooks.bodies), len(arm.runs), len(arm.jobs),
                len(arm.deployment_puts))  # fmt: skip

    def _records(self) -> list[list[Key | None]]:
        """Each peer's records in the order they came, as decisions (``None``: no new
        effect), in the order of ``_lengths``."""
        return [
            [key_for(str(m.message["X-Mlevents-Event-Id"]), "email") for m in self.smtp.received],
            [key_for(_event(body), "webhook") for body in self.hooks.bodies],
            [_decision(parameters["decision"]) for _, _, parameters in self.arm.runs],
            [key_for(_event_tag(job["properties"]), "aml_job") for job in self.arm.jobs.values()],
            [
                key_for(_event_tag(body), "aml_deploy") if status == 201 else None
                for status, body in self.arm.deployment_puts
            ],
        ]

    def deployment_updates(self) -> int:
        """Deployment PUTs that updated an existing deployment: the same spec again, no new
        effect (a retry after a slow answer, or a repeat the ledger did not prevent)."""
        return sum(1 for status, _ in self.arm.deployment_puts if status == 200)


def _decision(key: str) -> Key:
    event, rule, index = key.split("/")
    return Key(event, rule, int(index))


def _event(body: Any) -> str:
    """The event id of a webhook body (Event Grid posts an array of one)."""
    return str((body[0] if isinstance(body, list) else body)["id"])


def _event_tag(resource: Any) -> str:
    return str(resource["tags"]["mlevents.eventId"])


@contextlib.asynccontextmanager
async def sinks(events: int, token: str) -> AsyncIterator[Sinks]:
    """Start the three peers on loopback, the ARM one knowing every model the events register
    and the endpoint they deploy to."""
    smtp = SlowSmtp()
    async with (
        smtp,
        WebhookReceiver() as hooks,
        ArmServer(token=token, retry_after="0", operation_polls=1, page_size=PAGE_SIZE) as arm,
    ):
        arm.add_endpoint(ENDPOINT)
        for version in model_versions(events):
            arm.models[version] = {"stage": "production"}
        yield Sinks(smtp, hooks, arm)
