"""``mlevents export``: the Event Grid subscription that feeds the rules, as az, Bicep or ARM.

The subscription is on the Azure ML workspace and delivers to the Event Hub mlevents reads.
Its filter is what ``rules.upstream`` pushes up from the whole rule table: the union of the
rules' event types, the subject prefix and suffix every rule shares, case-sensitivity only
if every rule wants it. It never drops an event a rule would match. Advanced filters are
not pushed: a subscription ANDs them, and the rules' union (an OR of ANDs) cannot be
written that way in general; the worker applies them.

What the rules cannot know comes from options: the workspace (a resource id, or its name
with ``--subscription-id`` and ``--resource-group``), the Event Hub's resource id, the
subscription's name and delivery schema. What is not given stays open: a shell variable
(``"$WORKSPACE_ID"``) for ``az``, a parameter for Bicep and ARM. Two resource shapes
(research: eventgrid-setup.md §1): ``extension``, an ``eventSubscriptions`` resource on the
workspace (Event Grid makes and removes the system topic), which is what ``az`` writes; and
``system-topic``, a named system topic with the subscription as its child, the default for
Bicep and ARM. This module imports no Azure SDK: it writes text.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from consumer.commands.rules import _load, _rules_options
from consumer.errors import EXIT_OK, ConfigError

if TYPE_CHECKING:
    from rules.upstream import Subscription

FORMATS: Final = ("az", "bicep", "arm")
SHAPES: Final = ("extension", "system-topic")
WORKSPACE_API: Final = "2025-06-01"
"""API version of the ``existing`` workspace in Bicep (it only reads its id)."""
DEPLOYMENT_SCHEMA: Final = (
    "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
)

_GUID = r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}"
_GROUP = r"[-\w.()]{0,89}[-\w()]"
_WORKSPACE = r"[A-Za-z0-9][\w-]{2,32}"
WORKSPACE_ID: Final = re.compile(
    rf"/subscriptions/(?P<sub>{_GUID})/resourceGroups/(?P<group>{_GROUP})/providers/"
    rf"Microsoft\.MachineLearningServices/workspaces/(?P<name>{_WORKSPACE})",
    re.IGNORECASE,
)
EVENT_HUB_ID: Final = re.compile(
    rf"/subscriptions/{_GUID}/resourceGroups/{_GROUP}/providers/Microsoft\.EventHub/"
    r"namespaces/[A-Za-z][A-Za-z0-9-]{4,48}[A-Za-z0-9]/eventhubs/[A-Za-z0-9][\w.-]{0,255}",
    re.IGNORECASE,
)


def add_parser(commands: Any) -> None:
    """Add ``export``: write the Event Grid subscription for the rules."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "export",
        help="write the Event Grid subscription that feeds the rules (az, Bicep or ARM)",
        description=(
            "Write the Event Grid subscription of an Azure ML workspace that delivers to the "
            "Event Hub, filtered for the rules: the union of their event types, the subject "
            "prefix/suffix all of them share. It never drops an event a rule would match. "
            "Advanced filters are not pushed upstream (AND-ed filters cannot express a union "
            "of rules); the worker applies them."
        ),
    )
    _rules_options(parser)
    parser.add_argument(
        "--format",
        choices=FORMATS,
        required=True,
        help="az: a bash script of one az command; bicep; arm: a deployment template",
    )
    parser.add_argument(
        "--shape",
        choices=SHAPES,
        help="an extension resource on the workspace (az's only shape) or a named system "
        "topic and its child (the default for bicep and arm)",
    )
    parser.add_argument(
        "--workspace",
        metavar="ID_OR_NAME",
        help="the Azure ML workspace: its resource id, or its name (see --subscription-id, "
        "--resource-group)",
    )
    parser.add_argument("--subscription-id", metavar="GUID", help="the workspace's subscription")
    parser.add_argument("--resource-group", metavar="NAME", help="the workspace's resource group")
    parser.add_argument(
        "--event-hub-id",
        metavar="ID",
        type=_event_hub_id,
        help="resource id of the Event Hub (…/namespaces/NS/eventhubs/HUB)",
    )
    parser.add_argument(
        "--name", default="mlevents-feed", help="the subscription's name (default: mlevents-feed)"
    )
    parser.add_argument(
        "--delivery-schema",
        choices=("EventGridSchema", "CloudEventSchemaV1_0"),
        default="EventGridSchema",
        help="the schema events arrive in (default: EventGridSchema, what Azure ML publishes)",
    )
    parser.add_argument("--out", metavar="PATH", help="write here instead of standard output")
    parser.set_defaults(func=_export)


