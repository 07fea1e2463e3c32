"""The webhook executor against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import json
import re
import socket
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, unquote

import msgspec
import pytest
import standardwebhooks
from aiohttp import web
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ServiceRequestError

from consumer.actions.hosts import host_allowed
from consumer.actions.webhook import WebhookExecutor
from consumer.errors import PermanentActionError, TransientActionError
from rules import Decision, Event, RuleSource, RuleTableError, decode_body, load_table, plan
from rules.templates import TemplateError, context, render
from tests.support import SAMPLES
from tests.support.arm import FakeCredential
from tests.support.factories import action_session, make_event, make_table
from tests.support.ports import free_port


class Server:
    """Answers with the queued (status, headers) and ``body``; records what it received."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str]]] = []
        self.body = b""
        self.requests: list[tuple[dict[str, str], Any]] = []
        self.raw: list[bytes] = []
        self.header_lists: list[list[tuple[str, str]]] = []
        self.peers: list[Any] = []
        self.paths: list[str] = []
        self.port = free_port()

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.paths.append(request.raw_path)
        self.raw.append(raw)
        self.requests.append((dict(request.headers), json.loads(raw)))
        self.header_lists.append(list(request.headers.items()))
        transport = request.transport
        self.peers.append(transport.get_extra_info("peername") if transport else None)
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        return web.Response(status=status, headers=headers, body=self.body)

    async def late(self, request: web.Request) -> web.StreamResponse:
        """Sends the headers, then the body ("ok") a moment later."""
        await self.handle(request)
        response = web.StreamResponse()
        response.content_length = 2
        await response.prepare(request)
        await asyncio.sleep(0.05)
        await response.write(b"ok")
        await response.write_eof()
        return response


@contextlib.asynccontextmanager
async def _serving(peer: Server) -> AsyncIterator[Server]:
    app = web.Application()
    app.router.add_post("/hook", peer.handle)
    app.router.add_post("/hook/{tail:.*}", peer.handle)
    app.router.add_post("/elsewhere", peer.handle)
    app.router.add_post("/late", peer.late)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", peer.port).start()
        yield peer
    finally:
        await runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with _serving(Server()) as peer:
        yield peer


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
    async with action_session() as session:
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
    async with action_session() as session:
        with pytest.raises(TransientActionError) as caught:
            await WebhookExecutor(session)(decision)
    assert "SECRET" not in str(caught.value)


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
    async with action_session() as session:
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
        await _post(server, event, format="template", body='{"s": "{{ data.runStatus }}"')
    assert server.requests == []


async def test_a_body_value_cannot_add_keys(server: Server) -> None:
    """A value inside a JSON string is escaped as string content: quotes cannot end it."""
    note = 'a", "admin": true, "z": "'
    event = make_event(data={"note": note})
    await _post(server, event, format="template", body='{"text": "{{ data.note }}"}')
    _, received = server.requests[0]
    assert received == {"text": note}


async def test_a_body_value_outside_a_string_is_one_json_value(server: Server) -> None:
    """Outside a string a value is written as JSON: numbers stay numbers, text is quoted,
    None is null, so text cannot add keys there either."""
    body = (
        '{"n": {{ data.count }}, "ratio": {{ data.ratio }}, "s": {{ data.s }}, "x": {{ data.x }}}'
    )
    event = make_event(data={"count": 3, "ratio": 0.25, "s": '1, "admin": true', "x": None})
    await _post(server, event, format="template", body=body)
    _, received = server.requests[0]
    assert received == {"n": 3, "ratio": 0.25, "s": '1, "admin": true', "x": None}
    assert server.raw[0] == b'{"n": 3, "ratio": 0.25, "s": "1, \\"admin\\": true", "x": null}'


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


async def _run(
    decision: Decision,
    secrets: dict[str, str] | None = None,
    clock: Any = time.time,
    credential: AsyncTokenCredential | None = None,
) -> str:
    async with action_session() as session:
        executor = WebhookExecutor(
            session, secrets=(secrets or {}).get, clock=clock, credential=credential
        )
        return await executor(decision)


