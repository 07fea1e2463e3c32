"""The rendered manifests fit the worker: the config.toml in the ConfigMap loads as the pod
sees it, probes hit the worker's real routes and port, the grace period outlasts the
drain, KEDA reads the checkpoints the worker writes, and selectors and references meet."""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from consumer.config import Config, load_config
from consumer.rulefiles import load_rule_files
from consumer.worker.health import HealthServer
from consumer.worker.metrics import Metrics
from rules import WebhookAction

from .manifests import (
    ROOT,
    Object,
    config_document,
    config_volume,
    container,
    materialise,
    named,
    of_kind,
    one,
    selects,
)

# Time the worker may need after the drain deadline and the final checkpoint write (bounded
# by the checkpoint store's timeout_s): releasing ownership.
RELEASE_MARGIN_S = 5
PARTITION_COUNT_ANNOTATION = "mlevents/eventhub-partition-count"


def _dockerfile(instruction: str) -> str:
    lines = (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
    found = [line.split(maxsplit=1)[1] for line in lines if line.startswith(f"{instruction} ")]
    assert len(found) == 1, instruction
    return found[0]


def _env(deployment: Object) -> dict[str, Object]:
    return {entry["name"]: entry for entry in container(deployment).get("env", [])}


def _pod_config(objects: list[Object], directory: Path) -> Config:
    """config.toml loaded from the ConfigMap laid out as the Deployment mounts it, with the
    environment the Deployment gives (Secret values as placeholders)."""
    deployment = one(objects, "Deployment")
    volume, mount = config_volume(deployment)
    config_map = named(objects, "ConfigMap", volume["configMap"]["name"])
    files = {path.relative_to(directory) for path in materialise(volume, config_map, directory)}
    args = container(deployment)["args"]
    assert args[:2] == ["run", "--config"]
    config_path = Path(args[2])
    assert config_path.parent == Path(mount["mountPath"])
    assert Path(config_path.name) in files
    environ = {
        name: entry.get("value", f"placeholder for {name}")
        for name, entry in _env(deployment).items()
    }
    return load_config(directory / config_path.name, environ)


def test_the_pod_config_and_its_rules_load(rendered: list[Object], tmp_path: Path) -> None:
    """The mounted files are where config.toml and the rules expect them, and every secret
    the config names is in the environment."""
    config = _pod_config(rendered, tmp_path)
    loaded = load_rule_files(config.rules.files, secrets=config.secrets)
    assert loaded.table.rules
    assert config.logging.format == "json"
    for store in (config.checkpoints.store, config.deadletters, config.ledger.store):
        assert store.kind == "blob"  # every replica shares them; the pod's disk is read-only


def test_no_rule_posts_to_this_machine(rendered: list[Object], tmp_path: Path) -> None:
    """No rule the pods load sends to a loopback address: in a pod nothing listens there, so
    every event such a rule matched would end in the dead-letter store."""
    config = _pod_config(rendered, tmp_path)
    rules = load_rule_files(config.rules.files, secrets=config.secrets).table.rules
    # A URL from the environment (url_env) is the operator's to give; the written ones are here.
    urls = [a.url for r in rules for a in r.actions if isinstance(a, WebhookAction) and a.url]
    assert [url for url in urls if _is_loopback(urlsplit(url).hostname or "")] == []


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def test_operations_docs_name_the_config_path_the_pods_run_with(rendered: list[Object]) -> None:
    """docs/operations.md tells operators to give the config path the Deployment runs with
    (for deadletter replay in a pod), not the image's default."""
    args = container(one(rendered, "Deployment"))["args"]
    docs = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert f"--config {args[2]}" in docs


def test_container_runs_the_image_entrypoint_as_its_user(rendered: list[Object]) -> None:
    deployment = one(rendered, "Deployment")
    worker = container(deployment)
    assert _dockerfile("ENTRYPOINT") == '["mlevents"]'
    assert "command" not in worker
    assert _env(deployment)["MLEVENTS_LOG_FORMAT"]["value"] == "json"
    user, group = (int(part) for part in _dockerfile("USER").split(":"))
    pod = deployment["spec"]["template"]["spec"]["securityContext"]
    security = worker["securityContext"]
    for context in (pod, security):
        assert context["runAsNonRoot"] is True
        assert (context["runAsUser"], context["runAsGroup"]) == (user, group)
        assert context["seccompProfile"]["type"] == "RuntimeDefault"
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    resources = worker["resources"]
    assert resources["limits"]["memory"] and resources["requests"]["memory"]


def _probe_port(deployment: Object, probe: str) -> int:
    worker = container(deployment)
    port = worker[probe]["httpGet"]["port"]
    if isinstance(port, int):
        return port
    ports = {entry["name"]: entry["containerPort"] for entry in worker["ports"]}
    return int(ports[port])


def test_probes_use_the_configured_port(rendered: list[Object], tmp_path: Path) -> None:
    config = _pod_config(rendered, tmp_path)
    deployment = one(rendered, "Deployment")
    assert config.http.host == "0.0.0.0"  # the kubelet probes from outside the container
    for probe in ("livenessProbe", "readinessProbe"):
        assert _probe_port(deployment, probe) == config.http.port


class _Probes:
    alive = True
    ready = False

    def liveness(self) -> bool:
        return self.alive

    def readiness(self) -> tuple[bool, str]:
        return self.ready, "test"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_probe_paths_are_the_worker_routes(
    example: list[Object], http: aiohttp.ClientSession
) -> None:
    """The Deployment's probe paths, asked of the worker's real health server on loopback:
    the liveness path follows liveness and the readiness path readiness."""
    worker = container(one(example, "Deployment"))
    live = worker["livenessProbe"]["httpGet"]["path"]
    ready = worker["readinessProbe"]["httpGet"]["path"]
    probes = _Probes()
    async with HealthServer(
        "127.0.0.1",
        0,
        metrics=Metrics(clock=lambda: 0.0),
        liveness=probes.liveness,
        readiness=probes.readiness,
    ) as server:

        async def status(path: str) -> int:
            async with http.get(f"http://127.0.0.1:{server.port}{path}") as response:
                return response.status

        assert (await status(live), await status(ready)) == (200, 503)
        probes.alive, probes.ready = False, True
        assert (await status(live), await status(ready)) == (503, 200)


def test_grace_period_outlasts_the_drain(rendered: list[Object], tmp_path: Path) -> None:
    config = _pod_config(rendered, tmp_path)
    grace = one(rendered, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    flush_s = config.checkpoints.store.timeout_s
    assert grace >= config.processing.drain_deadline_s + flush_s + RELEASE_MARGIN_S


def _pod_labels(objects: list[Object]) -> dict[str, str]:
    labels: dict[str, str] = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    return labels


def test_selectors_meet_the_pods(rendered: list[Object]) -> None:
    deployment = one(rendered, "Deployment")
    labels = _pod_labels(rendered)
    spec = deployment["spec"]
    assert selects(spec["selector"]["matchLabels"], labels)
    budget = one(rendered, "PodDisruptionBudget")["spec"]
    assert selects(budget["selector"]["matchLabels"], labels)
    assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"  # not ready must not block
    service = one(rendered, "Service")
    assert selects(service["spec"]["selector"], labels)
    # /readyz turns 503 during a hub outage: the metrics must still be scraped then.
    assert service["spec"]["publishNotReadyAddresses"] is True
    ports = {entry["name"]: entry["containerPort"] for entry in container(deployment)["ports"]}
    (port,) = service["spec"]["ports"]
    assert port["name"] == "http-metrics"
    assert port["targetPort"] in ports or port["targetPort"] in ports.values()
    spread = spec["template"]["spec"]["topologySpreadConstraints"]
    assert {entry["topologyKey"] for entry in spread} == {"kubernetes.io/hostname"}
    assert all(selects(entry["labelSelector"]["matchLabels"], labels) for entry in spread)
    for monitor in of_kind(rendered, "ServiceMonitor"):
        assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
        assert {entry["port"] for entry in monitor["spec"]["endpoints"]} == {port["name"]}


def test_the_config_map_volume_names_the_generated_config_map(rendered: list[Object]) -> None:
    volume, _ = config_volume(one(rendered, "Deployment"))
    name = volume["configMap"]["name"]
    assert re.search(r"-[a-z0-9]{10}$", name), "not the hashed name the generator made"
    named(rendered, "ConfigMap", name)


def test_workload_identity_is_wired(rendered: list[Object]) -> None:
    spec = one(rendered, "Deployment")["spec"]["template"]["spec"]
    account = named(rendered, "ServiceAccount", spec["serviceAccountName"])
    assert account["metadata"]["annotations"]["azure.workload.identity/client-id"]
    assert _pod_labels(rendered)["azure.workload.identity/use"] == "true"


def _trigger(objects: list[Object]) -> tuple[Object, dict[str, Any]]:
    scaled = one(objects, "ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    return scaled, trigger


@pytest.mark.parametrize("variant", ["example", "example+connection-string"])
def test_keda_reads_the_worker_checkpoints(
    variant: str,
    example: list[Object],
    example_with_connection_strings: list[Object],
    tmp_path: Path,
) -> None:
    objects = example if variant == "example" else example_with_connection_strings
    config = _pod_config(objects, tmp_path)
    assert config.eventhub is not None
    scaled, trigger = _trigger(objects)
    metadata = trigger["metadata"]
    deployment = one(objects, "Deployment")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"]  # the HPA owns the count
    named(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert metadata["eventHubName"] == config.eventhub.name
    assert metadata["consumerGroup"] == config.eventhub.consumer_group
    assert metadata["blobContainer"] == config.checkpoints.store.container
    # The worker's SDK writes checkpoint blobs under lower-case names; KEDA looks them up
    # under the namespace and hub names as given.
    assert config.eventhub.name == config.eventhub.name.lower()
    assert metadata["eventHubName"] == metadata["eventHubName"].lower()
    if "eventHubNamespace" in metadata:
        namespace = metadata["eventHubNamespace"]
        assert namespace == namespace.lower()
        assert config.eventhub.fully_qualified_namespace == f"{namespace}.servicebus.windows.net"
        account_url = config.checkpoints.store.account_url
        assert account_url is not None
        host = urlsplit(account_url).hostname
        assert host == f"{metadata['storageAccountName']}.blob.core.windows.net"
    partitions = int(scaled["metadata"]["annotations"][PARTITION_COUNT_ANNOTATION])
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    assert scaled["spec"]["maxReplicaCount"] <= partitions


def test_connection_strings_come_from_one_secret(
    example_with_connection_strings: list[Object],
) -> None:
    """The variables config.toml names are filled from the Secret keys KEDA reads too: the
    event hub's for `connection`, the checkpoint account's for `storageConnection`."""
    objects = example_with_connection_strings
    deployment = one(objects, "Deployment")
    volume, _ = config_volume(deployment)
    document = config_document(named(objects, "ConfigMap", volume["configMap"]["name"]))
    env = _env(deployment)

    def secret_of(section: str) -> tuple[str, str]:
        ref = env[document[section]["connection_string_env"]]["valueFrom"]["secretKeyRef"]
        assert ref.get("optional") is not True
        return ref["name"], ref["key"]

    _, trigger = _trigger(objects)
    auth = named(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    refs = {ref["parameter"]: (ref["name"], ref["key"]) for ref in auth["spec"]["secretTargetRef"]}
    assert refs == {
        "connection": secret_of("eventhub"),
        "storageConnection": secret_of("checkpoints"),
    }
    assert not of_kind(objects, "Secret"), "no secret values in the manifests"


def test_readme_commands_name_real_directories() -> None:
    text = (ROOT / "deploy" / "README.md").read_text(encoding="utf-8")
    for line in text.splitlines():
        if "kubectl apply -k" in line:
            target = shlex.split(line.strip().strip("`"))[-1]
            assert (ROOT / target / "kustomization.yaml").is_file(), target
