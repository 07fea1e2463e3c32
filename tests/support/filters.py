"""What the Event Grid filter tests share: the operators as Microsoft documents them, JSON
bodies written with exact number literals, and the numbers hypothesis draws."""

from __future__ import annotations

import json
from decimal import Decimal

from hypothesis import strategies as st

ALL_OPERATORS = (
    "NumberIn",
    "NumberNotIn",
    "NumberLessThan",
    "NumberGreaterThan",
    "NumberLessThanOrEquals",
    "NumberGreaterThanOrEquals",
    "BoolEquals",
    "StringIn",
    "StringNotIn",
    "StringBeginsWith",
    "StringEndsWith",
    "StringContains",
    "NumberInRange",
    "NumberNotInRange",
    "StringNotBeginsWith",
    "StringNotEndsWith",
    "StringNotContains",
    "IsNullOrUndefined",
    "IsNotNull",
)
"""Every advanced-filter operator type Event Grid documents."""


class Raw:
    """A JSON number literal written verbatim into the body (e.g. ``1e2``, ``-0``)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text})"


def to_json(value: object) -> str:
    """Serialise to JSON text, writing ``Decimal`` and ``Raw`` numbers digit for digit."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        assert value.is_finite()
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{to_json(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot serialise {value!r}")


numbers = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.integers(min_value=-3, max_value=3),
    st.decimals(min_value=Decimal("-1000"), max_value=Decimal("1000"), allow_nan=False, places=3),
    st.decimals(
        min_value=Decimal("-1E+6"),
        max_value=Decimal("1E+6"),
        allow_nan=False,
        allow_infinity=False,
    ),
    st.sampled_from([Decimal("0"), Decimal("-0"), Decimal("0.10"), Decimal("1E+2")]),
)
"""Integers (huge and small) and decimals (fixed places, any exponent, zeros written oddly)."""
