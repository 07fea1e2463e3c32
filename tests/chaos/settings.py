"""A chaos run's size, faults and their timeline (the defaults are the full soak)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Timeline:
    """When each fault starts, as a fraction of ``send_s`` (hub drops are spread evenly)."""

    storage_stop: float = 0.15
    slow: float = 0.40
    storage_freeze: float = 0.55
    bursts: float = 0.80
    kills: tuple[float, float] = (0.05, 1.0)
    """Kills fall at random times within this part of ``send_s``."""
    kills_after_storage_s: float | None = None
    """When set, a kill waits until storage has been back this long and every checkpoint has
    passed what was sent by then. An action run unreserved while the ledger's store was away
    is recorded nowhere: read again after a kill, it runs again with no uncertain outcome to
    log (an exception the worker documents). Waiting leaves that case to the full soak and
    holds every other one to the strict rule."""


@dataclass(frozen=True, kw_only=True)
class Settings:
    """One run: its size and its faults."""

    events: int = 5_000
    workers: int = 3
    kills: int = 20
    storage_stop_s: float = 60.0
    storage_freeze_s: float = 30.0
    hub_drops: int = 3
    slow_s: float = 20.0
    """How long the slow phase lasts."""
    slow_request_s: float = 2.0
    """How long each peer takes per answer during the slow phase."""
    burst_s: float = 2.0
    """How long each peer refuses everything during its error burst."""
    send_s: float = 360.0
    """Events are sent evenly over this long; the faults fall within it."""
    settle_s: float = 300.0
    """After the faults, how long the workers get to finish."""
    lease_s: float = 10.0
    """The ledger's reservation lease."""
    seed: int = 1
    timeline: Timeline = Timeline()
