"""The progress line long-running commands draw on a terminal.

``match`` and ``test`` count records or cases, ``send`` the events it read and sent,
``record`` the events it wrote, ``deadletter replay`` the letters it re-drove. The line goes
to standard error and only when that is a terminal, so piped or redirected output (and a
log collector's) never sees it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


class Progress:
    """A line on stderr, when it is a terminal, for runs longer than ``AFTER_S``: how many
    records (or cases, events, letters) are done, their rate and a second count (errors,
    failures), redrawn about once a second. ``counts`` gives the two numbers and ``names``
    what they count."""

    AFTER_S = 2.0

    def __init__(
        self,
        counts: Callable[[], tuple[int, int]],
        names: tuple[str, str] = ("records", "errors"),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._counts, self._names, self._clock = counts, names, clock
        self._started = clock()
        self._next = self._started + self.AFTER_S
        self._shown = False
        self._on = sys.stderr.isatty()

    def tick(self) -> None:
        """Redraw the line if a second has passed since the last time (and ``AFTER_S`` since
        the start); cheap otherwise, so callers may tick for every record."""
        if not self._on or self._clock() < self._next:
            return
        now = self._clock()
        self._next = now + 1.0
        (done, errors), (what, bad) = self._counts(), self._names
        rate = done / max(now - self._started, 1e-9)
        sys.stderr.write(f"\r{done:,} {what}, {rate:,.0f}/s, {errors:,} {bad}")
        sys.stderr.flush()
        self._shown = True

    def clear(self) -> None:
        """Erase the line before a line of output goes to the same terminal; the next
        ``tick`` draws it again below that output."""
        if self._shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self._shown = False
            self._next = self._clock()

    def done(self) -> None:
        """End the line (a newline), so what is printed next starts on a line of its own."""
        if self._shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._shown = False
