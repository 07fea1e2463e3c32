"""A stand-in for a terminal: what commands that draw a progress line write to it is kept."""

from __future__ import annotations

import io


class Terminal(io.StringIO):
    """A text stream that says it is a terminal (``isatty``), to put in place of stderr."""

    def isatty(self) -> bool:
        return True
