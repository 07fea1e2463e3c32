"""The emulator's exceptions, all under one root.

::

    EmulatorError
    ├── ConfigError            a hub spec, option or address the emulator cannot use
    ├── StorageError           a data directory the emulator cannot open
    └── AmqpError              a failure the emulator reports to a client as an AMQP error
        ├── NotFound           unknown hub, partition or consumer group (amqp:not-found)
        ├── LinkStolen         a newer or equal epoch receiver took the partition (amqp:link:stolen)
        ├── QuotaExceeded      too many readers on one partition (amqp:resource-limit-exceeded)
        ├── MessageTooLarge    an event over the size limit (amqp:link:message-size-exceeded)
        └── Unauthorized       a token that does not verify (amqp:unauthorized-access)

``AmqpError`` carries the AMQP condition symbol and a description. The server turns
it into a detach, a rejected outcome or a status code; it never crashes a connection.
"""

from __future__ import annotations

from typing import ClassVar


class EmulatorError(Exception):
    """Root of every error the emulator raises."""


class ConfigError(EmulatorError):
    """A hub spec, option or address the emulator cannot use."""


class StorageError(EmulatorError):
    """A data directory the emulator cannot open or write."""


class AmqpError(EmulatorError):
    """A failure reported to the client as an AMQP error condition."""

    condition: ClassVar[str] = "amqp:internal-error"
    status_code: ClassVar[int] = 500

    def __init__(self, description: str, condition: str | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.error_condition = condition or self.condition


class NotFound(AmqpError):
    """Unknown hub, partition or consumer group."""

    condition = "amqp:not-found"
    status_code = 404


class LinkStolen(AmqpError):
    """Another receiver with an equal or higher epoch took over the partition."""

    condition = "amqp:link:stolen"
    status_code = 410


class QuotaExceeded(AmqpError):
    """More readers on one partition and consumer group than the service allows."""

    condition = "amqp:resource-limit-exceeded"
    status_code = 403


class MessageTooLarge(AmqpError):
    """An event larger than the hub's size limit."""

    condition = "amqp:link:message-size-exceeded"
    status_code = 413


class Unauthorized(AmqpError):
    """A token that does not verify against the configured key."""

    condition = "amqp:unauthorized-access"
    status_code = 401
