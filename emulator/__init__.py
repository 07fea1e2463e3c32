"""A local Azure Event Hubs emulator that the unmodified azure-eventhub SDK talks to over AMQP 1.0.

Public API: ``Emulator`` (an in-process server), ``HubSpec`` (a hub to serve),
``Retention``, ``SasKey``, ``Faults`` and the ``EmulatorError`` tree.

The names are loaded on first use (PEP 562), so ``emulator.cli`` can build its parser, and
``mlevents`` its help, without importing the server.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from emulator.addresses import SasKey
    from emulator.errors import (
        AmqpError,
        ConfigError,
        EmulatorError,
        LinkStolen,
        MessageTooLarge,
        NotFound,
        QuotaExceeded,
        StorageError,
        Unauthorized,
    )
    from emulator.faults import Faults
    from emulator.hub import HubSpec
    from emulator.server import Emulator
    from emulator.storage import Retention

_HOMES = {
    "AmqpError": "errors",
    "ConfigError": "errors",
    "Emulator": "server",
    "EmulatorError": "errors",
    "Faults": "faults",
    "HubSpec": "hub",
    "LinkStolen": "errors",
    "MessageTooLarge": "errors",
    "NotFound": "errors",
    "QuotaExceeded": "errors",
    "Retention": "storage",
    "SasKey": "addresses",
    "StorageError": "errors",
    "Unauthorized": "errors",
}

__all__ = [
    "AmqpError",
    "ConfigError",
    "Emulator",
    "EmulatorError",
    "Faults",
    "HubSpec",
    "LinkStolen",
    "MessageTooLarge",
    "NotFound",
    "QuotaExceeded",
    "Retention",
    "SasKey",
    "StorageError",
    "Unauthorized",
]


def __getattr__(name: str) -> object:
    """Load a public name from its module on first use, and keep it here."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'emulator' has no attribute {name!r}")
    value = globals()[name] = getattr(_importlib.import_module(f"emulator.{home}"), name)
    return value
