"""A clock the test moves by hand, for code that takes its clock as a collaborator."""

from __future__ import annotations


class FakeClock:
    """Seconds since the epoch, standing still until the test sets ``now`` or advances it."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
