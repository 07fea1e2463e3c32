"""What the blob stores share (dead letters, the ledger, status): making a container client
from a connection string or an account URL, opening it with the container created if missing,
and describing storage errors without what SDK texts may carry (signed URLs, tokens)."""

from __future__ import annotations

import contextlib
from typing import Any

from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.blob.aio import ContainerClient


def container_client(
    container: str,
    *,
    connection_string: str | None = None,
    account_url: str | None = None,
    credential: AsyncTokenCredential | AzureNamedKeyCredential | AzureSasCredential | None = None,
    retry_total: int | None = None,
    api_version: str | None = None,
) -> ContainerClient:
    """A client for ``container``, by connection string or by account URL and credential.

    ``retry_total`` and ``api_version`` default to the SDK's (an emulator such as Azurite may
    only speak an older ``api_version`` than the SDK's newest).

    Raises:
        ValueError: saying which of the two is not valid, never quoting a connection string
            (the SDK's own message may).
    """
    options: dict[str, Any] = {}
    if retry_total is not None:
        options["retry_total"] = retry_total
    if api_version is not None:
        options["api_version"] = api_version
    try:
        if connection_string is not None:
            return ContainerClient.from_connection_string(connection_string, container, **options)
        return ContainerClient(account_url or "", container, credential=credential, **options)
    except (ValueError, AzureError) as exc:
        what = (
            "the connection string"
            if connection_string is not None
            else f"account URL {account_url!r}"
        )
        raise ValueError(f"{what} is not valid") from exc


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
