"""Webhook secrets out of the config, end to end: a worker on the emulator posts to a real
receiver with the URL, a header and the signing secret from the environment and an Azure AD
token from its credential, and none of them shows in a log line or a dead letter."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from structlog.testing import capture_logs

from consumer.config import load_config
from consumer.stores.deadletters import DirectoryDeadLetterStore
from emulator import Emulator
from tests.support.arm import FakeCredential
from tests.support.emulator import send_each
from tests.support.factories import event_body
from tests.support.waiting import until
from tests.support.webhooks import WebhookReceiver
from tests.support.workers import running, worker_config

SCOPE = "api://mlevents-hooks/.default"
URL_KEY = "URLKEY-7f3a"
API_KEY = "APIKEY-91c2"
TOKEN = "TOKEN-5d0e"
SIGNING_KEY = base64.b64encode(b"SIGNKEY-0123456789abcdef").decode()
SECRETS = (URL_KEY, API_KEY, TOKEN, SIGNING_KEY)

RULES = f"""\
[[rules]]
name = "hook"
[rules.filter]
includedEventTypes = ["Microsoft.MachineLearningServices.RunStatusChanged"]
[[rules.actions]]
type = "webhook"
url_env = "HOOK_URL"
headers_env = {{ "X-Api-Key" = "HOOK_API_KEY" }}
auth = {{ type = "azure_ad", scope = "{SCOPE}" }}
secret_env = "HOOK_SECRET"
timeout_s = 5
"""


def answer(event_id: str, seen: int) -> tuple[int, float]:
    """``refused`` is refused for good (dead-lettered); ``flaky`` fails once (retried)."""
    if event_id == "refused":
        return 400, 0.0
    if event_id == "flaky" and seen == 1:
        return 503, 0.0
    return 200, 0.0


async def test_secrets_from_the_environment_arrive_and_are_never_logged(
    tmp_path: Path, emu: Emulator
) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    credential = FakeCredential(TOKEN)
    async with WebhookReceiver(behaviour=answer) as receiver:
        environ = {
            "EVENTHUB_CONNECTION_STRING": emu.connection_string(),
            "HOOK_URL": f"{receiver.url}?code={URL_KEY}",
            "HOOK_API_KEY": API_KEY,
            "HOOK_SECRET": f"whsec_{SIGNING_KEY}",
        }
        config = load_config(worker_config(tmp_path, rules), environ)
        letters = DirectoryDeadLetterStore(tmp_path / "state" / "deadletters")
        with capture_logs() as logs:
            async with running(config, credential=credential):
                await send_each(
                    emu.connection_string("hub"),
                    {"0": [event_body("ok"), event_body("refused")], "1": [event_body("flaky")]},
                )
                await until(lambda: set(receiver.acted) == {"ok", "flaky"}, 30, "two posts")
                await until(lambda: any("HTTP 400" in str(e) for e in logs), 30, "a refusal")
        async with letters:
            (letter,) = await letters.list()

    # Each event was posted as often as its answers ask, once more for the retried one, and
    # acted on once; the URL, the header and the token arrived, the token for the rule's scope.
    assert receiver.calls == {"ok": 1, "refused": 1, "flaky": 2}
    assert receiver.acted == {"ok": 1, "flaky": 1}
    assert [r.target for r in receiver.requests] == [f"/hook?code={URL_KEY}"] * 4
    for received in receiver.requests:
        assert received.headers["X-Api-Key"] == API_KEY
        assert received.headers["Authorization"] == f"Bearer {TOKEN}"
        assert received.headers["webhook-signature"].startswith("v1,")
    assert credential.scopes and set(credential.scopes) == {(SCOPE,)}
    # The failures were logged and dead-lettered, with the host only.
    assert letter.event_id == "refused"
    assert letter.error == f"webhook to 127.0.0.1:{receiver.port} answered HTTP 400"
    assert any("HTTP 503" in str(entry) for entry in logs)
    # No secret in any log line (as the worker passed it to structlog, before redaction)
    # nor in the dead letter.
    logged = json.dumps(logs, default=str)
    assert not [secret for secret in SECRETS if secret in logged]
    assert not [secret for secret in SECRETS if secret in repr(letter)]
