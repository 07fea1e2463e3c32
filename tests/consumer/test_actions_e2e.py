"""Actions end to end: worker processes on the emulator, with a real SMTP server, a webhook
receiver and a local Azure Resource Manager in the test, and the idempotency ledger between.

The same 1,000 events are delivered twice (a SIGKILL mid-stream and a restart, then a replay
from a reset checkpoint), and every email, webhook, pipeline run, job and deployment happens
exactly once. The kill happens while actions are in flight: the peers hold their answers
(``Gate``), so the killed worker never learns whether they succeeded, and a peer commits a
request only if the worker is still there to hear the answer, as a real service would.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from pathlib import Path

import pytest
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubProducerClient

from emulator import Emulator

from .armserver import ArmServer
from .peers import Gate, WebhookReceiver, event_body, worker_config
from .processes import PARTITIONS, Processes, WorkerProcess, exit_code, kill, until
from .smtppeers import SmtpServer

EVENTS = 1_000
KINDS = ("failed", "drift", "model", "failed2")
TOPIC = (
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
)
BIN = Path(__file__).resolve().parent / "bin"


def drift_body(event_id: str) -> str:
    event = {
        "topic": TOPIC, "subject": f"datadrifts/d/runs/{event_id}",
        "eventType": "Microsoft.MachineLearningServices.DatasetDriftDetected",
        "eventTime": "2026-01-01T00:00:00Z", "id": event_id, "dataVersion": "2",
        "data": {"DataDriftId": "d", "DataDriftName": "drift", "RunId": event_id,
                 "DriftCoefficient": 0.8},
    }  # fmt: skip
    return json.dumps([event])


def model_body(event_id: str, version: int) -> str:
    event = {
        "topic": TOPIC, "subject": f"models/credit:{version}",
        "eventType": "Microsoft.MachineLearningServices.ModelRegistered",
        "eventTime": "2026-01-01T00:00:00Z", "id": event_id, "dataVersion": "2",
        "data": {"modelName": "credit", "modelVersion": version,
                 "modelTags": {"stage": "production"}},
    }  # fmt: skip
    return json.dumps([event])


def bodies() -> dict[str, list[tuple[str, str]]]:
    """Per partition, (event id, body): runs failing, drift, model registrations."""
    per_partition: dict[str, list[tuple[str, str]]] = {p: [] for p in PARTITIONS}
    for n in range(EVENTS):
        event_id = f"e{n:04d}"
        kind = KINDS[n % len(KINDS)]
        if kind == "drift":
            body = drift_body(event_id)
        elif kind == "model":
            body = model_body(event_id, n)
        else:
            body = event_body(event_id)
        per_partition[PARTITIONS[n % len(PARTITIONS)]].append((event_id, body))
    return per_partition


def rules_file(folder: Path, hook_url: str) -> Path:
    (folder / "job.yml").write_text(
        "properties:\n  jobType: Command\n  command: python train.py\n"
        "  displayName: 'retrain after {{ drift.run_id }}'\n"
        "  environmentId: azureml:train-env:1\n  computeId: cpu-cluster\n"
    )
    path = folder / "rules.toml"
    path.write_text(
        f"""
[[rules]]
name = "mail"
[rules.filter]
includedEventTypes = ["Microsoft.MachineLearningServices.RunStatusChanged"]
[[rules.actions]]
type = "email"
to = ["team@example.com"]
subject = "Run {{{{ run.id }}}} failed"
text = "{{{{ studio.run_url }}}}"
[[rules.actions]]
type = "webhook"
url = "{hook_url}"

[[rules]]
name = "retrain"
[rules.filter]
includedEventTypes = ["Microsoft.MachineLearningServices.DatasetDriftDetected"]
[[rules.actions]]
type = "aml_job"
subscription_id = "s"
resource_group = "rg"
workspace = "ws"
job = "job.yml"
[[rules.actions]]
type = "adf_pipeline_run"
subscription_id = "s"
resource_group = "rg"
factory = "adf"
pipeline = "retrain"
parameters = {{ eventId = "{{{{ event.id }}}}" }}

