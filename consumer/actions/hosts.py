"""Which hosts webhooks may call: ``[webhook] allowed_hosts``, checked when rules load and
again on every rendered URL (a template may put event data in the host)."""

from __future__ import annotations

from collections.abc import Sequence


def host_allowed(host: str | None, allowed: Sequence[str]) -> bool:
    """Whether ``host`` is one of ``allowed`` (lower case), or under one written
    ``*.domain`` (any depth, not the domain itself)."""
    if not host:
        return False
    host = host.lower().rstrip(".")
    patterns = (pattern.lower().rstrip(".") for pattern in allowed)
    return any(
        host.endswith(pattern[1:]) if pattern.startswith("*.") else host == pattern
        for pattern in patterns
    )