@dataclass(frozen=True, slots=True)
class Target:
    """Where the subscription goes; ``None`` for what was not given (a parameter in Bicep
    and ARM, a shell variable for az)."""

    subscription_id: str | None = None
    resource_group: str | None = None
    workspace: str | None = None
    event_hub_id: str | None = None


def _export(args: argparse.Namespace) -> int:
    from rules.upstream import Subscription, upstream_filter

    target = _target(args)
    shape = args.shape or ("extension" if args.format == "az" else "system-topic")
    if args.format == "az" and shape != "extension":
        raise ConfigError("--format az writes the extension shape; use bicep or arm for a topic")
    upstream = upstream_filter(_load(args))
    for warning in upstream.warnings:
        print(f"warning: {warning.message_at()}", file=sys.stderr)
    for note in upstream.notes:
        print(f"note: {note}", file=sys.stderr)
    try:
        subscription = Subscription(upstream.filter, args.name, args.delivery_schema)
    except ValueError as exc:
        raise ConfigError(f"--name: {exc}") from None
    if args.format == "az":
        text = render_az(subscription, target)
    elif args.format == "bicep":
        text = render_bicep(subscription, target, shape)
    else:
        text = json.dumps(arm_template(subscription, target, shape), indent=2) + "\n"
    if args.out is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        Path(args.out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    print(f"wrote {args.out}", file=sys.stderr)
    return EXIT_OK


def _target(args: argparse.Namespace) -> Target:
    """The workspace and hub options, checked (a bad one names its option)."""
    workspace = args.workspace
    sub, group = args.subscription_id, args.resource_group
    if workspace is not None and workspace.startswith("/"):
        found = WORKSPACE_ID.fullmatch(workspace)
        if found is None:
            raise ConfigError(
                f"--workspace {workspace!r} is not a workspace resource id: /subscriptions/"
                "GUID/resourceGroups/RG/providers/Microsoft.MachineLearningServices/workspaces/NAME"
            )
        if sub or group:
            raise ConfigError(
                "--workspace is a resource id: leave out --subscription-id and --resource-group"
            )
        sub, group, workspace = found["sub"], found["group"], found["name"]
    for option, value, pattern, expected in (
        ("--workspace", workspace, _WORKSPACE, "3 to 33 letters, digits, - and _"),
        ("--subscription-id", sub, _GUID, "a GUID"),
        ("--resource-group", group, _GROUP, "up to 90 letters, digits, - _ . ( )"),
    ):
        if value is not None and not re.fullmatch(pattern, value):
            raise ConfigError(f"{option} {value!r}: expected {expected}")
    return Target(sub, group, workspace, args.event_hub_id)


def _event_hub_id(text: str) -> str:
    if not EVENT_HUB_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an Event Hub resource id: /subscriptions/GUID/resourceGroups/RG/"
            "providers/Microsoft.EventHub/namespaces/NS/eventhubs/HUB"
        )
    return text


# --------------------------------------------------------------------------------------
# az: one idempotent command (create is create-or-update)
# --------------------------------------------------------------------------------------


class Expand(str):
    """An argv word the shell expands: written in double quotes, its ``$NAME``s are the
    variables the script asks for. Its other characters are checked names: nothing in
    them is special inside double quotes."""

    __slots__ = ()


