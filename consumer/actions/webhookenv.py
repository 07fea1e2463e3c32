"""What a webhook takes from the environment: its URL (``url_env``), header values
(``headers_env``) and its signing key (``secret_env``).

A rule names the variable; ``consumer.config`` reads the environment and hands the values
on as ``secrets`` (a lookup by name). The functions here turn a value into what a request
needs, or raise ``ValueError`` naming the variable and never its value. The same functions
check every variable when rules load (``consumer.rulefiles``: at worker start, on reload,
and by ``mlevents lint --env``), so a wrong value stops the worker before it takes an event
instead of dead-lettering every one, and serve the executor on each request. Values are used
without the whitespace around them (a secret mounted from a file often ends in a line break).
This module imports no HTTP client: the offline ``lint`` uses it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from urllib.parse import urlsplit

from rules.templates import url_host

Secrets = Callable[[str], "str | None"]
"""The value of an environment variable by name; ``None`` when it is not set or empty."""
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""What a header value may not hold: line breaks (a second header) and other controls."""


def env_url(secrets: Secrets, variable: str) -> str:
    """The URL in ``variable``: ``http(s)://`` and a host (and port), then anything.

    Raises:
        ValueError: not set, or not such a URL.
    """
    url = _value(secrets, variable)
    if url_host(url) is None or not _valid_port(url):
        raise ValueError(f"environment variable {variable} does not hold an http(s) URL")
    return url


def env_header(secrets: Secrets, variable: str) -> str:
    """The header value in ``variable``.

    Raises:
        ValueError: not set, or holds a line break or another control character.
    """
    value = _value(secrets, variable)
    if CONTROL_CHARACTERS.search(value):
        raise ValueError(
            f"environment variable {variable} holds a line break or another control character"
        )
    return value


def signing_key(secrets: Secrets, variable: str) -> bytes:
    """The HMAC key of the Standard Webhooks secret in ``variable`` (base64, with or without
    ``whsec_`` in front).

    Raises:
        ValueError: not set, not base64, or empty once decoded.
    """
    secret = _value(secrets, variable)
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except ValueError:
        raise ValueError(
            f"environment variable {variable} does not hold a Standard Webhooks signing "
            "secret (base64, optionally after whsec_)"
        ) from None
    if not key:
        raise ValueError(f"environment variable {variable} holds an empty signing secret")
    return key


def _value(secrets: Secrets, variable: str) -> str:
    value = (secrets(variable) or "").strip()
    if not value:
        raise ValueError(f"environment variable {variable} is not set")
    return value


def _valid_port(url: str) -> bool:
    """Whether ``url`` has no port, or a number from 0 to 65,535."""
    try:
        _ = urlsplit(url).port
    except ValueError:
        return False
    return True
