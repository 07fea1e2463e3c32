"""Templates: every string field of an action is rendered from the event it acts on.

Templates are Jinja2, run in its sandbox: event data is attacker-controllable (run tags are
free text), so a template can read values but never reach Python internals, and a value is
only ever data, never a template itself. What a template sees (``context``):

- ``event``: ``id``, ``type``, ``subject``, ``topic`` (the CloudEvents ``source``), ``time``,
  ``schema`` and ``data``;
- ``data``: the event's data, keys matched ignoring case (the docs and real events disagree
  on ``ModelName`` vs ``modelName``);
- ``workspace``: ``subscription_id``, ``resource_group``, ``name`` and ``id``, from the topic;
- ``model`` (ModelRegistered), ``run`` (RunCompleted, RunStatusChanged), ``drift``
  (DatasetDriftDetected), ``endpoint`` (ModelDeployed): the typed payload's fields;
- ``studio``: links into Azure ML studio: ``workspace_url``, ``run_url``, ``model_url``,
  ``endpoint_url`` (those that the event has what it takes to build).

A name the event does not have is an error when rendered (``TemplateError``), so a
deployment is never named ``v``; write ``{{ data.x | default("") }}`` where absence is fine.
``None`` renders as an empty string. ``html=True`` escapes every value for an HTML body.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import jinja2
import msgspec
from jinja2.sandbox import ImmutableSandboxedEnvironment

from . import azureml
from .errors import RulesError
from .events import Event
from .folding import fold

STUDIO = "https://ml.azure.com"
_TOPIC = re.compile(
    r"^/subscriptions/(?P<subscription_id>[^/]+)/resourceGroups/(?P<resource_group>[^/]+)"
    r"/providers/Microsoft\.MachineLearningServices/workspaces/(?P<name>[^/]+)",
    re.IGNORECASE,
)


class TemplateError(RulesError):
    """A template does not parse, or reads something the event does not have."""


class Data(Mapping[str, Any]):
    """A JSON object whose keys are looked up ignoring case; nested objects are ``Data`` too."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any]) -> None:
        self._items = items

    def __getitem__(self, key: str) -> Any:
        if key in self._items:
            return _wrap(self._items[key])
        wanted = fold(key)
        for name, value in self._items.items():
            if fold(name) == wanted:
                return _wrap(value)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return repr(self._items)


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return Data(value)
    if isinstance(value, list):
        return [_wrap(item) for item in value]
    return value


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, where ``a.b`` on a mapping reads the key ``b`` (never a method)."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except KeyError:
                if attribute.startswith("_") or not hasattr(obj, attribute):
                    keys = ", ".join(sorted(map(str, obj))[:20]) or "none"
                    hint = f"no key {attribute!r} here (keys: {keys})"
                    return self.undefined(hint=hint, obj=obj, name=attribute)
        return super().getattr(obj, attribute)


def _finalize(value: Any) -> Any:
    return "" if value is None else value


def _environment(html: bool) -> _Environment:
    return _Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=html,
        finalize=_finalize,
        keep_trailing_newline=True,
    )


_PLAIN, _HTML = _environment(False), _environment(True)


@functools.lru_cache(maxsize=4096)
def _compiled(text: str, html: bool) -> jinja2.Template:
    try:
        return (_HTML if html else _PLAIN).from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template {_short(text)} does not parse: {exc.message}") from None


def check(text: str) -> None:
    """Raise ``TemplateError`` when ``text`` is not a valid template."""
    if is_template(text):
        _compiled(text, False)


