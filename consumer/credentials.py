"""The Azure AD credential: the kind ``[azure] credential`` names, for everything that signs in.

Event Hubs by ``fully_qualified_namespace``, the blob stores by ``account_url`` and the
Resource Manager actions all use the same credential, so one setting (workload identity in
Kubernetes, a managed identity, the environment, the Azure CLI) covers the whole worker.
``LazyCredential`` makes it on first use, so a worker that signs in with connection strings
only never makes one, and closes it with the exit stack it was given.

The SDK clients keep their tokens in their own pipelines; the Resource Manager actions ask
through ``CachedTokens``, which keeps one token per scope until shortly before it expires
(azure-identity's CLI credential caches nothing and runs ``az`` on every call).
``is_permanent`` says which failures to get a token will not pass by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import structlog
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.credentials_async import AsyncSupportsTokenInfo, AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError

from consumer.config import AzureConfig, Config
from consumer.errors import ConfigError

Credential = Callable[[], AsyncTokenCredential]
"""The Azure AD credential, asked for only where one is needed (``LazyCredential``)."""


def azure_credential(config: AzureConfig) -> AsyncTokenCredential:
    """The configured Azure AD credential (none of them does I/O until asked for a token).

    Raises:
        ValueError: the credential lacks its settings (workload identity outside a pod
            set up for it).
    """
    from azure.identity import aio as identity

    client_id = config.client_id
    match config.credential:
        case "workload_identity":
            return identity.WorkloadIdentityCredential(client_id=client_id)
        case "managed_identity":
            return identity.ManagedIdentityCredential(client_id=client_id)
        case "environment":
            return identity.EnvironmentCredential()
        case "cli":
            return identity.AzureCliCredential()
        case _:
            return identity.DefaultAzureCredential(
                managed_identity_client_id=client_id, workload_identity_client_id=client_id
            )


class LazyCredential:
    """The process's one Azure AD credential: ``given`` (tests), or made from ``config``'s
    ``[azure]`` section on first call and closed when ``stack`` closes."""

    def __init__(
        self,
        config: Config,
        stack: contextlib.AsyncExitStack,
        given: AsyncTokenCredential | None = None,
    ) -> None:
        self._config = config
        self._stack = stack
        self._credential = given

    def __call__(self) -> AsyncTokenCredential:
        """The credential.

        Raises:
            ConfigError: the configured kind cannot be made here; names the file and key.
        """
        if self._credential is None:
            try:
                made = azure_credential(self._config.azure)
            except ValueError as exc:
                raise ConfigError(
                    f"{self._config.path}: azure.credential: "
                    f"{self._config.azure.credential!r} cannot be used here: {exc}"
                ) from exc
            self._stack.push_async_callback(made.close)
            self._credential = made
        return self._credential


PERMANENT_SIGNS = (
    "Azure CLI not found on path",
    "Please run 'az login'",
    "AADSTS",
    "No managed identity endpoint found",
    "been assigned to this resource",
    "Environment variables are not fully configured",
)
"""azure-identity's words for failures that last until someone acts: no ``az``, nobody
logged in to it, Microsoft Entra ID refusing the client (``AADSTS`` codes: unknown or
disabled client, missing consent, expired secret), no managed identity here or none assigned,
the environment credential's variables missing."""
TRANSIENT_SIGNS = (
    "Timed out waiting for Azure CLI",
    "no response from the IMDS endpoint",
    "temporarily_unavailable",
)
"""Its words for failures that pass: ``az`` too slow, IMDS silent, Entra ID busy. They win
over ``PERMANENT_SIGNS`` in one message (a chain of credentials reports each one's failure)."""


def is_permanent(error: BaseException) -> bool:
    """Whether a failure to get a token will last until someone changes something.

    Only a ``ClientAuthenticationError`` (``CredentialUnavailableError`` included) whose
    message says so (``PERMANENT_SIGNS``, and none of ``TRANSIENT_SIGNS``) is permanent.
    Everything else is worth another try: timeouts, ``ProcessLookupError`` (``az`` ending
    just as azure-identity's timeout kills it), the token endpoint unreachable
    (``ServiceRequestError``), an authentication error that does not say why, and any
    exception nobody expected. A wrong guess costs retries within the policy's time bound
    before the action is dead-lettered; the other way, one hiccup dead-letters an action.
    """
    if not isinstance(error, ClientAuthenticationError):
        return False
    text = str(error.message or error)
    if any(sign in text for sign in TRANSIENT_SIGNS):
        return False
    return any(sign in text for sign in PERMANENT_SIGNS)


REFRESH_BEFORE_S = 300.0
"""A token is refreshed once it has fewer seconds than this left (or after its ``refresh_on``)."""
KEEP_FOR_S = 60.0
"""While a refresh fails, the old token is still used as long as it has this many seconds left."""
RETRY_REFRESH_S = 30.0
"""While the old token is used, a refresh is tried at most once per this many seconds."""
FETCH_TIMEOUT_S = 30.0
"""The longest one fetch from the credential may take (``az`` itself gives up after 10 s)."""

log = structlog.get_logger("mlevents.credentials")


