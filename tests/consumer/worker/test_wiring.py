"""The Event Hubs client as the worker builds it."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials_async import AsyncTokenCredential

from consumer.config import EventHubConfig
from consumer.stores.checkpoints import SqliteCheckpointStore
from consumer.worker.wiring import QUESTION_RETRIES, consumer_client, eventhub_tls_context
from emulator import Emulator, HubSpec

CONNECTION_STRING = (
    "Endpoint=sb://127.0.0.1:9;SharedAccessKeyName=k;SharedAccessKey=x;UseDevelopmentEmulator=true"
)


def no_credential() -> AsyncTokenCredential:
    raise AssertionError("a connection string needs no Azure AD credential")


async def test_connections_of_the_client_share_one_tls_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each management call opens a connection; none of them reads the CA bundle again."""
    loaded: list[Any] = []
    original = ssl.SSLContext.load_verify_locations

    def counting(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loaded.append(args or kwargs)
        original(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counting)
    async with Emulator([HubSpec("hub", 2)]) as emu:
        config = EventHubConfig(connection_string=emu.connection_string(), name="hub")
        async with SqliteCheckpointStore(tmp_path / "checkpoints.sqlite3") as store:
            client = consumer_client(config, store, no_credential)
            assert len(loaded) == 1  # the one context, built with the client
            async with client:
                for _ in range(3):
                    properties = await client.get_partition_properties("0")
                    assert properties["id"] == "0"
                assert (await client.get_eventhub_properties())["partition_ids"] == ["0", "1"]
    assert len(loaded) == 1


def test_the_tls_context_verifies_the_server() -> None:
    """The same checks the SDK's own context makes: a certificate from a known CA, and the
    host name it is for."""
    context = eventhub_tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 0


async def test_a_client_for_questions_retries_less(tmp_path: Path) -> None:
    """``retries`` sets the SDK's retries per operation (3 unless given)."""
    config = EventHubConfig(connection_string=CONNECTION_STRING, name="hub")
    async with SqliteCheckpointStore(tmp_path / "checkpoints.sqlite3") as store:
        default = consumer_client(config, store, no_credential)
        fewer = consumer_client(config, store, no_credential, retries=QUESTION_RETRIES)
        assert (default._config.max_retries, fewer._config.max_retries) == (3, QUESTION_RETRIES)
        await default.close()
        await fewer.close()