def _lower(headers: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


async def test_a_retry_is_signed_afresh_under_the_same_id(server: Server) -> None:
    """503 then 200: the same webhook-id, a timestamp per attempt, both signatures verify."""
    now = [time.time()]

    def clock() -> float:
        now[0] += 7
        return now[0]

    server.answers.append((503, {}))
    decision = _decision(server, secret_env="HOOK_SECRET")
    with pytest.raises(TransientActionError):
        await _run(decision, {"HOOK_SECRET": SECRET}, clock)
    assert await _run(decision, {"HOOK_SECRET": SECRET}, clock) == "HTTP 200"
    first, second = (_lower(headers) for headers, _ in server.requests)
    assert first["webhook-id"] == second["webhook-id"]
    assert int(second["webhook-timestamp"]) == int(first["webhook-timestamp"]) + 7
    for raw, headers in zip(server.raw, (first, second), strict=True):
        standardwebhooks.Webhook(SECRET).verify(raw, headers)


async def test_webhook_id_differs_per_action_and_holds_per_key(server: Server) -> None:
    """Two actions of one rule get two ids; planning the same event again gives the same."""
    url = f"http://127.0.0.1:{server.port}/hook"
    table = make_table(
        {"name": "r", "actions": [{"type": "webhook", "url": url}, {"type": "webhook", "url": url}]}
    )
    event = make_event(id="ev-9")
    first, second = plan(table, event)
    (again, _) = plan(table, make_event(id="ev-9"))
    for decision in (first, second, again):
        await _run(decision)
    ids = [headers["webhook-id"] for headers, _ in server.requests]
    assert ids[0] != ids[1]
    assert ids[0] == ids[2]


async def test_a_secret_without_the_prefix_is_base64_too(server: Server) -> None:
    """A bare base64 secret signs like its whsec_ form."""
    bare = SECRET.removeprefix("whsec_")
    await _post(server, secrets={"HOOK_SECRET": bare}, secret_env="HOOK_SECRET")
    headers, _ = server.requests[0]
    standardwebhooks.Webhook(SECRET).verify(server.raw[0], _lower(headers))


@pytest.mark.parametrize("value", ["", "whsec_", "whsec_not*base64*SECRETVALUE"])
async def test_an_empty_or_broken_secret_is_permanent_and_not_shown(
    server: Server, value: str
) -> None:
    with pytest.raises(PermanentActionError, match="HOOK_SECRET") as caught:
        await _post(server, secrets={"HOOK_SECRET": value}, secret_env="HOOK_SECRET")
    assert server.requests == []
    assert "SECRETVALUE" not in str(caught.value)
    assert "base64*" not in str(caught.value)


async def test_a_signed_template_body_verifies_over_the_exact_bytes(server: Server) -> None:
    body = '{"status":   "{{ run.status }}",\n "ws": "{{ workspace.name }}"}'
    await _post(
        server,
        _sample("run-failed.json"),
        secrets={"HOOK_SECRET": SECRET},
        secret_env="HOOK_SECRET",
        format="template",
        body=body,
    )
    headers, received = server.requests[0]
    assert received == {"status": "Failed", "ws": "mlw-prod-weu"}
    assert server.raw[0] == b'{"status":   "Failed",\n "ws": "mlw-prod-weu"}'
    standardwebhooks.Webhook(SECRET).verify(server.raw[0], _lower(headers))


async def test_a_template_error_names_the_field_and_hides_url_and_header_values(
    server: Server,
) -> None:
    """A name the event lacks is permanent; the message names the field but never shows a
    URL's query or a header's value, which may hold keys."""
    url = f"http://127.0.0.1:{server.port}/hook?code=KEY123&run={{{{ data.nope }}}}"
    table = make_table({"name": "r", "actions": [{"type": "webhook", "url": url}]})
    (decision,) = plan(table, make_event())
    with pytest.raises(PermanentActionError, match="'url'") as caught:
        await _run(decision)
    assert "KEY123" not in str(caught.value)
    assert "nope" in str(caught.value)
    with pytest.raises(PermanentActionError, match=r"'headers\.Authorization'") as caught:
        await _post(server, headers={"Authorization": "Bearer TOKEN123{{ data.nope }}"})
    assert "TOKEN123" not in str(caught.value)
    with pytest.raises(PermanentActionError, match="'body'"):
        await _post(server, format="template", body='{"a": "{{ data.nope }}"}')
    assert server.requests == []


def _port_or_free(port: int) -> int:
    """``port`` when nothing listens on it on loopback, else a free one."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


async def test_event_data_in_the_url_stays_in_the_path_and_query(server: Server) -> None:
    """A value shaped like an authority ("@host:port/x") after the rule's host is one
    percent-encoded path segment (or query value): the request goes to the rule's host and
    nothing reaches the host the value names."""
    other = Server()
    other.port = _port_or_free(18807)
    payload = f"@127.0.0.1:{other.port}/x"  # "@127.0.0.1:18807/x" unless that port is taken
    url = f"http://127.0.0.1:{server.port}/hook/{{{{ data.path }}}}?to={{{{ data.path }}}}"
    table = make_table({"name": "r", "actions": [{"type": "webhook", "url": url}]})
    (decision,) = plan(table, make_event(data={"path": payload}))
    async with _serving(other):
        assert await _run(decision) == "HTTP 200"
    (raw_path,) = server.paths
    path, query = raw_path.split("?")
    assert path.split("/")[:2] == ["", "hook"]
    assert len(path.split("/")) == 3
    assert unquote(path.split("/")[2]) == payload
    assert query.count("=") == 1
    assert unquote(query.removeprefix("to=")) == payload
    assert other.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "{{ data.callback }}",
        "http://hooks.example.invalid{{ data.path }}",
        "http://127.0.0.1:{{ data.port }}/hook",
        "https://{{ data.host }}/hook",
        "http://user:{{ data.key }}@hooks.example.com/",
        "file:///etc/passwd",
        "/hook",
        "http://",
        "ftp://h/x",
    ],
)
def test_a_url_whose_scheme_or_host_is_not_written_out_is_refused_at_load(url: str) -> None:
    """Only the path, query and fragment may come from the event; a URL whose scheme, host
    or port is a template, or that is not http(s), is a load problem naming the field."""
    text = f'[[rules]]\nname = "r"\n[[rules.actions]]\ntype = "webhook"\nurl = "{url}"\n'
    with pytest.raises(RuleTableError) as caught:
        load_table([RuleSource("rules.toml", text)])
    (problem,) = caught.value.problems
    assert problem.message_at().startswith("rules.toml:2: rule 'r': actions[0].url: ")
    assert "must begin with http:// or https:// and the host" in problem.message


def test_a_callback_url_in_event_data_is_never_a_destination() -> None:
    """Even rendered directly, a URL template that is all event data does not render."""
    names = context(make_event(data={"callback": "http://169.254.169.254/latest"}))
    with pytest.raises(TemplateError, match="must begin with http"):
        render("{{ data.callback }}", names, escape="url")


async def test_rule_headers_replace_defaults(server: Server) -> None:
    """A rule's Content-Type replaces the default: one header, any case."""
    await _post(server, headers={"content-type": "application/vnd.aml+json"})
    content_types = [v for k, v in server.header_lists[0] if k.lower() == "content-type"]
    assert content_types == ["application/vnd.aml+json"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Webhook-Id", "'Webhook-Id' is set by the worker"),
        ("webhook-signature", "'webhook-signature' is set by the worker"),
        ("Content-Length", "'Content-Length' is set by the worker"),
        ("X Bad:", "'X Bad:' is not a valid header name"),
    ],
)
def test_reserved_and_invalid_header_names_are_refused_at_load(name: str, message: str) -> None:
    """The signature's headers and the body's framing are the worker's."""
    action = {"type": "webhook", "url": "https://hooks.example.com/", "headers": {name: "x"}}
    with pytest.raises(RuleTableError, match=re.escape(f"actions[0]: headers: {message}")):
        make_table({"name": "r", "actions": [action]})


