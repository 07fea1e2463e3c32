"""Typed views of the five Azure ML event payloads.

The payload keys are read case-insensitively: the docs show PascalCase for some event types
(``ModelName``), the SDK models and real events camelCase (``modelName``). ``payload(event)``
returns the typed view for an Azure ML event and ``None`` for anything else.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeAlias

from .events import Event
from .folding import fold

PREFIX = "Microsoft.MachineLearningServices."
MODEL_REGISTERED = PREFIX + "ModelRegistered"
MODEL_DEPLOYED = PREFIX + "ModelDeployed"
RUN_COMPLETED = PREFIX + "RunCompleted"
RUN_STATUS_CHANGED = PREFIX + "RunStatusChanged"
DATASET_DRIFT_DETECTED = PREFIX + "DatasetDriftDetected"
EVENT_TYPES = (
    MODEL_REGISTERED, MODEL_DEPLOYED, RUN_COMPLETED, RUN_STATUS_CHANGED, DATASET_DRIFT_DETECTED
)  # fmt: skip
"""Every event type Azure ML publishes: the docs' list and the Event Grid TypeSpec's models
agree on these five."""

BREACH_TAG = "azureml_modelmonitor_threshold_breached"
"""Run tag through which v2 model monitoring reports a breached threshold."""


_FOLDED_TYPES = frozenset(fold(t) for t in EVENT_TYPES)
_RUN_STATES = ("FAIL", "CANCEL", "START", "QUEUE", "PREPAR", "PROVISION", "RUNNING", "STATUS")
"""Words of a run's status in a guessed type name (``RunFailed``): Azure ML reports those
as RunStatusChanged, with the status in the payload."""


def unknown_event_type(name: str) -> str | None:
    """Why ``name`` will never match, when it is in Azure ML's namespace but not a type Azure
    ML publishes (``Microsoft.MachineLearningServices.RunFailed``), naming the nearest real
    type; ``None`` for the five real types (in any case) and for other namespaces."""
    folded = fold(name)
    if not folded.startswith(fold(PREFIX)) or folded in _FOLDED_TYPES:
        return None
    short = folded[len(PREFIX) :].replace("JOB", "RUN")  # v2 calls runs jobs
    if short.startswith("RUN") and any(state in short for state in _RUN_STATES):
        nearest, hint = RUN_STATUS_CHANGED, " (the run's status is in data.runStatus)"
    else:
        nearest = max(
            EVENT_TYPES,
            key=lambda real: difflib.SequenceMatcher(
                None, short, fold(real[len(PREFIX) :])
            ).ratio(),
        )
        hint = ""
    return f"{name!r} is not an event type Azure ML publishes; nearest: {nearest!r}{hint}"


def field(data: Any, name: str) -> Any:
    """``data[name]`` ignoring the case of the key; ``None`` when absent."""
    if not isinstance(data, dict):
        return None
    if name in data:
        return data[name]
    wanted = fold(name)
    for key, value in data.items():
        if fold(key) == wanted:
            return value
    return None


def _text(data: Any, name: str) -> str | None:
    value = field(data, name)
    return None if value is None else str(value)


def _mapping(data: Any, name: str) -> dict[str, Any]:
    value = field(data, name)
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class ModelRegistered:
    """A model (version) was registered."""

    model_name: str | None
    model_version: str | None
    """A string even where the event carries a number (the docs disagree on the type)."""
    model_tags: dict[str, Any]
    model_properties: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ModelDeployed:
    """Models were deployed to a service (endpoint)."""

    service_name: str | None
    service_compute_type: str | None
    model_ids: tuple[str, ...]
    service_tags: dict[str, Any]
    service_properties: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RunCompleted:
    """A run completed."""

    experiment_id: str | None
    experiment_name: str | None
    run_id: str | None
    run_type: str | None
    run_tags: dict[str, Any]
    run_properties: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RunStatusChanged(RunCompleted):
    """A run's status changed; v2 model monitoring reports drift breaches this way too."""

    run_status: str | None

    @property
    def monitor_breach(self) -> str | None:
        """The model-monitoring breach message, when this run is a breached monitor."""
        return _text(self.run_tags, BREACH_TAG)


@dataclass(frozen=True, slots=True)
class DatasetDriftDetected:
    """A v1 dataset monitor detected drift."""

    data_drift_id: str | None
    data_drift_name: str | None
    run_id: str | None
    base_dataset_id: str | None
    target_dataset_id: str | None
    drift_coefficient: Decimal | None
    start_time: str | None
    end_time: str | None


Payload: TypeAlias = (
    ModelRegistered | ModelDeployed | RunCompleted | RunStatusChanged | DatasetDriftDetected
)


def payload(event: Event) -> Payload | None:
    """The typed payload of an Azure ML event, or ``None`` for other event types."""
    reader: Callable[[Any], Payload] | None = _READERS.get(fold(event.type))
    return None if reader is None else reader(event.data)


def _model_registered(d: Any) -> ModelRegistered:
    return ModelRegistered(
        _text(d, "modelName"),
        _text(d, "modelVersion"),
        _mapping(d, "modelTags"),
        _mapping(d, "modelProperties"),
    )


def _model_deployed(d: Any) -> ModelDeployed:
    ids = _text(d, "modelIds") or ""
    return ModelDeployed(
        _text(d, "serviceName"),
        _text(d, "serviceComputeType"),
        tuple(i.strip() for i in ids.split(",") if i.strip()),
        _mapping(d, "serviceTags"),
        _mapping(d, "serviceProperties"),
    )


_RunFields: TypeAlias = tuple[
    str | None, str | None, str | None, str | None, dict[str, Any], dict[str, Any]
]


def _run_fields(d: Any) -> _RunFields:
    return (
        _text(d, "experimentId"),
        _text(d, "experimentName"),
        _text(d, "runId"),
        _text(d, "runType"),
        _mapping(d, "runTags"),
        _mapping(d, "runProperties"),
    )


def _run_completed(d: Any) -> RunCompleted:
    return RunCompleted(*_run_fields(d))


def _run_status_changed(d: Any) -> RunStatusChanged:
    return RunStatusChanged(*_run_fields(d), _text(d, "runStatus"))


def _dataset_drift(d: Any) -> DatasetDriftDetected:
    coefficient = field(d, "driftCoefficient")
    number = (
        coefficient
        if isinstance(coefficient, Decimal | int) and not isinstance(coefficient, bool)
        else None
    )
    return DatasetDriftDetected(
        _text(d, "dataDriftId"),
        _text(d, "dataDriftName"),
        _text(d, "runId"),
        _text(d, "baseDatasetId"),
        _text(d, "targetDatasetId"),
        None if number is None else Decimal(number),
        _text(d, "startTime"),
        _text(d, "endTime"),
    )


_READERS: dict[str, Callable[[Any], Payload]] = {
    fold(MODEL_REGISTERED): _model_registered,
    fold(MODEL_DEPLOYED): _model_deployed,
    fold(RUN_COMPLETED): _run_completed,
    fold(RUN_STATUS_CHANGED): _run_status_changed,
    fold(DATASET_DRIFT_DETECTED): _dataset_drift,
}