@dataclass(slots=True)
class _Slot:
    """One scope's token, the lock its fetches take turns on, and how the last one went."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    token: AccessTokenInfo | None = None
    tried_at: float = float("-inf")
    failures: int = 0
    error: Exception | None = None


class CachedTokens:
    """An ``AsyncTokenCredential`` that keeps ``credential``'s token for each scope until
    shortly before it expires, so a burst of calls asks the credential once.

    The rule is azure-core's bearer policy's, applied per scope: a token is used until fewer
    than ``REFRESH_BEFORE_S`` seconds are left or its ``refresh_on`` has come; then one
    caller fetches a new one (under the scope's lock, within ``timeout_s``). Meanwhile the
    others go on with the old token while it has ``KEEP_FOR_S`` seconds left, and wait for
    the new one once it has less. If the refresh fails, the old token serves on while it has
    ``KEEP_FOR_S`` seconds, and the refresh is tried again at most every ``RETRY_REFRESH_S``
    seconds; without such a token, the caller gets the credential's error as it is.
    Callers that were waiting on a fetch that failed get its error too, instead of each
    asking again at once: their retry policy spaces the next attempts, and a struggling
    ``az`` or IMDS endpoint is not asked once per waiting action.

    Requests with claims, a tenant or CAE go to the credential uncached. ``clock`` is wall
    time in seconds (tokens expire by it); tests replace it. ``close`` leaves the credential
    open: whoever made it closes it.
    """

    def __init__(
        self,
        credential: AsyncTokenCredential,
        *,
        timeout_s: float = FETCH_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._credential = credential
        self._timeout_s = timeout_s
        self._clock = clock
        self._slots: dict[tuple[str, ...], _Slot] = {}

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        """A token for ``scopes``: the cached one while it is good, else a fresh one.

        Raises:
            Whatever the credential raised (``TimeoutError`` after ``timeout_s``), when there
            is no token left to fall back on.
        """
        if claims or tenant_id or enable_cae or kwargs:
            return await self._credential.get_token(
                *scopes, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae, **kwargs
            )
        token = await self._token(scopes)
        return AccessToken(token.token, token.expires_on)

    async def close(self) -> None:
        """Forget the tokens; the credential stays open for its owner to close."""
        self._slots.clear()

    async def __aenter__(self) -> CachedTokens:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.close()

    async def _token(self, scopes: tuple[str, ...]) -> AccessTokenInfo:
        slot = self._slots.setdefault(scopes, _Slot())
        if (token := self._serving(slot)) is not None:
            return token
        failures = slot.failures
        async with slot.lock:
            if (token := self._serving(slot)) is not None:  # fetched while this caller waited
                return token
            if slot.failures != failures and slot.error is not None:
                raise slot.error  # the fetch this caller waited for failed a moment ago
            return await self._refresh(scopes, slot)

    def _serving(self, slot: _Slot) -> AccessTokenInfo | None:
        """The slot's token if it needs no refresh yet, or if it still has ``KEEP_FOR_S``
        seconds and a refresh is under way or was tried within ``RETRY_REFRESH_S``;
        ``None`` when one must be fetched now."""
        token, now = slot.token, self._clock()
        if token is None:
            return None
        if _fresh(token, now):
            return token
        if token.expires_on - now >= KEEP_FOR_S and now - slot.tried_at < RETRY_REFRESH_S:
            return token
        return None

    async def _refresh(self, scopes: tuple[str, ...], slot: _Slot) -> AccessTokenInfo:
        slot.tried_at = self._clock()
        try:
            token = await self._fetch(scopes)
        except Exception as exc:
            slot.failures, slot.error = slot.failures + 1, exc
            old = slot.token
            left = old.expires_on - self._clock() if old is not None else 0.0
            if old is None or left < KEEP_FOR_S:
                raise
            log.warning(
                "token.refresh_failed", scope=" ".join(scopes), expires_in_s=round(left),
                error=f"{type(exc).__name__}: {exc}",
            )  # fmt: skip
            return old
        slot.token, slot.error = token, None
        return token

    async def _fetch(self, scopes: tuple[str, ...]) -> AccessTokenInfo:
        """One token from the credential, with ``refresh_on`` when it gives one.

        Raises:
            TimeoutError: none within ``timeout_s``.
        """
        credential, deadline = self._credential, asyncio.timeout(self._timeout_s)
        try:
            async with deadline:
                if isinstance(credential, AsyncSupportsTokenInfo):
                    return await credential.get_token_info(*scopes)
                token = await credential.get_token(*scopes)
        except TimeoutError as exc:
            if not deadline.expired():
                raise
            raise TimeoutError(f"the credential gave no token within {self._timeout_s:g}s") from exc
        return AccessTokenInfo(token.token, token.expires_on)


def _fresh(token: AccessTokenInfo, now: float) -> bool:
    """Whether ``token`` needs no refresh yet: ``REFRESH_BEFORE_S`` seconds or more left,
    and its ``refresh_on`` (when the credential gave one) not reached."""
    if token.refresh_on is not None and now >= token.refresh_on:
        return False
    return token.expires_on - now >= REFRESH_BEFORE_S
