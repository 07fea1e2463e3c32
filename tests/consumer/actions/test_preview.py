"""Previews against what the executors really send: each action type's preview is what its
peer on loopback (SMTP server, webhook receiver, ARM) received, but for the secrets it
redacts and what only the moment of sending decides (an email's Date)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from consumer.actions import REDACTED
from consumer.actions.adf import AdfExecutor
from consumer.actions.amldeploy import AmlDeployExecutor
from consumer.actions.amljob import AmlJobExecutor
from consumer.actions.azure import ArmClient
from consumer.actions.email import EmailExecutor, SmtpTransport
from consumer.actions.preview import HttpCall, LogLine, Mail, Previewer, mail_parts, redact_url
from consumer.actions.webhook import WebhookExecutor
from consumer.config import AzureConfig, EmailConfig
from consumer.errors import PermanentActionError
from tests.support.arm import TOKEN, ArmServer, FakeCredential, FakeTime, Recorded, decision
from tests.support.factories import action_session
from tests.support.smtp import SmtpServer
from tests.support.webhooks import WebhookReceiver

FAILED = "run-failed.json"  # run brave_lamp_x7k2m9q1pz of credit-risk-training, mlw-prod-weu
REGISTERED = "model-registered.production.json"  # credit-risk-xgb version 8
SENDER = "mlevents@example.com"
SECRET = "whsec_" + base64.b64encode(b"a signing key of 32 bytes, quite").decode()
NOW = 1_715_678_901.0
TRANSPORT_HEADERS = {"host", "content-length", "user-agent", "accept", "accept-encoding"}
"""Headers aiohttp adds to every request: the connection's, not the action's."""


@pytest.fixture
async def arm() -> AsyncIterator[tuple[ArmServer, ArmClient, Previewer]]:
    time = FakeTime()
    async with ArmServer() as server, action_session("azure") as session:
        client = ArmClient(session, FakeCredential(), base_url=server.base_url,
                           clock=time.clock, sleep=time.sleep)  # fmt: skip
        yield server, client, Previewer(azure=AzureConfig(management_url=server.base_url))


def _received(call: Recorded, base_url: str) -> HttpCall:
    """An ARM request as the server recorded it, in the preview's terms, the token redacted."""
    query = "&".join(f"{name}={value}" for name, value in call.query.items())
    names = ("Authorization", "Accept", "Content-Type")
    headers: dict[str, str] = {name: call.headers[name] for name in names if name in call.headers}
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    headers["Authorization"] = f"Bearer {REDACTED}"
    return HttpCall(call.method, f"{base_url}{call.path}?{query}", headers, call.body)


async def test_an_email_preview_is_the_message_the_smtp_server_received() -> None:
    """Headers and parts (text and HTML, non-ASCII subject, Cc) are what arrived; the Date
    is the preview's own time, as the sender stamps it when it sends."""
    action = {
        "type": "email", "to": ["{{ run.tags.owner | default('ml@example.com') }}"],
        "cc": ["ops@example.com"],
        "subject": "Lauf {{ run.id }} fehlgeschlagen – {{ workspace.name }}",
        "text": "Run {{ run.id }} failed.\nStudio: {{ studio.run_url }}",
        "html": "<p>{{ run.experiment_name }} & <b>{{ run.id }}</b></p>",
    }  # fmt: skip
    chosen = decision(FAILED, action)
    async with SmtpServer() as server:
        transport = SmtpTransport(
            "127.0.0.1", server.port, security="none", username=None, password=None,
            timeout_s=5, local_hostname="localhost",
        )  # fmt: skip
        await EmailExecutor(transport, sender=SENDER)(chosen)
    preview = Previewer(email=EmailConfig(sender=SENDER)).preview(chosen)
    (mail,) = preview.sends
    assert isinstance(mail, Mail)
    headers, parts = mail_parts(server.received[0].message)
    assert [name for name, _ in mail.headers] == [name for name, _ in headers]
    assert [h for h in mail.headers if h[0] != "Date"] == [h for h in headers if h[0] != "Date"]
    assert dict(mail.headers)["Subject"].startswith("Lauf brave_lamp_x7k2m9q1pz fehlgeschlagen –")
    assert mail.parts == parts
    assert [kind for kind, _ in parts] == ["text/plain", "text/html"]


