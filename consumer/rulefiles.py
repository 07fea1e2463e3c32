"""Reading rule files from disk into a validated rule table, and the checks of the things
rules name outside themselves: job spec files, the environment variables webhooks take
secrets from, and the hosts webhooks go to."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from consumer.actions.hosts import host_allowed
from consumer.actions.jobspec import load_job_spec
from consumer.actions.webhookenv import Secrets, env_header, env_url, signing_key
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
from rules.actions import may_carry_token
from rules.templates import url_host

_T = TypeVar("_T")


def load_rule_files(
    paths: Sequence[str | Path],
    *,
    secrets: Secrets | None = None,
    allowed_hosts: Sequence[str] = (),
    subscriptions: bool = False,
) -> LoadedTable:
    """Read every file and load them as one table, in order. With ``subscriptions`` (the
    offline commands), a JSON file may be an Event Grid event subscription: its filter is
    a rule without actions (``rules.subscriptions``).

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
    checked = check_rules(sources, subscriptions=subscriptions)
    problems.extend(checked.problems)
    problems.extend(check_references(checked.actions, secrets, allowed_hosts))
    if problems:
        raise RuleTableError(problems)
    return LoadedTable(RuleTable(checked.rules), checked.warnings)


def check_references(
    actions: Sequence[PlacedAction],
    secrets: Secrets | None,
    allowed_hosts: Sequence[str] = (),
) -> list[Problem]:
    """What the actions refer to outside the rules: every ``aml_job`` spec file loads;
    unless ``secrets`` is ``None`` (offline checks), every environment variable a webhook
    names holds a value it can use (``consumer.actions.webhookenv``); and with
    ``allowed_hosts`` (``[webhook] allowed_hosts``), every webhook goes to one of them (for
    ``url_env``, only when ``secrets`` is given)."""
    problems = []
    for placed in actions:
        action, where = placed.action, f"actions[{placed.index}]"
        if isinstance(action, AmlJobAction):
            try:
                load_job_spec(Path(placed.file).parent / action.job)
            except ActionError as exc:
                problems.append(_problem(placed, f"{where}.job", str(exc)))
        if isinstance(action, WebhookAction):
            for field, message in _webhook_problems(action, secrets, allowed_hosts):
                problems.append(_problem(placed, f"{where}.{field}", message))
    return problems


def _webhook_problems(
    action: WebhookAction, secrets: Secrets | None, allowed_hosts: Sequence[str]
) -> list[tuple[str, str]]:
    """A webhook's problems outside its rule, as (field, message) pairs: the variables it
    names (with ``secrets``), and where its URL goes. Messages name variables and hosts,
    never a value."""
    found: list[tuple[str, str]] = []

    def read(field: str, variable: str | None, reader: Callable[[Secrets, str], _T]) -> _T | None:
        if variable is None or secrets is None:
            return None
        try:
            return reader(secrets, variable)
        except ValueError as exc:
            found.append((field, str(exc)))
            return None

    read("secret_env", action.secret_env, signing_key)
    for name, variable in action.headers_env.items():
        read(f"headers_env.{name}", variable, env_header)
    if action.url_env is None:
        url, field, source = action.url, "url", ""
    else:
        url, field = read("url_env", action.url_env, env_url), "url_env"
        source = f" (in {action.url_env})"
        if url is not None and action.auth is not None and not may_carry_token(url):
            message = f"{action.url_env} holds a plain http URL; with auth, only https"
            found.append((field, message))
    host = None if url is None else url_host(url)
    if url is not None and allowed_hosts and not host_allowed(host, allowed_hosts):
        found.append((field, f"host {host}{source} is not in [webhook] allowed_hosts"))
    return found


def _problem(placed: PlacedAction, key: str, message: str) -> Problem:
    return Problem(message, key=key, rule=placed.rule, file=placed.file, line=placed.line)
