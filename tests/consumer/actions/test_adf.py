"""The Data Factory action, and the ARM client under it, against a local ARM server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from azure.core.exceptions import (
    ClientAuthenticationError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity import CredentialUnavailableError

from consumer.actions.adf import AdfExecutor
from consumer.actions.azure import ArmClient, retry_after_s
from consumer.credentials import CachedTokens
from consumer.errors import PermanentActionError, TransientActionError
from consumer.stores.deadletters import DirectoryDeadLetterStore
from consumer.worker.handler import Handler, Received
from consumer.worker.metrics import Metrics
from consumer.worker.retrying import RetryPolicy
from tests.support import SAMPLES
from tests.support.arm import (
    NO_IDENTITY,
    TOKEN,
    ArmServer,
    FakeCredential,
    Fault,
    decision,
)
from tests.support.factories import action_session, make_table
from tests.support.metrics import value
from tests.support.ports import free_port

SUB = "6f1c2a3b-0d4e-4f5a-9b8c-7d6e5f4a3b2c"
CREATE_RUN = (
    f"/subscriptions/{SUB}/resourceGroups/rg-mlops-prod/providers/Microsoft.DataFactory"
    "/factories/adf-mlw-prod-weu/pipelines/retrain-credit-risk/createRun"
)
ACTION: dict[str, Any] = {
    "type": "adf_pipeline_run",
    "subscription_id": "{{ workspace.subscription_id }}",
    "resource_group": "{{ workspace.resource_group }}",
    "factory": "adf-{{ workspace.name }}",
    "pipeline": "retrain-credit-risk",
    "parameters": {
        "driftRunId": "{{ data.RunId }}",
        "coefficient": "{{ drift.coefficient }}",
        "eventId": "{{ event.id }}",
        "retries": 3,
        "datasets": ["{{ drift.base_dataset_id }}", "{{ drift.target_dataset_id }}"],
    },
}
DRIFT = "dataset-drift.moderate.json"


@pytest.fixture
async def server() -> AsyncIterator[ArmServer]:
    async with ArmServer() as peer:
        yield peer


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with action_session("azure") as client_session:
        yield client_session


async def _run(arm: ArmClient, **changes: Any) -> str:
    return await AdfExecutor(arm)(decision(DRIFT, {**ACTION, **changes}))


async def test_starts_a_run_with_the_parameters_rendered_from_the_event(
    server: ArmServer, session: aiohttp.ClientSession
) -> None:
    """One POST to createRun, api-version 2018-06-01, bearer token for ARM's default scope,
    and the body is the parameters table itself, rendered from the drift event."""
    credential = FakeCredential()
    detail = await _run(ArmClient(session, credential, base_url=server.base_url))
    (call,) = server.requests
    assert (call.method, call.path, call.query) == (
        "POST", CREATE_RUN, {"api-version": "2018-06-01"})  # fmt: skip
    assert call.headers["Authorization"] == f"Bearer {TOKEN}"
    assert call.headers["Content-Type"] == "application/json"
    assert call.body == {
        "driftRunId": "my_driftrun1_1550564444_fbbcdc0f",
        "coefficient": "0.42",
        "eventId": "c4d5e6f7-a8b9-4c0d-9e1f-2a3b4c5d6e7f",
        "retries": 3,
        "datasets": [
            "3c56d136-0f64-4657-a0e8-5162089a88a3",
            "d7e74d2e-c972-4266-b5fb-6c9c182d2a74",
        ],
    }
    (run,) = server.runs
    assert detail == f"run {run[1]}"
    assert credential.scopes == [("https://management.azure.com/.default",)]


async def test_api_version_and_scope_are_configurable(
    server: ArmServer, session: aiohttp.ClientSession
) -> None:
    """Another cloud's scope and a newer api-version reach the credential and the URL."""
    credential = FakeCredential()
    scope = "https://management.chinacloudapi.cn/.default"
    arm = ArmClient(session, credential, base_url=server.base_url + "/", scope=scope)
    await AdfExecutor(arm, api_version="2030-01-01")(decision(DRIFT, ACTION))
    assert server.requests[0].query == {"api-version": "2030-01-01"}
    assert server.requests[0].path == CREATE_RUN
    assert credential.scopes == [(scope,)]


@pytest.mark.parametrize(
    ("status", "error"),
    [(429, TransientActionError), (500, TransientActionError), (503, TransientActionError),
     (408, TransientActionError), (400, PermanentActionError), (404, PermanentActionError),
     (403, PermanentActionError)],
)  # fmt: skip
async def test_statuses_are_classified(
    server: ArmServer, session: aiohttp.ClientSession, status: int, error: type[Exception]
) -> None:
    """408, 429 and 5xx may pass later (Retry-After passed on); other 4xx will not. The
    message names method, path, status and ARM's error code, never the token or query."""
    server.inject("createRun", Fault(status, retry_after="7"))
    with pytest.raises(error) as caught:
        await _run(ArmClient(session, FakeCredential(), base_url=server.base_url))
    message = str(caught.value)
    assert message.startswith(f"POST {CREATE_RUN} answered HTTP {status}: ")
    assert "Injected fault." in message
    assert TOKEN not in message and "api-version" not in message
    if error is TransientActionError:
        assert caught.value.retry_after_s == 7  # type: ignore[attr-defined]
    assert len(server.runs) == 0


