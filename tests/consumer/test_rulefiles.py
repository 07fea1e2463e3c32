"""Rule files checked against what they name outside themselves: ``[webhook] allowed_hosts``
and the environment variables webhooks take their secrets from."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
import structlog

from consumer.config import load_config
from consumer.rulefiles import load_rule_files
from consumer.worker.lifecycle import RuleHolder
from consumer.worker.metrics import Metrics
from consumer.worker.wiring import build
from rules import RuleTableError

HOOK = '[[rules]]\nname = "hook"\n[[rules.actions]]\ntype = "webhook"\nurl = "{url}"\n'


def _rules(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(HOOK.format(url=url))
    return path


def test_a_webhook_to_a_host_not_allowed_is_a_load_problem(tmp_path: Path) -> None:
    """The problem names the file, line, rule and key, and the host but not the query."""
    path = _rules(tmp_path, "https://hooks.example.net/x?code=KEY")
    with pytest.raises(RuleTableError) as caught:
        load_rule_files([path], allowed_hosts=["hooks.example.com", "*.webhook.office.com"])
    (problem,) = caught.value.problems
    assert problem.message_at() == (
        f"{path}:2: rule 'hook': actions[0].url: "
        "host hooks.example.net is not in [webhook] allowed_hosts"
    )
    assert load_rule_files([path]).table.rules[0].name == "hook"


@pytest.mark.parametrize(
    "url", ["https://HOOKS.example.com/x", "https://a.webhook.office.com/webhookb2/{{ event.id }}"]
)
def test_allowed_hosts_and_wildcards_load(tmp_path: Path, url: str) -> None:
    path = _rules(tmp_path, url)
    loaded = load_rule_files([path], allowed_hosts=["hooks.example.com", "*.webhook.office.com"])
    assert len(loaded.table) == 1


def test_a_reload_naming_a_host_not_allowed_is_rejected(tmp_path: Path) -> None:
    """The old table keeps running when a reload names another host."""
    path = _rules(tmp_path, "https://hooks.example.com/x")
    allowed = ("hooks.example.com",)
    loaded = load_rule_files([path], allowed_hosts=allowed)
    log = structlog.get_logger("test").bind()
    holder = RuleHolder([path], loaded.table, log, Metrics(clock=time.time), None, allowed)
    _rules(tmp_path, "https://hooks.example.net/x")
    assert holder.reload() is False
    assert holder() is loaded.table


async def test_the_worker_does_not_start_with_a_host_not_allowed(tmp_path: Path) -> None:
    """``mlevents run`` checks the rules against the config's allowed_hosts before it
    connects to anything."""
    _rules(tmp_path, "https://hooks.example.net/x")
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        '[rules]\nfiles = ["rules.toml"]\n[eventhub]\nname = "hub"\n'
        'connection_string_env = "HUB"\n[webhook]\nallowed_hosts = ["hooks.example.com"]\n'
    )
    config = load_config(config_path, {"HUB": "Endpoint=sb://127.0.0.1/;SharedAccessKey=x"})
    async with contextlib.AsyncExitStack() as stack:
        with pytest.raises(RuleTableError, match=r"host hooks\.example\.net is not in"):
            await build(config, stack)


ENV_HOOK = '[[rules]]\nname = "hook"\n[[rules.actions]]\ntype = "webhook"\n'
"""A webhook rule whose fields follow; its action's fields start on line 4."""
SECRET = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
URL = "https://hooks.example.com/webhookb2/x?sig=URLSECRET"


