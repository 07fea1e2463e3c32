"""What the blob stores share (checkpoints, dead letters, the ledger, status): the account a
store's config names and the clients made from it, opening a container with it created if
missing, and describing storage errors without what SDK texts may carry (signed URLs,
tokens).

``BlobAccount`` is the one place that chooses between a connection string and an account URL
with a credential; ``BlobStore`` gives the dead-letter store and the ledger their
constructors from either.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.blob.aio import ContainerClient

from consumer.config import StoreConfig
from consumer.credentials import Credential
from consumer.errors import ConsumerError

if TYPE_CHECKING:
    from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

T = TypeVar("T")
BlobCredential = AsyncTokenCredential | AzureNamedKeyCredential | AzureSasCredential
"""How to sign in with an account URL: Azure AD, the account's shared key, or a SAS."""


@dataclass(frozen=True, slots=True)
class BlobAccount:
    """A storage account and how to sign in to it: by connection string (which wins when both
    are given), or by account URL and credential."""

    connection_string: str | None = field(default=None, repr=False)
    account_url: str | None = None
    credential: BlobCredential | None = None

    @classmethod
    def of(cls, store: StoreConfig, credential: Credential) -> BlobAccount:
        """The account of a blob store's config section; the Azure AD credential is asked
        for only when the section has no connection string."""
        if store.connection_string is not None:
            return cls(connection_string=store.connection_string)
        return cls(account_url=store.account_url or "", credential=credential())

    def container_client(
        self, container: str, *, retry_total: int | None = None, api_version: str | None = None
    ) -> ContainerClient:
        """A client for ``container``. ``retry_total`` and ``api_version`` default to the
        SDK's (an emulator such as Azurite may only speak an older ``api_version`` than the
        SDK's newest).

        Raises:
            ValueError: saying which of the two is not valid, never quoting a connection
                string (the SDK's own message may).
        """
        options: dict[str, Any] = {}
        if retry_total is not None:
            options["retry_total"] = retry_total
        if api_version is not None:
            options["api_version"] = api_version
        return self._client(
            ContainerClient.from_connection_string, ContainerClient, container, options
        )

    def checkpoint_store(self, container: str, **options: Any) -> BlobCheckpointStore:
        """The Event Hubs SDK's checkpoint store on ``container``; ``options`` go to the SDK
        (retries, timeouts). Raises ``ValueError`` as ``container_client`` does."""
        from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

        return self._client(
            BlobCheckpointStore.from_connection_string, BlobCheckpointStore, container, options
        )

    def _client(
        self,
        by_connection_string: Callable[..., T],
        by_account_url: Callable[..., T],
        container: str,
        options: dict[str, Any],
    ) -> T:
        """One of an SDK's two constructors, whichever this account is given for."""
        try:
            if self.connection_string is not None:
                return by_connection_string(self.connection_string, container, **options)
            return by_account_url(
                self.account_url or "", container, credential=self.credential, **options
            )
        except (ValueError, AzureError) as exc:
            what = (
                "the connection string"
                if self.connection_string is not None
                else f"account URL {self.account_url!r}"
            )
            raise ValueError(f"{what} is not valid") from exc


class BlobStore:
    """What the blob-backed stores (dead letters, the ledger) share: one container client,
    made from an account by the constructors here, and closed on leaving.

    A subclass names itself in ``what`` and its error type in ``error``, for the message of
    settings that do not make a client. A credential passed in stays the caller's to close.
    """

    what: ClassVar[str]
    """How messages name the store's container: ``<what> container <name>``."""
    error: ClassVar[type[ConsumerError]]

    def __init__(self, client: ContainerClient) -> None:
        self._client = client

    @classmethod
    def from_account(
        cls,
        account: BlobAccount,
        container: str,
        *,
        retry_total: int | None = None,
        api_version: str | None = None,
        **settings: Any,
    ) -> Self:
        """A store on ``container`` of ``account``; ``settings`` go to the constructor, and
        ``retry_total`` and ``api_version`` to the client (``BlobAccount.container_client``).

        Raises:
            ConsumerError: of the store's own type, when the settings do not make a client.
        """
        try:
            client = account.container_client(
                container, retry_total=retry_total, api_version=api_version
            )
        except ValueError as exc:
            raise cls.error(f"{cls.what} container {container}: {exc}") from exc
        return cls(client, **settings)

    @classmethod
    def from_connection_string(cls, connection_string: str, container: str, **options: Any) -> Self:
        """A store on ``container`` of the account the connection string names."""
        return cls.from_account(
            BlobAccount(connection_string=connection_string), container, **options
        )

    @classmethod
    def from_account_url(
        cls, account_url: str, container: str, credential: BlobCredential, **options: Any
    ) -> Self:
        """A store on ``container`` at ``account_url``, signed in with ``credential``."""
        account = BlobAccount(account_url=account_url, credential=credential)
        return cls.from_account(account, container, **options)

    @property
    def container(self) -> str:
        """The container's name."""
        name: str = self._client.container_name
        return name

    async def __aexit__(self, *exc: object) -> None:
        await self._client.close()


async def open_container(client: ContainerClient) -> None:
    """Open ``client`` and create its container if missing; on failure the client is closed
    and the SDK's ``AzureError`` propagates for the caller to turn into its own error."""
    try:
        await client.__aenter__()
        with contextlib.suppress(ResourceExistsError):
            await client.create_container()
    except BaseException:
        await client.close()
        raise


def describe_error(exc: BaseException) -> str:
    """An error by type, HTTP status and service code only: SDK messages may quote signed
    URLs or tokens."""
    detail = type(exc).__name__
    status = getattr(exc, "status_code", None)
    code = getattr(exc, "error_code", None)
    if status is not None:
        detail += f", HTTP {status}"
    if code:
        detail += f", {getattr(code, 'value', code)}"  # the service's code, not the enum's name
    return detail