def az_command(subscription: Subscription, target: Target) -> list[str]:
    """The ``az eventgrid event-subscription create`` argv (``Expand`` words for what is
    unknown). Values that start with ``-`` are written ``--option=value``."""
    flt = subscription.filter
    argv = ["az", "eventgrid", "event-subscription", "create", "--name", subscription.name]
    argv += ["--source-resource-id", _az_workspace_id(target)]
    hub = Expand("$EVENT_HUB_ID") if target.event_hub_id is None else target.event_hub_id
    argv += ["--endpoint-type", "eventhub", "--endpoint", hub]
    argv += ["--event-delivery-schema", subscription.delivery_schema.lower()]
    if flt.event_types is not None:
        argv += ["--included-event-types", *flt.event_types]
    for option, value in (
        ("--subject-begins-with", flt.subject_begins_with),
        ("--subject-ends-with", flt.subject_ends_with),
    ):
        if value:
            argv += [f"{option}={value}"] if value.startswith("-") else [option, value]
    if flt.subject_case_sensitive and (flt.subject_begins_with or flt.subject_ends_with):
        argv += ["--subject-case-sensitive", "true"]
    return argv


def _az_workspace_id(target: Target) -> str:
    parts = (target.subscription_id, target.resource_group, target.workspace)
    if None not in parts:
        sub, group, name = parts
    elif parts == (None, None, None):
        return Expand("$WORKSPACE_ID")
    else:
        sub = target.subscription_id or "$SUBSCRIPTION_ID"
        group = target.resource_group or "$RESOURCE_GROUP"
        name = target.workspace or "$WORKSPACE_NAME"
    text = (
        f"/subscriptions/{sub}/resourceGroups/{group}/providers/"
        f"Microsoft.MachineLearningServices/workspaces/{name}"
    )
    return Expand(text) if None in parts else text


_AZ_VARIABLES: Final = {
    "WORKSPACE_ID": "resource id of the Azure ML workspace",
    "SUBSCRIPTION_ID": "subscription id of the workspace",
    "RESOURCE_GROUP": "resource group of the workspace",
    "WORKSPACE_NAME": "name of the Azure ML workspace",
    "EVENT_HUB_ID": "resource id of the Event Hub (.../namespaces/NS/eventhubs/HUB)",
}


def render_az(subscription: Subscription, target: Target) -> str:
    """A bash script: the variables it needs checked, then the command, one option a line."""
    argv = az_command(subscription, target)
    needed = [v for v in _AZ_VARIABLES if any(f"${v}" in w for w in argv if isinstance(w, Expand))]
    lines = [
        "#!/usr/bin/env bash",
        "# The Event Grid subscription that feeds mlevents, written by `mlevents export`:",
        "# Azure ML events of the workspace to the Event Hub. Running it again updates it.",
        "set -euo pipefail",
    ]
    lines += [f': "${{{name}:?set {name}: {_AZ_VARIABLES[name]}}}"' for name in needed]
    words = [f'"{w}"' if isinstance(w, Expand) else shlex.quote(w) for w in argv]
    command: list[list[str]] = [[" ".join(words[:4])]]
    for word, quoted in zip(argv[4:], words[4:], strict=True):
        if word.startswith("--"):
            command.append([quoted])
        else:
            command[-1].append(quoted)
    # An option a line; an option with several values has them on lines of their own.
    parts = [" ".join(o) if len(o) <= 2 else " \\\n    ".join(o) for o in command]
    lines.append(" \\\n  ".join(parts))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# ARM and Bicep: one template, written twice
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Parameter:
    name: str
    description: str
    default: str | None = None
    """A literal default, or ``None`` (the deployment must give it)."""
    arm_default: str | None = None
    bicep_default: str | None = None
    """Defaults that are expressions, as each language writes them."""