async def test_a_refused_token_is_permanent(
    server: ArmServer, session: aiohttp.ClientSession
) -> None:
    """ARM answering 401 (a token for the wrong audience or tenant) will not pass by itself."""
    arm = ArmClient(session, FakeCredential("wrong-token"), base_url=server.base_url)
    with pytest.raises(PermanentActionError, match="HTTP 401: InvalidAuthenticationToken") as e:
        await _run(arm)
    assert "wrong-token" not in str(e.value)


async def test_no_credential_is_permanent_and_sends_nothing(
    server: ArmServer, session: aiohttp.ClientSession
) -> None:
    """A credential that cannot get a token (no managed identity) fails before any request."""
    arm = ArmClient(session, FakeCredential(fail=True), base_url=server.base_url)
    with pytest.raises(PermanentActionError, match=r"no Azure AD token for .*No identity has"):
        await _run(arm)
    assert server.requests == []


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ProcessLookupError(), "ProcessLookupError"),
        (TimeoutError(), r"none within 60s"),
        (CredentialUnavailableError("Timed out waiting for Azure CLI"), "Timed out waiting"),
        (CredentialUnavailableError(
            "ManagedIdentityCredential authentication unavailable, no response from the IMDS "
            "endpoint."), "no response from the IMDS endpoint"),
        (ServiceRequestError("Connection reset by peer"), "ServiceRequestError: Connection"),
        (ServiceResponseError("read timed out"), "ServiceResponseError: read timed out"),
        (ClientAuthenticationError("Failed to invoke Azure CLI"), "Failed to invoke"),
        (ClientAuthenticationError("Microsoft Entra ID error '(temporarily_unavailable) "
                                   "AADSTS50196: The server is busy.'"), "temporarily_unavailable"),
        (ClientAuthenticationError(
            "DefaultAzureCredential failed to retrieve a token from the included credentials.\n"
            "Attempted credentials:\n\tManagedIdentityCredential: ManagedIdentityCredential "
            "authentication unavailable, no response from the IMDS endpoint.\n"
            "\tAzureCliCredential: Azure CLI not found on path"), "DefaultAzureCredential"),
        (RuntimeError("unexpected"), "RuntimeError: unexpected"),
    ],
)  # fmt: skip
async def test_a_token_that_may_come_later_is_transient(
    server: ArmServer, session: aiohttp.ClientSession, error: Exception, expected: str
) -> None:
    """A slow or killed ``az``, a silent IMDS, an unreachable or busy Entra ID, a chain whose
    failures include one of those, and any exception nobody expected: retried, not crashed."""
    arm = ArmClient(session, FakeCredential(errors=(error,)), base_url=server.base_url)
    with pytest.raises(TransientActionError, match=f"no Azure AD token for .*{expected}"):
        await _run(arm)
    assert server.requests == []


@pytest.mark.parametrize(
    "message",
    [
        "Azure CLI not found on path",
        "Please run 'az login' to set up an account",
        "Microsoft Entra ID error '(invalid_client) AADSTS7000215: Invalid client secret "
        "provided.'",
        "Microsoft Entra ID error '(invalid_grant) AADSTS65001: The user or administrator has "
        "not consented to use the application.'",
        "No managed identity endpoint found. \nThe Target Azure platform could not be "
        "determined from environment variables.",
        NO_IDENTITY,
        "EnvironmentCredential authentication unavailable. Environment variables are not fully "
        "configured.",
    ],
)
async def test_a_token_that_needs_someone_to_act_is_permanent(
    server: ArmServer, session: aiohttp.ClientSession, message: str
) -> None:
    """No CLI, nobody logged in, Entra ID refusing the client, no identity: dead-lettered at
    once, naming the reason."""
    error = CredentialUnavailableError(message)
    arm = ArmClient(session, FakeCredential(errors=(error,)), base_url=server.base_url)
    with pytest.raises(PermanentActionError) as caught:
        await _run(arm)
    assert str(caught.value).startswith("no Azure AD token for ")
    assert message.split("\n")[0].strip() in str(caught.value)


async def test_a_burst_of_requests_fetches_one_token(
    server: ArmServer, session: aiohttp.ClientSession
) -> None:
    """Fifty actions at once through the token cache: one token from the credential."""
    credential = FakeCredential()
    arm = ArmClient(session, CachedTokens(credential), base_url=server.base_url)
    await asyncio.gather(*(_run(arm) for _ in range(50)))
    assert len(server.runs) == 50
    assert len(credential.scopes) == 1


