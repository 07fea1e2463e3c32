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
``None`` renders as an empty string. ``escape`` says what the rendered text is and so how
every value is escaped: ``"html"`` for an HTML body, ``"url"`` for a URL and ``"json"`` for a
JSON body (see ``escaping``: a value fills in one URL component, or one JSON string's content
or one JSON value, and never more).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from typing import Any, Literal
from urllib.parse import quote, urlsplit

import jinja2
import msgspec
from jinja2.sandbox import ImmutableSandboxedEnvironment

from . import azureml, escaping
from .errors import RulesError
from .events import Event
from .folding import fold

Escape = Literal["none", "html", "url", "json"]
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


def _environment(escape: Escape) -> _Environment:
    environment = _Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=escape == "html",
        finalize=_finalize,
        keep_trailing_newline=True,
    )
    if escape in ("url", "json"):
        environment.filters.update(escaping.FILTERS)
    return environment


_ENVIRONMENTS: dict[Escape, _Environment] = {
    "none": _environment("none"),
    "html": _environment("html"),
    "url": _environment("url"),
    "json": _environment("json"),
}


@functools.lru_cache(maxsize=4096)
def _compiled(text: str, escape: Escape) -> jinja2.Template:
    environment = _ENVIRONMENTS[escape]
    if escape == "url" and not escaping.URL_ORIGIN.match(text):
        raise TemplateError(
            f"template {_short(text)} must begin with http:// or https:// and the host: "
            "event values may fill in the path, query and fragment only"
        )
    try:
        if escape == "url" or escape == "json":
            return environment.from_string(escaping.escape_values(environment.parse(text), escape))
        return environment.from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template {_short(text)} does not parse: {exc.message}") from None
    except ValueError as exc:
        raise TemplateError(f"template {_short(text)}: {exc}") from None


def check(text: str, escape: Escape = "none") -> None:
    """Raise ``TemplateError`` when ``text`` is not a valid template of its kind (a URL must
    be one even without template syntax)."""
    if escape == "url" or is_template(text):
        _compiled(text, escape)


def render(text: str, context: Mapping[str, Any], *, escape: Escape = "none") -> str:
    """Render one template, escaping every value as ``escape`` says; text without template
    syntax comes back as it is (unescaped; a URL is checked).

    Raises:
        TemplateError: the template does not parse, reads a name the event does not have,
            or tries something the sandbox forbids.
    """
    if escape != "url" and not is_template(text):
        return text
    template = _compiled(text, escape)
    try:
        return template.render(context)
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template {_short(text)}: {exc.message}") from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateError(f"template {_short(text)} is not allowed: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a filter raising on the event's values
        raise TemplateError(f"template {_short(text)}: {type(exc).__name__}: {exc}") from None


def url_host(text: str) -> str | None:
    """The host (lower case) that a URL template begins with, or ``None`` when it does not
    begin with ``http(s)://`` and a host written out."""
    found = escaping.URL_ORIGIN.match(text)
    return None if found is None else urlsplit(found.group()).hostname


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
    (field path, message) pairs; the path is ``subject``, ``parameters.runId``, ``to[0]``.

    An action's ``template_escapes`` (a class attribute) names the fields that are URLs or
    JSON bodies; they are checked as such.
    """
    problems: list[tuple[str, str]] = []
    _check_into(value, "", problems, "none")
    return problems


def _check_into(value: Any, path: str, problems: list[tuple[str, str]], escape: Escape) -> None:
    if isinstance(value, str):
        try:
            check(value, escape)
        except TemplateError as exc:
            problems.append((path, str(exc)))
    elif isinstance(value, msgspec.Struct):
        escapes: Mapping[str, Escape] = getattr(value, "template_escapes", {})
        for name in value.__struct_fields__:
            field_escape = escapes.get(name, "none")
            _check_into(getattr(value, name), _join(path, name), problems, field_escape)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_into(item, _join(path, str(key)), problems, escape)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_into(item, f"{path}[{index}]", problems, escape)


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
