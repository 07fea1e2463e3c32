"""Actions end to end: worker processes on the emulator, with a real SMTP server, a webhook
receiver and a local Azure Resource Manager in the test, and the idempotency ledger between.

The same 1,000 events are delivered twice: a SIGKILL mid-stream and a restart, then a replay
from a reset checkpoint. The kill comes while the peers hold requests (``Gate``): the killed
worker never hears their answers, yet the peers carry them out, as real services do. So
the restart meets actions whose outcome is uncertain. Effects are counted per event:
nothing is lost; a job, a pipeline run and a deployment, which the worker can look up,
happen exactly once; an email or a webhook happens again only where a worker logged that
it repeated that very action (``action.uncertain``, resolution ``repeat``).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubProducerClient

from consumer.stores.deadletters import DirectoryDeadLetterStore
from emulator import Emulator
from tests.support.arm import AZ_BIN, ArmServer
from tests.support.factories import event_body
from tests.support.gate import Gate
from tests.support.processes import exit_code, kill
from tests.support.smtp import SmtpServer
from tests.support.waiting import until
from tests.support.webhooks import WebhookReceiver
from tests.support.workers import PARTITIONS, Processes, unexplained, worker_config

EVENTS = 1_000
KINDS = ("failed", "drift", "model", "failed2")
TOPIC = (
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
)
FINDABLE = ("job", "pipeline run", "deployment")
"""The effects a worker looks up when their outcome is uncertain: never repeated."""
REPEATABLE = {"email": "mail/0", "webhook": "mail/1"}
"""The effects repeated when their outcome is uncertain (``on_uncertain = "repeat"``), with
their decision keys past the event id (``<rule>/<action index>``)."""


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
key_parameter = "mleventsKey"

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
    """What the peers carried out, counted per event id."""

    def __init__(self, smtp: SmtpServer, hooks: WebhookReceiver, arm: ArmServer) -> None:
        self.smtp, self.hooks, self.arm = smtp, hooks, arm

    def counts(self) -> dict[str, Counter[str]]:
        emails = Counter(str(m.message["X-Mlevents-Event-Id"]) for m in self.smtp.received)
        jobs = Counter(
            request.body["properties"]["tags"]["mlevents.eventId"]
            for request in self.arm.calls("job")
        )
        runs = Counter(parameters["eventId"] for _, _, parameters in self.arm.runs)
        created = Counter(
            body["tags"]["mlevents.eventId"]
            for status, body in self.arm.deployment_puts
            if status == 201
        )
        return {"email": emails, "webhook": Counter(self.hooks.acted), "job": jobs,
                "pipeline run": runs, "deployment": created}  # fmt: skip

    def total(self) -> int:
        """How many effects so far, of every kind (cheap: no email is parsed)."""
        arm = self.arm
        creates = sum(status == 201 for status, _ in arm.deployment_puts)
        return (len(self.smtp.received) + sum(self.hooks.acted.values())
                + len(arm.calls("job")) + len(arm.runs) + creates)  # fmt: skip

    def message_ids(self) -> dict[str, set[str]]:
        """The Message-IDs of the emails about each event."""
        found: dict[str, set[str]] = {}
        for received in self.smtp.received:
            message = received.message
            found.setdefault(str(message["X-Mlevents-Event-Id"]), set()).add(
                str(message["Message-ID"])
            )
        return found


def expected_effects(per_partition: dict[str, list[tuple[str, str]]]) -> dict[str, Counter[str]]:
    """Each kind of effect once per event that asks for it."""
    by_type = {"email": "RunStatusChanged", "webhook": "RunStatusChanged",
               "job": "DatasetDriftDetected", "pipeline run": "DatasetDriftDetected",
               "deployment": "ModelRegistered"}  # fmt: skip
    return {
        kind: Counter(i for i, body in _ids(per_partition) if event_type in body)
        for kind, event_type in by_type.items()
    }


@pytest.mark.timeout(420)
async def test_events_delivered_twice_act_exactly_once(
    tmp_path: Path, emu: Emulator, processes: Processes
) -> None:
    """SIGKILL with actions held in flight, a restart, then a replay of the whole hub from a
    reset checkpoint: no effect lost, none repeated but for an uncertain email or webhook
    that a worker logged repeating."""
    gate = Gate()
    per_partition = bodies()
    expected = expected_effects(per_partition)
    everything = {event_id for event_id, _ in _ids(per_partition)}
    async with (
        SmtpServer(gate=gate) as smtp,
        WebhookReceiver(gate=gate) as hooks,
        ArmServer(retry_after="0", poll_retry_after="0", page_size=100, gate=gate) as arm,
    ):
        arm.add_endpoint("credit")
        for n in range(EVENTS):
            arm.models[f"credit:{n}"] = {"stage": "production"}
        effects = Effects(smtp, hooks, arm)
        config = config_file(tmp_path, hooks.url, smtp.port, arm)
        env = {
            "EVENTHUB_CONNECTION_STRING": emu.connection_string(),
            "PATH": f"{AZ_BIN}{os.pathsep}{os.environ['PATH']}",
            "MLEVENTS_TEST_TOKEN": arm.token,
        }
        await send_bodies(emu.connection_string("hub"), per_partition)

        first = processes.worker(config, "first", env)
        await until(lambda: effects.total() >= 300, 120, "300 effects")
        gate.close()  # requests arriving now are held: their answers will never be heard
        await until(lambda: gate.waiting >= 1, 60, "a request held in flight")
        await kill(first.process)
        gate.open()
        await until(lambda: gate.waiting == 0, 30, "the held requests carried out")

        second = processes.worker(config, "second", env)
        done_first = first.processed()
        await until(
            lambda: everything <= set(done_first + second.processed()), 240, "every event done"
        )
        second.process.terminate()
        assert await exit_code(second.process, 30) == 0
        after_restart = effects.counts()

        (tmp_path / "state" / "checkpoints.sqlite3").unlink()
        third = processes.worker(config, "third", env)
        await until(lambda: everything <= set(third.processed()), 240, "the replay of every event")
        third.process.terminate()
        assert await exit_code(third.process, 30) == 0

    workers = (first, second, third)
    counts = effects.counts()
    assert counts == after_restart  # the replay carried out nothing
    for kind, counter in counts.items():
        assert expected[kind] - counter == Counter(), f"{kind} lost"
        assert set(counter) <= set(expected[kind]), f"{kind} for events that ask for none"
    for kind in FINDABLE:
        assert counts[kind] == expected[kind], f"{kind} not exactly once"
    for kind, action in REPEATABLE.items():
        extra = unexplained(counts[kind], action, workers)
        assert extra == {}, f"{kind} repeated without an uncertain outcome logged"
    # An email repeated is the same message again, which the recipient's mail system knows.
    assert all(len(ids) == 1 for ids in effects.message_ids().values())
    # A deployment found after the kill is not PUT again, not even as an update.
    puts = Counter(body["tags"]["mlevents.eventId"] for _, body in arm.deployment_puts)
    assert puts == expected["deployment"]
    # Each pipeline run carries its decision key, which is how it is found.
    assert all(p["mleventsKey"] == f"{p['eventId']}/retrain/1" for _, _, p in arm.runs)
    # The kill caught actions in flight, and the restart met their uncertain outcomes.
    assert gate.held >= 1
    met = second.logged("action.uncertain")
    assert met, "no uncertain outcome after a kill with requests held"
    assert not third.logged("action.uncertain")
    assert {line["resolution"] for line in met} <= {"repeat", "found", "not found: running it"}
    # Nothing failed: every action ran or was skipped, nothing was dead-lettered.
    assert not [line for w in workers for line in w.logged("event.processed")
                if any("dead-lettered" in outcome for outcome in line["actions"])]  # fmt: skip
    async with DirectoryDeadLetterStore(tmp_path / "state" / "deadletters") as store:
        assert await store.list() == []
    # The replay from a reset checkpoint did nothing but skip what was done before.
    replayed = third.logged("event.processed")
    assert all(
        "skipped, done before" in outcome for line in replayed for outcome in line["actions"]
    )


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
