"""The ``log`` action: one structured log line about the event; its message is a template."""

from __future__ import annotations

import structlog

from consumer.errors import PermanentActionError
from rules import Action, Decision, LogAction
from rules.templates import TemplateError, context, render


class LogExecutor:
    """Writes the action's message at its level, with the event's identity bound.

    It needs no I/O worth waiting for, so the handler runs it inline (``run_inline``).
    """

    def __init__(self, logger: structlog.typing.FilteringBoundLogger) -> None:
        self._log = logger
        # A filtering logger's level is fixed when it is made: ask once, not per action.
        self._enabled = {name: logger.is_enabled_for(number) for name, number in _LEVELS.items()}

    async def __call__(self, decision: Decision) -> str:
        return self.run_inline(decision)

    def inert_detail(self, action: Action) -> str | None:
        """What ``run_inline`` returns for ``action`` without doing anything, when it does
        nothing (its level is filtered out); else None. The handler then skips the call."""
        if isinstance(action, LogAction) and not self._enabled[action.level]:
            return action.level
        return None

    def run_inline(self, decision: Decision) -> str:
        action = decision.action
        assert isinstance(action, LogAction)
        if not self._enabled[action.level]:
            return action.level  # filtered out: skip building the line
        event = decision.event
        message = log_message(decision)
        self._log.log(
            _LEVELS[action.level], message, rule=decision.rule.name,
            event_id=event.id, event_type=event.type, subject=event.subject,
        )  # fmt: skip
        return action.level


def log_message(decision: Decision) -> str:
    """The message of the log action of ``decision``, rendered from its event.

    Raises:
        PermanentActionError: the template fails.
    """
    action = decision.action
    assert isinstance(action, LogAction)
    if "{" not in action.message:  # plain text needs no rendering
        return action.message
    try:
        return render(action.message, context(decision.event))
    except TemplateError as exc:
        raise PermanentActionError(f"log: 'message': {exc}") from None


_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
