"""What the chaos run sends and what it expects: events of three kinds, one rule per kind with
three actions each, and the worker's config.

Each rule has at most one action of a type, so a sink's record (which names the event) tells
the decision it came from: the event's kind is its rule, and the action type its position.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from tests.support.factories import event_body

KINDS = ("failed", "drift", "model")
"""Event kinds, in turn: a failed run, data drift, a model registration. Each names its rule."""
RULES: dict[str, tuple[str, ...]] = {
    "failed": ("email", "webhook", "adf_pipeline_run"),
    "drift": ("aml_job", "adf_pipeline_run", "webhook"),
    "model": ("aml_deploy", "email", "webhook"),
}
"""Each rule's action types, in their positions."""
ASKABLE = frozenset({"adf_pipeline_run", "aml_job", "aml_deploy"})
"""Sinks that can be asked whether an uncertain action happened: they must never repeat one."""
PARTITIONS = 4
HUB = "hub"
TOPIC = (
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"
)
ENDPOINT = "credit"
MODEL = "credit"


@dataclass(frozen=True, order=True)
class Key:
    """One expected effect: the decision key's parts."""

    event_id: str
    rule: str
    index: int

    @property
    def decision(self) -> str:
        """The decision key as the worker writes it (``<event id>/<rule>/<index>``)."""
        return f"{self.event_id}/{self.rule}/{self.index}"

    @property
    def type(self) -> str:
        return RULES[self.rule][self.index]


def event_id(n: int) -> str:
    return f"c{n:05d}"


def kind_of(event: str) -> str:
    """The kind of event ``c<n>``."""
    return KINDS[int(event[1:]) % len(KINDS)]


def partition_of(n: int) -> str:
    return str(n % PARTITIONS)


def key_for(event: str, type: str) -> Key:
    """The decision of ``event`` whose action has ``type``."""
    rule = kind_of(event)
    return Key(event, rule, RULES[rule].index(type))


def expected(events: int) -> set[Key]:
    """Every decision the events make: each event's rule, each of its actions."""
    keys: set[Key] = set()
    for n in range(events):
        rule = kind_of(event_id(n))
        keys.update(Key(event_id(n), rule, index) for index in range(len(RULES[rule])))
    return keys


def body(n: int) -> str:
    """Event ``n``'s Event Hubs body, as Event Grid writes it."""
    event = event_id(n)
    kind = kind_of(event)
    if kind == "failed":
        return event_body(event)
    if kind == "drift":
        subject = f"datadrifts/d/runs/{event}"
        event_type = "DatasetDriftDetected"
        data: dict[str, object] = {
            "DataDriftId": "d", "DataDriftName": "drift", "RunId": event, "DriftCoefficient": 0.8,
        }  # fmt: skip
    else:
        subject = f"models/{MODEL}:{n}"
        event_type = "ModelRegistered"
        data = {"modelName": MODEL, "modelVersion": n, "modelTags": {"stage": "production"}}
    document = {
        "topic": TOPIC, "subject": subject,
        "eventType": f"Microsoft.MachineLearningServices.{event_type}",
        "eventTime": "2026-01-01T00:00:00Z", "id": event, "dataVersion": "2", "data": data,
    }  # fmt: skip
    return json.dumps([document])


def model_versions(events: int) -> list[str]:
    """The ``name:version`` of every model the events register (the ARM peer must know them)."""
    return [f"{MODEL}:{n}" for n in range(events) if kind_of(event_id(n)) == "model"]


def rules_file(folder: Path, hook_url: str) -> Path:
    """The three rules; both pipeline runs carry their decision key, so they can be asked."""
    (folder / "job.yml").write_text(
        "properties:\n  jobType: Command\n  command: python train.py\n"
        "  displayName: 'retrain after {{ drift.run_id }}'\n"
        "  environmentId: azureml:train-env:1\n  computeId: cpu-cluster\n"
    )
    workspace = 'subscription_id = "s"\nresource_group = "rg"\n'
    path = folder / "rules.toml"
    path.write_text(
        f"""
[[rules]]
name = "failed"
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
[[rules.actions]]
type = "adf_pipeline_run"
{workspace}factory = "adf"
pipeline = "triage"
parameters = {{ eventId = "{{{{ event.id }}}}" }}
key_parameter = "decision"

[[rules]]
name = "drift"
[rules.filter]
includedEventTypes = ["Microsoft.MachineLearningServices.DatasetDriftDetected"]
[[rules.actions]]
type = "aml_job"
{workspace}workspace = "ws"
job = "job.yml"
[[rules.actions]]
type = "adf_pipeline_run"
{workspace}factory = "adf"
pipeline = "retrain"
parameters = {{ eventId = "{{{{ event.id }}}}" }}
key_parameter = "decision"
[[rules.actions]]
type = "webhook"
url = "{hook_url}"

[[rules]]
name = "model"
[rules.filter]
includedEventTypes = ["Microsoft.MachineLearningServices.ModelRegistered"]
[[rules.actions]]
type = "aml_deploy"
{workspace}workspace = "ws"
endpoint = "{ENDPOINT}"
deployment = "v{{{{ model.version }}}}"
[[rules.actions]]
type = "email"
to = ["models@example.com"]
subject = "Model {{{{ model.name }}}}:{{{{ model.version }}}} deployed"
text = "{{{{ event.subject }}}}"
[[rules.actions]]
type = "webhook"
url = "{hook_url}"
"""
    )
    return path


class Peers(NamedTuple):
    """Where the worker's sinks are."""

    hook_url: str
    smtp_port: int
    arm_url: str


def config_text(
    rules: Path, peers: Peers, *, container: str, blob_env: str, http_port: int, lease_s: float
) -> str:
    """A worker's config: blob checkpoints and ledger (one container), dead letters in its own
    folder, and partitions of a killed worker free again within seconds."""
    return (
        f'[rules]\nfiles = ["{rules}"]\n'
        f'[eventhub]\nname = "{HUB}"\nconnection_string_env = "EVENTHUB_CONNECTION_STRING"\n'
        'starting_position = "earliest"\n'
        "load_balancing_interval_s = 3\nownership_expiration_s = 20\n"
        f'[checkpoints]\nstore = "blob"\ncontainer = "{container}"\n'
        f'connection_string_env = "{blob_env}"\n'
        "every_events = 20\nevery_s = 1\n"
        f"[ledger]\nlease_s = {lease_s}\n"
        '[deadletters]\nstore = "local"\npath = "state/deadletters"\n'
        "[processing]\nmax_in_flight = 64\ndrain_deadline_s = 5\n"
        f'[http]\nhost = "127.0.0.1"\nport = {http_port}\n'
        '[logging]\nformat = "json"\nlevel = "info"\n'
        f'[email]\ntransport = "smtp"\nhost = "127.0.0.1"\nport = {peers.smtp_port}\n'
        'security = "none"\nsender = "mlevents@example.com"\n'
        f'[azure]\ncredential = "cli"\nmanagement_url = "{peers.arm_url}"\n'
    )
