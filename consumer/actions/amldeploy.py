"""The ``aml_deploy`` action: deploy a registered model to an Azure ML managed online endpoint.

Steps, each one ARM call: re-check that the model version still exists (events can be stale:
a model deleted since its registration must not be deployed); read the endpoint, for its
region; PUT the deployment and follow its ``Azure-AsyncOperation`` until it succeeds or
fails; then, when asked, give the deployment its share of the traffic. ``timeout_s`` bounds
the whole; past it the action fails permanently while Azure carries on (see ``follow``).

Idempotency comes from the deployment's name: a PUT is create-or-update, so a redelivered
event PUTs the same spec under the same name instead of creating another deployment.

The calls are built by ``DeployPlan`` (no I/O); ``deploy_calls`` lists them for a preview,
with what the answers to the earlier calls decide in the later ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consumer.actions.arm import ArmRequest, render_fields, workspace_path
from consumer.errors import PermanentActionError
from rules import Action, AmlDeployAction, Decision
from rules.templates import context

if TYPE_CHECKING:  # the client imports aiohttp; building a request needs neither
    from consumer.actions.azure import ArmClient, ArmResponse

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
        plan = deploy_plan(decision, self._api_version)
        deployment = await self._arm.send(plan.read_deployment(), allow=(404,))
        properties = _properties(deployment.body) if deployment.status != 404 else {}
        if str(properties.get("model", "")).lower() != plan.model_path.lower():
            return None
        state = properties.get("provisioningState") or "state unknown"
        if action.traffic_percent is not None:
            endpoint = await self._arm.send(plan.read_endpoint(), allow=(404,))
            traffic = _properties(endpoint.body).get("traffic") or {}
            if traffic.get(plan.deployment) != action.traffic_percent:
                return None
        return f"deployment {plan.where} found with the model ({state})"

    async def __call__(self, decision: Decision) -> str:
        action = decision.action
        assert isinstance(action, AmlDeployAction)
        plan = deploy_plan(decision, self._api_version)
        deadline = self._arm.clock() + action.timeout_s
        model = await self._arm.send(plan.read_model(), allow=(404,))
        if model.status == 404:
            raise PermanentActionError(
                f"model {plan.fields['model_name']}:{plan.fields['model_version']} no longer "
                "exists; not deployed"
            )
        endpoint = await self._arm.send(plan.read_endpoint(), allow=(404,))
        if endpoint.status == 404:
            raise PermanentActionError(
                f"online endpoint {plan.fields['endpoint']} does not exist; create it first"
            )
        location = endpoint.body.get("location") if isinstance(endpoint.body, dict) else None
        put = plan.put_deployment(decision, _tags(model.body), location)
        ended = await self._follow(put, await self._arm.send(put), deadline)
        if action.traffic_percent is None:
            return f"deployment {plan.where} {ended}"
        traffic = await self._shift_traffic(plan, action.traffic_percent, deadline)
        return f"deployment {plan.where} {ended}, traffic {traffic}"

    async def _shift_traffic(
        self, plan: DeployPlan, percent: int, deadline: float
    ) -> dict[str, int]:
        """Give the deployment its share (``DeployPlan.put_traffic``), with the endpoint read
        again: the deployment may have taken minutes."""
        current = await self._arm.send(plan.read_endpoint())
        traffic, put = plan.put_traffic(current.body, percent)
        if put is not None:
            await self._follow(put, await self._arm.send(put), deadline)
        return traffic

    async def _follow(self, put: ArmRequest, started: ArmResponse, deadline: float) -> str:
        """Follow the operation ``put`` started until it succeeds, within ``deadline``."""
        ended = await self._arm.follow(
            started, put.method, put.path, api_version=put.api_version,
            timeout_s=max(0.0, deadline - self._arm.clock()),
            poll_interval_s=self._poll_interval_s,
        )  # fmt: skip
        return ended.status


@dataclass(frozen=True, slots=True)
class DeployPlan:
    """The resources one ``aml_deploy`` decision touches, rendered from its event, and the
    ARM calls on them. The calls that depend on an answer (the model's tags, the endpoint's
    region and traffic) take that answer as an argument."""

    fields: dict[str, str]
    """The action's template fields, rendered (the optional ones when set)."""
    model_path: str
    endpoint_path: str
    deployment_path: str
    api_version: str

    @property
    def deployment(self) -> str:
        return self.fields["deployment"]

    @property
    def where(self) -> str:
        """``endpoint/deployment``, for messages."""
        return f"{self.fields['endpoint']}/{self.deployment}"

    def read_model(self) -> ArmRequest:
        return ArmRequest("GET", self.model_path, self.api_version)

    def read_endpoint(self) -> ArmRequest:
        return ArmRequest("GET", self.endpoint_path, self.api_version)

    def read_deployment(self) -> ArmRequest:
        return ArmRequest("GET", self.deployment_path, self.api_version)

    def put_deployment(self, decision: Decision, tags: dict[str, Any], location: Any) -> ArmRequest:
        """The deployment's PUT, given the model's ``tags`` and the endpoint's ``location``."""
        action = decision.action
        assert isinstance(action, AmlDeployAction)
        body = _deployment_body(action, decision, self.fields, self.model_path, tags, location)
        return ArmRequest("PUT", self.deployment_path, self.api_version, body)

    def put_traffic(self, endpoint: Any, percent: int) -> tuple[dict[str, int], ArmRequest | None]:
        """The traffic the endpoint (as just read) gets, and its PUT, or ``None`` when the
        traffic already reads so (a redelivery).

        The endpoint is PUT back whole, without its read-only fields: ARM's PATCH of an
        endpoint cannot change traffic. The other deployments keep their proportions of the
        rest (``split_traffic``).
        """
        endpoint = endpoint if isinstance(endpoint, dict) else {}
        properties = dict(endpoint.get("properties") or {})
        before = {name: int(share) for name, share in (properties.get("traffic") or {}).items()}
        traffic = split_traffic(before, self.deployment, percent)
        if traffic == before:
            return traffic, None
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
        return traffic, ArmRequest("PUT", self.endpoint_path, self.api_version, body)


