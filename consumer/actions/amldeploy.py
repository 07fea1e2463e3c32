"""The ``aml_deploy`` action: deploy a registered model to an Azure ML managed online endpoint.

Steps, each one ARM call: re-check that the model version still exists (events can be stale:
a model deleted since its registration must not be deployed); read the endpoint, for its
region; PUT the deployment and follow its ``Azure-AsyncOperation`` until it succeeds, fails
or ``timeout_s`` passes; then, when asked, give the deployment its share of the traffic.

Idempotency comes from the deployment's name: a PUT is create-or-update, so a redelivered
event PUTs the same spec under the same name instead of creating another deployment.
"""

from __future__ import annotations

from typing import Any

from rules import AmlDeployAction, Decision
from rules.templates import context

from ..errors import PermanentActionError
from .azure import ArmClient, render_fields, workspace_path

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

    async def __call__(self, decision: Decision) -> str:
        action = decision.action
        assert isinstance(action, AmlDeployAction)
        names = context(decision.event)
        fields = render_fields(
            "aml_deploy", names, subscription_id=action.subscription_id,
            resource_group=action.resource_group, workspace=action.workspace,
            endpoint=action.endpoint, deployment=action.deployment,
            model_name=action.model_name, model_version=action.model_version,
            **({"instance_type": action.instance_type} if action.instance_type else {}),
        )  # fmt: skip
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
            timeout_s=action.timeout_s, poll_interval_s=self._poll_interval_s,
        )  # fmt: skip
        where = f"{fields['endpoint']}/{fields['deployment']}"
        if action.traffic_percent is None:
            return f"deployment {where} {ended.status}"
        traffic = await self._shift_traffic(endpoint_path, fields["deployment"], action)
        return f"deployment {where} {ended.status}, traffic {traffic}"

    async def _shift_traffic(
        self, endpoint_path: str, deployment: str, action: AmlDeployAction
    ) -> dict[str, int]:
        """Give ``deployment`` its share; the others keep their proportions of the rest."""
        assert action.traffic_percent is not None
        current = await self._arm.request("GET", endpoint_path, api_version=self._api_version)
        endpoint = current.body if isinstance(current.body, dict) else {}
        properties = dict(endpoint.get("properties") or {})
        traffic = split_traffic(
            dict(properties.get("traffic") or {}), deployment, action.traffic_percent
        )
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
            timeout_s=action.timeout_s, poll_interval_s=self._poll_interval_s,
        )  # fmt: skip
        return traffic


def split_traffic(traffic: dict[str, int], deployment: str, percent: int) -> dict[str, int]:
    """``deployment`` gets ``percent``; the other deployments share the rest in proportion
    to what they had (evenly when they had nothing), in whole percents summing to 100."""
    others = {name: int(share) for name, share in traffic.items() if name != deployment}
    rest = 100 - percent
    result = {deployment: percent}
    if not others:
        result[deployment] = 100  # nothing else can take the rest
        return result
    total = sum(others.values())
    weights = others if total > 0 else dict.fromkeys(others, 1)
    weight_sum = sum(weights.values())
    shares = {name: rest * weight // weight_sum for name, weight in weights.items()}
    # Hand out what integer division left over, largest remainders first.
    leftover = rest - sum(shares.values())
    by_remainder = sorted(weights, key=lambda name: (-(rest * weights[name] % weight_sum), name))
    for name in by_remainder[:leftover]:
        shares[name] += 1
    result.update(shares)
    return result


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
            raise PermanentActionError(
                f"model tag instance_count {tags.get('instance_count')!r} is not a whole number"
            ) from None
    properties: dict[str, Any] = {
        "endpointComputeType": "Managed",
        "model": model_path,
        "instanceType": instance_type,
        "scaleSettings": {"scaleType": "Default"},
    }
    if action.environment_id:
        properties["environmentId"] = action.environment_id
    if action.code_id and action.scoring_script:
        properties["codeConfiguration"] = {
            "codeId": action.code_id,
            "scoringScript": action.scoring_script,
        }
    body: dict[str, Any] = {
        "sku": {"name": "Default", "capacity": count},
        "tags": {"mlevents.eventId": decision.event.id, "mlevents.rule": decision.rule.name},
        "properties": properties,
    }
    if isinstance(location, str) and location:
        body["location"] = location
    return body
