"""Job spec files: what an ``aml_job`` rule names, read and checked before any event.

A spec is the REST API's job body (``{"properties": {"jobType": ...}}``) in a JSON or YAML
file next to the rules. Its strings are templates over the event, except Azure ML's own
bindings (``${{inputs.data}}``, ``${{parent.jobs...}}``), which ``protect`` keeps from the
template engine. Loading needs no Azure: ``mlevents lint`` and ``test`` check specs offline.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from consumer.errors import PermanentActionError
from rules.templates import TemplateError, check

_BINDING = re.compile(r"\$\{\{.*?\}\}", re.DOTALL)


def load_job_spec(path: Path) -> dict[str, Any]:
    """Read a job spec (``*.json`` as JSON, anything else as YAML) and check its templates.

    Raises:
        PermanentActionError: the file cannot be read, does not parse, is not a job body
            with ``properties.jobType``, or holds a template that does not parse; the
            message names the file.
    """
    try:
        text = path.read_text(encoding="utf-8")
        spec = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise PermanentActionError(f"job spec {path}: cannot read: {exc}") from exc
    except (ValueError, yaml.YAMLError) as exc:
        raise PermanentActionError(f"job spec {path}: does not parse: {exc}") from exc
    properties = spec.get("properties") if isinstance(spec, dict) else None
    if not isinstance(properties, dict) or "jobType" not in properties:
        raise PermanentActionError(
            f"job spec {path}: needs 'properties.jobType' (the REST API's job body, "
            "not the Azure ML CLI's YAML)"
        )
    try:
        walk(spec, lambda text: check(protect(text)))
    except TemplateError as exc:
        raise PermanentActionError(f"job spec {path}: {exc}") from exc
    result: dict[str, Any] = spec
    return result


class JobSpecs:
    """Job specs by path, each read (``load_job_spec``) again only when its file changed."""

    def __init__(self) -> None:
        self._specs: dict[Path, tuple[int, dict[str, Any]]] = {}

    def __call__(self, path: Path) -> dict[str, Any]:
        """The parsed spec at ``path``.

        Raises:
            PermanentActionError: as ``load_job_spec``, or the file is gone.
        """
        try:
            version = path.stat().st_mtime_ns
        except OSError as exc:
            raise PermanentActionError(f"job spec {path}: cannot read: {exc}") from exc
        cached = self._specs.get(path)
        if cached is None or cached[0] != version:
            cached = self._specs[path] = (version, load_job_spec(path))
        return cached[1]


def protect(text: str) -> str:
    """``text`` with Azure ML's ``${{...}}`` bindings wrapped for templates to keep."""
    return _BINDING.sub(lambda found: "{% raw %}" + found.group(0) + "{% endraw %}", text)


def walk(value: Any, visit: Callable[[str], Any]) -> Any:
    """A copy of ``value`` with ``visit`` applied to every string (keys stay as they are)."""
    if isinstance(value, str):
        return visit(value)
    if isinstance(value, list):
        return [walk(item, visit) for item in value]
    if isinstance(value, dict):
        return {key: walk(item, visit) for key, item in value.items()}
    return value
