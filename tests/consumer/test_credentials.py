"""The Azure AD credential: the kind [azure] names, made once, on first use."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from azure.identity import aio as identity

from consumer.config import AzureConfig, Config, load_config
from consumer.credentials import LazyCredential, azure_credential
from consumer.errors import ConfigError

from .armserver import FakeCredential

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
