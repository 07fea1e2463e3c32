"""Reading rule files from disk into a validated rule table, and the checks of the things
rules name outside themselves: job spec files, the environment variables of secrets, and the
hosts webhooks go to."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from rules import (
    AmlJobAction,
    LoadedTable,
    Problem,
    Rule,
    RuleSource,
    RuleTable,
    RuleTableError,
    WebhookAction,
    load_table,
)
from rules.templates import url_host

from .actions.amljob import load_job_spec
from .actions.webhook import host_allowed
from .errors import ActionError


def load_rule_files(
    paths: Sequence[str | Path],
    *,
    secrets: Callable[[str], str | None] | None = None,
    allowed_hosts: Sequence[str] = (),
) -> LoadedTable:
    """Read every file and load them as one table, in order.

    Raises:
        RuleTableError: with every problem in every file, unreadable files included, and
            what ``check_references`` finds (secrets only when ``secrets`` is given, hosts
            only when ``allowed_hosts`` is not empty).
    """
    sources, problems = [], []
    for path in paths:
        try:
            sources.append(RuleSource(str(path), Path(path).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else f"not UTF-8 ({exc.reason})"
            problems.append(Problem(f"cannot read: {reason or exc}", file=str(path)))
    try:
        loaded = load_table(sources)
    except RuleTableError as exc:
        raise RuleTableError(problems + exc.problems) from None
    problems.extend(check_references(loaded.table, secrets, allowed_hosts))
    if problems:
        raise RuleTableError(problems)
    return loaded


def check_references(
    table: RuleTable,
    secrets: Callable[[str], str | None] | None,
    allowed_hosts: Sequence[str] = (),
) -> list[Problem]:
    """What the rules refer to outside themselves: every ``aml_job`` spec file loads;
    unless ``secrets`` is ``None`` (offline checks), every ``secret_env`` is set; and with
    ``allowed_hosts`` (``[webhook] allowed_hosts``), every webhook goes to one of them."""
    problems = []
    for rule in table.rules:
        for index, action in enumerate(rule.actions):
            where = f"actions[{index}]"
            if isinstance(action, AmlJobAction):
                try:
                    load_job_spec(Path(rule.file).parent / action.job)
                except ActionError as exc:
                    problems.append(_problem(rule, f"{where}.job", str(exc)))
            if (
                isinstance(action, WebhookAction)
                and action.secret_env
                and secrets is not None
                and secrets(action.secret_env) is None
            ):
                message = f"environment variable {action.secret_env} is not set"
                problems.append(_problem(rule, f"{where}.secret_env", message))
            if isinstance(action, WebhookAction) and allowed_hosts:
                host = url_host(action.url)
                if not host_allowed(host, allowed_hosts):
                    message = f"host {host} is not in [webhook] allowed_hosts"
                    problems.append(_problem(rule, f"{where}.url", message))
    return problems


def _problem(rule: Rule, key: str, message: str) -> Problem:
    return Problem(message, key=key, rule=rule.name, file=rule.file, line=rule.line)