@pytest.mark.parametrize(
    ("fields", "environ", "key", "message"),
    [
        (
            'url_env = "HOOK_URL"\n',
            {},
            "url_env",
            "environment variable HOOK_URL is not set",
        ),
        (
            'url_env = "HOOK_URL"\n',
            {"HOOK_URL": "hooks.example.com/x?sig=URLSECRET"},
            "url_env",
            "environment variable HOOK_URL does not hold an http(s) URL",
        ),
        (
            'url_env = "HOOK_URL"\n',
            {"HOOK_URL": "https://hooks.example.net/x?sig=URLSECRET"},
            "url_env",
            "host hooks.example.net (in HOOK_URL) is not in [webhook] allowed_hosts",
        ),
        (
            'url_env = "HOOK_URL"\nauth = { type = "azure_ad", scope = "api://a/.default" }\n',
            {"HOOK_URL": "http://hooks.example.com/x?sig=URLSECRET"},
            "url_env",
            "HOOK_URL holds a plain http URL; with auth, only https",
        ),
        (
            f'url = "{URL}"\nheaders_env = {{ "X-Api-Key" = "HOOK_API_KEY" }}\n',
            {},
            "headers_env.X-Api-Key",
            "environment variable HOOK_API_KEY is not set",
        ),
        (
            f'url = "{URL}"\nheaders_env = {{ "X-Api-Key" = "HOOK_API_KEY" }}\n',
            {"HOOK_API_KEY": "KEYSECRET\nX-Injected: 1"},
            "headers_env.X-Api-Key",
            "environment variable HOOK_API_KEY holds a line break or another control character",
        ),
        (
            f'url = "{URL}"\nsecret_env = "HOOK_SECRET"\n',
            {"HOOK_SECRET": "not-base64-SIGNSECRET"},
            "secret_env",
            "environment variable HOOK_SECRET does not hold a Standard Webhooks signing secret "
            "(base64, optionally after whsec_)",
        ),
        (
            f'url = "{URL}"\nsecret_env = "HOOK_SECRET"\n',
            {"HOOK_SECRET": "whsec_"},
            "secret_env",
            "environment variable HOOK_SECRET holds an empty signing secret",
        ),
    ],
)
def test_the_variables_a_webhook_names_are_checked_when_rules_load(
    tmp_path: Path, fields: str, environ: dict[str, str], key: str, message: str
) -> None:
    """Each problem names the file, line, rule, action and variable, never the value."""
    path = tmp_path / "rules.toml"
    path.write_text(ENV_HOOK + fields)
    with pytest.raises(RuleTableError) as caught:
        load_rule_files([path], secrets=environ.get, allowed_hosts=["*.example.com"])
    (problem,) = caught.value.problems
    assert problem.message_at() == f"{path}:2: rule 'hook': actions[0].{key}: {message}"
    assert not [value for value in environ.values() if value in problem.message_at()]
    assert len(load_rule_files([path]).table) == 1  # offline (no secrets): not looked at


def test_usable_variables_load(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        ENV_HOOK + 'url_env = "HOOK_URL"\nsecret_env = "HOOK_SECRET"\n'
        'headers_env = { "X-Api-Key" = "HOOK_API_KEY" }\n'
        'auth = { type = "azure_ad", scope = "api://a/.default" }\n'
    )
    environ = {"HOOK_URL": f"{URL}\n", "HOOK_SECRET": SECRET, "HOOK_API_KEY": "k"}
    loaded = load_rule_files([path], secrets=environ.get, allowed_hosts=["*.example.com"])
    assert len(loaded.table) == 1


async def test_the_worker_does_not_start_with_a_signing_secret_that_is_not_base64(
    tmp_path: Path,
) -> None:
    """Before, every signed request was dead-lettered; now ``mlevents run`` stops at once,
    naming the rule, the action and the variable, not the value."""
    path = tmp_path / "rules.toml"
    path.write_text(ENV_HOOK + f'url = "{URL}"\nsecret_env = "HOOK_SECRET"\n')
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        '[rules]\nfiles = ["rules.toml"]\n[eventhub]\nname = "hub"\nconnection_string_env = "HUB"\n'
    )
    environ = {"HUB": "Endpoint=sb://127.0.0.1/;SharedAccessKey=x", "HOOK_SECRET": "SIGN-SECRET"}
    config = load_config(config_path, environ)
    async with contextlib.AsyncExitStack() as stack:
        with pytest.raises(RuleTableError) as caught:
            await build(config, stack)
    (problem,) = caught.value.problems
    assert problem.message_at() == (
        f"{path}:2: rule 'hook': actions[0].secret_env: environment variable HOOK_SECRET "
        "does not hold a Standard Webhooks signing secret (base64, optionally after whsec_)"
    )
    assert "SIGN-SECRET" not in str(caught.value)
