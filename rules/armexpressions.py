"""The little of ARM template expressions needed to read a subscription out of a template.

A template string that starts with ``[`` and ends with ``]`` is an expression; ``[[`` at the
start escapes a literal bracket. ``evaluate`` reads the expressions that name things in
templates (Bicep writes child names as ``[format('{0}/{1}', parameters('topic'), 'feed')]``):
string and number literals, ``parameters()`` (their default values), ``variables()``,
``format()`` with ``{n}`` holes and ``concat()`` of strings. Anything else is ``UNKNOWN``;
inside a string built by ``format``/``concat`` an unknown part is ``HOLE``, so the known end
of ``topic/feed`` can still be read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final


class _Unknown:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN: Final = _Unknown()
"""The value of an expression this module cannot evaluate."""
HOLE: Final = "\x00"
"""What stands for an unknown part of a string built from known and unknown parts."""
MAX_DEPTH: Final = 16
"""Parameters and variables that refer to each other deeper than this are unknown."""

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<number>-?\d+)|(?P<name>[A-Za-z_]\w*)"
    r"|(?P<punct>[(),.\[\]]))"
)


def is_expression(text: Any) -> bool:
    """Whether ``text`` is a template expression (``[...]``, not an escaped ``[[...``)."""
    return (
        isinstance(text, str)
        and text.startswith("[")
        and text.endswith("]")
        and not text.startswith("[[")
    )


def literal(text: str) -> str:
    """A template string that is not an expression, with its ``[[`` escape undone."""
    return text[1:] if text.startswith("[[") and text.endswith("]") else text


def evaluate(value: Any, template: Mapping[str, Any], depth: int = 0) -> Any:
    """``value`` as a deployment would see it: expressions evaluated, escapes undone, in
    lists and objects too; ``UNKNOWN`` (or strings with ``HOLE``) where it cannot tell."""
    if depth > MAX_DEPTH:
        return UNKNOWN
    if isinstance(value, str):
        if not is_expression(value):
            return literal(value)
        try:
            parser = _Parser(value[1:-1], template, depth)
            result = parser.expression()
            parser.end()
        except ValueError:
            return UNKNOWN
        return result
    if isinstance(value, list):
        return [evaluate(item, template, depth) for item in value]
    if isinstance(value, dict):
        return {key: evaluate(item, template, depth) for key, item in value.items()}
    return value


def unknown_within(value: Any) -> bool:
    """Whether any part of an evaluated value is unknown."""
    if value is UNKNOWN:
        return True
    if isinstance(value, str):
        return HOLE in value
    if isinstance(value, list):
        return any(unknown_within(item) for item in value)
    if isinstance(value, dict):
        return any(unknown_within(item) for item in value.values())
    return False


class _Parser:
    """Recursive descent over one expression, evaluating as it goes."""

    def __init__(self, text: str, template: Mapping[str, Any], depth: int) -> None:
        self._tokens = self._tokenize(text)
        self._at = 0
        self._template, self._depth = template, depth

    @staticmethod
    def _tokenize(text: str) -> list[tuple[str, str]]:
        tokens, at = [], 0
        while text[at:].strip():
            found = _TOKEN.match(text, at)
            if found is None:
                raise ValueError(f"unexpected {text[at:]!r}")
            kind = found.lastgroup or ""
            tokens.append((kind, found.group(kind)))
            at = found.end()
        return tokens

    def _next(self) -> tuple[str, str]:
        if self._at >= len(self._tokens):
            raise ValueError("unexpected end")
        self._at += 1
        return self._tokens[self._at - 1]

    def _peek(self) -> str:
        return self._tokens[self._at][1] if self._at < len(self._tokens) else ""

    def end(self) -> None:
        if self._at != len(self._tokens):
            raise ValueError("trailing text")

    def expression(self) -> Any:
        kind, text = self._next()
        if kind == "string":
            return text[1:-1].replace("''", "'")
        if kind == "number":
            return int(text)
        if kind != "name":
            raise ValueError(f"unexpected {text!r}")
        if self._next()[1] != "(":
            raise ValueError("expected (")
        args = []
        while self._peek() != ")":
            args.append(self.expression())
            if self._peek() == ",":
                self._next()
        self._next()
        value = self._call(text.lower(), args)
        while self._peek() in (".", "["):  # property and index access: not followed
            self._accessor()
            value = UNKNOWN
        return value

    def _accessor(self) -> None:
        if self._next()[1] == ".":
            self._next()
        else:
            self.expression()
            if self._next()[1] != "]":
                raise ValueError("expected ]")

    def _call(self, function: str, args: list[Any]) -> Any:
        if function in ("parameters", "variables") and len(args) == 1:
            return self._lookup(function, args[0])
        if function == "format" and args and isinstance(args[0], str):
            holes = [_text(a) for a in args[1:]]
            return re.sub(
                r"\{(\d+)\}",
                lambda m: holes[int(m[1])] if int(m[1]) < len(holes) else HOLE,
                args[0],
            )
        if function == "concat" and all(isinstance(a, str) or a is UNKNOWN for a in args):
            return "".join(_text(a) for a in args)
        return UNKNOWN

    def _lookup(self, function: str, name: Any) -> Any:
        table = self._template.get(function)
        if not isinstance(name, str) or not isinstance(table, Mapping):
            return UNKNOWN
        entry = next((v for k, v in table.items() if k.lower() == name.lower()), UNKNOWN)
        if function == "parameters":
            if not isinstance(entry, Mapping) or "defaultValue" not in entry:
                return UNKNOWN
            entry = entry["defaultValue"]
        return UNKNOWN if entry is UNKNOWN else evaluate(entry, self._template, self._depth + 1)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return HOLE
