"""A local Azure Event Hubs emulator that the unmodified azure-eventhub SDK talks to over AMQP 1.0.

Public API: ``Emulator`` (an in-process server), ``HubSpec`` (a hub to serve),
``Retention``, ``SasKey``, ``Faults`` and the ``EmulatorError`` tree.
"""

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
from emulator.management import SasKey
from emulator.server import Emulator
from emulator.storage import Retention

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
