"""Azurite, the local Azure Storage emulator (from npm): its blob service, in memory for a
block of a test or persisting to a folder, its well-known account, and containers in it."""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import hmac
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

from . import ROOT
from .ports import free_port, wait_for_port
from .processes import stop_process

AZURITE = ROOT / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account; the key is a public constant.
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


@dataclass(frozen=True, slots=True)
class Azurite:
    """A running Azurite blob service."""

    port: int

    @property
    def connection_string(self) -> str:
        """The explicit connection string the vendored storage SDK accepts."""
        return (
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={AZURITE_KEY};BlobEndpoint=http://127.0.0.1:{self.port}/devstoreaccount1;"
        )


def command(port: int, *options: str) -> list[str]:
    """The command line of ``azurite-blob`` on loopback ``port``, quiet, with ``options``."""
    if not AZURITE.exists():
        raise RuntimeError(f"{AZURITE} is missing: run `npm ci` (make setup)")
    return [
        str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", str(port),
        "--disableTelemetry", "--silent", *options,
    ]  # fmt: skip


def create_container(account: Azurite, name: str) -> None:
    """Create a blob container with a SharedKey-signed REST call (the store does not create it)."""
    date = email.utils.formatdate(usegmt=True)
    version = "2021-08-06"
    standard_headers = ["PUT"] + [""] * 11  # verb, then eleven empty standard headers
    string_to_sign = "\n".join(
        [
            *standard_headers,
            f"x-ms-date:{date}",
            f"x-ms-version:{version}",
            f"/devstoreaccount1/devstoreaccount1/{name}\nrestype:container",
        ]
    )
    key = base64.b64decode(AZURITE_KEY)
    signature = base64.b64encode(hmac.new(key, string_to_sign.encode(), hashlib.sha256).digest())
    request = urllib.request.Request(
        f"http://127.0.0.1:{account.port}/devstoreaccount1/{name}?restype=container",
        method="PUT",
        headers={
            "x-ms-date": date,
            "x-ms-version": version,
            "Authorization": f"SharedKey devstoreaccount1:{signature.decode()}",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 201:
            raise RuntimeError(f"creating container {name}: HTTP {response.status}")


@contextlib.contextmanager
def azurite() -> Iterator[Azurite]:
    """Run ``azurite-blob`` in memory on a free port for the duration of the block."""
    port = free_port()
    process = subprocess.Popen(
        command(port, "--inMemoryPersistence"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, 30, process)
        yield Azurite(port)
    finally:
        stop_process(process)
