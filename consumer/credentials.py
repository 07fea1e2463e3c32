"""The Azure AD credential: the kind ``[azure] credential`` names, for everything that signs in.

Event Hubs by ``fully_qualified_namespace``, the blob stores by ``account_url`` and the
Resource Manager actions all use the same credential, so one setting (workload identity in
Kubernetes, a managed identity, the environment, the Azure CLI) covers the whole worker.
``LazyCredential`` makes it on first use, so a worker that signs in with connection strings
only never makes one, and closes it with the exit stack it was given.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from azure.core.credentials_async import AsyncTokenCredential

from .config import AzureConfig, Config
from .errors import ConfigError

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
