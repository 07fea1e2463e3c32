"""Email addresses: what counts as exactly one address, for the ``email`` action.

An address is written to a message header, so it must be one address and nothing more: no
line breaks or control characters, no second address, no display-name tricks that make the
two parsers of the ``email`` package disagree. ``check_action`` applies this to the static
``to`` and ``cc`` entries of an action when rules load; entries with template markup are
checked once they are rendered, when the action runs.
"""

from __future__ import annotations

import re
import unicodedata
from email import policy
from email.errors import HeaderParseError, MessageDefect, NonASCIILocalPartDefect
from email.headerregistry import Address
from email.utils import getaddresses
from typing import Protocol, cast

from . import templates
from .actions import Action, EmailAction

_UNSAFE_IN_ADDRESS = frozenset({"Cc", "Cf", "Zl", "Zp"})
_LOCAL_PART = re.compile(r"[\w!#$%&'*+/=?^`{|}~-]+(?:\.[\w!#$%&'*+/=?^`{|}~-]+)*")
_DOMAIN = re.compile(r"[\w-]+(?:\.[\w-]+)*")


class _AddressHeader(Protocol):
    """What the policy's header factory gives for ``To`` (typeshed lacks ``defects``)."""

    @property
    def addresses(self) -> tuple[Address, ...]: ...

    @property
    def defects(self) -> tuple[MessageDefect, ...]: ...


def one_address(value: str) -> Address:
    """The one address ``value`` (already stripped) holds.

    Raises:
        ValueError: saying what is wrong (empty, a control character, not exactly one).
    """
    if not value:
        raise ValueError("is empty")
    if any(unicodedata.category(char) in _UNSAFE_IN_ADDRESS for char in value):
        raise ValueError("has a line break or control character")
    address = parse_address(value)
    if address is None:
        raise ValueError("is not exactly one email address")
    return address


def parse_address(value: str) -> Address | None:
    """The one address ``value`` holds, when two parsers agree it holds exactly one."""
    if any(unicodedata.category(char) in _UNSAFE_IN_ADDRESS for char in value):
        return None
    pairs = getaddresses([value])
    if len(pairs) != 1:
        return None
    addr_spec = pairs[0][1]
    local, at, domain = addr_spec.partition("@")
    if not at or not _LOCAL_PART.fullmatch(local) or not _DOMAIN.fullmatch(domain):
        return None
    try:
        header = cast(_AddressHeader, policy.SMTP.header_factory("To", value))
    except (HeaderParseError, ValueError, IndexError):
        return None
    addresses = header.addresses
    defects = [d for d in header.defects if not isinstance(d, NonASCIILocalPartDefect)]
    if defects or len(addresses) != 1 or addresses[0].addr_spec != addr_spec:
        return None
    return addresses[0]


def check_action(action: Action) -> list[tuple[str, str]]:
    """The static recipients of an ``email`` action that are not exactly one address, as
    (field path, message) pairs such as ``("to[0]", "is not exactly one email address: 'x'")``.
    Templated recipients are left to the send, where they are rendered."""
    if not isinstance(action, EmailAction):
        return []
    problems = []
    for name, values in (("to", action.to), ("cc", action.cc)):
        for index, value in enumerate(values):
            if templates.is_template(value):
                continue
            try:
                one_address(value.strip())
            except ValueError as exc:
                problems.append((f"{name}[{index}]", f"{exc}: {value!r}"))
    return problems
