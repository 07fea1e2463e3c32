"""A local Azure Resource Manager for the Azure action tests (Azure itself cannot run here).

It answers the few REST calls the actions make, in ARM's shapes: Data Factory createRun,
Azure ML jobs, model versions, online endpoints and deployments, and the status of their
long-running operations. It checks the bearer token and ``api-version`` as ARM does,
records every request for assertions, and injects faults per route (429 with
``Retry-After``, 5xx bursts, slow answers, lost responses). It is a test peer, not an ARM
emulator: state is a few dicts and every answer is the documented happy or error shape.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from azure.core.credentials import AccessToken
from azure.identity import CredentialUnavailableError

from rules import Decision, RuleSource, decode_body, load_table, plan

from . import SAMPLES
from .gate import Gate
from .http import serve

TOKEN = "test-arm-token"
NO_IDENTITY = (
    "ManagedIdentityCredential authentication unavailable. "
    "No identity has been assigned to this resource."
)
"""azure-identity's answer where no managed identity is assigned (a permanent failure)."""
AZ_BIN = Path(__file__).resolve().parent / "bin"
"""A folder holding a stand-in for the Azure CLI's ``az`` (see ``bin/az``): first on ``PATH``,
it answers azure-identity's AzureCliCredential with a test token."""
WS = (
    "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices"
    "/workspaces/{ws}"
)
ROUTES = {
    "createRun": ("POST", "/subscriptions/{sub}/resourceGroups/{rg}/providers/"
                  "Microsoft.DataFactory/factories/{factory}/pipelines/{pipeline}/createRun"),
    "queryPipelineRuns": ("POST", "/subscriptions/{sub}/resourceGroups/{rg}/providers/"
                          "Microsoft.DataFactory/factories/{factory}/queryPipelineRuns"),
    "job": ("PUT", WS + "/jobs/{name}"),
    "job.get": ("GET", WS + "/jobs/{name}"),
    "model": ("GET", WS + "/models/{name}/versions/{version}"),
    "endpoint.get": ("GET", WS + "/onlineEndpoints/{endpoint}"),
    "endpoint.put": ("PUT", WS + "/onlineEndpoints/{endpoint}"),
    "deployment": ("PUT", WS + "/onlineEndpoints/{endpoint}/deployments/{deployment}"),
    "deployment.get": ("GET", WS + "/onlineEndpoints/{endpoint}/deployments/{deployment}"),
    "operation": ("GET", "/subscriptions/{sub}/providers/Microsoft.MachineLearningServices"
                  "/locations/{location}/mfeOperationsStatus/{operation}"),
}  # fmt: skip


@dataclass(frozen=True)
class Recorded:
    """One request as it arrived."""

    route: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass(frozen=True)
class Fault:
    """How to answer one request of a route instead of (or after) the real answer."""

    status: int | None = None
    """The status to answer; ``None`` answers normally (after ``delay_s``)."""
    retry_after: str | None = None
    delay_s: float = 0.0
    lost: bool = False
    """Do the work, then answer ``status`` anyway: a response lost on the way back."""
    code: str | None = None
    """ARM's error code; ``TooManyRequests`` for 429, else ``InternalServerError``."""
    message: str = "Injected fault."


@dataclass
class Operation:
    """A long-running operation: ``InProgress`` for ``polls`` looks, then its outcome."""

    polls: int
    error: dict[str, str] | None = None
    status: str = "Succeeded"
    seen: int = 0


