"""What the blob stores share: the account a config section names, and the clients made from
it (no storage is reached: only which constructor, URL and credential are chosen)."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.credentials_async import AsyncTokenCredential

from consumer.config import StoreConfig
from consumer.stores.blob import BlobAccount
from tests.support.arm import FakeCredential
from tests.support.azurite import AZURITE_KEY, Azurite

URL = "https://acct.blob.core.windows.net"


class Asked:
    """The lazy credential of the worker: counts how often it is asked for."""

    def __init__(self) -> None:
        self.token = FakeCredential()
        self.calls = 0

    def __call__(self) -> AsyncTokenCredential:
        self.calls += 1
        return self.token


def _store(**options: Any) -> StoreConfig:
    return StoreConfig(kind="blob", container="c", **options)


async def test_a_connection_string_is_used_and_the_azure_ad_credential_never_made() -> None:
    """A section with a connection string signs in with its key, without Azure AD."""
    asked, cs = Asked(), Azurite(port=1).connection_string
    account = BlobAccount.of(_store(connection_string=cs), asked)
    client = account.container_client("c")
    async with client:
        assert client.url == "http://127.0.0.1:1/devstoreaccount1/c"
        assert client.credential is not asked.token
    assert asked.calls == 0


async def test_an_account_url_is_used_with_the_azure_ad_credential() -> None:
    """A section with an account URL signs in with the Azure AD credential, asked for once."""
    asked = Asked()
    account = BlobAccount.of(_store(account_url=URL), asked)
    client = account.container_client("c")
    async with client:
        assert client.url == f"{URL}/c"
        assert client.credential is asked.token
    assert asked.calls == 1


async def test_the_connection_string_wins_over_an_account_url() -> None:
    cs = Azurite(port=1).connection_string
    account = BlobAccount(connection_string=cs, account_url=URL, credential=FakeCredential())
    async with account.container_client("c") as client:
        assert client.url.startswith("http://127.0.0.1:1/")


async def test_the_sdk_checkpoint_store_is_made_the_same_way() -> None:
    """The Event Hubs checkpoint store comes from the same choice (here, the account URL)."""
    asked = Asked()
    store = BlobAccount.of(_store(account_url=URL), asked).checkpoint_store("c", retry_total=0)
    async with store:
        pass
    assert asked.calls == 1


@pytest.mark.parametrize(
    ("account", "message"),
    [
        (BlobAccount(connection_string=f"AccountKey={AZURITE_KEY};nonsense"), "the connection"),
        (
            BlobAccount(account_url="https://", credential=FakeCredential()),
            "account URL 'https://'",
        ),
    ],
)
def test_settings_that_make_no_client_are_named_without_the_secret(
    account: BlobAccount, message: str
) -> None:
    with pytest.raises(ValueError, match=f"{message}.* is not valid") as caught:
        account.container_client("c")
    assert AZURITE_KEY[:16] not in str(caught.value)
    assert "AccountKey" not in repr(account)
