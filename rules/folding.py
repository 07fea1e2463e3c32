"""Case folding the way Event Grid compares strings.

Event Grid compares strings case-insensitively with .NET ordinal ignore-case semantics:
each UTF-16 code unit is upper-cased on its own (simple case mapping), so ``ß`` stays
``ß`` and characters outside the Basic Multilingual Plane are compared as they are.
Python's ``str.upper`` uses full case mapping (``ß`` -> ``SS``), so non-ASCII text goes
through a translation table of the one-to-one mappings only.
"""

from __future__ import annotations

from functools import cache


def fold(text: str) -> str:
    """Return the form of ``text`` under which ordinal ignore-case comparison is equality."""
    if text.isascii():
        return text.upper()
    return text.translate(_simple_upper_table())


@cache
def _simple_upper_table() -> dict[int, int]:
    table: dict[int, int] = {}
    for code in range(0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        upper = chr(code).upper()
        if len(upper) == 1 and ord(upper) != code and ord(upper) < 0x10000:
            table[code] = ord(upper)
    return table