@dataclass
class ArmServer:
    """ARM on loopback. Use as ``async with ArmServer() as arm:``; ``arm.base_url``."""

    token: str = TOKEN
    location: str = "westeurope"
    operation_polls: int = 2
    """How many polls of a new operation answer ``InProgress`` before it ends."""
    operation_error: dict[str, str] | None = None
    """When set, new operations end ``Failed`` with this ``{"code", "message"}``."""
    retry_after: str | None = "1"
    """``Retry-After`` on the answers that start an operation."""
    poll_retry_after: str | None = None
    """``Retry-After`` on the answers to polls of a running operation (none by default: the
    client then waits its own poll interval)."""
    lro_header: str = "Azure-AsyncOperation"
    """Or ``Location`` (then the operation answers 202 while running, 200 at the end)."""
    operation_base: str | None = None
    """Where operation URLs point; the server's own address when ``None``."""
    requests: list[Recorded] = field(default_factory=list)
    models: dict[str, dict[str, str]] = field(default_factory=dict)
    """``"name:version"`` -> tags of the registered model versions."""
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Online endpoint name -> its ``properties.traffic``."""
    deployments: dict[str, Any] = field(default_factory=dict)
    """``"endpoint/deployment"`` -> the last body PUT."""
    jobs: dict[str, Any] = field(default_factory=dict)
    runs: list[tuple[str, str, Any]] = field(default_factory=list)
    """(pipeline, run id, parameters) of every pipeline run started."""
    operations: dict[str, Operation] = field(default_factory=dict)
    deployment_puts: list[tuple[int, Any]] = field(default_factory=list)
    """(201 for a create or 200 for an update, body) of every deployment PUT answered."""
    gate: Gate | None = None
    """Holds requests while closed (see ``gate.Gate``): each is carried out when it opens."""
    every: Fault | None = None
    """While set, how to answer each request no queued fault is for (a slow phase, a burst of
    errors that lasts a while rather than a number of requests)."""
    page_size: int = 2
    """Runs per page of queryPipelineRuns: 2 exercises paging; a long run needs more."""
    port: int = 0
    _faults: dict[str, list[Fault]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inject(self, route: str, fault: Fault, times: int = 1) -> None:
        """Answer the next ``times`` requests of ``route`` (a ``ROUTES`` key) with ``fault``."""
        assert route in ROUTES, route
        self._faults.setdefault(route, []).extend([fault] * times)

    def add_endpoint(self, name: str, traffic: dict[str, int] | None = None) -> None:
        self.endpoints[name] = dict(traffic or {})

    def calls(self, route: str) -> list[Recorded]:
        """The requests that reached ``route``, in order."""
        return [request for request in self.requests if request.route == route]

    async def __aenter__(self) -> ArmServer:
        app = web.Application(middlewares=[self._gate])
        handlers: dict[str, Callable[[web.Request], Awaitable[web.Response]]] = {
            "createRun": self._create_run, "queryPipelineRuns": self._query_runs,
            "job": self._put_job, "job.get": self._get_job, "model": self._get_model,
            "endpoint.get": self._get_endpoint, "endpoint.put": self._put_endpoint,
            "deployment": self._put_deployment, "deployment.get": self._get_deployment,
            "operation": self._get_operation,
        }  # fmt: skip
        for name, (method, path) in ROUTES.items():
            app.router.add_route(method, path, handlers[name], name=name)
        self._runner, self.port = await serve(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _gate(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Record, inject faults, then check the token and api-version as ARM does."""
        route = request.match_info.route.name or "unknown"
        raw = await request.read()
        self.requests.append(
            Recorded(
                route, request.method, request.path, dict(request.query),
                dict(request.headers), json.loads(raw) if raw else None,
            )
        )  # fmt: skip
        queue = self._faults.get(route)
        fault = queue.pop(0) if queue else (self.every or Fault())
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, "InvalidAuthenticationToken", "The access token is invalid.")
        if "api-version" not in request.query:
            return _error(400, "MissingApiVersionParameter", "The api-version is required.")
        if self.gate is None:
            return await self._answer(request, handler, fault)
        return await self.gate.passage(lambda: self._answer(request, handler, fault))

    async def _answer(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        fault: Fault,
    ) -> web.StreamResponse:
        """The request's work and answer, or the fault's."""
        if fault.status is None:
            return await handler(request)
        if fault.lost:
            await handler(request)
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        code = fault.code or ("TooManyRequests" if fault.status == 429 else "InternalServerError")
        return _error(fault.status, code, fault.message, headers)

    async def _create_run(self, request: web.Request) -> web.Response:
        run_id = str(uuid.uuid4())
        self.runs.append((request.match_info["pipeline"], run_id, await request.json()))
        return web.json_response({"runId": run_id})

    async def _query_runs(self, request: web.Request) -> web.Response:
        """Pipeline Runs - Query By Factory: the runs of the filtered pipeline, ``page_size``
        a page, parameters as strings as Data Factory gives them."""
        query = await request.json()
        wanted = {
            value
            for rule in query.get("filters", [])
            if rule.get("operand") == "PipelineName" and rule.get("operator") == "Equals"
            for value in rule.get("values", [])
        }
        runs = [
            {"runId": run_id, "pipelineName": pipeline, "status": "Succeeded",
             "parameters": {k: v if isinstance(v, str) else json.dumps(v)
                            for k, v in (parameters or {}).items()}}
            for pipeline, run_id, parameters in self.runs
            if not wanted or pipeline in wanted
        ]  # fmt: skip
        start = int(query.get("continuationToken") or 0)
        end = start + self.page_size
        body: dict[str, Any] = {"value": runs[start:end]}
        if end < len(runs):
            body["continuationToken"] = str(end)
        return web.json_response(body)

    async def _get_job(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.jobs:
            return _error(404, "UserError", f"Job {name} not found.")
        body = self.jobs[name]
        result = {"id": request.path, "name": name, **body}
        result["properties"] = {**body.get("properties", {}), "status": "Running"}
        return web.json_response(result)

    async def _get_deployment(self, request: web.Request) -> web.Response:
        key = f"{request.match_info['endpoint']}/{request.match_info['deployment']}"
        if key not in self.deployments:
            return _error(404, "UserError", f"Deployment {key} not found.")
        body = self.deployments[key]
        result = {"id": request.path, "name": request.match_info["deployment"], **body}
        result["properties"] = {**body["properties"], "provisioningState": "Succeeded"}
        return web.json_response(result)

    async def _put_job(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name in self.jobs:
            return _error(
                409, "UserError",
                "A job with this name already exists. If you are trying to create a new job, "
                "use a different name.",
            )  # fmt: skip
        body = await request.json()
        self.jobs[name] = body
        result = {"id": request.path, "name": name, **body}
        result["properties"] = {**body.get("properties", {}), "status": "NotStarted"}
        return web.json_response(result, status=201)

    async def _get_model(self, request: web.Request) -> web.Response:
        key = f"{request.match_info['name']}:{request.match_info['version']}"
        if key not in self.models:
            return _error(404, "UserError", f"Could not find asset with ID {key}.")
        name = request.match_info["version"]
        body = {"id": request.path, "name": name, "properties": {"tags": self.models[key]}}
        return web.json_response(body)

    async def _get_endpoint(self, request: web.Request) -> web.Response:
        name = request.match_info["endpoint"]
        if name not in self.endpoints:
            return _error(404, "UserError", f"Endpoint {name} not found.")
        return web.json_response(self._endpoint_body(request.path, name))

    async def _put_endpoint(self, request: web.Request) -> web.Response:
        name = request.match_info["endpoint"]
        body = await request.json()
        self.endpoints[name] = dict(body["properties"].get("traffic", {}))
        return self._started(request, 200, self._endpoint_body(request.path, name))

    async def _put_deployment(self, request: web.Request) -> web.Response:
        endpoint, deployment = request.match_info["endpoint"], request.match_info["deployment"]
        if endpoint not in self.endpoints:
            return _error(404, "UserError", f"Endpoint {endpoint} not found.")
        key = f"{endpoint}/{deployment}"
        status = 200 if key in self.deployments else 201
        self.deployments[key] = body = await request.json()
        self.deployment_puts.append((status, body))
        result = {"id": request.path, "name": deployment, **body}
        result["properties"] = {**body["properties"], "provisioningState": "Creating"}
        return self._started(request, status, result)

    async def _get_operation(self, request: web.Request) -> web.Response:
        operation = self.operations.get(request.match_info["operation"])
        if operation is None:
            return _error(404, "NotFound", "No such operation.")
        operation.seen += 1
        running = operation.seen <= operation.polls
        headers = (
            {"Retry-After": self.poll_retry_after} if running and self.poll_retry_after else {}
        )
        if self.lro_header == "Location":
            return web.json_response({}, status=202 if running else 200, headers=headers)
        body: dict[str, Any] = {"status": "InProgress" if running else operation.status}
        if not running and operation.error is not None:
            body["error"] = operation.error
        return web.json_response(body, headers=headers)

    def _started(self, request: web.Request, status: int, body: Any) -> web.Response:
        """An answer that starts a long-running operation, with the header to poll."""
        operation_id = str(uuid.uuid4())
        self.operations[operation_id] = Operation(
            self.operation_polls,
            self.operation_error,
            "Failed" if self.operation_error else "Succeeded",
        )
        sub = request.match_info["sub"]
        url = (
            f"{self.operation_base or self.base_url}/subscriptions/{sub}/providers/"
            f"Microsoft.MachineLearningServices/locations/{self.location}/mfeOperationsStatus/"
            f"{operation_id}?api-version={request.query['api-version']}"
        )
        headers = {self.lro_header: url}
        if self.retry_after:
            headers["Retry-After"] = self.retry_after
        if self.lro_header == "Location":
            status = 202
        return web.json_response(body, status=status, headers=headers)

    def _endpoint_body(self, path: str, name: str) -> dict[str, Any]:
        return {
            "id": path, "name": name, "type": "Microsoft.MachineLearningServices/workspaces/"
            "onlineEndpoints", "location": self.location, "tags": {},
            "identity": {"type": "SystemAssigned"},
            "properties": {
                "authMode": "Key", "traffic": dict(self.endpoints[name]),
                "provisioningState": "Succeeded",
                "scoringUri": f"https://{name}.{self.location}.inference.ml.azure.com/score",
            },
        }  # fmt: skip


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"code": code, "message": message}}
    return web.json_response(body, status=status, headers=headers)