async def test_allowed_hosts_refuse_any_other_host_when_sending(server: Server) -> None:
    """With [webhook] allowed_hosts, a request to another host is permanent; the message
    names the host, never the URL's query."""
    url = f"http://127.0.0.1:{server.port}/hook?code=SECRET"
    table = make_table({"name": "r", "actions": [{"type": "webhook", "url": url}]})
    (decision,) = plan(table, make_event())
    async with action_session() as session:
        refusing = WebhookExecutor(session, allowed_hosts=["hooks.example.com", "*.example.com"])
        with pytest.raises(PermanentActionError) as caught:
            await refusing(decision)
        assert str(caught.value) == (
            f"webhook: host 127.0.0.1:{server.port} is not in [webhook] allowed_hosts"
        )
        assert server.requests == []
        allowing = WebhookExecutor(session, allowed_hosts=["hooks.example.com", "127.0.0.1"])
        assert await allowing(decision) == "HTTP 200"


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("hooks.example.com", True),
        ("HOOKS.example.com.", True),
        ("a.webhook.office.com", True),
        ("a.b.webhook.office.com", True),
        ("webhook.office.com", False),
        ("evilwebhook.office.com", False),
        ("hooks.example.com.evil.test", False),
        ("169.254.169.254", False),
        (None, False),
    ],
)
def test_host_allowed_matches_names_and_wildcards(host: str | None, allowed: bool) -> None:
    """``*.domain`` is any host under the domain (not the domain itself); names ignore case
    and a trailing dot."""
    assert host_allowed(host, ["hooks.example.com", "*.webhook.office.com"]) is allowed


