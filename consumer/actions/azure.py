"""Azure Resource Manager over REST: the client the Azure actions share.

Starting a Data Factory run, submitting an Azure ML job and deploying a model each take a
few ARM calls, so the actions speak REST over the worker's aiohttp session instead of
pulling in three management SDKs (azure-ai-ml has no async client at all). What they share
lives here: a bearer token from azure-identity on every request; one attempt per call, its
failure classified for the retry policy (connection errors, timeouts, 408, 429 and 5xx are
transient and pass ``Retry-After`` on; other statuses are permanent, and so is a
credential that cannot get a token until someone acts, while its other failures are
transient); and following a long-running operation to its end. Messages name the method,
the resource path, the status and ARM's error code and message, never the token. The
requests themselves are built as data (``consumer.actions.arm``), so they can be shown
without being sent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import msgspec
from azure.core.credentials_async import AsyncTokenCredential

from consumer.actions.arm import ArmRequest, arm_headers, arm_url
from consumer.actions.http import answer_within
from consumer.credentials import is_permanent
from consumer.errors import ActionError, PermanentActionError, TransientActionError

DEFAULT_BASE_URL = "https://management.azure.com"
DEFAULT_SCOPE = "https://management.azure.com/.default"
"""The public cloud's ARM audience; other clouds pass their own ``scope``."""
RETRIABLE_STATUS = frozenset({408, 429})
TERMINAL_STATES = frozenset({"succeeded", "failed", "canceled", "cancelled"})
MAX_DETAIL = 300
"""Longest ARM error message kept in ours."""

_encoder = msgspec.json.Encoder(decimal_format="number")


@dataclass(frozen=True, slots=True)
class ArmResponse:
    """One ARM answer: status, headers and the JSON body (``None`` when empty or not JSON)."""

    status: int
    headers: Mapping[str, str]
    body: Any

    def error(self) -> tuple[str, str]:
        """ARM's ``{"error": {"code", "message"}}``, as (code, message); empty when absent."""
        error = self.body.get("error") if isinstance(self.body, dict) else None
        if not isinstance(error, dict):
            return "", ""
        return str(error.get("code") or ""), _short(str(error.get("message") or ""))


@dataclass(frozen=True, slots=True)
class Operation:
    """How a long-running operation ended (``Succeeded``) and the last body seen."""

    status: str
    body: Any
    polls: int


