"""The data model of actions: what a rule asks the worker to do.

Each action in a rule is a table with a ``type`` and that type's fields. Loading validates
them all (unknown fields, wrong types, missing fields, numbers out of range); carrying them
out is the shell's job (``consumer/``). Every string field is a template rendered from the
event when the action runs, so a field like ``to`` may read ``"{{ data.runTags.owner }}"``.
The exceptions are a webhook's ``*_env`` fields, which name environment variables (the shell
reads their values and uses them as they are), and its ``auth.scope``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, TypeAlias

import msgspec

from .templates import Escape, is_template, url_host

# Every number below has a lower and an upper bound (``msgspec.Meta``), which also refuses
# the non-finite floats TOML and JSON can spell: ``inf`` is above every upper bound, and
# ``nan`` fails every comparison, so the lower bound refuses it.
_DAY_S = 24 * 3600
RESERVED_HEADERS = frozenset(
    {"webhook-id", "webhook-timestamp", "webhook-signature", "content-length", "transfer-encoding"}
)
"""Headers a webhook rule may not set: the signature's, and the body's framing."""
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""An HTTP header name (RFC 9110's token)."""
ENV_NAME = re.compile(r"[-._A-Za-z][-._A-Za-z0-9]*")
"""An environment variable's name, as Kubernetes takes one. A ``*_env`` field holds a name,
never the value: a URL or a key pasted there would be refused, and not echoed back."""
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


OnUncertain = Literal["repeat", "skip", "deadletter"]
"""What to do with an action whose outcome is uncertain, for a sink that cannot be asked: a
worker took its reservation over after the lease ended, so the earlier holder may have done
it. ``repeat`` runs it again (the same identity: ``webhook-id``, ``Message-ID``), ``skip``
records it done without running it, ``deadletter`` parks it for a person to decide."""


class _Action(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="type"
):
    """Fields every action type shares."""


class LogAction(_Action, tag="log", frozen=True):
    """Write one structured log line about the event."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    message: str = "rule matched"


class EmailAction(_Action, tag="email", frozen=True):
    """Send an email over SMTP (or write ``.eml`` files locally)."""

    to: list[str]
    subject: str
    cc: list[str] = []
    text: str | None = None
    html: str | None = None
    digest_window_s: Annotated[float, msgspec.Meta(gt=0, le=_DAY_S)] | None = None
    """When set, repeated events for one subject within the window become one email. Up to
    a day: each event of the window waits for its email."""
    max_per_hour: Annotated[int, msgspec.Meta(ge=1, le=3600)] | None = None
    """Per-recipient rate limit, 1 to 3,600 (one a second)."""
    on_uncertain: OnUncertain = "repeat"
    """See ``OnUncertain``: an email cannot be asked whether it was sent."""

    def __post_init__(self) -> None:
        if not self.to:
            raise ValueError("needs at least one recipient in 'to'")
        if self.text is None and self.html is None:
            raise ValueError("needs a body: 'text', 'html' or both")


class AzureAdAuth(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A webhook's ``auth``: an Azure AD bearer token for ``scope`` (such as
    ``api://<app id>/.default``), from the worker's credential (``[azure] credential``)."""

    type: Literal["azure_ad"]
    scope: str
    """Written out in the rule: event data never picks whom a token is for."""


class WebhookAction(_Action, tag="webhook", frozen=True):
    """POST the event to an HTTP endpoint.

    Its secrets stay out of the rule: each ``*_env`` field names an environment variable
    that holds one (the shell reads it; a Teams or Slack URL, an API key, a signing secret).
    """

    url: str | None = None
    """The URL template; or ``url_env``, never both."""
    url_env: str | None = None
    """Name of the environment variable holding the URL, used as it is (not a template)."""
    format: Literal["eventgrid", "cloudevents", "template"] = "eventgrid"
    body: str | None = None
    """The body template, for ``format = "template"``."""
    preset: Literal["teams", "slack"] | None = None
    headers: dict[str, str] = {}
    headers_env: dict[str, str] = {}
    """Header name (written in the rule) to the name of the environment variable holding
    its value."""
    auth: AzureAdAuth | None = None
    """With it, every request carries ``Authorization: Bearer <token>``."""
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=300)] = 10.0
    """For one request, up to 300 s: a slow endpoint holds its partition's checkpoint."""
    secret_env: str | None = None
    """Name of the environment variable holding the Standard Webhooks signing secret."""
    on_uncertain: OnUncertain = "repeat"
    """See ``OnUncertain``: a receiver cannot be asked whether it got the request (a repeat
    carries the same ``webhook-id``, for the receiver to drop)."""
    template_escapes: ClassVar[Mapping[str, Escape]] = {"url": "url", "body": "json"}
    """The URL's values are percent-encoded and the body's escaped as JSON; the URL must begin
    with its scheme and host written out."""

    def __post_init__(self) -> None:
        if (self.url is None) == (self.url_env is None):
            raise ValueError(
                "needs either 'url' or 'url_env' (the environment variable holding the URL)"
            )
        if (self.format == "template") != (self.body is not None):
            raise ValueError("'body' is required with format = \"template\" and only then")
        for field, names in (("headers", self.headers), ("headers_env", self.headers_env)):
            for name in names:
                if not HEADER_NAME.fullmatch(name):
                    raise ValueError(f"{field}: {name!r} is not a valid header name")
                if name.lower() in RESERVED_HEADERS:
                    raise ValueError(f"{field}: {name!r} is set by the worker, not a rule")
        twice = {name.lower() for name in self.headers} & {n.lower() for n in self.headers_env}
        if twice:
            raise ValueError(f"headers_env: {min(twice)!r} is in headers too")
        variables = [("url_env", self.url_env), ("secret_env", self.secret_env)]
        variables += [(f"headers_env.{k}", v) for k, v in self.headers_env.items()]
        for field, variable in variables:
            if variable is not None and not ENV_NAME.fullmatch(variable):
                raise ValueError(f"{field}: must name an environment variable, not hold a value")
        if self.auth is not None:
            self._check_auth(self.auth)

    def _check_auth(self, auth: AzureAdAuth) -> None:
        scope = auth.scope
        if not scope or is_template(scope) or any(char.isspace() for char in scope):
            raise ValueError("auth: 'scope' must be one scope, written out (not a template)")
        headers = [*self.headers, *self.headers_env]
        if any(name.lower() == "authorization" for name in headers):
            raise ValueError("auth: sets the Authorization header; leave it out of headers")
        if self.url is not None and url_host(self.url) and not may_carry_token(self.url):
            raise ValueError("auth: a token goes over https only (plain http to loopback)")


