"""The webhook action's secrets out of the rule: ``url_env``, ``headers_env`` and ``auth``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rules import RuleSource, RuleTableError, WebhookAction, load_table
from rules.actions import AzureAdAuth, may_carry_token

URL = "https://hooks.example.com/x"
AUTH = {"type": "azure_ad", "scope": "api://hooks/.default"}


def _load(**fields: Any) -> WebhookAction:
    text = json.dumps({"rules": [{"name": "r", "actions": [{"type": "webhook", **fields}]}]})
    (rule,) = load_table([RuleSource("r.json", text)]).table.rules
    (action,) = rule.actions
    assert isinstance(action, WebhookAction)
    return action


def _problem(**fields: Any) -> str:
    """The one problem of a webhook with ``fields``, as the loader says it."""
    with pytest.raises(RuleTableError) as caught:
        _load(**fields)
    (problem,) = caught.value.problems
    return problem.message_at()


def test_the_url_can_come_from_the_environment() -> None:
    """``url_env`` names the variable; the rule holds the name only."""
    action = _load(url_env="HOOK_URL", headers_env={"X-Api-Key": "HOOK_API_KEY"})
    assert (action.url, action.url_env) == (None, "HOOK_URL")
    assert action.headers_env == {"X-Api-Key": "HOOK_API_KEY"}


@pytest.mark.parametrize("fields", [{}, {"url": URL, "url_env": "HOOK_URL"}])
def test_exactly_one_of_url_and_url_env(fields: dict[str, str]) -> None:
    assert _problem(**fields) == (
        "r.json:1: rule 'r': actions[0]: "
        "needs either 'url' or 'url_env' (the environment variable holding the URL)"
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("X Bad:", "'X Bad:' is not a valid header name"),
        ("", "'' is not a valid header name"),
        ("Webhook-Signature", "'Webhook-Signature' is set by the worker, not a rule"),
        ("content-length", "'content-length' is set by the worker, not a rule"),
    ],
)
def test_headers_env_names_are_checked_as_headers_are(name: str, message: str) -> None:
    problem = _problem(url=URL, headers_env={name: "HOOK_API_KEY"})
    assert problem == f"r.json:1: rule 'r': actions[0]: headers_env: {message}"


def test_a_header_cannot_come_from_the_rule_and_the_environment() -> None:
    problem = _problem(url=URL, headers={"X-Api-Key": "a"}, headers_env={"x-api-key": "KEY"})
    assert problem.endswith("actions[0]: headers_env: 'x-api-key' is in headers too")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"url_env": "https://hooks.example.com/x?sig=VALUE"}, "url_env"),
        ({"url": URL, "headers_env": {"X-Api-Key": "VALUE with spaces"}}, "headers_env.X-Api-Key"),
        ({"url": URL, "secret_env": "whsec_VALUE+/="}, "secret_env"),
    ],
)
def test_an_env_field_holding_a_value_is_refused_without_showing_it(
    fields: dict[str, Any], field: str
) -> None:
    """A URL or a key pasted where the variable's name goes is refused, and not echoed."""
    problem = _problem(**fields)
    assert problem == (
        f"r.json:1: rule 'r': actions[0]: {field}: "
        "must name an environment variable, not hold a value"
    )
    assert "VALUE" not in problem


def test_auth_asks_for_a_token_for_the_rules_scope() -> None:
    action = _load(url=URL, auth=AUTH)
    assert action.auth == AzureAdAuth(type="azure_ad", scope="api://hooks/.default")


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"auth": {"type": "basic", "scope": "s"}}, "Invalid enum value 'basic'"),
        ({"auth": {"scope": "s"}}, "missing required field `type`"),
        ({"auth": {"type": "azure_ad"}}, "missing required field `scope`"),
        ({"auth": {**AUTH, "tenant": "t"}}, "unknown field `tenant`"),
        (
            {"auth": {**AUTH, "scope": "api://{{ data.app }}/.default"}},
            "auth: 'scope' must be one scope, written out (not a template)",
        ),
        (
            {"auth": {**AUTH, "scope": "a b"}},
            "auth: 'scope' must be one scope, written out (not a template)",
        ),
        (
            {"auth": AUTH, "headers": {"Authorization": "Basic x"}},
            "auth: sets the Authorization header; leave it out of headers",
        ),
        (
            {"auth": AUTH, "headers_env": {"authorization": "KEY"}},
            "auth: sets the Authorization header",
        ),
        (
            {"auth": AUTH, "url": "http://hooks.example.com/x"},
            "auth: a token goes over https only (plain http to loopback)",
        ),
    ],
)
def test_auth_is_checked_when_loaded(fields: dict[str, Any], fragment: str) -> None:
    """Event data never picks a token's scope, and a token never goes out in clear."""
    problem = _problem(**{"url": URL, **fields})
    assert problem.startswith("r.json:1: rule 'r': actions[0]")
    assert fragment in problem


@pytest.mark.parametrize(
    ("url", "may"),
    [
        ("https://hooks.example.com/x", True),
        ("HTTPS://hooks.example.com/{{ event.id }}", True),
        ("http://127.0.0.1:8080/hook", True),
        ("http://localhost/hook", True),
        ("http://[::1]:8080/hook", True),
        ("http://hooks.example.com/x", False),
        ("http://127.0.0.1.example.com/x", False),
        ("ftp://hooks.example.com/x", False),
    ],
)
def test_a_token_goes_over_https_or_to_this_machine(url: str, may: bool) -> None:
    assert may_carry_token(url) is may