class ArmClient:
    """Makes ARM requests with a token from ``credential`` and follows their operations.

        ``base_url`` is ARM's address (another cloud's, or a local server in tests); every path
        is relative to it. ``timeout_s`` bounds the token, and ARM's answer to each request once it
    has a connection (``consumer.actions.http``: the pool's queue is timed apart). ``clock`` and
        ``sleep`` pace the polling of long-running operations (tests replace both).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        credential: AsyncTokenCredential,
        *,
        base_url: str = DEFAULT_BASE_URL,
        scope: str = DEFAULT_SCOPE,
        timeout_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._session = session
        self._credential = credential
        self._base = base_url.rstrip("/")
        self._origin = _origin(self._base)
        self.scope = scope
        self._timeout_s = timeout_s
        self._clock = clock
        self._sleep = sleep

    def clock(self) -> float:
        """The clock operations are timed by (seconds, monotonic)."""
        return self._clock()

    async def request(
        self,
        method: str,
        path: str,
        *,
        api_version: str,
        json: Any = None,
        allow: Collection[int] = (),
    ) -> ArmResponse:
        """One request to ``base_url + path`` (built with ``consumer.actions.arm.arm_path``).

        Returns:
            The response when its status is 2xx or in ``allow``.

        Raises:
            TransientActionError: connection error, timeout, 408, 429 or 5xx.
            PermanentActionError: any other status, or no token to be had until someone
                acts (``consumer.credentials.is_permanent``).
        """
        url = arm_url(self._base, path, api_version)
        return await self._send(method, url, path, json, allow)

    async def send(self, request: ArmRequest, *, allow: Collection[int] = ()) -> ArmResponse:
        """``request`` (an ``ArmRequest`` an action built); see ``request``."""
        return await self.request(
            request.method, request.path, api_version=request.api_version,
            json=request.body, allow=allow,
        )  # fmt: skip

    async def follow(
        self,
        started: ArmResponse,
        method: str,
        path: str,
        *,
        api_version: str,
        timeout_s: float,
        poll_interval_s: float,
    ) -> Operation:
        """Follow the long-running operation that ``started`` (the answer to ``method path``)
        began, until it succeeds.

        ARM's rules: poll ``Azure-AsyncOperation`` if given (its ``status``), else the
        ``Location`` of a 202 (202 while running), else the resource's own
        ``provisioningState``; wait ``Retry-After`` between polls when given, else
        ``poll_interval_s``. A transient error while polling is polled through.

        Raises:
            PermanentActionError: the operation ended ``Failed`` or ``Canceled`` (with its
                error code and message), a poll was refused, or ``timeout_s`` passed. A
                timeout is permanent because the operation goes on in Azure regardless:
                trying the request again at once would meet it still running, so it is
                left for a person (or a replay of the dead letter) to look at.
        """
        state = _provisioning_state(started.body)
        target = self._poll_target(started, path, api_version)
        if target is None:
            return self._ended(method, path, state or "Succeeded", started.body, 0)
        url, mode = target
        where = urlsplit(url).path
        deadline = self._clock() + timeout_s
        wait = retry_after_s(started.headers)
        state = state or "InProgress"
        body: Any = started.body
        polls = 0
        last_error: ActionError | None = None
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                note = f" (last poll: {last_error})" if last_error is not None else ""
                raise PermanentActionError(
                    f"{method} {path}: still {state} after {timeout_s:g}s; the operation "
                    f"goes on in Azure but is not followed further{note}"
                )
            await self._sleep(min(poll_interval_s if wait is None else wait, remaining))
            try:
                polled = await self._send("GET", url, where, None, ())
            except TransientActionError as exc:
                last_error, wait = exc, exc.retry_after_s
                continue
            polls += 1
            last_error, wait, body = None, retry_after_s(polled.headers), polled.body
            state = _state(mode, polled)
            if state.lower() in TERMINAL_STATES:
                return self._ended(method, path, state, body, polls)

    def error_for(self, method: str, where: str, response: ArmResponse) -> ActionError:
        """The classified error for a response that is not a success."""
        code, message = response.error()
        text = f"{method} {where} answered HTTP {response.status}"
        if code or message:
            text += f": {': '.join(part for part in (code, message) if part)}"
        if response.status in RETRIABLE_STATUS or response.status >= 500:
            return TransientActionError(text, retry_after_s=retry_after_s(response.headers))
        return PermanentActionError(text)

    async def _send(
        self, method: str, url: str, where: str, body: Any, allow: Collection[int]
    ) -> ArmResponse:
        token = await bearer_token(self._credential, self.scope, self._timeout_s)
        headers = arm_headers(token, with_body=body is not None)
        data = None if body is None else _encoder.encode(body)
        try:
            async with (
                answer_within(self._timeout_s) as deadline,
                self._session.request(
                    method,
                    url,
                    data=data,
                    headers=headers,
                    allow_redirects=False,  # the token goes to ARM and nowhere else
                    trace_request_ctx=deadline,
                ) as answer,
            ):
                response = ArmResponse(answer.status, answer.headers, _decode(await answer.read()))
        except aiohttp.ConnectionTimeoutError as exc:
            raise TransientActionError(f"{method} {where}: no connection in time") from exc
        except TimeoutError as exc:
            raise TransientActionError(
                f"{method} {where}: no answer within {self._timeout_s:g}s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise TransientActionError(
                f"{method} {where}: {type(exc).__name__}: {_short(str(exc))}"
            ) from exc
        if 200 <= response.status < 300 or response.status in allow:
            return response
        raise self.error_for(method, where, response)

    def _poll_target(
        self, started: ArmResponse, path: str, api_version: str
    ) -> tuple[str, str] | None:
        """Where to poll and how to read it: ``async``, ``location`` or ``resource``."""
        candidates = [("Azure-AsyncOperation", "async")]
        if started.status == 202:
            candidates.append(("Location", "location"))
        for header, mode in candidates:
            value = started.headers.get(header)
            if value:
                url = urljoin(self._base + "/", value)
                if _origin(url) != self._origin:
                    raise PermanentActionError(
                        f"{header} of {path} is not on {self._origin}; not sending the token there"
                    )
                return url, mode
        state = _provisioning_state(started.body)
        if state is None or state.lower() in TERMINAL_STATES:
            return None
        return arm_url(self._base, path, api_version), "resource"

    @staticmethod
    def _ended(method: str, path: str, state: str, body: Any, polls: int) -> Operation:
        if state.lower() == "succeeded":
            return Operation(state, body, polls)
        code, message = ArmResponse(200, {}, body).error()
        detail = ": ".join(part for part in (code, message) if part)
        raise PermanentActionError(f"{method} {path} ended {state}: {detail or 'no error given'}")


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """``Retry-After`` in seconds (it may also be an HTTP date), or ``None``."""
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _state(mode: str, polled: ArmResponse) -> str:
    if mode == "async":
        status = polled.body.get("status") if isinstance(polled.body, dict) else None
        return str(status or "InProgress")
    if mode == "location":
        return "InProgress" if polled.status == 202 else "Succeeded"
    return _provisioning_state(polled.body) or "Succeeded"


def _provisioning_state(body: Any) -> str | None:
    properties = body.get("properties") if isinstance(body, dict) else None
    state = properties.get("provisioningState") if isinstance(properties, dict) else None
    return str(state) if state else None


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw.strip() else None
    except ValueError:
        return None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


async def bearer_token(credential: AsyncTokenCredential, scope: str, timeout_s: float) -> str:
    """A bearer token for ``scope`` from ``credential``, within ``timeout_s`` (for ARM and
    for webhooks with ``auth``).

    Raises:
        PermanentActionError: the credential cannot get one until someone acts
            (``consumer.credentials.is_permanent``).
        TransientActionError: any other failure, of whatever type: the retry policy tries
            again within its bounds instead of the action crashing.
    """
    try:
        async with asyncio.timeout(timeout_s):
            token = await credential.get_token(scope)
    except Exception as exc:
        reason = _short(str(getattr(exc, "message", None) or exc))
        if is_permanent(exc):
            raise PermanentActionError(f"no Azure AD token for {scope}: {reason}") from exc
        if isinstance(exc, TimeoutError):
            reason = reason or f"none within {timeout_s:g}s"
        else:
            reason = ": ".join(part for part in (type(exc).__name__, reason) if part)
        raise TransientActionError(f"no Azure AD token for {scope}: {reason}") from exc
    return str(token.token)


def _short(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_DETAIL else line[: MAX_DETAIL - 3] + "..."
