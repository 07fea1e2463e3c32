"""The shipped example rules end to end: the sample Azure ML events through the emulator into
the worker, which emails a real SMTP server, posts the Teams card to a receiver, and starts
retraining and a deployment on a local Azure Resource Manager."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from consumer.config import load_config
from consumer.worker.wiring import build
from emulator import Emulator
from rules import decode_body, plan
from tests.support.arm import ArmServer, FakeCredential
from tests.support.emulator import send_each
from tests.support.smtp import SmtpServer
from tests.support.webhooks import WebhookReceiver
from tests.support.workers import PARTITIONS, worker_config

EXAMPLES = Path(__file__).resolve().parents[2] / "consumer" / "examples"
TEAMS_URL = "http://127.0.0.1:8099/teams"


def shipped_rules(folder: Path, hook_url: str) -> Path:
    """The shipped rules and job spec, with the Teams URL pointed at the test's receiver."""
    text = (EXAMPLES / "rules.toml").read_text(encoding="utf-8")
    assert TEAMS_URL in text
    shutil.copytree(EXAMPLES / "jobs", folder / "jobs")
    path = folder / "rules.toml"
    path.write_text(text.replace(TEAMS_URL, hook_url), encoding="utf-8")
    return path


async def until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.05)


async def test_the_shipped_rules_act_on_the_sample_events(tmp_path: Path, emu: Emulator) -> None:
    """Failed runs email the team, drift starts a Data Factory run, a model-monitor breach
    submits the retraining job, a production registration is deployed with 10 % of the
    traffic, and every Azure ML event reaches the Teams channel; each once."""
    samples = sorted((EXAMPLES / "events").glob("*.json"))
    bodies = [path.read_text(encoding="utf-8") for path in samples]
    async with (
        SmtpServer() as smtp,
        WebhookReceiver() as hooks,
        ArmServer(retry_after="0") as arm,
    ):
        arm.add_endpoint("credit-risk", {"blue": 100})
        arm.models["credit-risk-xgb:8"] = {"instance_type": "Standard_F4s_v2"}
        rules = shipped_rules(tmp_path, hooks.url)
        path = worker_config(tmp_path, rules)
        path.write_text(
            path.read_text()
            + f'[email]\ntransport = "smtp"\nhost = "127.0.0.1"\nport = {smtp.port}\n'
            + 'security = "none"\nsender = "mlevents@example.com"\n'
            + f'[azure]\nmanagement_url = "{arm.base_url}"\n'
        )
        config = load_config(path, {"EVENTHUB_CONNECTION_STRING": emu.connection_string()})
        decisions = {
            decision.key: decision
            for body in bodies
            for event in decode_body(body)
            for decision in plan(_table(rules), event)
        }
        expected: dict[str, set[str]] = {}
        for decision in decisions.values():
            expected.setdefault(decision.rule.name, set()).add(decision.event.id)

        await send_each(emu.connection_string("hub"), {PARTITIONS[0]: bodies})
        async with contextlib.AsyncExitStack() as stack:
            worker = await build(config, stack, credential=FakeCredential())
            task = asyncio.create_task(worker.run())
            try:
                await until(
                    lambda: worker.handler.handled >= len(bodies), 30, "every sample handled"
                )
            finally:
                worker.stop()
                await task

    # Email on failed runs (not on the model-monitor breach) and on completed pipelines.
    emails = {str(m.message["X-Mlevents-Event-Id"]): m for m in smtp.received}
    assert set(emails) == expected["email-on-failed-run"] | expected["email-on-completed-pipeline"]
    assert len(smtp.received) == len(emails)
    failed = emails["3f9c2b1e-8a7d-4c6b-9e5f-0a1b2c3d4e5f"]
    assert failed.rcpt_tos == ["ml-team@example.com"]
    assert str(failed.message["Subject"]) == (
        "[Azure ML] Run brave_lamp_x7k2m9q1pz in credit-risk-training failed (mlw-prod-weu)"
    )
    assert "https://ml.azure.com/runs/brave_lamp_x7k2m9q1pz?wsid=" in failed.body("plain")
    # Retraining: Data Factory for v1 dataset drift, an Azure ML job for v2 monitor breaches.
    assert {params["eventId"] for _, _, params in arm.runs} == expected["retrain-on-dataset-drift"]
    assert len(arm.runs) == len(expected["retrain-on-dataset-drift"])
    (job,) = arm.jobs.values()
    assert job["properties"]["tags"]["mlevents.eventId"] == "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
    assert job["properties"]["experimentName"] == "credit-risk-retraining"
    assert job["properties"]["command"] == "python train.py --data ${{inputs.training_data}}"
    # Deployment of the production registration only, with its instance type from the tag.
    assert list(arm.deployments) == ["credit-risk/v8"]
    assert arm.deployments["credit-risk/v8"]["properties"]["instanceType"] == "Standard_F4s_v2"
    assert arm.endpoints["credit-risk"] == {"v8": 10, "blue": 90}
    # Fan-out: one Teams card per Azure ML decision, none for the storage event.
    cards: list[Any] = hooks.bodies
    assert len(cards) == len(expected["fan-out-workspace-events"])
    assert all(card["attachments"][0]["content"]["type"] == "AdaptiveCard" for card in cards)
    assert worker.handler.handled == len(bodies)


def _table(rules: Path) -> Any:
    from consumer.rulefiles import load_rule_files

    return load_rule_files([rules]).table
