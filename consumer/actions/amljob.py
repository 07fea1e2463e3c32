"""The ``aml_job`` action: submit an Azure ML job (command or pipeline) from a job spec.

The spec is the REST API's job body (``{"properties": {"jobType": ...}}``) in a JSON or
YAML file next to the rules; its strings are templates over the event, except Azure ML's
own bindings (``${{inputs.data}}``, ``${{parent.jobs...}}``), which are left for Azure ML.

Idempotency comes from the job's name, which the client chooses: it is derived from the
decision key, so a redelivered event PUTs the same name, and Azure ML refuses a second job
of that name ("A job with this name already exists"); that refusal means done before.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from consumer.actions.azure import ArmClient, render_fields, workspace_path
from consumer.errors import PermanentActionError
from rules import Action, AmlJobAction, Decision
from rules.templates import TemplateError, check, context, render

_BINDING = re.compile(r"\$\{\{.*?\}\}", re.DOTALL)
_DUPLICATE = re.compile(r"\bjob\b.*\balready exists\b", re.IGNORECASE | re.DOTALL)


def load_job_spec(path: Path) -> dict[str, Any]:
    """Read a job spec (``*.json`` as JSON, anything else as YAML) and check its templates.

    Raises:
        PermanentActionError: the file cannot be read, does not parse, is not a job body
            with ``properties.jobType``, or holds a template that does not parse; the
            message names the file.
    """
    try:
        text = path.read_text(encoding="utf-8")
        spec = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise PermanentActionError(f"job spec {path}: cannot read: {exc}") from exc
    except (ValueError, yaml.YAMLError) as exc:
        raise PermanentActionError(f"job spec {path}: does not parse: {exc}") from exc
    properties = spec.get("properties") if isinstance(spec, dict) else None
    if not isinstance(properties, dict) or "jobType" not in properties:
        raise PermanentActionError(
            f"job spec {path}: needs 'properties.jobType' (the REST API's job body, "
            "not the Azure ML CLI's YAML)"
        )
    try:
        _walk(spec, lambda text: check(_protect(text)))
    except TemplateError as exc:
        raise PermanentActionError(f"job spec {path}: {exc}") from exc
    result: dict[str, Any] = spec
    return result


def job_name(key: str) -> str:
    """The job name for a decision key: the same key, the same name."""
    return "mlevents-" + hashlib.sha256(key.encode()).hexdigest()[:24]


class AmlJobExecutor:
    """Submits jobs through ARM; job specs are read once per file version."""

    def __init__(self, arm: ArmClient, *, api_version: str = "2024-04-01") -> None:
        self._arm = arm
        self._api_version = api_version
        self._specs: dict[Path, tuple[int, dict[str, Any]]] = {}

    async def __call__(self, decision: Decision) -> str:
        action = decision.action
        assert isinstance(action, AmlJobAction)
        names = context(decision.event)
        where = render_fields(
            "aml_job", names, subscription_id=action.subscription_id,
            resource_group=action.resource_group, workspace=action.workspace,
        )  # fmt: skip
        path = Path(decision.rule.file).parent / action.job
        try:
            body: dict[str, Any] = _walk(self._spec(path), lambda text: _render(text, names))
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
        name = job_name(decision.key)
        resource = workspace_path(
            where["subscription_id"], where["resource_group"], where["workspace"], "jobs", name
        )
        response = await self._arm.request(
            "PUT", resource, api_version=self._api_version, json=body, allow=(400, 409)
        )
        if response.status < 300:
            return f"job {name} submitted"
        if _DUPLICATE.search(response.error()[1]):
            return f"job {name} already submitted"
        raise self._arm.error_for("PUT", resource, response)

    def can_find(self, action: Action) -> bool:
        return True

    async def find(self, decision: Decision, since: float) -> str | None:
        """The job named after the decision key, if it exists (whenever it was made)."""
        action = decision.action
        assert isinstance(action, AmlJobAction)
        where = render_fields(
            "aml_job", context(decision.event), subscription_id=action.subscription_id,
            resource_group=action.resource_group, workspace=action.workspace,
        )  # fmt: skip
        name = job_name(decision.key)
        resource = workspace_path(
            where["subscription_id"], where["resource_group"], where["workspace"], "jobs", name
        )
        found = await self._arm.request(
            "GET", resource, api_version=self._api_version, allow=(404,)
        )
        if found.status == 404:
            return None
        properties = found.body.get("properties") if isinstance(found.body, dict) else None
        status = properties.get("status") if isinstance(properties, dict) else None
        return f"job {name} found ({status or 'status unknown'})"

    def _spec(self, path: Path) -> dict[str, Any]:
        """The parsed spec, read again only when the file changed."""
        try:
            version = path.stat().st_mtime_ns
        except OSError as exc:
            raise PermanentActionError(f"job spec {path}: cannot read: {exc}") from exc
        cached = self._specs.get(path)
        if cached is None or cached[0] != version:
            cached = self._specs[path] = (version, load_job_spec(path))
        return cached[1]


def _render(text: str, names: dict[str, Any]) -> str:
    """Render a template, keeping Azure ML's ``${{...}}`` bindings as they are."""
    return render(_protect(text), names)


def _protect(text: str) -> str:
    return _BINDING.sub(lambda found: "{% raw %}" + found.group(0) + "{% endraw %}", text)


def _walk(value: Any, visit: Callable[[str], Any]) -> Any:
    """A copy of ``value`` with ``visit`` applied to every string (keys stay as they are)."""
    if isinstance(value, str):
        return visit(value)
    if isinstance(value, list):
        return [_walk(item, visit) for item in value]
    if isinstance(value, dict):
        return {key: _walk(item, visit) for key, item in value.items()}
    return value
