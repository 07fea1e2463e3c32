"""What the blob stores share (dead letters, the ledger): client options and opening a
container, created when missing."""

from __future__ import annotations

import contextlib
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob.aio import ContainerClient


def client_options(retry_total: int | None, api_version: str | None) -> dict[str, Any]:
    """Keyword arguments for a ``ContainerClient``: the SDK's defaults unless given (an
    emulator such as Azurite may only speak an older ``api_version`` than the SDK's newest)."""
    options: dict[str, Any] = {}
    if retry_total is not None:
        options["retry_total"] = retry_total
    if api_version is not None:
        options["api_version"] = api_version
    return options


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
