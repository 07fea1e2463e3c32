"""The deployment action against a local ARM server: model re-check, the deployment PUT,
Azure-AsyncOperation polling and the traffic shift."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from consumer.actions.amldeploy import AmlDeployExecutor, split_traffic
from consumer.actions.azure import ArmClient
from consumer.errors import PermanentActionError, TransientActionError
from consumer.worker.retrying import RetryPolicy
from tests.support.arm import TOKEN, ArmServer, FakeCredential, FakeTime, Fault, decision
from tests.support.factories import action_session

SUB = "6f1c2a3b-0d4e-4f5a-9b8c-7d6e5f4a3b2c"
WS = (
    f"/subscriptions/{SUB}/resourceGroups/rg-mlops-prod/providers/"
    "Microsoft.MachineLearningServices/workspaces/mlw-prod-weu"
)
ACTION: dict[str, Any] = {
    "type": "aml_deploy",
    "subscription_id": "{{ workspace.subscription_id }}",
    "resource_group": "{{ workspace.resource_group }}",
    "workspace": "{{ workspace.name }}",
    "endpoint": "credit-risk",
    "deployment": "v{{ model.version }}",
}
REGISTERED = "model-registered.production.json"  # credit-risk-xgb version 8


@pytest.fixture
async def server() -> AsyncIterator[ArmServer]:
    async with ArmServer(retry_after=None) as peer:
        peer.add_endpoint("credit-risk", {"blue": 100})
        peer.models["credit-risk-xgb:8"] = {"instance_type": "Standard_F4s_v2"}
        yield peer


@pytest.fixture
async def arm(server: ArmServer) -> AsyncIterator[tuple[ArmClient, FakeTime]]:
    time = FakeTime()
    async with action_session("azure") as session:
        client = ArmClient(
            session, FakeCredential(), base_url=server.base_url, clock=time.clock, sleep=time.sleep
        )
        yield client, time


async def _deploy(arm: tuple[ArmClient, FakeTime], **changes: Any) -> str:
    executor = AmlDeployExecutor(arm[0], poll_interval_s=2.0)
    return await executor(decision(REGISTERED, {**ACTION, **changes}))


async def test_checks_the_model_reads_the_endpoint_puts_and_follows_the_operation(
    server: ArmServer, arm: tuple[ArmClient, FakeTime]
) -> None:
    """GET model, GET endpoint, PUT deployment (model ARM id, instance type from the model's
    tag, one instance, the endpoint's region, event tags), then two polls until Succeeded."""
    detail = await _deploy(arm)
    assert detail == "deployment credit-risk/v8 Succeeded"
    routes = [(call.route, call.path) for call in server.requests]
    assert routes == [
        ("model", f"{WS}/models/credit-risk-xgb/versions/8"),
        ("endpoint.get", f"{WS}/onlineEndpoints/credit-risk"),
        ("deployment", f"{WS}/onlineEndpoints/credit-risk/deployments/v8"),
        *[("operation", routes[3][1])] * 3,
    ]
    put = server.calls("deployment")[0]
    assert put.query == {"api-version": "2024-04-01"}
    assert all(call.headers["Authorization"] == f"Bearer {TOKEN}" for call in server.requests)
    assert put.body == {
        "location": "westeurope",
        "sku": {"name": "Default", "capacity": 1},
        "tags": {"mlevents.eventId": "7b6a5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d",
                 "mlevents.rule": "r"},
        "properties": {
            "endpointComputeType": "Managed",
            "model": f"{WS}/models/credit-risk-xgb/versions/8",
            "instanceType": "Standard_F4s_v2",
            "scaleSettings": {"scaleType": "Default"},
        },
    }  # fmt: skip
    assert arm[1].sleeps == [2.0, 2.0, 2.0]
    assert server.endpoints["credit-risk"] == {"blue": 100}  # no traffic asked for


async def test_the_action_overrides_model_tags_and_adds_code_and_environment(
    server: ArmServer, arm: tuple[ArmClient, FakeTime]
) -> None:
    await _deploy(
        arm, instance_type="Standard_DS2_v2", instance_count=3,
        environment_id="azureml:env-{{ model.tags.stage | lower }}:1",
        code_id="/codes/c/versions/1", scoring_script="score_{{ model.name }}.py",
    )  # fmt: skip
    body = server.calls("deployment")[0].body
    assert body["sku"]["capacity"] == 3
    assert body["properties"]["instanceType"] == "Standard_DS2_v2"
    assert body["properties"]["environmentId"] == "azureml:env-production:1"
    assert body["properties"]["codeConfiguration"] == {
        "codeId": "/codes/c/versions/1", "scoringScript": "score_credit-risk-xgb.py"}  # fmt: skip


async def test_a_model_deleted_since_the_event_is_not_deployed(
    server: ArmServer, arm: tuple[ArmClient, FakeTime]
) -> None:
    """The event is stale: a permanent error, and nothing but the GET was sent."""
    del server.models["credit-risk-xgb:8"]
    with pytest.raises(PermanentActionError, match="credit-risk-xgb:8 no longer exists"):
        await _deploy(arm)
    assert [call.route for call in server.requests] == ["model"]


async def test_a_missing_endpoint_is_permanent(
    server: ArmServer, arm: tuple[ArmClient, FakeTime]
) -> None:
    with pytest.raises(PermanentActionError, match="endpoint nope does not exist"):
        await _deploy(arm, endpoint="nope")
    assert server.calls("deployment") == []


async def test_a_failed_operation_is_permanent_with_its_error(
    server: ArmServer, arm: tuple[ArmClient, FakeTime]
) -> None:
    server.operation_error = {"code": "ResourceNotReady", "message": "image build failed"}
    with pytest.raises(PermanentActionError, match="Failed: ResourceNotReady: image build"):
        await _deploy(arm)


async def test_an_operation_past_the_timeout_is_permanent(
    server: ArmServer, arm: tuple[ArmClient, FakeTime]
) -> None:
    server.operation_polls = 1_000
    with pytest.raises(PermanentActionError, match="after 10s"):
        await _deploy(arm, timeout_s=10)
    assert len(server.calls("operation")) == 5  # polls every 2 s for 10 s


async def test_throttling_is_retried_and_deploys_once(
    server: ArmServer, arm: tuple[ArmClient, FakeTime]
) -> None:
    """429 with Retry-After on the PUT: transient; through the retry policy, one deployment."""
    server.inject("deployment", Fault(status=429, retry_after="7"))
    with pytest.raises(TransientActionError) as caught:
        await _deploy(arm)
    assert caught.value.retry_after_s == 7
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    server.inject("deployment", Fault(status=503), times=2)
    executor = AmlDeployExecutor(arm[0], poll_interval_s=2.0)
    chosen = decision(REGISTERED, ACTION)
    detail, attempts = await RetryPolicy(sleep=sleep).call(lambda: executor(chosen))
    assert (detail, attempts) == ("deployment credit-risk/v8 Succeeded", 3)
    assert list(server.deployments) == ["credit-risk/v8"]


async def test_traffic_is_shifted_after_success_keeping_other_proportions(
    server: ArmServer, arm: tuple[ArmClient, FakeTime]
) -> None:
    server.add_endpoint("credit-risk", {"blue": 75, "green": 25})
    detail = await _deploy(arm, traffic_percent=20)
    assert detail.endswith("traffic {'v8': 20, 'blue': 60, 'green': 20}")
    assert server.endpoints["credit-risk"] == {"v8": 20, "blue": 60, "green": 20}
    put = server.calls("endpoint.put")[0].body
    assert put["location"] == "westeurope"
    assert "provisioningState" not in put["properties"]


@pytest.mark.parametrize(
    ("traffic", "percent", "expected"),
    [
        ({}, 10, {"new": 100}),
        ({"blue": 100}, 100, {"new": 100, "blue": 0}),
        ({"a": 50, "b": 50}, 1, {"new": 1, "a": 50, "b": 49}),
        ({"a": 0, "b": 0}, 40, {"new": 100, "a": 0, "b": 0}),
        ({}, 0, {"new": 0}),
        ({"a": 0}, 0, {"new": 0, "a": 0}),
        ({"a": 3, "b": 1}, 0, {"new": 0, "a": 75, "b": 25}),
        ({"a": 1, "b": 1, "c": 1}, 0, {"new": 0, "a": 34, "b": 33, "c": 33}),
        ({"new": 5, "a": 95}, 50, {"new": 50, "a": 50}),
    ],
)
def test_split_traffic_sums_to_100_or_routes_nothing(
    traffic: dict[str, int], percent: int, expected: dict[str, int]
) -> None:
    """Others keep their proportions of the rest; with nothing else serving, the new
    deployment takes all (or, at 0%, the endpoint routes nothing); drained ones stay at 0."""
    result = split_traffic(traffic, "new", percent)
    assert result == expected
    assert sum(result.values()) == (100 if any(expected.values()) else 0)


async def test_retry_after_paces_the_polls(
    server: ArmServer, arm: tuple[ArmClient, FakeTime]
) -> None:
    """The PUT's Retry-After sets the first wait; then the poll interval (no header)."""
    server.retry_after = "3"
    await _deploy(arm)
    assert arm[1].sleeps == [3.0, 2.0, 2.0]


async def test_a_transient_poll_failure_is_polled_through(
    server: ArmServer, arm: tuple[ArmClient, FakeTime]
) -> None:
    """A 503 while polling is not the operation failing: wait its Retry-After, poll again."""
    server.inject("operation", Fault(503, retry_after="4"))
    assert await _deploy(arm) == "deployment credit-risk/v8 Succeeded"
    assert arm[1].sleeps == [2.0, 4.0, 2.0, 2.0]
    assert len(server.calls("operation")) == 4
    assert len(server.calls("deployment")) == 1


async def test_a_refused_poll_is_permanent(
    server: ArmServer, arm: tuple[ArmClient, FakeTime]
) -> None:
    server.inject("operation", Fault(404, code="NotFound", message="No such operation."))
    with pytest.raises(PermanentActionError, match=r"mfeOperationsStatus/.* answered HTTP 404"):
        await _deploy(arm)


async def test_an_operation_url_on_another_host_gets_no_token(
    server: ArmServer, arm: tuple[ArmClient, FakeTime]
) -> None:
    """The bearer token goes to ARM's own address only; nothing is polled elsewhere."""
    server.operation_base = f"http://localhost:{server.port}"
    with pytest.raises(PermanentActionError, match="not sending the token there"):
        await _deploy(arm)
    assert server.calls("operation") == []


async def test_a_location_header_is_followed_until_200(
    server: ArmServer, arm: tuple[ArmClient, FakeTime]
) -> None:
    """Without Azure-AsyncOperation, a 202's Location answers 202 while running."""
    server.lro_header = "Location"
    assert await _deploy(arm) == "deployment credit-risk/v8 Succeeded"
    assert len(server.calls("operation")) == 3


async def test_instance_count_from_the_model_tag(
    server: ArmServer, arm: tuple[ArmClient, FakeTime]
) -> None:
    """The model's instance_count tag sets the capacity; one that is not a count fails."""
    server.models["credit-risk-xgb:8"]["instance_count"] = "2"
    await _deploy(arm)
    assert server.calls("deployment")[0].body["sku"] == {"name": "Default", "capacity": 2}
    server.models["credit-risk-xgb:8"]["instance_count"] = "two"
    with pytest.raises(PermanentActionError, match="instance_count 'two'"):
        await _deploy(arm)
    assert len(server.calls("deployment")) == 1


async def test_an_event_without_a_model_is_permanent_and_sends_nothing(
    server: ArmServer, arm: tuple[ArmClient, FakeTime]
) -> None:
    """The default model templates read the ModelRegistered payload; a drift event has none."""
    executor = AmlDeployExecutor(arm[0])
    action = {**ACTION, "deployment": "blue"}
    with pytest.raises(PermanentActionError, match=r"'model_name'.*'model' is undefined"):
        await executor(decision("dataset-drift.moderate.json", action))
    assert server.requests == []


async def test_a_redelivery_re_puts_the_deployment_and_leaves_traffic_alone(
    server: ArmServer, arm: tuple[ArmClient, FakeTime]
) -> None:
    """Create-or-update: the same spec under the same name; traffic already as wanted."""
    server.add_endpoint("credit-risk", {"blue": 75, "green": 25})
    first = await _deploy(arm, traffic_percent=20)
    second = await _deploy(arm, traffic_percent=20)
    assert first == second
    puts = server.calls("deployment")
    assert len(puts) == 2 and puts[0].body == puts[1].body
    assert list(server.deployments) == ["credit-risk/v8"]
    assert len(server.calls("endpoint.put")) == 1


async def test_an_uncertain_deployment_is_found_when_it_has_the_model(
    server: ArmServer, arm: tuple[ArmClient, FakeTime]
) -> None:
    """A deployment counts as done when it exists with this decision's model (and traffic
    share, when the action sets one); one with another model, or none, does not."""
    executor = AmlDeployExecutor(arm[0], poll_interval_s=2.0)
    chosen = decision(REGISTERED, {**ACTION, "traffic_percent": 10})
    assert executor.can_find(chosen.action)
    assert await executor.find(chosen, 0.0) is None
    server.deployments["credit-risk/v8"] = {
        "properties": {"model": WS + "/models/other/versions/1"}
    }
    assert await executor.find(chosen, 0.0) is None
    await executor(chosen)
    assert await executor.find(chosen, 0.0) == (
        "deployment credit-risk/v8 found with the model (Succeeded)"
    )
    server.endpoints["credit-risk"]["v8"] = 0  # traffic taken away since
    assert await executor.find(chosen, 0.0) is None