def may_carry_token(url: str) -> bool:
    """Whether a bearer token may go to ``url`` (a URL, or a URL template, whose scheme and
    host are written out): over https, or plain http to this machine."""
    scheme = url.partition(":")[0].lower()
    return scheme == "https" or (scheme == "http" and url_host(url) in LOOPBACK_HOSTS)


class AdfPipelineRunAction(_Action, tag="adf_pipeline_run", frozen=True):
    """Start an Azure Data Factory pipeline run (Pipelines - Create Run)."""

    subscription_id: str
    resource_group: str
    factory: str
    pipeline: str
    parameters: dict[str, Any] = {}
    key_parameter: str | None = None
    """A pipeline parameter that each run gets the decision key in (the pipeline must declare
    it). With it, a run whose outcome is uncertain is looked up among the pipeline's runs
    instead of started again; without it, ``on_uncertain`` decides."""
    on_uncertain: OnUncertain = "repeat"
    """See ``OnUncertain``; used only without ``key_parameter``."""


class AmlJobAction(_Action, tag="aml_job", frozen=True):
    """Submit an Azure ML job (command or pipeline) from a YAML/JSON job spec."""

    subscription_id: str
    resource_group: str
    workspace: str
    job: str
    """Path of the job spec (JSON or YAML: the REST API's job body, ``{"properties": ...}``),
    relative to the rules file. Its strings are templates too."""
    experiment_name: str | None = None


class AmlDeployAction(_Action, tag="aml_deploy", frozen=True):
    """Create or update a managed online deployment for the registered model."""

    subscription_id: str
    resource_group: str
    workspace: str
    endpoint: str
    deployment: str
    model_name: str = "{{ model.name }}"
    model_version: str = "{{ model.version }}"
    instance_type: str | None = None
    """Defaults to the model's ``instance_type`` tag, then ``Standard_DS3_v2``."""
    instance_count: Annotated[int, msgspec.Meta(ge=1, le=1000)] | None = None
    """1 to 1,000; defaults to the model's ``instance_count`` tag, then 1."""
    environment_id: str | None = None
    """ARM id of the environment; leave it out (with the code) for MLflow models."""
    code_id: str | None = None
    """ARM id of the code version holding ``scoring_script``."""
    scoring_script: str | None = None
    traffic_percent: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    """When set, the endpoint's traffic to this deployment after it succeeds, 0 to 100."""
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=_DAY_S)] = 1800.0
    """How long to follow the deployment's ``Azure-AsyncOperation`` before giving up, up to
    a day."""

    def __post_init__(self) -> None:
        if (self.code_id is None) != (self.scoring_script is None):
            raise ValueError("'code_id' and 'scoring_script' go together")


Action: TypeAlias = (
    LogAction | EmailAction | WebhookAction | AdfPipelineRunAction | AmlJobAction | AmlDeployAction
)
ACTION_TYPES = ("log", "email", "webhook", "adf_pipeline_run", "aml_job", "aml_deploy")


def parse_action(spec: Any) -> Action:
    """Validate one action table.

    Raises:
        ValueError: naming the field at fault (``$.to[0]`` style paths from msgspec).
    """
    if not isinstance(spec, dict):
        raise ValueError("an action must be a table with a 'type'")
    kind = spec.get("type")
    if kind not in ACTION_TYPES:
        raise ValueError(f"unknown action type {kind!r}; expected one of {', '.join(ACTION_TYPES)}")
    try:
        action: Action = msgspec.convert(spec, Action, strict=False)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None
    return action