async def test_only_event_grid_bodies_carry_the_functions_trigger_header(server: Server) -> None:
    await _post(server, format="cloudevents")
    await _post(server, preset="slack")
    await _post(server, format="template", body="{}")
    for headers, _ in server.requests:
        assert "aeg-event-type" not in _lower(headers)
        assert _lower(headers)["webhook-id"].startswith("msg_")


async def test_cloudevents_of_a_cloudevent_is_the_event_itself(server: Server) -> None:
    event = _sample("run-failed.cloudevents.json")
    await _post(server, event, format="cloudevents")
    _, body = server.requests[0]
    assert body == json.loads((SAMPLES / "run-failed.cloudevents.json").read_text())[0]


async def test_retry_after_as_an_http_date(server: Server) -> None:
    now = 1_800_000_000.0
    when = email.utils.formatdate(now + 120, usegmt=True)
    server.answers.append((429, {"Retry-After": when}))
    with pytest.raises(TransientActionError) as caught:
        await _run(_decision(server), clock=lambda: now)
    assert caught.value.retry_after_s == 120


@pytest.mark.parametrize("value", ["soon", "-5", "nan"])
async def test_a_nonsense_retry_after_is_ignored_or_clamped(server: Server, value: str) -> None:
    server.answers.append((503, {"Retry-After": value}))
    with pytest.raises(TransientActionError) as caught:
        await _post(server)
    assert caught.value.retry_after_s in (None, 0.0)


