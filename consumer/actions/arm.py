"""Azure Resource Manager requests as data: what the Azure actions ask of ARM, before asking.

The Azure actions build each call as an ``ArmRequest`` (method, resource path, API version,
JSON body) with the functions here and in their own modules, which import neither aiohttp
nor an Azure SDK: ``ArmClient`` (``consumer.actions.azure``) sends such a request, and a
preview (``consumer.actions.preview``, for ``mlevents test --render`` and dry runs) shows
it, both through ``arm_url`` and ``arm_headers``, so what is shown is what is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from consumer.errors import PermanentActionError
from rules.templates import TemplateError, render


@dataclass(frozen=True, slots=True)
class ArmRequest:
    """One ARM call: ``method`` on ``path`` (built with ``arm_path``) at ``api_version``,
    with ``body`` as its JSON body (``None``: no body)."""

    method: str
    path: str
    api_version: str
    body: Any = None


def arm_url(base_url: str, path: str, api_version: str) -> str:
    """The URL of ``path`` on ARM at ``base_url``, with its ``api-version``."""
    return f"{base_url.rstrip('/')}{path}?api-version={quote(api_version, safe='')}"


def arm_headers(token: str, *, with_body: bool) -> dict[str, str]:
    """The headers of an ARM call: the bearer token, and the body's type when it has one."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if with_body:
        headers["Content-Type"] = "application/json"
    return headers


def arm_path(*segments: str) -> str:
    """``/a/b/c`` from path segments, each percent-encoded (a ``/`` in a name stays inside
    its segment).

    Raises:
        PermanentActionError: a segment is empty (a template that rendered to nothing).
    """
    for segment in segments:
        if not segment.strip():
            raise PermanentActionError(f"empty name in the resource path after {segments}")
    return "".join("/" + quote(segment, safe="") for segment in segments)


def workspace_path(subscription: str, group: str, workspace: str, *rest: str) -> str:
    """The path of an Azure ML workspace, or of something under it."""
    return arm_path(
        "subscriptions", subscription, "resourceGroups", group,
        "providers", "Microsoft.MachineLearningServices", "workspaces", workspace, *rest,
    )  # fmt: skip


def render_fields(kind: str, names: Mapping[str, Any], **fields: str) -> dict[str, str]:
    """Render each template field; a failing one is a ``PermanentActionError`` naming it."""
    rendered = {}
    for field, text in fields.items():
        try:
            rendered[field] = render(text, names)
        except TemplateError as exc:
            raise PermanentActionError(f"{kind}: '{field}': {exc}") from exc
    return rendered
