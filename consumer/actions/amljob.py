"""The ``aml_job`` action: submit an Azure ML job (command or pipeline) from a job spec.

The spec (see ``consumer.actions.jobspec``) is the REST API's job body in a JSON or
YAML file next to the rules; its strings are templates over the event, except Azure ML's
own bindings (``${{inputs.data}}``, ``${{parent.jobs...}}``), which are left for Azure ML.

Idempotency comes from the job's name, which the client chooses: it is derived from the
decision key, so a redelivered event PUTs the same name, and Azure ML refuses a second job
of that name ("A job with this name already exists"); that refusal means done before.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consumer.actions.arm import ArmRequest, render_fields, workspace_path
from consumer.actions.jobspec import JobSpecs, protect, walk
from consumer.errors import PermanentActionError
from rules import Action, AmlJobAction, Decision
from rules.templates import TemplateError, context, render

if TYPE_CHECKING:  # the client imports aiohttp; building a request needs neither
    from consumer.actions.azure import ArmClient

_DUPLICATE = re.compile(r"\bjob\b.*\balready exists\b", re.IGNORECASE | re.DOTALL)


def job_name(key: str) -> str:
    """The job name for a decision key: the same key, the same name."""
    return "mlevents-" + hashlib.sha256(key.encode()).hexdigest()[:24]


class AmlJobExecutor:
    """Submits jobs through ARM; job specs are read once per file version (``JobSpecs``)."""

    def __init__(self, arm: ArmClient, *, api_version: str = "2024-04-01") -> None:
        self._arm = arm
        self._api_version = api_version
        self._specs = JobSpecs()

    async def __call__(self, decision: Decision) -> str:
        call = submit_job(decision, self._api_version, self._specs)
        name = job_name(decision.key)
        response = await self._arm.send(call, allow=(400, 409))
        if response.status < 300:
            return f"job {name} submitted"
        if _DUPLICATE.search(response.error()[1]):
            return f"job {name} already submitted"
        raise self._arm.error_for(call.method, call.path, response)

    def can_find(self, action: Action) -> bool:
        return True

    async def find(self, decision: Decision, since: float) -> str | None:
        """The job named after the decision key, if it exists (whenever it was made)."""
        action = decision.action
        assert isinstance(action, AmlJobAction)
        name = job_name(decision.key)
        resource = _job_path(action, context(decision.event), name)
        found = await self._arm.request(
            "GET", resource, api_version=self._api_version, allow=(404,)
        )
        if found.status == 404:
            return None
        properties = found.body.get("properties") if isinstance(found.body, dict) else None
        status = properties.get("status") if isinstance(properties, dict) else None
        return f"job {name} found ({status or 'status unknown'})"


def submit_job(
    decision: Decision, api_version: str, spec: Callable[[Path], dict[str, Any]]
) -> ArmRequest:
    """The job PUT for ``decision``: the spec's templates rendered from the event, the
    experiment name when the action sets one, the event and rule as tags, and the name
    derived from the decision key. ``spec`` reads the job spec file (``JobSpecs``).

    Raises:
        PermanentActionError: the spec cannot be read or a template fails, naming which.
    """
    action = decision.action
    assert isinstance(action, AmlJobAction)
    names = context(decision.event)
    resource = _job_path(action, names, job_name(decision.key))
    path = Path(decision.rule.file).parent / action.job
    try:
        body: dict[str, Any] = walk(spec(path), lambda text: _render(text, names))
    except TemplateError as exc:
        raise PermanentActionError(f"job spec {path}: {exc}") from exc
    properties = body["properties"]
    if action.experiment_name is not None:
        experiment = render_fields("aml_job", names, experiment_name=action.experiment_name)
        properties["experimentName"] = experiment["experiment_name"]
    tags = properties.get("tags") if isinstance(properties.get("tags"), dict) else {}
    properties["tags"] = {
        **tags, "mlevents.eventId": decision.event.id, "mlevents.rule": decision.rule.name,
    }  # fmt: skip
    return ArmRequest("PUT", resource, api_version, body)


def _job_path(action: AmlJobAction, names: dict[str, Any], name: str) -> str:
    """The resource path of the job ``name`` in the action's workspace."""
    where = render_fields(
        "aml_job", names, subscription_id=action.subscription_id,
        resource_group=action.resource_group, workspace=action.workspace,
    )  # fmt: skip
    return workspace_path(
        where["subscription_id"], where["resource_group"], where["workspace"], "jobs", name
    )


def _render(text: str, names: dict[str, Any]) -> str:
    """Render a template, keeping Azure ML's ``${{...}}`` bindings as they are."""
    return render(protect(text), names)