[[rules]]
name = "deploy"
[rules.filter]
includedEventTypes = ["Microsoft.MachineLearningServices.ModelRegistered"]
[[rules.actions]]
type = "aml_deploy"
subscription_id = "s"
resource_group = "rg"
workspace = "ws"
endpoint = "credit"
deployment = "v{{{{ model.version }}}}"
"""
    )
    return path


def config_file(folder: Path, hook_url: str, smtp_port: int, arm: ArmServer) -> Path:
    path = worker_config(folder, rules_file(folder, hook_url), every_events=20, every_s=0.5)
    path.write_text(
        path.read_text()
        + f'[email]\ntransport = "smtp"\nhost = "127.0.0.1"\nport = {smtp_port}\n'
        + 'security = "none"\nsender = "mlevents@example.com"\n'
        + f'[azure]\ncredential = "cli"\nmanagement_url = "{arm.base_url}"\n'
    )
    return path


class Effects:
    """What the peers committed, per event id."""

    def __init__(self, smtp: SmtpServer, hooks: WebhookReceiver, arm: ArmServer) -> None:
        self.smtp, self.hooks, self.arm = smtp, hooks, arm

    def counts(self) -> dict[str, Counter[str]]:
        emails = Counter(str(m.message["X-Mlevents-Event-Id"]) for m in self.smtp.received)
        jobs = Counter(
            body["properties"]["tags"]["mlevents.eventId"] for body in self.arm.jobs.values()
        )
        runs = Counter(parameters["eventId"] for _, _, parameters in self.arm.runs)
        deployments = Counter(
            body["tags"]["mlevents.eventId"]
            for status, body in self.arm.deployment_puts
            if status == 201
        )
        return {"email": emails, "webhook": Counter(self.hooks.acted), "job": jobs,
                "pipeline run": runs, "deployment": deployments}  # fmt: skip

    def total(self) -> int:
        return sum(sum(counter.values()) for counter in self.counts().values())


@pytest.mark.timeout(240)
async def test_events_delivered_twice_act_exactly_once(
    tmp_path: Path, emu: Emulator, processes: Processes
) -> None:
    """SIGKILL with actions in flight, a restart, then a replay of the whole hub from a reset
    checkpoint: each email, webhook, pipeline run, job and deployment exactly once."""
    gate = Gate()
    per_partition = bodies()
    expected = {
        "email": {i for i, b in _ids(per_partition) if "RunStatusChanged" in b},
        "job": {i for i, b in _ids(per_partition) if "DatasetDriftDetected" in b},
        "deployment": {i for i, b in _ids(per_partition) if "ModelRegistered" in b},
    }
    expected["webhook"] = expected["email"]
    expected["pipeline run"] = expected["job"]
    async with (
        SmtpServer(gate=gate) as smtp,
        WebhookReceiver(gate=gate) as hooks,
        ArmServer(retry_after="0", gate=gate) as arm,
    ):
        arm.add_endpoint("credit")
        for n in range(EVENTS):
            arm.models[f"credit:{n}"] = {"stage": "production"}
        effects = Effects(smtp, hooks, arm)
        config = config_file(tmp_path, hooks.url, smtp.port, arm)
        env = {
            "EVENTHUB_CONNECTION_STRING": emu.connection_string(),
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "MLEVENTS_TEST_TOKEN": arm.token,
        }
        await send_bodies(emu.connection_string("hub"), per_partition)

        first = processes.worker(config, "first", env)
        await until(lambda: effects.total() >= 300, 60, "300 effects")
        gate.close()  # actions now in flight stay in flight
        # Actions answered before the gate closed are recorded in the ledger before their
        # event's log line is written: once the lines stop, nothing is between the two.
        await quiet(first, 1.5)
        held = gate.waiting
        await kill(first.process)
        gate.open()
        await asyncio.sleep(0.5)
        assert held > 0, "the kill should catch actions in flight"

        second = processes.worker(config, "second", env)
        everything = {event_id for event_id, _ in _ids(per_partition)}
        await until(lambda: _finished(first) | _finished(second) >= everything, 120, "every event")
        assert _all_done(effects, expected)
        second.process.terminate()
        assert await exit_code(second.process, 30) == 0

        (tmp_path / "state" / "checkpoints.sqlite3").unlink()
        third = processes.worker(config, "third", env)
        await until(lambda: _processed(third) >= EVENTS, 120, "the replay of every event")
        third.process.terminate()
        assert await exit_code(third.process, 30) == 0

    counts = effects.counts()
    for kind, ids in expected.items():
        assert set(counts[kind]) == ids, kind
        assert [i for i, n in counts[kind].items() if n != 1] == [], f"{kind} more than once"
    # A deployment whose operation was still being followed at the kill is PUT again, the
    # same spec under the same name: an update of the one deployment, not a second one.
    finished_first = _finished(first)
    updated = {b["tags"]["mlevents.eventId"] for status, b in arm.deployment_puts if status == 200}
    assert updated.isdisjoint(finished_first)
    # The replay from a reset checkpoint did nothing but skip.
    replayed = third.logged("event.processed")
    assert all("skipped" in outcome for line in replayed for outcome in line["actions"])


async def send_bodies(
    connection_string: str, per_partition: dict[str, list[tuple[str, str]]]
) -> None:
    """Send each partition's bodies, in order, in batches of 100."""
    async with EventHubProducerClient.from_connection_string(connection_string) as producer:
        for partition, pairs in per_partition.items():
            for start in range(0, len(pairs), 100):
                batch = await producer.create_batch(partition_id=partition)
                for _, body in pairs[start : start + 100]:
                    batch.add(EventData(body))
                await producer.send_batch(batch)


def _ids(per_partition: dict[str, list[tuple[str, str]]]) -> list[tuple[str, str]]:
    return [pair for pairs in per_partition.values() for pair in pairs]


def _all_done(effects: Effects, expected: dict[str, set[str]]) -> bool:
    counts = effects.counts()
    return all(set(counts[kind]) >= ids for kind, ids in expected.items())


async def quiet(worker: WorkerProcess, for_s: float) -> None:
    """Wait until the worker has logged no processed event for ``for_s`` seconds."""
    count, since = -1, asyncio.get_running_loop().time()
    while asyncio.get_running_loop().time() - since < for_s:
        await asyncio.sleep(0.1)
        now = len(worker.logged("event.processed"))
        if now != count:
            count, since = now, asyncio.get_running_loop().time()


def _finished(worker: WorkerProcess) -> set[str]:
    return {str(line["event_id"]) for line in worker.logged("event.processed")}


def _processed(worker: WorkerProcess) -> int:
    return len(worker.logged("event.processed"))
