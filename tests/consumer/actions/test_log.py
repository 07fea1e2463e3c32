"""The log action: one line per decision, its message rendered from the event."""

from __future__ import annotations

import pytest
import structlog
from structlog.testing import capture_logs

from consumer.actions.log import LogExecutor
from consumer.errors import PermanentActionError
from rules import Decision, LogAction
from tests.support.factories import make_event, make_table


def _decision(message: str, level: str = "warning") -> Decision:
    action = {"type": "log", "level": level, "message": message}
    rule = make_table({"name": "failed", "actions": [action]}).rules[0]
    assert isinstance(rule.actions[0], LogAction)
    return Decision(make_event(), rule, 0, rule.actions[0])


def test_the_message_is_rendered_from_the_event() -> None:
    """A template in the message sees the event, as every other string field does."""
    with capture_logs() as logs:
        executor = LogExecutor(structlog.get_logger().bind())
        assert executor.run_inline(_decision("run {{ data.runId }} {{ data.runStatus }}")) == (
            "warning"
        )
    assert logs == [
        {
            "event": "run r1 Failed",
            "log_level": "warning",
            "rule": "failed",
            "event_id": "id-1",
            "event_type": "Microsoft.MachineLearningServices.RunStatusChanged",
            "subject": "experiments/e1/runs/r1",
        }
    ]


def test_a_message_that_fails_to_render_is_a_permanent_error() -> None:
    """A missing name is a permanent failure of this action (dead-lettered), named as such."""
    with capture_logs() as logs:
        executor = LogExecutor(structlog.get_logger().bind())
        with pytest.raises(PermanentActionError, match="log: 'message': "):
            executor.run_inline(_decision("{{ data.nothing.here }}"))
    assert logs == []


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error"])
def test_an_action_below_the_level_is_inert_with_the_detail_run_inline_gives(level: str) -> None:
    """``inert_detail`` says what ``run_inline`` returns when it does nothing: below the
    logger's level (a failing template included); at or above it, the action is not inert."""
    executor = LogExecutor(structlog.make_filtering_bound_logger(30)(None, [], {}))  # type: ignore[call-arg]
    decision = _decision("{{ data.nothing.here }}" if level in ("debug", "info") else "x", level)
    if level in ("debug", "info"):
        assert executor.inert_detail(decision.action) == level
        assert executor.run_inline(decision) == level
    else:
        assert executor.inert_detail(decision.action) is None
