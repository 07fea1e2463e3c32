"""Addresses: how clients name the namespace and its entities.

* the connection string the SDK takes (``Endpoint=sb://host:port;...``), with the shared
  access key it carries;
* link addresses: a producer attaches to ``<hub>`` or ``<hub>/Partitions/<id>``, a consumer
  to ``<hub>/ConsumerGroups/<group>/Partitions/<id>``, both as the path of an ``amqps://``
  URL; ``$cbs`` and ``$management`` are request/response nodes.

Parsing an address checks only its shape; whether the hub, group or partition exists is the
broker's to say. This module imports nothing else of the emulator's, so the command line can
build its parser without loading the server.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

NODES = ("$cbs", "$management")


@dataclass(frozen=True, slots=True)
class SasKey:
    """A shared access key to verify tokens against; without one every token is accepted."""

    name: str
    key: str


DEFAULT_KEY = SasKey("RootManageSharedAccessKey", "emulator-key")


def connection_string(host: str, port: int, key: SasKey, hub: str | None = None) -> str:
    """A connection string the SDK accepts (``UseDevelopmentEmulator=true``: plain AMQP)."""
    text = (
        f"Endpoint=sb://{host}:{port};SharedAccessKeyName={key.name};"
        f"SharedAccessKey={key.key};UseDevelopmentEmulator=true"
    )
    return f"{text};EntityPath={hub}" if hub else text


def entity_path(address: str) -> list[str]:
    """The path segments of a link address (``amqps://host/hub/Partitions/0`` -> [hub, ...])."""
    return [p for p in urllib.parse.urlparse(address).path.split("/") if p]


class AddressError(ValueError):
    """A link address of the wrong shape; the message is what the service says."""


def producer_entity(address: str) -> tuple[str, str | None]:
    """``(hub, partition id or None)`` of a producer's target address.

    Raises:
        AddressError: neither ``<hub>`` nor ``<hub>/Partitions/<id>``.
    """
    path = entity_path(address)
    if not path:
        raise AddressError("The link target has no entity path.")
    if len(path) == 3 and path[1].lower() == "partitions":
        return path[0], path[2]
    if len(path) != 1:
        raise AddressError(f"The messaging entity '{'/'.join(path)}' could not be found.")
    return path[0], None


def consumer_entity(address: str) -> tuple[str, str, str]:
    """``(hub, consumer group, partition id)`` of a consumer's source address.

    Raises:
        AddressError: not ``<hub>/ConsumerGroups/<group>/Partitions/<id>``.
    """
    path = entity_path(address)
    shape = [p.lower() for p in path[1::2]]
    if len(path) != 5 or shape != ["consumergroups", "partitions"]:
        raise AddressError(f"The messaging entity '{'/'.join(path)}' could not be found.")
    return path[0], path[2], path[4]
