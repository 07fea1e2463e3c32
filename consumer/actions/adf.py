"""The ``adf_pipeline_run`` action: start an Azure Data Factory pipeline run.

One call, Pipelines - Create Run, whose body is the parameters table itself (no wrapper),
rendered from the event. Data Factory has no idempotency of its own: every call starts a
new run, so a second run after a redelivery is the ledger's to prevent, not this module's.
"""

from __future__ import annotations

from rules import AdfPipelineRunAction, Decision
from rules.templates import TemplateError, context, render_value

from ..errors import PermanentActionError
from .azure import ArmClient, arm_path, render_fields


class AdfExecutor:
    """Starts pipeline runs through ARM."""

    def __init__(self, arm: ArmClient, *, api_version: str = "2018-06-01") -> None:
        self._arm = arm
        self._api_version = api_version

    async def __call__(self, decision: Decision) -> str:
        action = decision.action
        assert isinstance(action, AdfPipelineRunAction)
        names = context(decision.event)
        where = render_fields(
            "adf_pipeline_run", names, subscription_id=action.subscription_id,
            resource_group=action.resource_group, factory=action.factory,
            pipeline=action.pipeline,
        )  # fmt: skip
        try:
            parameters = render_value(action.parameters, names)
        except TemplateError as exc:
            raise PermanentActionError(f"adf_pipeline_run: 'parameters': {exc}") from exc
        path = arm_path(
            "subscriptions", where["subscription_id"], "resourceGroups", where["resource_group"],
            "providers", "Microsoft.DataFactory", "factories", where["factory"],
            "pipelines", where["pipeline"], "createRun",
        )  # fmt: skip
        response = await self._arm.request(
            "POST", path, api_version=self._api_version, json=parameters
        )
        run_id = response.body.get("runId") if isinstance(response.body, dict) else None
        if not run_id:
            raise PermanentActionError(
                f"POST {path} answered HTTP {response.status} without a runId"
            )
        return f"run {run_id}"