def deploy_plan(decision: Decision, api_version: str) -> DeployPlan:
    """The ``DeployPlan`` of ``decision``.

    Raises:
        PermanentActionError: a template fails, naming the field.
    """
    action = decision.action
    assert isinstance(action, AmlDeployAction)
    fields = render_fields(
        "aml_deploy", context(decision.event), subscription_id=action.subscription_id,
        resource_group=action.resource_group, workspace=action.workspace,
        endpoint=action.endpoint, deployment=action.deployment,
        model_name=action.model_name, model_version=action.model_version,
        **_optional(instance_type=action.instance_type, environment_id=action.environment_id,
                    code_id=action.code_id, scoring_script=action.scoring_script),
    )  # fmt: skip
    workspace = (fields["subscription_id"], fields["resource_group"], fields["workspace"])
    endpoint = (*workspace, "onlineEndpoints", fields["endpoint"])
    return DeployPlan(
        fields,
        model_path=workspace_path(
            *workspace, "models", fields["model_name"], "versions", fields["model_version"]
        ),
        endpoint_path=workspace_path(*endpoint),
        deployment_path=workspace_path(*endpoint, "deployments", fields["deployment"]),
        api_version=api_version,
    )


def deploy_calls(decision: Decision, api_version: str) -> list[tuple[ArmRequest, str]]:
    """The calls ``decision`` makes, in order, each with what decides the parts of it that
    only the answers before it tell (a preview: nothing is asked). The deployment's body is
    shown as the action alone makes it: without the endpoint's region, and with the instance
    type and count the action sets, else the defaults (the model's tags may change them)."""
    action = decision.action
    assert isinstance(action, AmlDeployAction)
    plan = deploy_plan(decision, api_version)
    from_tags = [
        note
        for note, unset in (
            ("properties.instanceType from the model's instance_type tag",
             action.instance_type is None),
            ("sku.capacity from its instance_count tag", action.instance_count is None),
        )
        if unset
    ]  # fmt: skip
    put_note = "; ".join(
        ["location: the endpoint's", *(f"{note} when it has one" for note in from_tags)]
    )
    calls = [
        (plan.read_model(), "the model version must still exist; its tags are read"),
        (plan.read_endpoint(), "the endpoint must exist; its region is read"),
        (
            plan.put_deployment(decision, {}, None),
            f"{put_note}; then its Azure-AsyncOperation is followed until it succeeds, "
            f"within timeout_s = {action.timeout_s:g}",
        ),
    ]
    if action.traffic_percent is not None:
        rest = 100 - action.traffic_percent
        calls += [
            (plan.read_endpoint(), "the endpoint again, once the deployment succeeded"),
            (
                ArmRequest(
                    "PUT",
                    plan.endpoint_path,
                    api_version,
                    {"properties": {"traffic": {plan.deployment: action.traffic_percent}}},
                ),
                "the body is the endpoint as read, whole, with this traffic; the other "
                f"deployments share the other {rest}% in proportion to their shares; not "
                "sent when the traffic already reads so",
            ),
        ]
    return calls


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