async def test_a_timeout_is_transient(server: Server) -> None:
    """An endpoint slower than timeout_s is retried later."""
    gate = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await gate.wait()
        return web.Response()

    app = web.Application()
    app.router.add_post("/slow", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        url = f"http://127.0.0.1:{port}/slow"
        table = make_table({"name": "r", "actions": [{"type": "webhook", "url": url}]})
        (decision,) = plan(table, make_event())
        decision = msgspec.structs.replace(
            decision, action=msgspec.structs.replace(decision.action, timeout_s=0.2)
        )
        with pytest.raises(TransientActionError, match=f"127.0.0.1:{port}"):
            await _run(decision)
    finally:
        gate.set()
        await runner.cleanup()


async def test_short_answers_are_read_so_the_connection_is_kept(server: Server) -> None:
    """Slack answers "ok": reading it (even when it comes after the headers) lets the next
    request reuse the connection instead of opening another."""
    url = f"http://127.0.0.1:{server.port}/late"
    table = make_table({"name": "r", "actions": [{"type": "webhook", "url": url}] * 2})
    async with action_session() as session:
        executor = WebhookExecutor(session)
        for decision in plan(table, make_event()):
            assert await executor(decision) == "HTTP 200"
    assert server.peers[0] == server.peers[1]


async def test_teams_card_values_cannot_make_links(server: Server) -> None:
    """Teams reads card text as Markdown: brackets in event values are escaped."""
    raw = json.loads((SAMPLES / "run-failed.json").read_text())
    raw[0]["data"]["runStatus"] = "[click](https://evil.example)"
    await _post(server, decode_body(json.dumps(raw))[0], preset="teams")
    _, body = server.requests[0]
    card = body["attachments"][0]["content"]
    facts = {fact["title"]: fact["value"] for fact in card["body"][1]["facts"]}
    assert facts["Run status"] == r"\[click\](https://evil.example)"
    assert facts["Event type"] == "RunStatusChanged"
    assert card["body"][0]["text"] == r"RunStatusChanged: \[click\](https://evil.example)"
    assert card["actions"][0]["url"].startswith("https://ml.azure.com/runs/")


async def test_chat_messages_cut_long_values(server: Server) -> None:
    """Slack refuses a section over 3,000 characters; long values are cut."""
    raw = json.loads((SAMPLES / "run-failed.json").read_text())
    raw[0]["data"]["runStatus"] = "x" * 10_000
    raw[0]["subject"] = "s" * 10_000
    await _post(server, decode_body(json.dumps(raw))[0], preset="slack")
    _, body = server.requests[0]
    assert len(body["blocks"][0]["text"]["text"]) < 3000
    assert len(body["text"]) < 3000


async def test_a_model_event_links_to_the_model(server: Server) -> None:
    await _post(server, _sample("model-registered.production.json"), preset="teams")
    _, body = server.requests[0]
    card = body["attachments"][0]["content"]
    facts = {fact["title"]: fact["value"] for fact in card["body"][1]["facts"]}
    assert "Model" in facts
    assert "/model/" in card["actions"][0]["url"]


# --- secrets from the environment, and an Azure AD token --------------------------------------

SCOPE = "api://hooks/.default"


def _env_decision(**action: Any) -> Decision:
    """The decision of a webhook whose URL is in the variable ``HOOK_URL``."""
    table = make_table(
        {"name": "r", "actions": [{"type": "webhook", "url_env": "HOOK_URL", **action}]}
    )
    (decision,) = plan(table, make_event(id="ev-9"))
    return decision


async def test_the_url_from_the_environment_is_used_as_it_is(server: Server) -> None:
    """The variable's URL is not a template: its query (a Teams Workflows URL's ``sp`` and
    ``sig``) arrives meaning what it said, ``{{ }}`` included, without the line break a
    mounted secret ends in."""
    query = "sp=%2Ftriggers%2Frun&sig=a%2Bb%3D&note=%7B%7B+event.id+%7D%7D"
    url = f"http://127.0.0.1:{server.port}/hook?{query}"
    assert await _run(_env_decision(), {"HOOK_URL": f" {url}\n"}) == "HTTP 200"
    (received,) = server.paths
    path, _, sent = received.partition("?")
    assert path == "/hook"
    assert parse_qs(sent) == parse_qs(query)
    assert parse_qs(sent)["note"] == ["{{ event.id }}"]


async def test_header_values_come_from_the_environment(server: Server) -> None:
    """The header's name is the rule's, its value the variable's."""
    decision = _decision(server, headers_env={"X-Api-Key": "HOOK_API_KEY"})
    await _run(decision, {"HOOK_API_KEY": "KEY-123"})
    headers, _ = server.requests[0]
    assert headers["X-Api-Key"] == "KEY-123"


@pytest.mark.parametrize(
    ("secrets", "action", "message"),
    [
        ({}, {"url_env": "HOOK_URL"}, "'url_env': environment variable HOOK_URL is not set"),
        (
            {"HOOK_URL": "hooks.example.com/SECRET"},
            {"url_env": "HOOK_URL"},
            "'url_env': environment variable HOOK_URL does not hold an http(s) URL",
        ),
        (
            {"KEY": "SECRET\r\nX-Other: 1"},
            {"headers_env": {"X-Api-Key": "KEY"}},
            "'headers_env.X-Api-Key': environment variable KEY holds a line break "
            "or another control character",
        ),
        (
            {"HOOK_SECRET": "SECRET*"},
            {"secret_env": "HOOK_SECRET"},
            "'secret_env': environment variable HOOK_SECRET does not hold a Standard "
            "Webhooks signing secret (base64, optionally after whsec_)",
        ),
    ],
)
async def test_an_unusable_variable_is_permanent_and_names_it_not_its_value(
    server: Server, secrets: dict[str, str], action: dict[str, Any], message: str
) -> None:
    """Checked at start too (``consumer.rulefiles``); this is the executor's own check."""
    decision = _env_decision() if "url_env" in action else _decision(server, **action)
    with pytest.raises(PermanentActionError) as caught:
        await _run(decision, secrets)
    assert str(caught.value) == f"webhook: {message}"
    assert server.requests == []


async def test_auth_sends_a_bearer_token_for_the_rules_scope(server: Server) -> None:
    credential = FakeCredential("TOKEN-123")
    decision = _decision(server, auth={"type": "azure_ad", "scope": SCOPE})
    await _run(decision, credential=credential)
    headers, _ = server.requests[0]
    assert headers["Authorization"] == "Bearer TOKEN-123"
    assert credential.scopes == [(SCOPE,)]


@pytest.mark.parametrize(
    ("credential", "error", "message"),
    [
        (None, PermanentActionError, "webhook: 'auth': this worker has no Azure AD credential"),
        (FakeCredential(fail=True), PermanentActionError, f"no Azure AD token for {SCOPE}: "),
        (
            FakeCredential(errors=(ServiceRequestError("IMDS busy"),)),
            TransientActionError,
            f"no Azure AD token for {SCOPE}: ServiceRequestError: IMDS busy",
        ),
    ],
)
async def test_token_failures_are_classified_as_for_azure_resource_manager(
    server: Server, credential: FakeCredential | None, error: type[Exception], message: str
) -> None:
    """A credential that cannot get a token until someone acts is permanent, any other
    failure transient (``consumer.credentials.is_permanent``); nothing is sent."""
    decision = _decision(server, auth={"type": "azure_ad", "scope": SCOPE})
    with pytest.raises(error) as caught:
        await _run(decision, credential=credential)
    assert str(caught.value).startswith(message)
    assert server.requests == []


async def test_a_token_is_not_sent_over_plain_http_to_another_machine() -> None:
    """Checked at start for ``url_env``, and again before asking for a token."""
    credential = FakeCredential()
    decision = _env_decision(auth={"type": "azure_ad", "scope": SCOPE})
    with pytest.raises(PermanentActionError, match="a token goes over https only"):
        await _run(decision, {"HOOK_URL": "http://hooks.example.invalid/x"}, credential=credential)
    assert credential.scopes == []
