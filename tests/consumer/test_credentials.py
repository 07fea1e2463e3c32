"""The Azure AD credential: the kind [azure] names, made once, on first use; and the token
cache the Resource Manager actions ask through."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.identity import aio as identity

from consumer.actions.azure import ArmClient
from consumer.config import AzureConfig, Config, load_config
from consumer.credentials import CachedTokens, LazyCredential, azure_credential
from consumer.errors import ConfigError, PermanentActionError, TransientActionError
from tests.support.arm import AZ_BIN, TOKEN, FakeCredential
from tests.support.factories import action_session

WORKLOAD_VARIABLES = ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE")


def config_with(folder: Path, credential: str) -> Config:
    (folder / "rules.toml").write_text("")
    path = folder / "config.toml"
    path.write_text(f'[rules]\nfiles = ["rules.toml"]\n[azure]\ncredential = "{credential}"\n')
    return load_config(path, {})


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("managed_identity", identity.ManagedIdentityCredential),
        ("environment", identity.EnvironmentCredential),
        ("cli", identity.AzureCliCredential),
        ("default", identity.DefaultAzureCredential),
    ],
)
async def test_each_kind_is_the_azure_identity_credential_it_names(
    kind: str, expected: type[object]
) -> None:
    credential = azure_credential(AzureConfig(credential=kind))  # type: ignore[arg-type]
    try:
        assert isinstance(credential, expected)
    finally:
        await credential.close()


async def test_made_once_on_first_use_and_the_same_for_every_caller(tmp_path: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        lazy = LazyCredential(config_with(tmp_path, "cli"), stack)
        first = lazy()
        assert lazy() is first
        assert isinstance(first, identity.AzureCliCredential)


async def test_a_given_credential_is_used_as_it_is(tmp_path: Path) -> None:
    given = FakeCredential()
    config = config_with(tmp_path, "workload_identity")
    async with contextlib.AsyncExitStack() as stack:
        assert LazyCredential(config, stack, given=given)() is given


async def test_workload_identity_without_its_settings_names_the_file_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in WORKLOAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    config = config_with(tmp_path, "workload_identity")
    async with contextlib.AsyncExitStack() as stack:
        lazy = LazyCredential(config, stack)
        with pytest.raises(ConfigError) as caught:
            lazy()
    message = str(caught.value)
    assert message.startswith(f"{config.path}: azure.credential: 'workload_identity'")
    assert "tenant_id" in message


SCOPE = "https://management.azure.com/.default"


class Clock:
    """Wall time that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class CountingCredential:
    """Hands out ``token-<n>`` for its n-th call, valid ``lifetime_s`` by ``clock``; raises
    the queued ``errors`` first, one per call. Each call yields to the event loop once, as
    a real credential's I/O would, so concurrent callers overlap."""

    def __init__(self, clock: Clock, *errors: Exception, lifetime_s: float = 3600) -> None:
        self.clock = clock
        self.errors = list(errors)
        self.lifetime_s = lifetime_s
        self.calls = 0

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        await asyncio.sleep(0)
        if self.errors:
            raise self.errors.pop(0)
        return AccessToken(f"token-{self.calls}", int(self.clock.now + self.lifetime_s))

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> CountingCredential:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class RefreshOnCredential(CountingCredential):
    """Gives ``AccessTokenInfo`` with a ``refresh_on`` ``refresh_in_s`` from now, as the
    managed identity and workload identity credentials do."""

    refresh_in_s = 600.0

    async def get_token_info(self, *scopes: str, options: object = None) -> AccessTokenInfo:
        token = await self.get_token(*scopes)
        return AccessTokenInfo(
            token.token, token.expires_on, refresh_on=int(self.clock.now + self.refresh_in_s)
        )


async def _tokens(cache: CachedTokens, count: int = 1) -> set[str]:
    """The distinct tokens ``count`` concurrent callers get."""
    got = await asyncio.gather(*(cache.get_token(SCOPE) for _ in range(count)))
    return {token.token for token in got}


async def test_concurrent_callers_share_one_fetch_per_scope() -> None:
    """Fifty callers at once: one fetch; another scope has its own token."""
    clock = Clock()
    credential = CountingCredential(clock)
    cache = CachedTokens(credential, clock=clock)
    assert await _tokens(cache, 50) == {"token-1"}
    assert (await cache.get_token("https://storage.azure.com/.default")).token == "token-2"
    assert await _tokens(cache, 50) == {"token-1"}
    assert credential.calls == 2


async def test_a_token_is_refreshed_once_when_fewer_than_300_s_are_left() -> None:
    """Kept while 300 s or more are left; then one of many concurrent callers refreshes it,
    and the others use the old one meanwhile."""
    clock = Clock()
    credential = CountingCredential(clock)
    cache = CachedTokens(credential, clock=clock)
    await _tokens(cache)
    clock.now += 3600 - 300
    assert await _tokens(cache, 10) == {"token-1"}
    clock.now += 1
    assert await _tokens(cache, 10) == {"token-1", "token-2"}
    assert await _tokens(cache, 10) == {"token-2"}
    assert credential.calls == 2


