"""Reading rule files from disk into a validated rule table, and the checks of the things
rules name outside themselves: job spec files, the environment variables of secrets, and the
hosts webhooks go to."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from consumer.actions.hosts import host_allowed
from consumer.actions.jobspec import load_job_spec
from consumer.errors import ActionError
from rules import (
    AmlJobAction,
    LoadedTable,
    PlacedAction,
    Problem,
    RuleSource,
    RuleTable,
    RuleTableError,
    WebhookAction,
    check_rules,
)
from rules.templates import url_host


def load_rule_files(
    paths: Sequence[str | Path],
    *,
    secrets: Callable[[str], str | None] | None = None,
    allowed_hosts: Sequence[str] = (),
) -> LoadedTable:
    """Read every file and load them as one table, in order.

    Raises:
        RuleTableError: with every problem in every file, unreadable files included, and
            what ``check_references`` finds in every action that parsed (secrets only when
            ``secrets`` is given, hosts only when ``allowed_hosts`` is not empty), even in a
            rule with other problems.
    """
    sources, problems = [], []
    for path in paths:
        try:
            sources.append(RuleSource(str(path), Path(path).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else f"not UTF-8 ({exc.reason})"
            problems.append(Problem(f"cannot read: {reason or exc}", file=str(path)))
    checked = check_rules(sources)
    problems.extend(checked.problems)
    problems.extend(check_references(checked.actions, secrets, allowed_hosts))
    if problems:
        raise RuleTableError(problems)
    return LoadedTable(RuleTable(checked.rules), checked.warnings)


def check_references(
    actions: Sequence[PlacedAction],
    secrets: Callable[[str], str | None] | None,
    allowed_hosts: Sequence[str] = (),
) -> list[Problem]:
    """What the actions refer to outside the rules: every ``aml_job`` spec file loads;
    unless ``secrets`` is ``None`` (offline checks), every ``secret_env`` is set; and with
    ``allowed_hosts`` (``[webhook] allowed_hosts``), every webhook goes to one of them."""
    problems = []
    for placed in actions:
        action, where = placed.action, f"actions[{placed.index}]"
        if isinstance(action, AmlJobAction):
            try:
                load_job_spec(Path(placed.file).parent / action.job)
            except ActionError as exc:
                problems.append(_problem(placed, f"{where}.job", str(exc)))
        if (
            isinstance(action, WebhookAction)
            and action.secret_env
            and secrets is not None
            and secrets(action.secret_env) is None
        ):
            message = f"environment variable {action.secret_env} is not set"
            problems.append(_problem(placed, f"{where}.secret_env", message))
        if isinstance(action, WebhookAction) and allowed_hosts:
            host = url_host(action.url)
            if not host_allowed(host, allowed_hosts):
                message = f"host {host} is not in [webhook] allowed_hosts"
                problems.append(_problem(placed, f"{where}.url", message))
    return problems


def _problem(placed: PlacedAction, key: str, message: str) -> Problem:
    return Problem(message, key=key, rule=placed.rule, file=placed.file, line=placed.line)
