"""Carrying out actions: one executor per action type.

An executor takes a ``Decision`` (one action of one matched rule for one event) and either
returns a short detail for the log (a run id, a status code) or raises an ``ActionError``
saying whether trying again could help. Retries, idempotency and dead letters are the
handler's job, so executors stay small. ``Executors`` maps an action ``type`` to its executor.
An executor that needs no I/O may also offer ``run_inline(decision) -> str``; the handler then
runs it synchronously, without a task; and ``inert_detail(action) -> str | None``, the detail
``run_inline`` would return for an action it carries out by doing nothing (a log action below
the log level), which the handler asks once per rule and then uses instead of the call.

An executor whose sink can be asked whether an action already happened (an Azure ML job by
its name, a deployment by its spec, a pipeline run by a parameter) is ``Findable``: when a
worker takes over an action whose earlier holder may have done it, the handler asks before it
acts again.

What an executor sends is built by functions that do no I/O and import no HTTP client or SDK
(``compose``, ``webhook.webhook_request``, ``arm`` and the Azure actions' builders), so that
``preview`` shows exactly that, offline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from rules import Action, Decision


class Executor(Protocol):
    """Carries out one action type."""

    async def __call__(self, decision: Decision) -> str:
        """Do the action once; return a detail for the log; raise ``ActionError`` on failure."""
        ...


class Findable(Protocol):
    """An executor that can look its effects up in the sink."""

    def can_find(self, action: Action) -> bool:
        """Whether this action's effect can be looked up (a pipeline run needs a parameter
        that carries the decision key)."""
        ...

    async def find(self, decision: Decision, since: float) -> str | None:
        """A detail of the effect of ``decision`` if it happened (at or after ``since``,
        seconds since the epoch), else ``None``; raise ``ActionError`` when the sink cannot
        say."""
        ...


Executors = Mapping[str, Executor]
REDACTED = "<redacted>"
"""What a preview of an action shows in place of a secret, or of a value derived from one (a
signature, a bearer token)."""


def action_type(decision: Decision) -> str:
    """The ``type`` tag of the decision's action (``"log"``, ``"webhook"``, ...)."""
    tag = decision.action.__struct_config__.tag
    return str(tag)


__all__ = ["REDACTED", "Executor", "Executors", "Findable", "action_type"]
