"""The ``aml_deploy`` action: deploy a registered model to an Azure ML managed online endpoint.

Steps, each one ARM call: re-check that the model version still exists (events can be stale:
a model deleted since its registration must not be deployed); read the endpoint, for its
region; PUT the deployment and follow its ``Azure-AsyncOperation`` until it succeeds or
fails; then, when asked, give the deployment its share of the traffic. ``timeout_s`` bounds
the whole; past it the action fails permanently while Azure carries on (see ``follow``).

Idempotency comes from the deployment's name: a PUT is create-or-update, so a redelivered
event PUTs the same spec under the same name instead of creating another deployment.
"""

from __future__ import annotations

from typing import Any

from consumer.actions.azure import ArmClient, render_fields, workspace_path
from consumer.errors import PermanentActionError
from rules import Action, AmlDeployAction, Decision
from rules.templates import context

DEFAULT_INSTANCE_TYPE = "Standard_DS3_v2"
DEFAULT_INSTANCE_COUNT = 1


class AmlDeployExecutor:
    """Creates or updates managed online deployments through ARM."""

    def __init__(
        self, arm: ArmClient, *, api_version: str = "2024-04-01", poll_interval_s: float = 5.0
    ) -> None:
        self._arm = arm
        self._api_version = api_version
        self._poll_interval_s = poll_interval_s

    def can_find(self, action: Action) -> bool:
        return True

    async def find(self, decision: Decision, since: float) -> str | None:
        """The deployment, if it exists with this decision's model (and its traffic share,
        when the action sets one): what an earlier holder's PUT would have left."""
        action = decision.action
        assert isinstance(action, AmlDeployAction)
        fields = self._fields(action, context(decision.event))
        workspace = (fields["subscription_id"], fields["resource_group"], fields["workspace"])
        model_path = workspace_path(
            *workspace, "models", fields["model_name"], "versions", fields["model_version"]
        )
        endpoint_path = workspace_path(*workspace, "onlineEndpoints", fields["endpoint"])
        deployment_path = workspace_path(
            *workspace, "onlineEndpoints", fields["endpoint"], "deployments", fields["deployment"]
        )
        deployment = await self._arm.request(
            "GET", deployment_path, api_version=self._api_version, allow=(404,)
        )
        properties = _properties(deployment.body) if deployment.status != 404 else {}
        if str(properties.get("model", "")).lower() != model_path.lower():
            return None
        state = properties.get("provisioningState") or "state unknown"
        where = f"{fields['endpoint']}/{fields['deployment']}"
        if action.traffic_percent is not None:
            endpoint = await self._arm.request(
                "GET", endpoint_path, api_version=self._api_version, allow=(404,)
            )
            traffic = _properties(endpoint.body).get("traffic") or {}
            if traffic.get(fields["deployment"]) != action.traffic_percent:
                return None
        return f"deployment {where} found with the model ({state})"

    def _fields(self, action: AmlDeployAction, names: dict[str, Any]) -> dict[str, str]:
        return render_fields(
            "aml_deploy", names, subscription_id=action.subscription_id,
            resource_group=action.resource_group, workspace=action.workspace,
            endpoint=action.endpoint, deployment=action.deployment,
            model_name=action.model_name, model_version=action.model_version,
            **_optional(instance_type=action.instance_type, environment_id=action.environment_id,
                        code_id=action.code_id, scoring_script=action.scoring_script),
        )  # fmt: skip

    async def __call__(self, decision: Decision) -> str:
        action = decision.action
        assert isinstance(action, AmlDeployAction)
        fields = self._fields(action, context(decision.event))
        deadline = self._arm.clock() + action.timeout_s
        workspace = (fields["subscription_id"], fields["resource_group"], fields["workspace"])
        model_path = workspace_path(
            *workspace, "models", fields["model_name"], "versions", fields["model_version"]
        )
        model = await self._arm.request(
            "GET", model_path, api_version=self._api_version, allow=(404,)
        )
        if model.status == 404:
            raise PermanentActionError(
                f"model {fields['model_name']}:{fields['model_version']} no longer exists; "
                "not deployed"
            )
        tags = _tags(model.body)
        endpoint_path = workspace_path(*workspace, "onlineEndpoints", fields["endpoint"])
        endpoint = await self._arm.request(
            "GET", endpoint_path, api_version=self._api_version, allow=(404,)
        )
        if endpoint.status == 404:
            raise PermanentActionError(
                f"online endpoint {fields['endpoint']} does not exist; create it first"
            )
        location = endpoint.body.get("location") if isinstance(endpoint.body, dict) else None
        body = _deployment_body(action, decision, fields, model_path, tags, location)
        deployment_path = workspace_path(
            *workspace, "onlineEndpoints", fields["endpoint"], "deployments", fields["deployment"]
        )
        started = await self._arm.request(
            "PUT", deployment_path, api_version=self._api_version, json=body
        )
        ended = await self._arm.follow(
            started, "PUT", deployment_path, api_version=self._api_version,
            timeout_s=max(0.0, deadline - self._arm.clock()),
            poll_interval_s=self._poll_interval_s,
        )  # fmt: skip
        where = f"{fields['endpoint']}/{fields['deployment']}"
        if action.traffic_percent is None:
            return f"deployment {where} {ended.status}"
        traffic = await self._shift_traffic(
            endpoint_path, fields["deployment"], action.traffic_percent, deadline
        )
        return f"deployment {where} {ended.status}, traffic {traffic}"

    async def _shift_traffic(
        self, endpoint_path: str, deployment: str, percent: int, deadline: float
    ) -> dict[str, int]:
        """Give ``deployment`` its share; the others keep their proportions of the rest.

        The endpoint is read again (after a deployment that may have taken minutes) and PUT
        back whole, without its read-only fields: ARM's PATCH of an endpoint cannot change
        traffic. A traffic table that already reads as wanted (a redelivery) is left alone.
        """
        current = await self._arm.request("GET", endpoint_path, api_version=self._api_version)
        endpoint = current.body if isinstance(current.body, dict) else {}
        properties = dict(endpoint.get("properties") or {})
        before = {name: int(share) for name, share in (properties.get("traffic") or {}).items()}
        traffic = split_traffic(before, deployment, percent)
        if traffic == before:
            return traffic
        properties["traffic"] = traffic
        body = {
            key: endpoint[key]
            for key in ("location", "identity", "tags", "kind")
            if key in endpoint
        }
        body["properties"] = {
            key: value
            for key, value in properties.items()
            if key not in ("provisioningState", "scoringUri", "swaggerUri")
        }
        started = await self._arm.request(
            "PUT", endpoint_path, api_version=self._api_version, json=body
        )
        await self._arm.follow(
            started, "PUT", endpoint_path, api_version=self._api_version,
            timeout_s=max(0.0, deadline - self._arm.clock()),
            poll_interval_s=self._poll_interval_s,
        )  # fmt: skip
        return traffic