async def test_callers_wait_for_the_refresh_of_a_token_about_to_expire() -> None:
    """With less than 60 s left, nobody uses the old token: all wait for one fetch."""
    clock = Clock()
    credential = CountingCredential(clock)
    cache = CachedTokens(credential, clock=clock)
    await _tokens(cache)
    clock.now += 3600 - 59
    assert await _tokens(cache, 10) == {"token-2"}
    assert credential.calls == 2


async def test_refresh_on_is_honoured_when_the_credential_gives_it() -> None:
    """A token with ``refresh_on`` is refreshed after it, long before it expires."""
    clock = Clock()
    credential = RefreshOnCredential(clock)
    cache = CachedTokens(credential, clock=clock)
    await _tokens(cache)
    clock.now += 599
    assert await _tokens(cache, 5) == {"token-1"}
    clock.now += 1
    assert await _tokens(cache, 5) == {"token-1", "token-2"}
    assert await _tokens(cache, 5) == {"token-2"}
    assert credential.calls == 2


async def test_a_failed_refresh_keeps_the_old_token_and_retries_every_30_s() -> None:
    """While the old token has 60 s or more left, a failing refresh goes unnoticed by
    callers and is tried again at most every 30 s; once the token is nearly gone, the
    failure is the caller's."""
    clock = Clock()
    credential = CountingCredential(clock)
    cache = CachedTokens(credential, clock=clock)
    await _tokens(cache)
    credential.errors = [ProcessLookupError(), ProcessLookupError()]
    clock.now += 3600 - 200
    assert await _tokens(cache, 10) == {"token-1"}
    clock.now += 29
    assert await _tokens(cache, 10) == {"token-1"}
    assert credential.calls == 2
    clock.now += 1
    assert await _tokens(cache, 10) == {"token-1"}
    assert credential.calls == 3
    credential.errors = [ProcessLookupError()]
    clock.now += 200 - 30 - 59  # 59 s left
    with pytest.raises(ProcessLookupError):
        await cache.get_token(SCOPE)
    assert await _tokens(cache) == {"token-5"}


async def test_callers_waiting_on_a_failed_fetch_get_its_error() -> None:
    """With no token to fall back on, the callers queued behind a failing fetch fail with
    it instead of each asking the credential again; the next call fetches anew."""
    clock = Clock()
    credential = CountingCredential(clock, ProcessLookupError())
    cache = CachedTokens(credential, clock=clock)
    calls = (cache.get_token(SCOPE) for _ in range(10))
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(result, ProcessLookupError) for result in results)
    assert credential.calls == 1
    assert await _tokens(cache) == {"token-2"}


async def test_a_fetch_that_hangs_is_cut_at_its_deadline() -> None:
    """A credential that never answers frees the scope's lock after ``timeout_s``."""

    class Hanging(CountingCredential):
        async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    cache = CachedTokens(Hanging(Clock()), timeout_s=0.01)
    with pytest.raises(TimeoutError, match=r"no token within 0\.01s"):
        await cache.get_token(SCOPE)


async def test_claims_and_tenants_go_to_the_credential_uncached() -> None:
    clock = Clock()
    credential = CountingCredential(clock)
    cache = CachedTokens(credential, clock=clock)
    await cache.get_token(SCOPE, claims='{"access_token": {}}')
    await cache.get_token(SCOPE, tenant_id="other")
    assert credential.calls == 2
    assert await _tokens(cache) == {"token-3"}


@pytest.fixture
def az(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake ``az`` first on PATH, answering with ``TOKEN``; returns the file it
    records each run in."""
    calls = tmp_path / "az-calls"
    monkeypatch.setenv("PATH", f"{AZ_BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MLEVENTS_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("MLEVENTS_TEST_AZ_CALLS", str(calls))
    return calls


def _runs(calls: Path) -> int:
    return len(calls.read_text().splitlines()) if calls.exists() else 0


async def test_a_burst_through_the_cli_credential_starts_az_once(az: Path) -> None:
    """azure-identity's CLI credential runs ``az`` per call; through the cache, once."""
    async with identity.AzureCliCredential() as cli:
        cache = CachedTokens(cli)
        tokens = await asyncio.gather(*(cache.get_token(SCOPE) for _ in range(20)))
    assert {token.token for token in tokens} == {TOKEN}
    assert _runs(az) == 1


async def _arm_request(credential: identity.AzureCliCredential) -> None:
    """One ARM request (it fails for want of a token before anything is sent)."""
    async with action_session("azure") as session:
        arm = ArmClient(session, CachedTokens(credential), base_url="http://127.0.0.1:9")
        await arm.request("GET", "/subscriptions", api_version="2022-12-01")


async def test_a_cli_nobody_is_logged_in_to_is_permanent(
    az: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Please run 'az login'`` will not pass by itself: no retries."""
    monkeypatch.setenv("MLEVENTS_TEST_AZ_FAIL", "login")
    async with identity.AzureCliCredential() as cli:
        with pytest.raises(PermanentActionError, match="Please run 'az login'"):
            await _arm_request(cli)
    assert _runs(az) == 1


async def test_a_cli_that_cannot_reach_entra_id_is_transient(
    az: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``az`` failing for a reason azure-identity does not know: worth another try."""
    monkeypatch.setenv("MLEVENTS_TEST_AZ_FAIL", "network")
    async with identity.AzureCliCredential() as cli:
        with pytest.raises(TransientActionError, match=r"ClientAuthenticationError: .*Max retries"):
            await _arm_request(cli)