async def test_a_webhook_preview_is_the_request_the_receiver_got_with_its_secrets_redacted() -> (
    None
):
    """Method, URL, every header the action sets and the body are what arrived; the
    signature, a key in the query and a key header are redacted, and nothing else is."""
    async with WebhookReceiver() as receiver:
        action = {
            "type": "webhook", "url": receiver.url + "?code=k3y&run={{ run.id }}",
            "secret_env": "HOOK_SECRET",
            "headers": {"X-Api-Key": "abc123", "X-Run": "{{ run.id }}"},
        }  # fmt: skip
        chosen = decision(FAILED, action)
        async with action_session() as session:
            executor = WebhookExecutor(session, secrets={"HOOK_SECRET": SECRET}.get,
                                       clock=lambda: NOW)  # fmt: skip
            assert await executor(chosen) == "HTTP 200"
    (sent,) = receiver.requests
    preview = Previewer(clock=lambda: NOW).preview(chosen)
    (call,) = preview.sends
    assert isinstance(call, HttpCall)
    assert (call.method, call.url) == ("POST", redact_url(f"{receiver.url[:-5]}{sent.target}"))
    assert call.url.endswith(f"/hook?code={REDACTED}&run=brave_lamp_x7k2m9q1pz")
    headers = {k: v for k, v in sent.headers.items() if k.lower() not in TRANSPORT_HEADERS}
    assert headers.keys() == call.headers.keys()
    assert sent.headers["webhook-signature"].startswith("v1,")
    assert sent.headers["X-Api-Key"] == "abc123"
    redacted = {"webhook-signature": REDACTED, "X-Api-Key": REDACTED}
    assert call.headers == {**headers, **redacted}
    assert call.headers["webhook-timestamp"] == str(int(NOW))
    assert call.body == json.loads(sent.body)


async def test_a_webhook_preview_shows_values_from_the_environment_redacted() -> None:
    """A URL from ``url_env``, header values from ``headers_env`` and the Azure AD token are
    secrets: the preview names where they come from and shows none of them, while the
    executor sends them; the headers otherwise are the same."""
    url_key, api_key = "URLKEY-1d2c", "APIKEY-9e8f"
    async with WebhookReceiver() as receiver:
        action = {
            "type": "webhook", "url_env": "HOOK_URL", "secret_env": "HOOK_SECRET",
            "headers_env": {"X-Api-Key": "HOOK_KEY"},
            "auth": {"type": "azure_ad", "scope": "api://hooks/.default"},
        }  # fmt: skip
        chosen = decision(FAILED, action)
        secrets = {"HOOK_URL": f"{receiver.url}?code={url_key}", "HOOK_KEY": api_key,
                   "HOOK_SECRET": SECRET}  # fmt: skip
        async with action_session() as session:
            executor = WebhookExecutor(session, secrets=secrets.get, clock=lambda: NOW,
                                       credential=FakeCredential())  # fmt: skip
            assert await executor(chosen) == "HTTP 200"
    (sent,) = receiver.requests
    (call,) = Previewer(clock=lambda: NOW).preview(chosen).sends
    assert isinstance(call, HttpCall)
    assert call.url == f"{REDACTED} (from HOOK_URL)"
    assert sent.target == f"/hook?code={url_key}"
    assert sent.headers["X-Api-Key"] == api_key
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    headers = {k: v for k, v in sent.headers.items() if k.lower() not in TRANSPORT_HEADERS}
    assert headers.keys() == call.headers.keys()
    secret_values = {"X-Api-Key", "Authorization", "webhook-signature"}
    assert {k: v for k, v in call.headers.items() if k not in secret_values} == {
        k: v for k, v in headers.items() if k not in secret_values
    }
    assert call.headers["X-Api-Key"] == REDACTED
    assert call.headers["Authorization"] in (REDACTED, f"Bearer {REDACTED}")
    assert call.headers["webhook-signature"] == REDACTED
    assert not [s for s in (url_key, api_key, TOKEN, SECRET) if s in repr(call)]


async def test_an_adf_preview_is_the_create_run_request_arm_received(
    arm: tuple[ArmServer, ArmClient, Previewer],
) -> None:
    """Pipelines - Create Run: URL with api-version, headers (token redacted) and the
    rendered parameters with the decision key, numbers as numbers."""
    server, client, previewer = arm
    action = {
        "type": "adf_pipeline_run", "subscription_id": "{{ workspace.subscription_id }}",
        "resource_group": "rg", "factory": "adf", "pipeline": "retrain",
        "parameters": {"runId": "{{ run.id }}", "threshold": 0.5, "tags": ["{{ run.status }}"]},
        "key_parameter": "mleventsKey",
    }  # fmt: skip
    chosen = decision(FAILED, action)
    await AdfExecutor(client)(chosen)
    preview = previewer.preview(chosen)
    assert list(preview.sends) == [_received(server.requests[0], server.base_url)]
    assert server.requests[0].body["threshold"] == 0.5


async def test_an_aml_job_preview_is_the_job_put_arm_received(
    arm: tuple[ArmServer, ArmClient, Previewer], tmp_path: Path
) -> None:
    """The job PUT: its name from the decision key, the spec rendered (Azure ML's bindings
    kept), the experiment and the tags."""
    server, client, previewer = arm
    (tmp_path / "job.yml").write_text(
        "properties:\n  jobType: Command\n  command: python t.py --in ${{inputs.d}}\n"
        "  displayName: 'after {{ run.id }}'\n"
    )
    action = {"type": "aml_job", "subscription_id": "s", "resource_group": "rg",
              "workspace": "{{ workspace.name }}", "job": "job.yml",
              "experiment_name": "{{ run.experiment_name }}"}  # fmt: skip
    chosen = decision(FAILED, action, rules_file=str(tmp_path / "rules.json"))
    await AmlJobExecutor(client)(chosen)
    (put,) = server.calls("job")
    assert list(previewer.preview(chosen).sends) == [_received(put, server.base_url)]
    assert put.body["properties"]["command"] == "python t.py --in ${{inputs.d}}"


