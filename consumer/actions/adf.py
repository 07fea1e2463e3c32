"""The ``adf_pipeline_run`` action: start an Azure Data Factory pipeline run.

One call, Pipelines - Create Run, whose body is the parameters table itself (no wrapper),
rendered from the event. Data Factory has no idempotency of its own: every call starts a
new run, so a second run after a redelivery is the ledger's to prevent, not this module's.

With ``key_parameter``, every run carries the decision key in that pipeline parameter, so a
run whose outcome is uncertain (its worker died before recording it) can be found afterwards
with Pipeline Runs - Query By Factory, among the pipeline's runs since it was reserved.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from consumer.actions.arm import ArmRequest, arm_path, render_fields
from consumer.errors import PermanentActionError
from rules import Action, AdfPipelineRunAction, Decision
from rules.templates import TemplateError, context, render_value

if TYPE_CHECKING:  # the client imports aiohttp; building a request needs neither
    from consumer.actions.azure import ArmClient

QUERY_MARGIN_S = 300.0
"""Runs updated this long before the reservation are looked at too (clocks differ)."""
MAX_PAGES = 100


class AdfExecutor:
    """Starts pipeline runs through ARM."""

    def __init__(
        self,
        arm: ArmClient,
        *,
        api_version: str = "2018-06-01",
        now: Callable[[], float] = time.time,
    ) -> None:
        self._arm = arm
        self._api_version = api_version
        self._now = now

    async def __call__(self, decision: Decision) -> str:
        call = create_run(decision, self._api_version)
        response = await self._arm.send(call)
        run_id = response.body.get("runId") if isinstance(response.body, dict) else None
        if not run_id:
            raise PermanentActionError(
                f"POST {call.path} answered HTTP {response.status} without a runId"
            )
        return f"run {run_id}"

    def can_find(self, action: Action) -> bool:
        """Only a pipeline whose runs carry the decision key can be asked."""
        return isinstance(action, AdfPipelineRunAction) and action.key_parameter is not None

    async def find(self, decision: Decision, since: float) -> str | None:
        """The pipeline's run whose ``key_parameter`` holds the decision key, among the runs
        updated since ``since`` (less a margin), if there is one."""
        action = decision.action
        assert isinstance(action, AdfPipelineRunAction) and action.key_parameter is not None
        where = _where(action, context(decision.event))
        path = arm_path(*_factory(where), "queryPipelineRuns")
        query: dict[str, Any] = {
            "lastUpdatedAfter": _iso(since - QUERY_MARGIN_S),
            "lastUpdatedBefore": _iso(self._now() + QUERY_MARGIN_S),
            "filters": [
                {"operand": "PipelineName", "operator": "Equals", "values": [where["pipeline"]]}
            ],
        }
        for _ in range(MAX_PAGES):
            response = await self._arm.request("POST", path, api_version=self._api_version,
                                               json=query)  # fmt: skip
            body = response.body if isinstance(response.body, dict) else {}
            for run in body.get("value") or []:
                if _carries(run, action.key_parameter, decision.key):
                    return f"run {run.get('runId')} found ({run.get('status', 'status unknown')})"
            if not body.get("continuationToken"):
                return None
            query["continuationToken"] = body["continuationToken"]
        raise PermanentActionError(f"POST {path}: more than {MAX_PAGES} pages of runs")


def create_run(decision: Decision, api_version: str) -> ArmRequest:
    """Pipelines - Create Run for ``decision``: its body is the parameters rendered from the
    event, with the decision key in ``key_parameter`` when the action names one.

    Raises:
        PermanentActionError: a template fails, naming the field.
    """
    action = decision.action
    assert isinstance(action, AdfPipelineRunAction)
    names = context(decision.event)
    where = _where(action, names)
    try:
        parameters = render_value(action.parameters, names)
    except TemplateError as exc:
        raise PermanentActionError(f"adf_pipeline_run: 'parameters': {exc}") from exc
    if action.key_parameter is not None:
        parameters[action.key_parameter] = decision.key
    path = arm_path(*_factory(where), "pipelines", where["pipeline"], "createRun")
    return ArmRequest("POST", path, api_version, parameters)


def _where(action: AdfPipelineRunAction, names: dict[str, Any]) -> dict[str, str]:
    """The action's subscription, resource group, factory and pipeline, rendered."""
    return render_fields(
        "adf_pipeline_run", names, subscription_id=action.subscription_id,
        resource_group=action.resource_group, factory=action.factory, pipeline=action.pipeline,
    )  # fmt: skip


def _factory(where: dict[str, str]) -> tuple[str, ...]:
    return (
        "subscriptions", where["subscription_id"], "resourceGroups", where["resource_group"],
        "providers", "Microsoft.DataFactory", "factories", where["factory"],
    )  # fmt: skip


def _carries(run: Any, parameter: str, key: str) -> bool:
    parameters = run.get("parameters") if isinstance(run, dict) else None
    return isinstance(parameters, dict) and parameters.get(parameter) == key


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
