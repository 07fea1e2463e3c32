"""The pure core of mlevents: events in, decisions out.

Decoding Event Hubs bodies, Event Grid's filter language, the rule table and its loader,
and action plans. No asyncio, no I/O, and nothing from ``consumer/``.
"""

from .actions import (
    Action,
    AdfPipelineRunAction,
    AmlDeployAction,
    AmlJobAction,
    EmailAction,
    LogAction,
    WebhookAction,
)
from .azureml import payload
from .errors import DecodeError, FilterError, Problem, RulesError, RuleTableError
from .events import Event, decode_body
from .explain import Check, Explanation
from .filters import Filter, compile_filter
from .keys import EventView
from .loader import CheckedRules, LoadedTable, PlacedAction, RuleSource, check_rules, load_table
from .plan import Decision, plan
from .table import Rule, RuleTable

__all__ = [
    "Action",
    "AdfPipelineRunAction",
    "AmlDeployAction",
    "AmlJobAction",
    "Check",
    "CheckedRules",
    "Decision",
    "DecodeError",
    "EmailAction",
    "Event",
    "EventView",
    "Explanation",
    "Filter",
    "FilterError",
    "LoadedTable",
    "LogAction",
    "PlacedAction",
    "Problem",
    "Rule",
    "RuleSource",
    "RuleTable",
    "RuleTableError",
    "RulesError",
    "WebhookAction",
    "check_rules",
    "compile_filter",
    "decode_body",
    "load_table",
    "payload",
    "plan",
]
