"""Typed Azure ML payloads, whatever the key casing."""

from __future__ import annotations

from decimal import Decimal

from rules import payload
from rules.azureml import DatasetDriftDetected, ModelDeployed, ModelRegistered, RunStatusChanged
from tests.support.factories import make_event

PREFIX = "Microsoft.MachineLearningServices."


def test_model_registered_pascal_and_camel_case_read_the_same() -> None:
    """ModelName (docs) and modelName (real events) give the same typed payload."""
    pascal = make_event(
        eventType=PREFIX + "ModelRegistered",
        data={"ModelName": "m", "ModelVersion": 20, "ModelTags": {"stage": "prod"}},
    )
    camel = make_event(
        eventType=PREFIX + "ModelRegistered",
        data={"modelName": "m", "modelVersion": "20", "modelTags": {"stage": "prod"}},
    )
    assert payload(pascal) == payload(camel) == ModelRegistered("m", "20", {"stage": "prod"}, {})


def test_run_status_changed_and_monitor_breach() -> None:
    """RunStatusChanged exposes the status and the v2 model-monitoring breach tag."""
    tag = "azureml_modelmonitor_threshold_breached"
    event = make_event(data={"runId": "r", "runStatus": "Failed", "RunTags": {tag: "has failed"}})
    typed = payload(event)
    assert isinstance(typed, RunStatusChanged)
    assert typed.run_status == "Failed"
    assert typed.monitor_breach == "has failed"
    assert payload(make_event(data={"runStatus": "Failed"})).monitor_breach is None  # type: ignore[union-attr]


def test_drift_and_deployment_payloads() -> None:
    """Drift keeps its coefficient exact; deployments split their model ids."""
    drift = make_event(
        eventType=PREFIX + "DatasetDriftDetected",
        data={"DataDriftId": "d", "DriftCoefficient": Decimal("0.83503490684792081")},
    )
    typed = payload(drift)
    assert isinstance(typed, DatasetDriftDetected)
    assert typed.drift_coefficient == Decimal("0.83503490684792081")
    deployed = payload(
        make_event(eventType=PREFIX + "ModelDeployed", data={"ModelIds": "a:1, b:2"})
    )
    assert isinstance(deployed, ModelDeployed)
    assert deployed.model_ids == ("a:1", "b:2")


def test_other_event_types_have_no_payload() -> None:
    """Events that are not Azure ML's give None."""
    assert payload(make_event(eventType="Microsoft.Storage.BlobCreated")) is None