def _parameters(target: Target, shape: str) -> list[_Parameter]:
    parameters = [
        _Parameter(
            "workspaceName",
            "Name of the Azure ML workspace, in the resource group this deploys to.",
            target.workspace,
        ),
        _Parameter(
            "eventHubId",
            "Resource id of the Event Hub the subscription delivers to.",
            target.event_hub_id,
        ),
    ]
    if shape == "system-topic":
        parameters += [
            _Parameter(
                "location",
                "Region of the workspace: its system topic lives there.",
                arm_default="[resourceGroup().location]",
                bicep_default="resourceGroup().location",
            ),
            _Parameter(
                "topicName",
                "Name of the workspace's system topic (a workspace has one: reuse its name).",
                arm_default="[format('{0}-events', parameters('workspaceName'))]",
                bicep_default="'${workspaceName}-events'",
            ),
        ]
    return parameters


def arm_template(subscription: Subscription, target: Target, shape: str) -> dict[str, Any]:
    """The ARM deployment template (resource group scope: the workspace's)."""
    from rules.upstream import API_VERSION, TOPIC_TYPE

    parameters: dict[str, Any] = {}
    for p in _parameters(target, shape):
        entry: dict[str, Any] = {"type": "string", "metadata": {"description": p.description}}
        default = _arm_literal(p.default) if p.default is not None else p.arm_default
        if default is not None:
            entry["defaultValue"] = default
        parameters[p.name] = entry
    properties = subscription.properties("[parameters('eventHubId')]")
    properties = {k: _arm_literal(v) if k == "filter" else v for k, v in properties.items()}
    resources: list[dict[str, Any]] = []
    if shape == "system-topic":
        topic = {
            "type": "Microsoft.EventGrid/systemTopics",
            "apiVersion": API_VERSION,
            "name": "[parameters('topicName')]",
            "location": "[parameters('location')]",
            "properties": {
                "source": "[resourceId('Microsoft.MachineLearningServices/workspaces', "
                "parameters('workspaceName'))]",
                "topicType": TOPIC_TYPE,
            },
        }
        feed = {
            "type": "Microsoft.EventGrid/systemTopics/eventSubscriptions",
            "apiVersion": API_VERSION,
            "name": f"[format('{{0}}/{{1}}', parameters('topicName'), '{subscription.name}')]",
            "dependsOn": [
                "[resourceId('Microsoft.EventGrid/systemTopics', parameters('topicName'))]"
            ],
            "properties": properties,
        }
        resources += [topic, feed]
    else:
        resources.append(
            {
                "type": "Microsoft.EventGrid/eventSubscriptions",
                "apiVersion": API_VERSION,
                "name": subscription.name,
                "scope": "[format('Microsoft.MachineLearningServices/workspaces/{0}', "
                "parameters('workspaceName'))]",
                "properties": properties,
            }
        )
    return {
        "$schema": DEPLOYMENT_SCHEMA,
        "contentVersion": "1.0.0.0",
        "metadata": {"description": " ".join(line.strip() for line in _about(target, shape))},
        "parameters": parameters,
        "resources": resources,
    }


def _arm_literal(value: Any) -> Any:
    """Strings an ARM template must not read as expressions: ``[...]`` is written ``[[...]``."""
    if isinstance(value, str):
        return f"[{value}" if value.startswith("[") and value.endswith("]") else value
    if isinstance(value, list):
        return [_arm_literal(item) for item in value]
    if isinstance(value, dict):
        return {key: _arm_literal(item) for key, item in value.items()}
    return value


class _BicepRef(str):
    """An identifier, written as it is in Bicep (a parameter or a resource property)."""

    __slots__ = ()