def split_traffic(traffic: dict[str, int], deployment: str, percent: int) -> dict[str, int]:
    """``deployment`` gets ``percent``; the other deployments share the rest in proportion
    to what they had, in whole percents summing to 100.

    When no other deployment takes traffic (none exists, or all have 0), nothing could serve
    the rest, so a non-zero ``percent`` becomes 100; 0 stays 0 (an endpoint may route
    nothing). Deployments someone drained to 0 are never given traffic back.
    """
    others = {name: int(share) for name, share in traffic.items() if name != deployment}
    rest = 100 - percent
    weight_sum = sum(others.values())
    if weight_sum <= 0:
        return {deployment: 100 if percent > 0 else 0, **dict.fromkeys(others, 0)}
    shares = {name: rest * weight // weight_sum for name, weight in others.items()}
    # Hand out what integer division left over, largest remainders first.
    leftover = rest - sum(shares.values())
    by_remainder = sorted(others, key=lambda name: (-(rest * others[name] % weight_sum), name))
    for name in by_remainder[:leftover]:
        shares[name] += 1
    return {deployment: percent, **shares}


def _optional(**fields: str | None) -> dict[str, str]:
    """The optional template fields that the action sets."""
    return {name: text for name, text in fields.items() if text is not None}


def _properties(body: Any) -> dict[str, Any]:
    properties = body.get("properties") if isinstance(body, dict) else None
    return properties if isinstance(properties, dict) else {}


def _tags(model: Any) -> dict[str, Any]:
    properties = model.get("properties") if isinstance(model, dict) else None
    tags = properties.get("tags") if isinstance(properties, dict) else None
    return tags if isinstance(tags, dict) else {}


def _deployment_body(
    action: AmlDeployAction,
    decision: Decision,
    fields: dict[str, str],
    model_path: str,
    tags: dict[str, Any],
    location: Any,
) -> dict[str, Any]:
    instance_type = fields.get("instance_type") or str(
        tags.get("instance_type") or DEFAULT_INSTANCE_TYPE
    )
    count = action.instance_count
    if count is None:
        try:
            count = int(tags.get("instance_count") or DEFAULT_INSTANCE_COUNT)
        except (TypeError, ValueError):
            count = 0
        if count < 1:
            raise PermanentActionError(
                f"model tag instance_count {tags.get('instance_count')!r} is not a whole "
                "number of instances"
            )
    properties: dict[str, Any] = {
        "endpointComputeType": "Managed",
        "model": model_path,
        "instanceType": instance_type,
        "scaleSettings": {"scaleType": "Default"},
    }
    if fields.get("environment_id"):
        properties["environmentId"] = fields["environment_id"]
    if fields.get("code_id") and fields.get("scoring_script"):
        properties["codeConfiguration"] = {
            "codeId": fields["code_id"],
            "scoringScript": fields["scoring_script"],
        }
    body: dict[str, Any] = {
        "sku": {"name": "Default", "capacity": count},
        "tags": {"mlevents.eventId": decision.event.id, "mlevents.rule": decision.rule.name},
        "properties": properties,
    }
    if isinstance(location, str) and location:
        body["location"] = location
    return body
