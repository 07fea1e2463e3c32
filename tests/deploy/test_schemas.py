"""Every rendered object is valid: built-in kinds against the Kubernetes API's own schemas
(kubernetes-validate, strict: unknown fields fail), KEDA's kinds against what KEDA
documents for the azure-eventhub scaler."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest

from .manifests import Object, named, of_kind, one

# The oldest Kubernetes the manifests are meant for, and the newest kubernetes-validate
# ships schemas for.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())

# Kinds from CRDs: no schema in kubernetes-validate. The base holds none of them, so that
# `kubectl apply -k deploy/base` works on a cluster without KEDA or the Prometheus Operator.
CUSTOM_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}

# The azure-eventhub scaler, as https://keda.sh/docs/scalers/azure-event-hub/ documents it
# (trigger metadata, "Parameter list"; authentication parameters).
EVENTHUB_METADATA = {
    "connectionFromEnv", "storageConnectionFromEnv", "consumerGroup",
    "unprocessedEventThreshold", "activationUnprocessedEventThreshold", "blobContainer",
    "eventHubNamespace", "eventHubNamespaceFromEnv", "eventHubName", "eventHubNameFromEnv",
    "storageAccountName", "checkpointStrategy", "cloud", "endpointSuffix",
    "storageEndpointSuffix",
}  # fmt: skip
CHECKPOINT_STRATEGIES = {"azureFunction", "blobMetadata", "goSdk", "dapr"}
# What the worker needs whatever the authentication: its checkpoints are azure-eventhub v5
# blob metadata, in its own container, under its consumer group and hub.
EVENTHUB_REQUIRED = {"eventHubName", "consumerGroup", "blobContainer", "checkpointStrategy"}
# "Pod identity based authentication": the scaler needs the namespace and hub names, and
# storageAccountName to read the checkpoints with Azure AD too.
POD_IDENTITY_REQUIRED = {"eventHubNamespace", "storageAccountName"}
POD_IDENTITY_PROVIDERS = {"azure-workload"}
# "Connection String Authentication".
SECRET_PARAMETERS = {"connection", "storageConnection"}
# ScaledObject spec fields (https://keda.sh/docs/concepts/scaling-deployments/).
SCALED_OBJECT_SPEC = {
    "scaleTargetRef", "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
    "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "fallback", "advanced", "triggers",
}  # fmt: skip


def test_base_holds_only_built_in_kinds(base: list[Object]) -> None:
    """`kubectl apply -k deploy/base` needs no CRD."""
    assert not {(item["apiVersion"], item["kind"]) for item in base} & CUSTOM_KINDS


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_built_in_kinds_match_the_kubernetes_schemas(rendered: list[Object], version: str) -> None:
    checked = 0
    for item in rendered:
        if (item["apiVersion"], item["kind"]) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(item, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(part) for part in exc.path)
            pytest.fail(f"{item['kind']}/{item['metadata']['name']}: {where}: {exc.message}")
        checked += 1
    assert checked >= 5  # ServiceAccount, ConfigMap, Service, Deployment, PodDisruptionBudget


def _trigger_authentication(objects: list[Object], trigger: Object) -> Object:
    return named(objects, "TriggerAuthentication", trigger["authenticationRef"]["name"])


@pytest.mark.parametrize("variant", ["example", "example+connection-string"])
def test_scaled_object_uses_documented_keda_fields(
    variant: str, example: list[Object], example_with_connection_strings: list[Object]
) -> None:
    objects = example if variant == "example" else example_with_connection_strings
    scaled = of_kind(objects, "ScaledObject")
    assert len(scaled) == 1
    spec = scaled[0]["spec"]
    assert set(spec) <= SCALED_OBJECT_SPEC
    assert spec["triggers"], "no trigger"
    for trigger in spec["triggers"]:
        assert trigger["type"] == "azure-eventhub"
        metadata: dict[str, Any] = trigger["metadata"]
        assert set(metadata) <= EVENTHUB_METADATA, set(metadata) - EVENTHUB_METADATA
        assert set(metadata) >= EVENTHUB_REQUIRED, EVENTHUB_REQUIRED - set(metadata)
        # KEDA's trigger metadata is a map of strings: a YAML number fails admission.
        assert all(isinstance(value, str) for value in metadata.values()), metadata
        assert metadata["checkpointStrategy"] in CHECKPOINT_STRATEGIES
        assert metadata["checkpointStrategy"] == "blobMetadata"
        assert re.fullmatch(r"[1-9][0-9]*", metadata["unprocessedEventThreshold"])
        auth = _trigger_authentication(objects, trigger)["spec"]
        if "podIdentity" in auth:
            assert auth["podIdentity"]["provider"] in POD_IDENTITY_PROVIDERS
            assert set(metadata) >= POD_IDENTITY_REQUIRED, POD_IDENTITY_REQUIRED - set(metadata)
        else:
            parameters = {ref["parameter"] for ref in auth["secretTargetRef"]}
            assert parameters == SECRET_PARAMETERS
            assert all(ref["name"] and ref["key"] for ref in auth["secretTargetRef"])
            # The namespace comes from the connection string; a second source would
            # contradict it.
            assert not POD_IDENTITY_REQUIRED & set(metadata)


def test_trigger_authentications_use_one_documented_method(example: list[Object]) -> None:
    for auth in of_kind(example, "TriggerAuthentication"):
        assert set(auth["spec"]) in ({"podIdentity"}, {"secretTargetRef"}), auth["spec"]


def test_prometheus_rules_are_well_formed(example: list[Object]) -> None:
    rule = one(example, "PrometheusRule")
    alerts = [entry for group in rule["spec"]["groups"] for entry in group["rules"]]
    assert alerts
    for alert in alerts:
        assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"}, alert
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", alert["alert"])
        assert isinstance(alert["expr"], str) and alert["expr"].strip()
        assert alert["expr"].count("(") == alert["expr"].count(")")
        assert re.fullmatch(r"[0-9]+[smh]", alert.get("for", "0s"))
        assert alert["labels"]["severity"] in {"warning", "critical"}