def render(text: str, context: Mapping[str, Any], *, html: bool = False) -> str:
    """Render one template; text without template syntax comes back as it is (unescaped).

    Raises:
        TemplateError: the template does not parse, reads a name the event does not have,
            or tries something the sandbox forbids.
    """
    if not is_template(text):
        return text
    template = _compiled(text, html)
    try:
        return template.render(context)
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template {_short(text)}: {exc.message}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"template {_short(text)} is not allowed: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a filter raising on the event's values
        raise TemplateError(f"template {_short(text)}: {type(exc).__name__}: {exc}") from None


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside ``value`` (lists and tables of parameters); keys stay."""
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, list):
        return [render_value(item, context) for item in value]
    if isinstance(value, dict):
        return {key: render_value(item, context) for key, item in value.items()}
    return value


def check_value(value: Any) -> list[tuple[str, str]]:
    """Every template inside ``value`` (an action, a table, a list) that does not parse, as
    (field path, message) pairs; the path is ``subject``, ``parameters.runId``, ``to[0]``."""
    problems: list[tuple[str, str]] = []
    _check_into(value, "", problems)
    return problems


def _check_into(value: Any, path: str, problems: list[tuple[str, str]]) -> None:
    if isinstance(value, str):
        try:
            check(value)
        except TemplateError as exc:
            problems.append((path, str(exc)))
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            _check_into(getattr(value, name), _join(path, name), problems)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_into(item, _join(path, str(key)), problems)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_into(item, f"{path}[{index}]", problems)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def is_template(text: str) -> bool:
    """Whether ``text`` has template markup; text without it is used as it is written."""
    return "{{" in text or "{%" in text or "{#" in text


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def context(event: Event) -> dict[str, Any]:
    """The names a template sees for ``event`` (see the module docstring)."""
    data = _wrap(event.data)
    names: dict[str, Any] = {
        "event": {
            "id": event.id,
            "type": event.type,
            "subject": event.subject,
            "topic": event.source,
            "time": event.time,
            "schema": event.schema,
            "data": data,
        },
        "data": data,
    }
    workspace = _workspace(event.source)
    studio: dict[str, str] = {}
    if workspace is not None:
        names["workspace"] = workspace
        studio["workspace_url"] = f"{STUDIO}/home?wsid={workspace['id']}"
    payload = azureml.payload(event)
    if isinstance(payload, azureml.ModelRegistered):
        names["model"] = {
            "name": payload.model_name,
            "version": payload.model_version,
            "id": f"{payload.model_name}:{payload.model_version}",
            "tags": Data(payload.model_tags),
            "properties": Data(payload.model_properties),
        }
        if workspace is not None and payload.model_name and payload.model_version:
            model = quote(f"{payload.model_name}:{payload.model_version}", safe=":")
            studio["model_url"] = f"{STUDIO}/model/{model}/details?wsid={workspace['id']}"
    elif isinstance(payload, azureml.RunCompleted):  # RunStatusChanged too
        names["run"] = {
            "id": payload.run_id,
            "experiment_id": payload.experiment_id,
            "experiment_name": payload.experiment_name,
            "type": payload.run_type,
            "status": getattr(payload, "run_status", None),
            "tags": Data(payload.run_tags),
            "properties": Data(payload.run_properties),
        }
        if workspace is not None and payload.run_id:
            run = quote(payload.run_id, safe="")
            studio["run_url"] = f"{STUDIO}/runs/{run}?wsid={workspace['id']}"
    elif isinstance(payload, azureml.DatasetDriftDetected):
        names["drift"] = {
            "id": payload.data_drift_id,
            "name": payload.data_drift_name,
            "run_id": payload.run_id,
            "coefficient": payload.drift_coefficient,
            "base_dataset_id": payload.base_dataset_id,
            "target_dataset_id": payload.target_dataset_id,
            "start_time": payload.start_time,
            "end_time": payload.end_time,
        }
    elif isinstance(payload, azureml.ModelDeployed):
        names["endpoint"] = {
            "name": payload.service_name,
            "compute_type": payload.service_compute_type,
            "model_ids": list(payload.model_ids),
            "tags": Data(payload.service_tags),
            "properties": Data(payload.service_properties),
        }
        if workspace is not None and payload.service_name:
            endpoint = quote(payload.service_name, safe="")
            studio["endpoint_url"] = (
                f"{STUDIO}/endpoints/realtime/{endpoint}/detail?wsid={workspace['id']}"
            )
    names["studio"] = studio
    return names


def _workspace(topic: str | None) -> dict[str, str] | None:
    found = _TOPIC.match(topic or "")
    if found is None:
        return None
    parts = found.groupdict()
    parts["id"] = (
        f"/subscriptions/{parts['subscription_id']}/resourceGroups/{parts['resource_group']}"
        f"/providers/Microsoft.MachineLearningServices/workspaces/{parts['name']}"
    )
    return parts