async def test_an_aml_deploy_preview_lists_the_calls_arm_received(
    arm: tuple[ArmServer, ArmClient, Previewer],
) -> None:
    """Model check, endpoint read, deployment PUT, endpoint read again and the traffic PUT,
    in order (the operation polls between them are ARM's to name). The deployment's body
    is what was PUT but for the endpoint's region, which a note names; the traffic PUT's
    body is the endpoint as read, with the share the preview shows."""
    server, client, previewer = arm
    server.models["credit-risk-xgb:8"] = {}
    server.add_endpoint("credit-risk", {"blue": 100})
    action = {
        "type": "aml_deploy", "subscription_id": "{{ workspace.subscription_id }}",
        "resource_group": "{{ workspace.resource_group }}", "workspace": "{{ workspace.name }}",
        "endpoint": "credit-risk", "deployment": "v{{ model.version }}", "traffic_percent": 10,
    }  # fmt: skip
    chosen = decision(REGISTERED, action)
    await AmlDeployExecutor(client, poll_interval_s=1)(chosen)
    calls = [_received(call, server.base_url) for call in server.requests
             if call.route != "operation"]  # fmt: skip
    preview = [call for call in previewer.preview(chosen).sends if isinstance(call, HttpCall)]
    shown = [(call.method, call.url, call.headers) for call in preview]
    assert shown == [(call.method, call.url, call.headers) for call in calls]
    put_deployment, put_traffic = calls[2].body, calls[4].body
    assert preview[2].body == {k: v for k, v in put_deployment.items() if k != "location"}
    assert put_deployment["location"] == server.location
    assert "location: the endpoint's" in preview[2].note
    assert put_traffic["properties"]["traffic"] == {"v8": 10, "blue": 90}
    assert preview[4].body == {"properties": {"traffic": {"v8": 10}}}


def test_a_log_preview_is_the_rendered_line() -> None:
    chosen = decision(FAILED, {"type": "log", "level": "error", "message": "{{ run.id }} failed"})
    assert Previewer().preview(chosen).sends == (LogLine("error", "brave_lamp_x7k2m9q1pz failed"),)


def test_a_preview_fails_as_the_action_would_before_sending() -> None:
    """A template reading a field the event lacks fails the preview with the executor's
    message, which names the field and what the event has instead."""
    chosen = decision(FAILED, {"type": "adf_pipeline_run", "subscription_id": "s",
                               "resource_group": "rg", "factory": "f", "pipeline": "p",
                               "parameters": {"x": "{{ data.noSuchField }}"}})  # fmt: skip
    with pytest.raises(PermanentActionError) as raised:
        Previewer().preview(chosen)
    assert str(raised.value).startswith(
        "adf_pipeline_run: 'parameters': template '{{ data.noSuchField }}': "
        "no key 'noSuchField' here (keys: "
    )


def test_text_and_fields_say_the_same_without_secrets() -> None:
    """The text (for people) and the fields (for log lines) of a signed webhook hold the
    request line, the headers and the body, and no secret value."""
    action: dict[str, Any] = {
        "type": "webhook", "url": "https://hooks.example.com/x?sig=s3cr3t&v=1",
        "secret_env": "HOOK_SECRET", "headers": {"Authorization": "Bearer t0ken"},
    }  # fmt: skip
    preview = Previewer(clock=lambda: NOW).preview(decision(FAILED, action))
    text, fields = preview.text(), preview.fields()
    assert text.splitlines()[:3] == [
        "r:webhook#0",
        f"  POST https://hooks.example.com/x?sig={REDACTED}&v=1",
        "  Content-Type: application/json; charset=utf-8",
    ]
    assert f"  webhook-signature: {REDACTED}" in text.splitlines()
    assert '      "id": "3f9c2b1e-8a7d-4c6b-9e5f-0a1b2c3d4e5f",' in text.splitlines()
    (sent,) = fields["sends"]
    assert (fields["rule"], fields["action"], sent["method"]) == ("r", "webhook#0", "POST")
    assert sent["headers"]["Authorization"] == REDACTED
    assert sent["body"][0]["id"] == "3f9c2b1e-8a7d-4c6b-9e5f-0a1b2c3d4e5f"
    for secret in ("s3cr3t", "t0ken", SECRET):
        assert secret not in text and secret not in json.dumps(fields)


def test_redact_url_keeps_everything_but_secrets() -> None:
    url = "https://user:pw@h.example/a%2Fb?api-key=1&q=a%20b&Code=2&sig=3&x&token="
    assert redact_url(url) == (
        f"https://user:{REDACTED}@h.example/a%2Fb?api-key={REDACTED}&q=a%20b"
        f"&Code={REDACTED}&sig={REDACTED}&x&token={REDACTED}"
    )