async def test_a_killed_az_process_is_retried_and_not_dead_lettered(
    server: ArmServer, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """``ProcessLookupError`` (``az`` exiting as azure-identity's timeout kills it) fails the
    first attempt as transient; the second gets a token, and the run starts. Nothing is
    dead-lettered and the action counts as ok."""
    credential = FakeCredential(errors=(ProcessLookupError(),))
    arm = ArmClient(session, CachedTokens(credential), base_url=server.base_url)
    table = make_table({"name": "retrain", "actions": [ACTION]})
    metrics = Metrics(clock=lambda: 0.0)

    async def no_sleep(seconds: float) -> None:
        return None

    async with DirectoryDeadLetterStore(tmp_path) as store:
        handler = Handler(
            rules=lambda: table, executors={"adf_pipeline_run": AdfExecutor(arm)},
            dead_letters=store, metrics=metrics, retry=RetryPolicy(sleep=no_sleep),
            log=structlog.get_logger("test"),
        )  # fmt: skip
        body = (SAMPLES / DRIFT).read_bytes()
        parked = await handler.handle(Received(partition="0", body=body, sequence_number=1,
                                               offset="1"))  # fmt: skip
        assert (parked, await store.count()) == (0, 0)
    assert len(credential.scopes) == 2
    assert len(server.runs) == 1
    assert value(metrics, "mlevents_actions_total", type="adf_pipeline_run", outcome="ok") == 1


async def test_connection_refused_is_transient(session: aiohttp.ClientSession) -> None:
    """Nothing listening: ARM may be back on the next attempt."""
    arm = ArmClient(session, FakeCredential(), base_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransientActionError, match=f"POST {CREATE_RUN}: ClientConnectorError"):
        await _run(arm)


async def test_a_slow_answer_is_a_transient_timeout(
    server: ArmServer, session: aiohttp.ClientSession
) -> None:
    """Each request is bounded by the client's timeout."""
    server.inject("createRun", Fault(delay_s=0.5))
    arm = ArmClient(session, FakeCredential(), base_url=server.base_url, timeout_s=0.05)
    with pytest.raises(TransientActionError, match=r"no answer within 0\.05s"):
        await _run(arm)


async def test_a_template_the_event_cannot_fill_is_permanent_and_sends_nothing(
    server: ArmServer, session: aiohttp.ClientSession
) -> None:
    """A parameter naming a field the event lacks fails the action, naming the field."""
    arm = ArmClient(session, FakeCredential(), base_url=server.base_url)
    with pytest.raises(PermanentActionError, match=r"'parameters'.*'nope'"):
        await _run(arm, parameters={"x": "{{ data.nope }}"})
    with pytest.raises(PermanentActionError, match="'factory'"):
        await _run(arm, factory="{{ run.id }}")
    assert server.requests == []


def test_retry_after_in_seconds_or_as_a_date() -> None:
    """Retry-After is seconds or an HTTP date; junk is ignored."""
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert retry_after_s({"Retry-After": "12"}) == 12
    assert 25 < (retry_after_s({"Retry-After": later}) or 0) <= 30
    assert retry_after_s({"Retry-After": "soon"}) is None
    assert retry_after_s({}) is None


async def test_with_a_key_parameter_a_run_carries_the_key_and_can_be_found(
    server: ArmServer, session: aiohttp.ClientSession
) -> None:
    """Each run gets the decision key in ``key_parameter``; an uncertain run is found among
    the pipeline's runs (over pages) by that parameter, since the earlier reservation."""
    arm = ArmClient(session, FakeCredential(), base_url=server.base_url)
    executor = AdfExecutor(arm, now=lambda: 1_800_000_000.0)
    ours = decision(DRIFT, {**ACTION, "key_parameter": "mleventsKey"})
    for other in range(3):  # runs of the same pipeline for other events
        server.runs.append(
            ("retrain-credit-risk", f"other-{other}", {"mleventsKey": f"other/{other}"})
        )
    assert executor.can_find(ours.action)
    assert await executor.find(ours, 1_799_999_000.0) is None
    detail = await executor(ours)
    assert server.runs[-1][2]["mleventsKey"] == ours.key
    found = await executor.find(ours, 1_799_999_000.0)
    assert found == f"{detail} found (Succeeded)"
    query = server.calls("queryPipelineRuns")[-1].body
    assert query["lastUpdatedAfter"] == "2027-01-15T07:38:20.000000Z"  # since, less 5 minutes
    assert query["filters"] == [
        {"operand": "PipelineName", "operator": "Equals", "values": ["retrain-credit-risk"]}
    ]
    assert len(server.calls("queryPipelineRuns")) > 2  # it read more than one page


def test_without_a_key_parameter_a_run_cannot_be_found() -> None:
    executor = AdfExecutor(ArmClient.__new__(ArmClient))
    assert not executor.can_find(decision(DRIFT, ACTION).action)