def render_bicep(subscription: Subscription, target: Target, shape: str) -> str:
    """The Bicep file (resource group scope: the workspace's)."""
    from rules.upstream import API_VERSION, TOPIC_TYPE

    lines = [f"// {line}" for line in _about(target, shape)]
    for p in _parameters(target, shape):
        default = _bicep_string(p.default) if p.default is not None else p.bicep_default
        lines += ["", f"@description({_bicep_string(p.description)})"]
        lines.append(f"param {p.name} string" + (f" = {default}" if default is not None else ""))
    workspace = f"'Microsoft.MachineLearningServices/workspaces@{WORKSPACE_API}'"
    lines += ["", f"resource workspace {workspace} existing = {{", "  name: workspaceName", "}"]
    properties = subscription.properties(_BicepRef("eventHubId"))
    feed: dict[str, Any] = {"name": subscription.name, "properties": properties}
    if shape == "system-topic":
        topic = {
            "name": _BicepRef("topicName"),
            "location": _BicepRef("location"),
            "properties": {"source": _BicepRef("workspace.id"), "topicType": TOPIC_TYPE},
        }
        kind = f"'Microsoft.EventGrid/systemTopics@{API_VERSION}'"
        lines += ["", f"resource topic {kind} = {_bicep_value(topic, 0)}"]
        feed = {"parent": _BicepRef("topic"), **feed}
        kind = f"'Microsoft.EventGrid/systemTopics/eventSubscriptions@{API_VERSION}'"
    else:
        feed = {"scope": _BicepRef("workspace"), **feed}
        kind = f"'Microsoft.EventGrid/eventSubscriptions@{API_VERSION}'"
    lines += ["", f"resource feed {kind} = {_bicep_value(feed, 0)}"]
    return "\n".join(lines) + "\n"


def _bicep_value(value: Any, depth: int) -> str:
    """A Bicep literal: multi-line objects and arrays, one entry a line."""
    inner, outer = "  " * (depth + 1), "  " * depth
    if isinstance(value, _BicepRef):
        return str(value)
    if isinstance(value, str):
        return _bicep_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        items = [f"{inner}{_bicep_value(item, depth + 1)}" for item in value]
        return "[\n" + "\n".join(items) + f"\n{outer}]"
    if isinstance(value, dict):
        items = [f"{inner}{key}: {_bicep_value(item, depth + 1)}" for key, item in value.items()]
        return "{\n" + "\n".join(items) + f"\n{outer}}}"
    raise TypeError(f"no Bicep literal for {value!r}")


_BICEP_ESCAPES: Final = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _bicep_string(text: str) -> str:
    """A single-quoted Bicep string: its escapes, ``${`` kept literal, control characters
    as ``\\u{...}``."""
    out = []
    for index, char in enumerate(text):
        if char in _BICEP_ESCAPES:
            out.append(_BICEP_ESCAPES[char])
        elif char == "$" and text[index + 1 : index + 2] == "{":
            out.append("\\$")
        elif ord(char) < 0x20:
            out.append(f"\\u{{{ord(char):X}}}")
        else:
            out.append(char)
    return "'" + "".join(out) + "'"


def _about(target: Target, shape: str) -> list[str]:
    """What the template is and how to deploy it (comment lines, or the ARM metadata)."""
    command = ["az deployment group create"]
    if target.subscription_id:
        command.append(f"--subscription {target.subscription_id}")
    command.append(f"--resource-group {target.resource_group or 'RESOURCE_GROUP'}")
    command.append("--template-file FILE")
    missing = [
        f"{p.name}={_PLACEHOLDERS[p.name]}"
        for p in _parameters(target, shape)
        if p.default is None and p.arm_default is None
    ]
    if missing:
        command.append(f"--parameters {' '.join(missing)}")
    return [
        "The Event Grid subscription that feeds mlevents, written by `mlevents export`:",
        "Azure ML events of the workspace to the Event Hub. Deploy it to the workspace's",
        "resource group:",
        f"  {' '.join(command)}",
    ]


_PLACEHOLDERS: Final = {"workspaceName": "WORKSPACE_NAME", "eventHubId": "EVENT_HUB_ID"}
"""What stands for a parameter without a default in the deployment command shown."""
