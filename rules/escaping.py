"""Escaping event values by where a template puts them: into a URL, or into a JSON body.

Event data is written by whoever can tag a run, so a value must never change what a URL
points at or what a JSON body says beyond the value itself. Templates of these kinds are
parsed with Jinja's own parser, and every output expression (``{{ ... }}``) is wrapped in a
filter that escapes its value for the place it sits in. The place is decided by the literal
text of the template before the expression, read in source order, not by what the template
renders at run time. So that both always agree, every branch of an ``{% if %}`` must end in
the same place, and a ``{% for %}`` body where it began; tags that move output elsewhere
(``{% macro %}``, ``{% call %}``, ``{% set %}...{% endset %}``, ``{% filter %}``, ...) are
refused.

- URL: the scheme, host and port are written out in the rule: the text must begin with
  ``http://`` or ``https://`` and the host (``URL_ORIGIN``, which ``templates`` checks before
  parsing), so template markup can only come after the first ``/``, ``?`` or ``#``. Each
  value there is one percent-encoded component, ``/``, ``?``, ``&``, ``=`` and ``#``
  included: a path segment, a query key or value, or the fragment, and never more.
- JSON: a value inside a string literal is escaped as string content (quotes, backslashes and
  control characters); a value outside one is written as a JSON value: numbers stay numbers,
  strings are quoted, ``None`` is ``null``, tables and lists are objects and arrays. A value
  right after a backslash in a string is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import msgspec
from jinja2 import Undefined, nodes

Kind = Literal["url", "json"]
URL_ORIGIN = re.compile(r"https?://[^/?#{}\s\\]+(?=[/?#]|\Z)", re.IGNORECASE)
"""What a URL template begins with: scheme and host (and port), written out, ended by the
first ``/``, ``?``, ``#`` or the end of the text: no template markup (no ``{``) before that."""

_encoder = msgspec.json.Encoder(decimal_format="number")
_TAGS = {
    "Macro": "macro", "CallBlock": "call", "FilterBlock": "filter", "AssignBlock": "set",
    "Block": "block", "Extends": "extends", "Include": "include", "Import": "import",
    "FromImport": "from", "ScopedEvalContextModifier": "autoescape", "ExprStmt": "do",
}  # fmt: skip


def url_component(value: Any) -> str:
    """A value as one percent-encoded URL component (``None`` is empty)."""
    return quote(_text(value), safe="")


def json_string(value: Any) -> str:
    """A value as the content of a JSON string literal (``None`` is empty)."""
    return _encoder.encode(_text(value)).decode("utf-8")[1:-1]


def json_value(value: Any) -> str:
    """A value as a JSON value: ``5``, ``"text"``, ``null``, ``{...}``, ``[...]``."""
    return _encoder.encode(_plain(value)).decode("utf-8")


FILTERS: dict[str, Callable[[Any], str]] = {
    "urlcomponent": url_component,
    "jsonstring": json_string,
    "jsonvalue": json_value,
}
"""The filters the rewritten templates call; their environments must have them."""


def _text(value: Any) -> str:
    # str() of an undefined name raises the template error that names what is missing.
    return "" if value is None else str(value)


def _plain(value: Any) -> Any:
    """Mappings (the case-insensitive ``Data`` too) and sequences as dicts and lists."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): _plain(value[key]) for key in value}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Undefined):
        _text(value)  # fails with the error that names what is missing
    return value


@dataclass(frozen=True, slots=True)
class _Grammar:
    """Where literal text leaves a template, and which filter a value takes there."""

    what: str
    start: str
    step: Callable[[str, str], str]
    """The place after ``text``, from the place before it."""
    filters: Mapping[str, str]
    """Filter by place; a place missing here takes no value (``refusal`` says why)."""
    refusal: str = ""


def _json_step(state: str, text: str) -> str:
    for char in text:
        if state == "escape":
            state = "string"
        elif state == "string":
            state = {"\\": "escape", '"': "value"}.get(char, "string")
        elif char == '"':
            state = "string"
    return state


_GRAMMARS = {
    "url": _Grammar("a URL", "component", lambda state, text: state,
                    {"component": "urlcomponent"}),
    "json": _Grammar("a JSON body", "value", _json_step,
                     {"value": "jsonvalue", "string": "jsonstring"},
                     "a value cannot follow a backslash in a JSON string"),
}  # fmt: skip


def escape_values(tree: nodes.Template, kind: Kind) -> nodes.Template:
    """Wrap every output expression of ``tree`` (parsed, not compiled) in its escaping filter.

    Raises:
        ValueError: the template uses a tag that is refused, has branches that end in
            different places, or puts a value where none may go.
    """
    _walk(tree.body, _GRAMMARS[kind].start, _GRAMMARS[kind])
    return tree


def _walk(body: Sequence[nodes.Node], state: str, grammar: _Grammar) -> str:
    """Rewrite ``body`` in source order; the place after it."""
    for node in body:
        if isinstance(node, nodes.Output):
            state = _output(node, state, grammar)
        elif isinstance(node, nodes.If):
            branches = [node.body, *(branch.body for branch in node.elif_), node.else_]
            ends = {_walk(branch, state, grammar) for branch in branches}
            if len(ends) > 1:
                raise ValueError(
                    f"the branches of an {{% if %}} end in different places in {grammar.what} "
                    "(inside a string and outside one)"
                )
            state = ends.pop()
        elif isinstance(node, nodes.For):
            if {_walk(node.body, state, grammar), _walk(node.else_, state, grammar)} != {state}:
                raise ValueError(
                    f"a {{% for %}} body must end where it began in {grammar.what} "
                    "(inside a string or outside one)"
                )
        elif isinstance(node, nodes.With):
            state = _walk(node.body, state, grammar)
        elif not isinstance(node, nodes.Assign):
            tag = _TAGS.get(type(node).__name__, type(node).__name__.lower())
            raise ValueError(f"{{% {tag} %}} is not allowed in {grammar.what}")
    return state


def _output(node: nodes.Output, state: str, grammar: _Grammar) -> str:
    for index, child in enumerate(node.nodes):
        if isinstance(child, nodes.TemplateData):
            state = grammar.step(state, child.data)
            continue
        name = grammar.filters.get(state)
        if name is None:
            raise ValueError(grammar.refusal)
        node.nodes[index] = nodes.Filter(child, name, [], [], None, None, lineno=child.lineno)
    return state
