"""The webhook executor against a real HTTP server on loopback."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import standardwebhooks
from aiohttp import web

from consumer.actions.webhook import WebhookExecutor
from consumer.errors import PermanentActionError, TransientActionError
from rules import Decision, Event, decode_body, plan

from ..emulator.peers import free_port
from ..factories import make_event, make_table


class Server:
    """Answers with the queued (status, headers); records what it received."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.requests: list[tuple[dict[str, str], Any]] = []
        self.raw: list[bytes] = []
        self.port = free_port()

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.raw.append(raw)
        self.requests.append((dict(request.headers), json.loads(raw)))
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        return web.Response(status=status, headers=headers)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    peer = Server()
    app = web.Application()
    app.router.add_post("/hook", peer.handle)
    app.router.add_post("/elsewhere", peer.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", peer.port).start()
    yield peer
    await runner.cleanup()


def _decision(
    server: Server, event: Event | None = None, rule: str = "r", **action: Any
) -> Decision:
    url = f"http://127.0.0.1:{server.port}/hook"
    table = make_table({"name": rule, "actions": [{"type": "webhook", "url": url, **action}]})
    (decision,) = plan(table, event or make_event(id="ev-9", data={"runStatus": "Failed"}))
    return decision


async def _post(
    server: Server, event: Event | None = None, secrets: dict[str, str] | None = None, **action: Any
) -> str:
    decision = _decision(server, event, **action)
    async with aiohttp.ClientSession() as session:
        executor = WebhookExecutor(session, secrets=(secrets or {}).get)
        return await executor(decision)


async def test_posts_the_event_grid_body_with_headers(server: Server) -> None:
    """The body is the event in an array, as Event Grid delivers it, with custom headers."""
    assert await _post(server, headers={"X-Team": "risk"}) == "HTTP 200"
    headers, body = server.requests[0]
    assert body[0]["id"] == "ev-9"
    assert body[0]["data"]["runStatus"] == "Failed"
    assert headers["X-Team"] == "risk"
    assert headers["Content-Type"].startswith("application/json")


async def test_cloudevents_format(server: Server) -> None:
    """format = cloudevents posts the CloudEvents 1.0 form of an Event Grid event."""
    await _post(server, format="cloudevents")
    headers, body = server.requests[0]
    assert headers["Content-Type"].startswith("application/cloudevents+json")
    assert (body["specversion"], body["id"], body["type"]) == (
        "1.0", "ev-9", "Microsoft.MachineLearningServices.RunStatusChanged")  # fmt: skip


@pytest.mark.parametrize("status", [408, 429, 500, 503])
async def test_retriable_statuses_are_transient(server: Server, status: int) -> None:
    """408, 429 and 5xx may pass later; Retry-After is passed on."""
    server.answers.append((status, {"Retry-After": "3"}))
    with pytest.raises(TransientActionError) as caught:
        await _post(server)
    assert caught.value.retry_after_s == 3
    assert str(status) in str(caught.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
async def test_other_client_errors_are_permanent(server: Server, status: int) -> None:
    """Any other 4xx will not pass by retrying."""
    server.answers.append((status, {}))
    with pytest.raises(PermanentActionError):
        await _post(server)


async def test_connection_refused_is_transient_and_hides_the_query() -> None:
    """A dead endpoint is retriable; the error names the host, not the URL's secret query."""
    url = f"http://127.0.0.1:{free_port()}/hook?code=SECRET"
    table = make_table({"name": "r", "actions": [{"type": "webhook", "url": url}]})
    (decision,) = plan(table, make_event())
    async with aiohttp.ClientSession() as session:
        with pytest.raises(TransientActionError) as caught:
            await WebhookExecutor(session)(decision)
    assert "SECRET" not in str(caught.value)


SAMPLES = Path(__file__).resolve().parents[2] / "consumer" / "examples" / "events"
SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def _sample(name: str) -> Event:
    return decode_body((SAMPLES / name).read_bytes())[0]


async def test_event_grid_bodies_carry_the_functions_trigger_header(server: Server) -> None:
    await _post(server)
    headers, _ = server.requests[0]
    assert headers["aeg-event-type"] == "Notification"


async def test_signed_requests_verify_with_the_reference_library(server: Server) -> None:
    """Standard Webhooks: the reference library accepts the signature, and rejects it once
    the body is changed."""
    await _post(server, secrets={"HOOK_SECRET": SECRET}, secret_env="HOOK_SECRET")
    headers, _ = server.requests[0]
    raw = server.raw[0]
    lower = {name.lower(): value for name, value in headers.items()}
    assert abs(int(lower["webhook-timestamp"]) - time.time()) < 60
    verifier = standardwebhooks.Webhook(SECRET)
    verifier.verify(raw, lower)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        verifier.verify(raw.replace(b"Failed", b"Passed"), lower)


async def test_webhook_id_is_stable_across_retries_and_differs_per_decision(
    server: Server,
) -> None:
    """A 503 then 200: both requests carry the same webhook-id; so does a redelivery; another
    rule for the same event gets another id."""
    server.answers.append((503, {}))
    with pytest.raises(TransientActionError):
        await _post(server)
    await _post(server)
    await _post(server)
    decision = _decision(server, rule="other")
    async with aiohttp.ClientSession() as session:
        await WebhookExecutor(session)(decision)
    ids = [headers["webhook-id"] for headers, _ in server.requests]
    assert ids[0] == ids[1] == ids[2] != ids[3]
    assert ids[0].startswith("msg_")


async def test_a_missing_secret_is_permanent_and_names_the_variable(server: Server) -> None:
    with pytest.raises(PermanentActionError, match="HOOK_SECRET is not set") as caught:
        await _post(server, secret_env="HOOK_SECRET")
    assert server.requests == []
    assert "whsec" not in str(caught.value)


async def test_template_bodies_and_headers_are_rendered_from_the_event(server: Server) -> None:
    body = '{"run": "{{ data.RUNSTATUS }}", "id": "{{ event.id }}"}'
    await _post(server, format="template", body=body, headers={"X-Run": "{{ data.runStatus }}"})
    headers, received = server.requests[0]
    assert received == {"run": "Failed", "id": "ev-9"}
    assert headers["X-Run"] == "Failed"


async def test_a_template_body_that_is_not_json_is_permanent(server: Server) -> None:
    event = make_event(id="ev-9", data={"runStatus": 'say "hi"'})
    with pytest.raises(PermanentActionError, match="not JSON once rendered"):
        await _post(server, event, format="template", body='{"s": "{{ data.runStatus }}"}')
    assert server.requests == []


async def test_a_header_value_with_a_line_break_is_permanent(server: Server) -> None:
    event = make_event(id="ev-9", data={"runStatus": "x\r\nX-Evil: 1"})
    with pytest.raises(PermanentActionError, match="line break"):
        await _post(server, event, headers={"X-Run": "{{ data.runStatus }}"})
    assert server.requests == []


async def test_teams_preset_posts_an_adaptive_card_linking_to_the_run(server: Server) -> None:
    await _post(server, _sample("run-failed.json"), preset="teams")
    _, body = server.requests[0]
    (attachment,) = body["attachments"]
    assert body["type"] == "message"
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.2")
    assert card["body"][0]["text"] == "RunStatusChanged: Failed"
    facts = {fact["title"]: fact["value"] for fact in card["body"][1]["facts"]}
    assert facts["Workspace"] == "mlw-prod-weu"
    (action,) = card["actions"]
    assert action["type"] == "Action.OpenUrl"
    assert action["url"].startswith("https://ml.azure.com/runs/brave_lamp_x7k2m9q1pz?wsid=")


async def test_slack_preset_escapes_event_values(server: Server) -> None:
    raw = json.loads((SAMPLES / "run-failed.json").read_text())
    raw[0]["data"]["runStatus"] = "<script>&"
    await _post(server, decode_body(json.dumps(raw))[0], preset="slack")
    _, body = server.requests[0]
    text = body["blocks"][0]["text"]["text"]
    assert "*Run status:* &lt;script&gt;&amp;" in text
    assert "<script>" not in json.dumps(body)
    assert "|Open in Azure ML studio>" in text


async def test_redirects_are_not_followed(server: Server) -> None:
    server.answers.append((302, {"Location": f"http://127.0.0.1:{server.port}/elsewhere"}))
    with pytest.raises(PermanentActionError, match="302: redirects are not followed"):
        await _post(server)
    assert len(server.requests) == 1


async def test_gone_is_permanent(server: Server) -> None:
    server.answers.append((410, {}))
    with pytest.raises(PermanentActionError, match="endpoint is gone"):
        await _post(server)
