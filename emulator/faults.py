"""Fault injection: the switches tests (and the CLI) flip to make the emulator misbehave.

``Faults`` holds the state; the server consults it at the points where a real
service could fail: when a link attaches, before a response is sent, and on demand
for dropping connections or detaching consumers. It owns no I/O itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

BUSY = "com.microsoft:server-busy"


class Target(Protocol):
    """What fault injection can act on: the running server."""

    def drop_connections(self) -> int: ...

    def detach_consumers(
        self, condition: str, description: str, hub: str | None, partition: str | None
    ) -> int: ...


@dataclass(slots=True)
class Faults:
    """Injected failures; all off by default."""

    clock: Callable[[], float] = time.monotonic
    response_delay_s: float = 0.0
    refuse_links_until: float = 0.0
    refuse_condition: str = BUSY
    _target: Target | None = field(default=None, repr=False)

    def bind(self, target: Target) -> None:
        """Attach the running server that the on-demand faults act on."""
        self._target = target

    def delay_responses(self, seconds: float) -> None:
        """Delay every $cbs/$management response and producer acknowledgement by ``seconds``."""
        self.response_delay_s = max(0.0, seconds)

    def refuse_links(self, seconds: float, condition: str = BUSY) -> None:
        """Refuse new producer and consumer links for ``seconds``, detaching with ``condition``."""
        self.refuse_links_until = self.clock() + seconds
        self.refuse_condition = condition

    def links_refused(self) -> str | None:
        """The condition to refuse a new link with, or None when links are allowed."""
        return self.refuse_condition if self.clock() < self.refuse_links_until else None

    def drop_connections(self) -> int:
        """Abort every open client connection now; return how many were dropped."""
        return self._target.drop_connections() if self._target else 0

    def detach_consumers(
        self,
        condition: str,
        description: str = "Detached by fault injection.",
        *,
        hub: str | None = None,
        partition: str | None = None,
    ) -> int:
        """Detach matching consumer links with ``condition``; return how many were detached."""
        if self._target is None:
            return 0
        return self._target.detach_consumers(condition, description, hub, partition)

    def reset(self) -> None:
        """Turn every fault off."""
        self.response_delay_s = 0.0
        self.refuse_links_until = 0.0