class FakeCredential:
    """An async token credential that hands out one fixed token and records the scopes
    asked for (Azure AD cannot run here). ``errors`` are raised first, one per call;
    ``fail`` then raises as a credential without a managed identity does."""

    def __init__(
        self, token: str = TOKEN, *, fail: bool = False, errors: tuple[Exception, ...] = ()
    ) -> None:
        self.token = token
        self.fail = fail
        self.errors = list(errors)
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        await asyncio.sleep(0)  # a real credential awaits I/O: concurrent callers overlap
        if self.errors:
            raise self.errors.pop(0)
        if self.fail:
            raise CredentialUnavailableError(message=NO_IDENTITY)
        return AccessToken(self.token, int(time.time()) + 3600)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> FakeCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class FakeTime:
    """A clock and a ``sleep`` that advances it at once; ``sleeps`` records each wait."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def decision(sample: str, action: dict[str, Any], rules_file: str = "rules.json") -> Decision:
    """The decision for ``action`` of a catch-all rule named ``r``, on a sample event from
    ``consumer/examples/events`` (the rule reads as loaded from ``rules_file``)."""
    event = decode_body((SAMPLES / sample).read_bytes())[0]
    text = json.dumps({"rules": [{"name": "r", "actions": [action]}]})
    (found,) = plan(load_table([RuleSource(rules_file, text)]).table, event)
    return found
